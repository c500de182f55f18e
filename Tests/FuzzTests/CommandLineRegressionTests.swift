import Foundation
import Llama
import SafeTensors
import Testing

/// The command-line cases of issue 11 that the generator draws only by chance, each run once as a
/// subprocess: the exit status and the one-line message.
@Suite struct CommandLineRegressionTests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ env: FuzzEnvironment, _ args: [String]) throws -> Run {
        guard FileManager.default.isExecutableFile(atPath: env.binary.path) else {
            throw FuzzSetupError("\(env.binary.path) is missing: build it with swift build -c release")
        }
        let out = env.work.appendingPathComponent("stdout-\(UUID().uuidString)")
        let err = env.work.appendingPathComponent("stderr-\(UUID().uuidString)")
        let r = FuzzRunner.spawn(env.binary.path, args, stdout: out.path, stderr: err.path)
        let stdout = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        guard case let .exited(status, _) = r else { throw FuzzSetupError("\(args): \(r), stderr \(stderr)") }
        return Run(status: status, stdout: stdout, stderr: stderr)
    }

    @Test func evalSeqlenBeyondTheModelIsRefused() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        let r = try Self.run(env, ["eval", "--model", env.base.modelFolder.path, "--dataset", "text",
                                   "--data-file", env.textFile.path, "--seqlen", "513", "--quiet"])
        #expect(r.status == 1)
        #expect(r.stderr == "error: --seqlen 513 exceeds the model's max_position_embeddings 512\n")
    }

    @Test func hugeGroupSizesAreUsageErrors() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        for spec in ["1:9223372036854775807", "1:1000000000000"] {
            let out = env.work.appendingPathComponent("out")
            let r = try Self.run(env, ["prune", "--model", env.base.modelFolder.path, "--method", "magnitude",
                                       "--sparsity", spec, "--output", out.path, "--quiet"])
            #expect(r.status == 64)
            #expect(r.stderr.hasPrefix("error: option '--sparsity': invalid sparsity '\(spec)': M must be at most 65536\n"))
            #expect(!FileManager.default.fileExists(atPath: out.path))
        }
    }

    @Test func endlessDataFilesAreRefused() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        let eval = try Self.run(env, ["eval", "--model", env.base.modelFolder.path, "--data-file", "/dev/zero", "--quiet"])
        #expect(eval.status == 1 && eval.stderr == "error: /dev/zero: is not a regular file or a pipe\n")
        let prune = try Self.run(env, ["prune", "--model", env.base.modelFolder.path, "--method", "wanda", "--sparsity", "0.5",
                                       "--calibration-file", "/dev/zero", "--quiet"])
        #expect(prune.status == 1 && prune.stderr == "error: /dev/zero: is not a regular file or a pipe\n")
    }

    @Test func moreGradientSamplesThanSamplesIsRefused() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        let out = env.work.appendingPathComponent("out")
        let r = try Self.run(env, ["prune", "--model", env.base.modelFolder.path, "--method", "wanda++", "--sparsity", "0.5",
                                   "--calibration-file", env.textFile.path, "--nsamples", "2", "--seqlen", "16",
                                   "--ro-samples", "2", "--gradient-samples", "3", "--output", out.path, "--quiet"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("--gradient-samples 3 must be in 1...2 (the calibration sample count)"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: env.work.path).filter { $0 == "out" || $0.hasPrefix(".out") }.isEmpty)
    }

    /// A model whose logits are huge but finite: every window's loss is finite, their mean overflows
    /// exp, so the perplexity is +∞. `--json` prints null with a warning instead of trapping.
    @Test func anInfinitePerplexityIsPrintedAsNullWithAWarning() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        let model = env.work.appendingPathComponent("loud")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: false)
        for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: env.base.modelFolder.appendingPathComponent(name), to: model.appendingPathComponent(name))
        }
        let source = try SafeTensorsCheckpoint(directory: env.base.modelFolder)
        let entries = try source.tensorNames.map { name -> TensorEntry in
            var data = try source.floats(name)
            if name == LlamaTensorNames.finalNorm { data = data.map { $0 * 20_000 } }
            return TensorEntry(name: name, dtype: .F32, shape: source.info(name)!.shape, data: .floats(data))
        }
        try SafeTensorsWriter.write(entries, to: model.appendingPathComponent("model.safetensors"))
        let r = try Self.run(env, ["eval", "--model", model.path, "--dataset", "text", "--data-file", env.textFile.path,
                                   "--seqlen", "64", "--max-windows", "2", "--quiet", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"perplexity\":null"), "\(r.stdout)")
        #expect(r.stderr == "warning: perplexity is inf, written as null in the JSON output\n")
    }
}
