import Foundation
import Testing
import GGUF
import SafeTensors
import Llama
import Datasets
import Evaluation
import Pruning
import Runs
import Tokenizers
import TestSupport

/// Writing what was evaluated: half-precision outputs and GGUF inputs/outputs.
@Suite struct GGUFPruningTests {
    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-job-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        return dir
    }

    private func tinyGGUF() throws -> URL {
        try packageRoot().appendingPathComponent("Fixtures/gguf/tiny-llama.gguf")
    }

    /// A BF16 checkpoint pruned by SparseGPT (whose updates leave float32 values between bfloat16 ones):
    /// the perplexity reported and recorded is the one of the export as written, to the last bit.
    @Test func bf16OutputReportsTheWrittenModel() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bf16 = dir.appendingPathComponent("stories-bf16")
        try ModelConversion.convert(model: try sharedPath("models/stories260K"), output: bf16, dtype: .BF16)
        #expect(try SafeTensorsCheckpoint(directory: bf16).info(LlamaTensorNames.weight(.q, layer: 0))?.dtype == .BF16)
        let text = try String(contentsOf: try sharedPath("text/tinyshakespeare/input.txt"), encoding: .utf8)
        let evalFile = dir.appendingPathComponent("eval.txt")
        try String(text.prefix(8_000)).write(to: evalFile, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("pruned")
        let r = try PruningJob.run(PruningJobOptions(
            model: bf16, method: try PruningMethods.make("sparsegpt"), pattern: .unstructured(0.5),
            calibrationFile: try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"),
            calibrationFormat: .tokens, nsamples: 4, seqlen: 128, seed: 0, output: out,
            evaluation: (.text, evalFile, 128), toolVersion: "test"))
        let reported = try #require(r.perplexity)

        let exported = try LlamaCheckpoint(directory: out)
        #expect(try SafeTensorsCheckpoint(directory: out).info(LlamaTensorNames.weight(.q, layer: 0))?.dtype == .BF16)
        let tokenizer = try Tokenizer(directory: out)
        let ids = [tokenizer.bosTokenID!] + tokenizer.encode(try EvaluationDataset.text.loadText(from: evalFile), addSpecialTokens: false)
        let again = try Perplexity.evaluate(model: try exported.loadModel(), windows: try EvaluationWindows(tokens: ids, seqlen: 128, source: "eval"))
        #expect(again.perplexity == reported.perplexity, "reported \(reported.perplexity), export gives \(again.perplexity)")
        let record = try PruningRecord.decode(Data(contentsOf: out.appendingPathComponent("pruning.json")))
        #expect(record.results["text_perplexity"] == again.perplexity)
    }

    /// A GGUF input pruned to a Hugging Face folder (f32) and to a GGUF file (F32): both hold the same
    /// pruned weights (the GGUF's q/k rows permuted back and forth), the GGUF keeps the input's metadata
    /// and tokenizer and records the run.
    @Test func ggufInputWritesHuggingFaceAndGGUF() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        func prune(_ storage: CheckpointStorage, _ name: String) throws -> URL {
            var o = PruningJobOptions(model: try tinyGGUF(), method: try PruningMethods.make("magnitude"),
                                      pattern: .nm(n: 2, m: 4), calibrationFile: nil, calibrationFormat: .tokens,
                                      nsamples: 1, seqlen: 16, output: dir.appendingPathComponent(name), toolVersion: "test")
            o.ggufOutputStorage = storage
            _ = try PruningJob.run(o)
            return dir.appendingPathComponent(name)
        }
        let hf = try prune(.safetensors(.F32), "hf")
        let gg = try prune(.gguf(.F32), "pruned.gguf")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["hf", "pruned.gguf"], "no temporary left")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: hf.path)) == ["config.json", "model.safetensors", "pruning.json", "tokenizer.json", "tokenizer_config.json"])
        let a = try LlamaCheckpoint(directory: hf)
        let b = try LlamaCheckpoint(ggufFile: gg)
        let original = try LlamaCheckpoint(ggufFile: try tinyGGUF())
        #expect(a.configuration.hiddenSize == 64 && b.configuration == original.configuration)
        for layer in 0..<2 {
            let x = try a.loadBlock(layer), y = try b.loadBlock(layer), z = try original.loadBlock(layer)
            for kind in LinearKind.allCases {
                #expect(x[kind] == y[kind], "\(kind) of block \(layer)")
                let w = x[kind].data
                try SparsityCheck.validateNM(w, rows: x[kind].shape[0], cols: x[kind].shape[1], n: 2, m: 4, name: kind.rawValue)
                // Every kept weight is the input's (the un-permutation lines rows up).
                #expect(zip(w, z[kind].data).allSatisfy { $0 == 0 || $0 == $1 })
            }
        }
        let file = try GGUFFile(url: gg)
        let input = try GGUFFile(url: try tinyGGUF())
        #expect(file["tokenizer.ggml.tokens"] == input["tokenizer.ggml.tokens"])
        #expect(file["tokenizer.ggml.merges"] == input["tokenizer.ggml.merges"])
        #expect(file.tensorNames.sorted() == input.tensorNames.sorted())
        let record = try #require(file["llm_prune.record"]?.string)
        #expect(try PruningRecord.decode(Data(record.utf8)).summary.method == "magnitude")
    }

    /// Q8_0 output: the perplexity reported is the one of the file as written (re-evaluated from it, to the
    /// last bit), and every written weight is the float32 pruned weight rounded to nearest within its block
    /// of 32 (|q·d₁₆ − w| ≤ d₁₆/2 + 127·|d₁₆ − d|, d = max|w|/127, against the same run written as F32):
    /// a wrong scale, a truncating encoder, or float32 evaluated while Q8_0 is written all fail. Zeros stay
    /// zero, norms stay F32.
    @Test func q8OutputIsWhatWasEvaluated() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try String(contentsOf: try sharedPath("text/tinyshakespeare/input.txt"), encoding: .utf8)
        let evalFile = dir.appendingPathComponent("eval.txt")
        try String(text.prefix(4_000)).write(to: evalFile, atomically: true, encoding: .utf8)
        func prune(_ type: GGMLType, _ name: String) throws -> (URL, PerplexityResult) {
            var o = PruningJobOptions(model: try tinyGGUF(), method: try PruningMethods.make("magnitude"),
                                      pattern: .unstructured(0.5), calibrationFile: nil, calibrationFormat: .tokens,
                                      nsamples: 1, seqlen: 16, output: dir.appendingPathComponent(name),
                                      evaluation: (.text, evalFile, 16), toolVersion: "test")
            o.ggufOutputStorage = .gguf(type)
            let r = try PruningJob.run(o)
            return (dir.appendingPathComponent(name), try #require(r.perplexity))
        }
        let (q8URL, reported) = try prune(.Q8_0, "q8.gguf")
        let (f32URL, _) = try prune(.F32, "f32.gguf")
        let file = try GGUFFile(url: q8URL)
        #expect(file.info("blk.0.attn_q.weight")?.type == .Q8_0 && file.info("blk.0.attn_norm.weight")?.type == .F32)
        #expect(file["general.file_type"] == .uint32(7))

        let (written, tokenizer) = try ModelInput.open(q8URL)
        let windows = try EvaluationWindows(dataset: .text, file: evalFile, seqlen: 16, tokenizer: tokenizer)
        let again = try Perplexity.evaluate(model: try written.loadModel(), windows: windows)
        #expect(windows.count == reported.windows && again.perplexity == reported.perplexity,
                "reported \(reported.perplexity) on \(reported.windows) windows, the written file gives \(again.perplexity)")

        let float32 = try LlamaCheckpoint(ggufFile: f32URL)
        for layer in 0..<written.configuration.numHiddenLayers {
            let q8 = try written.loadBlock(layer), f32 = try float32.loadBlock(layer)
            for kind in LinearKind.allCases {
                let (w8, w) = (q8[kind].data, f32[kind].data)
                try #require(w8.count == w.count && w.count % 32 == 0)
                #expect(w.filter { $0 == 0 }.count >= w.count / 2, "\(kind) of block \(layer): the F32 run is pruned")
                var worst = 0.0
                for b in stride(from: 0, to: w.count, by: 32) {
                    let amax = w[b..<(b + 32)].map { Double(abs($0)) }.maxOrNaN()!
                    let d = amax / 127, d16 = Double(Float16(Float(amax) / 127))
                    let bound = d16 / 2 + 127 * abs(d16 - d) + 1e-6 * d
                    for i in b..<(b + 32) {
                        worst = maxOrNaN(worst, abs(Double(w8[i]) - Double(w[i])) / max(bound, 1e-30))
                        if w[i] == 0 { #expect(w8[i] == 0, "\(kind) of block \(layer), weight \(i): a pruned weight written as \(w8[i])") }
                    }
                }
                #expect(worst <= 1, "\(kind) of block \(layer): a Q8_0 weight misses its float32 value by \(worst) × the round-to-nearest bound")
            }
        }
    }

    @Test func ggufOutputNeedsGGUFInputAndBadDTypesAreRefused() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stories = try LlamaCheckpoint(directory: try sharedPath("models/stories260K"))
        #expect(throws: PruningError.self) {
            try ConvertedCheckpointWriter(source: stories, storage: .gguf(.Q8_0), output: dir.appendingPathComponent("x.gguf"))
        }
        #expect(throws: PruningError.self) { try CheckpointStorage(format: "hf", dtype: "q8_0") }
        #expect(throws: PruningError.self) { try CheckpointStorage(format: "onnx", dtype: "f32") }
        #expect(try CheckpointStorage(format: "gguf", dtype: "Q8_0") == .gguf(.Q8_0))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
