import Foundation
import Datasets
import Llama
import Pruning
import Runs
import SafeTensors
import Tensor
import Testing

/// Flag values and checkpoints that used to trap mid-run or be accepted silently (issue 11).
@Suite struct HostilePruningInputTests {
    @Test func hugeGroupSizesAreRefusedAtParsing() throws {
        for text in ["1:9223372036854775807", "1:1000000000000", "1:65537"] {
            let e = #expect(throws: PruningError.self) { try SparsityPattern(parsing: text) }
            #expect(e?.description == "invalid sparsity '\(text)': M must be at most 65536")
        }
        #expect(try SparsityPattern(parsing: "1:65536") == .nm(n: 1, m: 65536))
    }

    /// Built in code, a group wider than the row is the row: no allocation of M, no overflow of c0 + M.
    @Test func aGroupWiderThanTheRowIsTheRow() throws {
        let scores: [Float] = [5, 1, 4, 2, 3, 6]
        let mask = Selection.prunedMask(scores: scores, rows: 1, cols: 6, pattern: .nm(n: 2, m: Int.max))
        #expect(mask == [false, true, true, true, true, false])
        let w: [Float] = [1, 0, 0, 0, 0, 2]
        try SparsityCheck.validateNM(w, rows: 1, cols: 6, n: 2, m: Int.max, name: "w")
        #expect(throws: PruningError.self) { try SparsityCheck.validateNM([1, 1, 1, 0, 0, 0], rows: 1, cols: 6, n: 2, m: Int.max, name: "w") }
    }

    @Test func moreGradientSamplesThanCalibrationSamplesIsRefused() throws {
        let options = WandaPlusPlusOptions(roSamples: 4, gradientSamples: 9)
        let e = #expect(throws: WandaPlusPlusError.self) { try options.validate(samples: 8) }
        #expect(e?.description == "--gradient-samples 9 must be in 1...8 (the calibration sample count)")
        try WandaPlusPlusOptions(roSamples: 4, gradientSamples: 8).validate(samples: 8)
    }

    private func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-job-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
        return url
    }

    private func magnitudeJob(model: URL, output: URL, evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?)? = nil) -> PruningJobOptions {
        PruningJobOptions(model: model, method: MagnitudePruning(), pattern: .unstructured(0.5), calibrationFile: nil,
                          calibrationFormat: .text, output: output, evaluation: evaluation, toolVersion: "test")
    }

    @Test func anEvalSeqlenBeyondTheModelIsRefusedBeforeAnyWork() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("out")
        let e = #expect(throws: PruningError.self) {
            try PruningJob.run(magnitudeJob(model: try sharedPath("models/stories260K"), output: output,
                                            evaluation: (.text, try sharedPath("text/tinyshakespeare/input.txt"), 513)))
        }
        #expect(e?.description == "--eval-seqlen 513 exceeds the model's max_position_embeddings 512")
        #expect((try FileManager.default.contentsOfDirectory(atPath: dir.path)).isEmpty)
    }

    /// NaN in the final norm, a tensor pruning copies unread, is an error like NaN in a block.
    @Test func nanInTheFinalNormIsRefusedAndNothingIsWritten() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let shared = try sharedPath("models/stories260K")
        let model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: false)
        for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: shared.appendingPathComponent(name), to: model.appendingPathComponent(name))
        }
        let source = try SafeTensorsCheckpoint(directory: shared)
        let entries = try source.tensorNames.map { name -> TensorEntry in
            var data = try source.floats(name)
            if name == LlamaTensorNames.finalNorm { data[7] = .nan }
            return TensorEntry(name: name, dtype: .F32, shape: source.info(name)!.shape, data: .floats(data))
        }
        try SafeTensorsWriter.write(entries, to: model.appendingPathComponent("model.safetensors"))
        let output = dir.appendingPathComponent("out")
        let e = #expect(throws: LlamaError.self) { try PruningJob.run(magnitudeJob(model: model, output: output)) }
        #expect(e?.description == "checkpoint: tensor model.norm.weight holds a non-finite value (nan at element 7)")
        #expect(!FileManager.default.fileExists(atPath: output.path))
        #expect((try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["model"])
    }
}

/// An evaluation file that cannot be used is reported before the pruning, not after it.
@Suite struct EarlyEvaluationFileTests {
    @Test func aBrokenEvalFileFailsBeforeAnyBlockIsPruned() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("early-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let short = dir.appendingPathComponent("short.txt")
        try Data("One line.".utf8).write(to: short)
        for (file, expected) in [(URL(fileURLWithPath: "/dev/zero"), "/dev/zero: is not a regular file or a pipe"),
                                 (short, "tokens, fewer than one evaluation window of 128")] {
            var blocks = 0
            let options = PruningJobOptions(
                model: try sharedPath("models/stories260K"), method: MagnitudePruning(), pattern: .unstructured(0.5),
                calibrationFile: nil, calibrationFormat: .text, output: dir.appendingPathComponent("out"),
                evaluation: (.text, file, 128), toolVersion: "test")
            do {
                _ = try PruningJob.run(options) { u in if u.stage == "prune" { blocks = max(blocks, u.completed) } }  // check-tests: integers
                Issue.record("\(file.path) was accepted")
            } catch {
                #expect("\(error)".hasSuffix(expected), "\(error)")
            }
            #expect(blocks == 0, "pruned \(blocks) blocks before refusing \(file.path)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["short.txt"])
        }
    }
}
