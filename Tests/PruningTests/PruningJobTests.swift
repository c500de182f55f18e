import Foundation
import Testing
import SafeTensors
import Llama
import Datasets
import Evaluation
import Pruning
import Runs
import Tokenizers
import Tensor

/// The end-to-end job the `prune` command runs: calibration file → driver → evaluation → export.
@Suite struct PruningJobTests {
    private func options(output: URL, evalFile: URL) throws -> PruningJobOptions {
        PruningJobOptions(
            model: try sharedPath("models/stories260K"), method: try PruningMethods.make("sparsegpt"),
            pattern: .nm(n: 2, m: 4),
            calibrationFile: try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"),
            calibrationFormat: .tokens, nsamples: 8, seqlen: 128, seed: 0, output: output,
            evaluation: (.text, evalFile, 128), arguments: ["llm-prune", "prune", "(test)"], toolVersion: "test")
    }

    /// A fresh folder holding eval.txt, the first 20,000 characters of tinyshakespeare.
    private func scratchWithEvalFile() throws -> (URL, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("job-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        let text = try String(contentsOf: try sharedPath("text/tinyshakespeare/input.txt"), encoding: .utf8)
        let evalFile = dir.appendingPathComponent("eval.txt")
        try String(text.prefix(20_000)).write(to: evalFile, atomically: true, encoding: .utf8)
        return (dir, evalFile)
    }

    @Test func rerunIsBitIdenticalAndTheExportIsAValidTwoFourCheckpoint() throws {
        let (dir, evalFile) = try scratchWithEvalFile()
        defer { try? FileManager.default.removeItem(at: dir) }

        let a = try PruningJob.run(try options(output: dir.appendingPathComponent("a"), evalFile: evalFile))
        let b = try PruningJob.run(try options(output: dir.appendingPathComponent("b"), evalFile: evalFile))
        let bytesA = try Data(contentsOf: dir.appendingPathComponent("a/model.safetensors"))
        let bytesB = try Data(contentsOf: dir.appendingPathComponent("b/model.safetensors"))
        #expect(bytesA == bytesB, "two runs with the same arguments must write identical weights")
        #expect(a.perplexity?.perplexity == b.perplexity?.perplexity)

        // The export loads strictly, every pruned matrix is 2:4, and its perplexity is the one the job reported.
        let exported = try LlamaCheckpoint(directory: dir.appendingPathComponent("a"))
        for layer in 0..<exported.configuration.numHiddenLayers {
            let block = try exported.loadBlock(layer)
            for kind in LinearKind.allCases {
                let w = block[kind]
                try SparsityCheck.validateNM(w.data, rows: w.shape[0], cols: w.shape[1], n: 2, m: 4, name: kind.rawValue)
            }
        }
        let windows = try EvaluationWindows(tokens: try reencode(evalFile), seqlen: 128, source: "eval")
        let again = try Perplexity.evaluate(model: try exported.loadModel(), windows: windows)
        let reported = try #require(a.perplexity)
        #expect(abs(again.perplexity - reported.perplexity) <= 1e-9 * reported.perplexity)

        let record = try PruningRecord.decode(Data(contentsOf: dir.appendingPathComponent("a/pruning.json")))
        #expect(record.summary.method == "sparsegpt" && record.summary.calibrationHash == a.summary.calibrationHash)
        #expect(record.results["text_perplexity"] == reported.perplexity)
        #expect(abs(record.summary.sparsity - 0.5) < 0.01)
    }

    /// `--compute-dtype bf16`: the calibration forwards round to bf16, which moves a few mask entries of
    /// Wanda (and its perplexity) but not most; the record says how the GEMMs ran; the weights kept stay
    /// the float32 checkpoint's values.
    /// The run's named points reach the hook the caller hands in, in order (the command line's test
    /// pauses hang on them; the library reads no environment variable for them).
    @Test func runPointsReachTheInjectedHookInOrder() throws {
        let (dir, evalFile) = try scratchWithEvalFile()
        defer { try? FileManager.default.removeItem(at: dir) }
        var o = try options(output: dir.appendingPathComponent("a"), evalFile: evalFile)
        var points: [String] = []
        o.atPoint = { points.append($0) }
        _ = try PruningJob.run(o)
        let blocks = (0..<5).map { "block-\($0)" }
        #expect(points == ["calibrated"] + blocks + ["evaluated", "exported", "commit", "committed"])
    }

    /// A planned run's resume state carries the plan, so a resumed run prunes with it without planning
    /// again; a uniform plan saves nothing (the state reads as before).
    @Test func resumeStateCarriesTheSparsityPlan() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let identity = RunIdentity(toolVersion: "test", model: try sharedPath("models/stories260K"), method: "wanda",
                                   settings: ["planner": "owl"], pattern: "0.7", seed: 0, nsamples: 2, seqlen: 8,
                                   samplesPerForward: 2, calibrationHash: "h", output: dir.appendingPathComponent("out"))
        var plan = SparsityPlan(.unstructured(0.7))
        plan.set(.unstructured(0.65), layer: 0)
        plan.set(.nm(n: 2, m: 4), layer: 1, kinds: [.down])
        let inputs = [Float](repeating: 1, count: 16)
        let saved = try RunCheckpoint(folder: dir, identity: identity)
        try inputs.withUnsafeBufferPointer {
            try saved.blockFinished(layer: 0, nextInputs: $0, generator: SeededGenerator(seed: 1), plan: plan, blocks: [
                BlockPruningReport(layer: 0, seconds: 1, layers: [])])
        }
        let point = try #require(try RunCheckpoint(folder: dir, identity: identity).resumePoint())
        #expect(point.plan == plan && point.nextBlock == 1)

        try inputs.withUnsafeBufferPointer {
            try saved.blockFinished(layer: 0, nextInputs: $0, generator: SeededGenerator(seed: 1), plan: SparsityPlan(.unstructured(0.7)),
                                    blocks: [BlockPruningReport(layer: 0, seconds: 1, layers: [])])
        }
        #expect(try RunCheckpoint(folder: dir, identity: identity).resumePoint()?.plan == nil)
    }

