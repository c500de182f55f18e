import Foundation
import Testing
import FineTuning
import JSON
import Llama
import Pruning
import Runs
import SafeTensors
@testable import SparseWeights

/// stories260K pruned by magnitude to `pattern`, written to `output` as `storage` (nil: dense).
private func prune(_ pattern: SparsityPattern, to output: URL, storage: PrunedLinearStorage? = nil) throws {
    var o = PruningJobOptions(model: try sharedPath("models/stories260K"), method: try PruningMethods.make("magnitude"),
                              pattern: pattern, calibrationFile: nil, calibrationFormat: .text, output: output,
                              toolVersion: "test")
    o.folderOutputStorage = storage
    _ = try PruningJob.run(o, availableMemory: nil)
}

private func bf16Rounded(_ x: [Float]) -> [Float] { x.map { Float(bf16Bits: bf16Bits(from: $0)) } }

private func config(_ folder: URL) throws -> JSONValue {
    try JSONValue.parse(try Data(contentsOf: folder.appendingPathComponent("config.json")))
}

/// The raw tensors of a one-file folder, for rewriting with one of them changed.
private func entries(_ folder: URL) throws -> [TensorEntry] {
    let file = try SafeTensorsFile(url: folder.appendingPathComponent("model.safetensors"))
    return try file.infos.map { info in
        TensorEntry(name: info.name, dtype: info.dtype, shape: info.shape, data: .bytes(try file.withRawBytes(info.name) { Array($0) }))
    }
}

/// A copy of `folder` (config.json and tokenizer) whose model.safetensors holds `tensors`.
private func rewritten(_ folder: URL, _ tensors: [TensorEntry], config: JSONValue? = nil) throws -> URL {
    let out = try scratchFolder()
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        try FileManager.default.copyItem(at: folder.appendingPathComponent(name), to: out.appendingPathComponent(name))
    }
    if let config {
        try FileManager.default.removeItem(at: out.appendingPathComponent("config.json"))
        try Data(config.text().utf8).write(to: out.appendingPathComponent("config.json"))
    }
    try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: out.appendingPathComponent("model.safetensors"))
    return out
}

/// The error opening and loading the checkpoint in `folder` gives, as its one line.
private func loadError(_ folder: URL) -> String? {
    do {
        _ = try LlamaCheckpoint(directory: folder).loadModel()
        return nil
    } catch {
        return String(describing: error)
    }
}