    @Test func bfloat16CalibrationMovesFewMaskEntries() throws {
        let (dir, evalFile) = try scratchWithEvalFile()
        defer { try? FileManager.default.removeItem(at: dir) }
        var o32 = try options(output: dir.appendingPathComponent("f32"), evalFile: evalFile)
        o32.method = try PruningMethods.make("wanda")
        var o16 = o32
        o16.output = dir.appendingPathComponent("bf16")
        o16.computePrecision = .bfloat16
        let r32 = try PruningJob.run(o32), r16 = try PruningJob.run(o16)
        let a = try LlamaCheckpoint(directory: dir.appendingPathComponent("f32"))
        let b = try LlamaCheckpoint(directory: dir.appendingPathComponent("bf16"))
        let dense = try LlamaCheckpoint(directory: try sharedPath("models/stories260K"))
        var same = 0, total = 0, keptValuesMatch = true
        for layer in 0..<a.configuration.numHiddenLayers {
            let x = try a.loadBlock(layer), y = try b.loadBlock(layer), d = try dense.loadBlock(layer)
            for kind in LinearKind.allCases {
                for i in 0..<x[kind].count {
                    if (x[kind].data[i] == 0) == (y[kind].data[i] == 0) { same += 1 }
                    if y[kind].data[i] != 0 && y[kind].data[i] != d[kind].data[i] { keptValuesMatch = false }
                    total += 1
                }
            }
        }
        let agreement = Double(same) / Double(total)
        #expect(agreement > 0.9 && agreement < 1, "mask agreement \(agreement)")
        #expect(keptValuesMatch, "bf16 compute changed a kept weight")
        let p32 = try #require(r32.perplexity?.perplexity), p16 = try #require(r16.perplexity?.perplexity)
        #expect(p16 != p32 && abs(p16 - p32) < 0.05 * p32, "perplexity \(p16) with bf16, \(p32) with float32")
        let record = try PruningRecord.decode(Data(contentsOf: dir.appendingPathComponent("bf16/pruning.json")))
        #expect(record.notes["compute"]?.hasPrefix("bf16") == true && r16.computeBackend.hasPrefix("bf16"))
    }

    /// `--eval-windows`: only the first windows are evaluated (on the weights as written), and the record
    /// says how many.
    @Test func evaluationOfTheFirstWindowsOnly() throws {
        let (dir, evalFile) = try scratchWithEvalFile()
        defer { try? FileManager.default.removeItem(at: dir) }
        var o = try options(output: dir.appendingPathComponent("a"), evalFile: evalFile)
        o.method = try PruningMethods.make("wanda")
        o.evaluationMaxWindows = 2
        let r = try PruningJob.run(o)
        let reported = try #require(r.perplexity)
        #expect(reported.windows == 2)
        let windows = try EvaluationWindows(tokens: try reencode(evalFile), seqlen: 128, source: "eval")
        #expect(windows.count > 2)
        let exported = try LlamaCheckpoint(directory: dir.appendingPathComponent("a")).loadModel()
        let firstTwo = try Perplexity.evaluate(model: exported, windows: windows, maxWindows: 2)
        let all = try Perplexity.evaluate(model: exported, windows: windows)
        #expect(abs(firstTwo.perplexity - reported.perplexity) <= 1e-9 * reported.perplexity)
        #expect(abs(all.perplexity - reported.perplexity) > 1e-6 * reported.perplexity, "the whole text gives another figure")
        let record = try PruningRecord.decode(Data(contentsOf: dir.appendingPathComponent("a/pruning.json")))
        #expect(record.results["text_windows"] == 2)
    }

    private func reencode(_ file: URL) throws -> [Int] {
        let tokenizer = try Tokenizer(directory: try sharedPath("models/stories260K"))
        let text = try EvaluationDataset.text.loadText(from: file)
        return tokenizer.encode(text)
    }

    @Test func existingOutputIsRefusedBeforeAnyWork() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("job-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let e = #expect(throws: PruningError.self) {
            try PruningJob.run(try options(output: dir, evalFile: dir))
        }
        #expect(e?.description.contains("already exists") == true)
    }

    @Test func runThatCannotFitSaysSoBeforeStarting() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("job-\(UUID().uuidString)")
        let e = #expect(throws: PruningError.self) {
            try PruningJob.run(try options(output: dir, evalFile: dir), availableMemory: 1 << 20)
        }
        #expect(e?.description.contains("GiB available") == true)
        #expect(!FileManager.default.fileExists(atPath: dir.path))
    }
}