@Suite struct SparseCheckpointTests {
    /// A pruned folder written packed reads back as the dense one, bit for bit (bf16 values: as the dense
    /// weights rounded to bf16), in the format its pattern calls for.
    @Test(arguments: [("2:4", "sparse-24-bitmask"), ("4:8", "sparse-bitmask"), ("0.5", "sparse-bitmask")])
    func writeThenReadEqualsTheDenseWeights(pattern: String, format: String) throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let p = try SparsityPattern(parsing: pattern)
        try prune(p, to: scratch.appendingPathComponent("dense"))
        let dense = try LlamaCheckpoint(directory: scratch.appendingPathComponent("dense"))
        for values in [DType.F32, .BF16] {
            let folder = scratch.appendingPathComponent("sparse-\(values.rawValue)")
            try prune(p, to: folder, storage: .sparse(values: values, pattern: nil))
            let sparsity = try #require(try CompressedTensorsSparsity.of(config: try config(folder)))
            #expect(sparsity.format?.rawValue == format)
            #expect(sparsity.structure == (pattern == "0.5" ? "unstructured" : pattern))
            let sparse = try LlamaCheckpoint(directory: folder)
            let packed = try #require(sparse.source as? CompressedTensorsWeights)
            #expect(packed.compressedNames.count == 7 * dense.configuration.numHiddenLayers)
            #expect(Set(packed.tensorNames) == Set(dense.source.tensorNames))
            for name in dense.source.tensorNames {
                var expected = try dense.source.floats(name)
                if values == .BF16 && packed.isCompressed(name) { expected = bf16Rounded(expected) }
                let got = try sparse.source.floats(name)
                #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(name) (\(pattern), \(values.rawValue))")
            }
            let stored = try SafeTensorsFile(url: folder.appendingPathComponent("model.safetensors"))
            #expect(stored.info("model.layers.0.mlp.down_proj.compressed")?.dtype == values)
            #expect(stored.info("model.layers.0.mlp.down_proj.weight") == nil)
            #expect(stored.info("model.layers.0.mlp.down_proj.row_offsets") != nil || format == "sparse-24-bitmask")
        }
    }

    /// compressed-tensors 0.14.0.1's own compressor wrote these fixtures from the same magnitude-pruned
    /// model (`scripts/check_sparse_checkpoint.py fixture`, bf16): our reader gives the dense weights, and
    /// our packing writes the same bytes.
    @Test(arguments: [("stories260K-mag24-ct", "2:4"), ("stories260K-mag50-ct", "0.5")])
    func readsCompressedTensorsOwnFixture(fixture: String, pattern: String) throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        try prune(try SparsityPattern(parsing: pattern), to: scratch.appendingPathComponent("dense"))
        let dense = try LlamaCheckpoint(directory: scratch.appendingPathComponent("dense"))
        let folder = try sparseFixture(fixture)
        let packed = try #require(try CompressedTensorsWeights.open(folder) as? CompressedTensorsWeights)
        #expect(packed.compressedNames.count == 14)
        let format = try #require(packed.format)
        for layer in [0, 4] {
            for kind in LinearKind.allCases {
                let name = LlamaTensorNames.weight(kind, layer: layer)
                let expected = bf16Rounded(try dense.source.floats(name))
                #expect(try packed.floats(name).map(\.bitPattern) == expected.map(\.bitPattern), "\(fixture): \(name)")
                // Our packing of the same weights, tensor by tensor, equals compressed-tensors' bytes.
                let shape = try dense.source.shape(of: name)
                let ours = try PackedSparseMatrix(packing: expected, rows: shape[0], columns: shape[1],
                                                  layout: format == .sparse24Bitmask ? .nOfM(n: 2, m: 4) : .bitmask,
                                                  valueType: .BF16, name: name)
                let prefix = CompressedTensorsFormat.prefix(ofWeight: name)
                for key in format.keys {
                    let theirs = try packed.tensors.withRawBytes("\(prefix).\(key)") { Array($0) }
                    let mine: [UInt8]
                    switch try ours.compressedTensorsData(key: key) {
                    case let .bytes(b): mine = b
                    case let .int64s(v): mine = v.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
                    case .floats: mine = []
                    }
                    #expect(mine == theirs, "\(fixture): \(prefix).\(key)")
                }
            }
        }
    }

    /// A compressed-tensors folder whose tensors disagree is a one-line error naming the tensor.
    @Test func inconsistentTensorsAreErrorsNamingTheTensor() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let two = scratch.appendingPathComponent("two"), half = scratch.appendingPathComponent("half")
        try prune(.nm(n: 2, m: 4), to: two, storage: .sparse(values: .F32, pattern: nil))
        try prune(.unstructured(0.5), to: half, storage: .sparse(values: .F32, pattern: nil))
        #expect(loadError(two) == nil)
        #expect(loadError(half) == nil)

        // A third bit in group 0 of row 3 of a 2:4 bitmask.
        let mask = "model.layers.1.mlp.up_proj.bitmask"
        var tensors = try entries(two)
        let i = try #require(tensors.firstIndex { $0.spec.name == mask })
        guard case var .bytes(bytes) = tensors[i].data else { throw FixtureError("bitmask is not bytes") }
        bytes[3 * 8] |= 0b1111
        tensors[i].data = .bytes(bytes)
        let flipped = try #require(loadError(try rewritten(two, tensors)))
        #expect(flipped.contains("\(mask): group 0 of row 3 keeps 4 entries in the bitmask, 2:4 keeps exactly 2"), "\(flipped)")
        #expect(!flipped.contains("\n"))

        // A row offset that disagrees with the bitmask.
        let offsets = "model.layers.2.self_attn.o_proj.row_offsets"
        tensors = try entries(half)
        let j = try #require(tensors.firstIndex { $0.spec.name == offsets })
        guard case var .bytes(raw) = tensors[j].data else { throw FixtureError("row_offsets are not bytes") }
        raw[8] &+= 1
        tensors[j].data = .bytes(raw)
        let shifted = try #require(loadError(try rewritten(half, tensors)))
        #expect(shifted.contains("model.layers.2.self_attn.o_proj.bitmask: row 0 has"), "\(shifted)")

        // A missing tensor, and values of the wrong shape.
        let missing = try #require(loadError(try rewritten(half, try entries(half).filter { $0.spec.name != offsets })))
        #expect(missing.contains("\(offsets): missing"), "\(missing)")
        tensors = try entries(two)
        let k = try #require(tensors.firstIndex { $0.spec.name == "model.layers.0.self_attn.q_proj.compressed" })
        tensors[k].spec.shape = [tensors[k].spec.shape[0] * tensors[k].spec.shape[1]]
        let reshaped = try #require(loadError(try rewritten(two, tensors)))
        #expect(reshaped.contains("model.layers.0.self_attn.q_proj.compressed: shape [2048], expected [64, 32]"), "\(reshaped)")

        // The tensors of a 2:4 folder under a config that says sparse-bitmask: row_offsets are missing.
        let wrongFormat = CompressedTensorsSparsity(format: .sparseBitmask, structure: "unstructured", globalSparsity: 0.5)
        let relabelled = try #require(loadError(try rewritten(two, try entries(two),
                                                              config: CompressedTensorsSparsity.config(try config(two), setting: wrongFormat))))
        #expect(relabelled.contains(".row_offsets: missing"), "\(relabelled)")
        // A config without the sparsity config: the packed tensors are unused, the dense ones missing.
        let plain = try #require(loadError(try rewritten(two, try entries(two), config: CompressedTensorsSparsity.config(try config(two), setting: nil))))
        #expect(plain.contains("model.layers.0.self_attn.q_proj.weight"), "\(plain)")
    }

    /// A packed input is written back packed, by `prune` (another pattern: another format) and by
    /// `finetune` (masked LoRA keeps every zero), with the dense weights `prune` and `finetune` computed.
    @Test func packedInputsStayPacked() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let packed = scratch.appendingPathComponent("packed")
        try prune(.nm(n: 2, m: 4), to: packed, storage: .sparse(values: .BF16, pattern: nil))
        // Magnitude 4:8 of the 2:4 weights (already 4:8), packed again by default, dense on request.
        let again = scratch.appendingPathComponent("again"), dense = scratch.appendingPathComponent("dense")
        var o = PruningJobOptions(model: packed, method: try PruningMethods.make("magnitude"), pattern: .nm(n: 4, m: 8),
                                  calibrationFile: nil, calibrationFormat: .text, output: again, toolVersion: "test")
        _ = try PruningJob.run(o, availableMemory: nil)
        o.output = dense
        o.folderOutputStorage = .dense
        _ = try PruningJob.run(o, availableMemory: nil)
        let sparsity = try #require(try CompressedTensorsSparsity.of(config: try config(again)))
        #expect(sparsity.format == .sparseBitmask && sparsity.structure == "4:8")
        #expect(try CompressedTensorsSparsity.of(config: try config(dense)) == nil)
        let a = try LlamaCheckpoint(directory: packed), b = try LlamaCheckpoint(directory: again), c = try LlamaCheckpoint(directory: dense)
        #expect(c.source is SafeTensorsCheckpoint)
        for name in a.source.tensorNames {
            let w = try a.source.floats(name).map(\.bitPattern)
            #expect(try b.source.floats(name).map(\.bitPattern) == w, "\(name)")
            #expect(try c.source.floats(name).map(\.bitPattern) == w, "\(name)")
        }

        let tuned = scratch.appendingPathComponent("tuned")
        let r = try FineTuningJob.run(FineTuningJobOptions(
            model: packed, trainFile: try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"),
            trainFormat: .tokens, seqlen: 64, lora: LoRAOptions(rank: 2, alpha: 4, dropout: 0, targets: [.q, .down], mode: .masked),
            training: TrainingOptions(steps: 2, learningRate: 1e-2, warmup: 0, gradientAccumulation: 1),
            output: tuned, arguments: ["llm-prune", "finetune", "(test)"], toolVersion: "test"))
        #expect(r.inputZeros == r.outputZeros && r.inputZeros > 0)
        #expect(try CompressedTensorsSparsity.of(config: try config(tuned))?.format == .sparse24Bitmask)
        let t = try #require(try LlamaCheckpoint(directory: tuned).source as? CompressedTensorsWeights)
        #expect(t.compressedNames.count == 35)
        let q = LlamaTensorNames.weight(.q, layer: 0)
        #expect(try t.floats(q) != (try a.source.floats(q)))
    }

    @Test func quantizationConfigs() throws {
        let fixture = try sparseFixture("stories260K-mag24-ct")
        let written = try #require(try CompressedTensorsSparsity.of(config: try config(fixture)))
        #expect(written.format == .sparse24Bitmask && written.structure == "2:4")
        #expect(written.targets == ["Linear"] && written.ignore == ["lm_head"])
        // Ours reads back as written.
        let ours = CompressedTensorsSparsity(format: .sparseBitmask, structure: "4:8", globalSparsity: 0.375)
        #expect(try CompressedTensorsSparsity(quantizationConfig: ours.quantizationConfig) == ours)
        // Not compressed-tensors: nil (LlamaConfiguration refuses it); quantized or unknown: errors.
        #expect(try CompressedTensorsSparsity(quantizationConfig: try JSONValue.parse(Array(#"{"quant_method": "gptq"}"#.utf8))) == nil)
        #expect(throws: SparseWeightsError.self) {
            try CompressedTensorsSparsity(quantizationConfig: try JSONValue.parse(Array(#"{"quant_method": "compressed-tensors", "config_groups": {"group_0": {}}, "sparsity_config": {"format": "sparse-bitmask"}}"#.utf8)))
        }
        #expect(throws: SparseWeightsError("quantization_config.sparsity_config.format 'marlin-24' is not supported (sparse-24-bitmask, sparse-bitmask, dense)")) {
            try CompressedTensorsSparsity(quantizationConfig: try JSONValue.parse(Array(#"{"quant_method": "compressed-tensors", "sparsity_config": {"format": "marlin-24"}}"#.utf8)))
        }
    }

    /// `convert --output-format sparse` of a dense pruned folder detects 2:4, takes a pattern it is told
    /// (refusing one a linear breaks, by name) and writes what `prune` writes.
    @Test func convertPacksADensePrunedFolder() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let dense = scratch.appendingPathComponent("dense")
        try prune(.nm(n: 2, m: 4), to: dense)
        let detected = scratch.appendingPathComponent("detected")
        try ModelConversion.convert(model: dense, output: detected, storage: .sparse(.F32, nil))
        #expect(try CompressedTensorsSparsity.of(config: try config(detected))?.format == .sparse24Bitmask)
        let a = try LlamaCheckpoint(directory: dense), b = try LlamaCheckpoint(directory: detected)
        for name in a.source.tensorNames {
            #expect(try b.source.floats(name).map(\.bitPattern) == (try a.source.floats(name)).map(\.bitPattern), "\(name)")
        }
        let asBitmask = scratch.appendingPathComponent("bitmask")
        try ModelConversion.convert(model: dense, output: asBitmask, storage: .sparse(.BF16, .bitmask))
        #expect(try CompressedTensorsSparsity.of(config: try config(asBitmask))?.format == .sparseBitmask)
        // The unpruned model breaks 2:4 in its first linear.
        #expect(throws: PruningError("model.layers.0.self_attn.q_proj.weight: group 0 of row 0 has 4 non-zeros, 2:4 allows 2")) {
            try ModelConversion.convert(model: try sharedPath("models/stories260K"), output: scratch.appendingPathComponent("refused"),
                                        storage: .sparse(.F32, .nOfM(n: 2, m: 4)))
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("refused").path))
    }
}
