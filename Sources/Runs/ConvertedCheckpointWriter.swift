import Foundation
import JSON
import Pruning
import GGUF
import Llama
import Tensor
import SafeTensors
import SparseWeights
import Tokenizers
#if canImport(Glibc)
import Glibc
#endif

/// How a written checkpoint stores its tensors.
public enum CheckpointStorage: Sendable, Equatable, CustomStringConvertible {
    /// A Hugging Face folder whose model.safetensors holds every tensor in this dtype (F32, F16 or BF16).
    case safetensors(DType)
    /// A GGUF file whose matrices are stored in this type (F32, F16, BF16 or Q8_0); vectors (norms,
    /// biases) stay F32, as llama.cpp keeps them.
    case gguf(GGMLType)
    /// A Hugging Face folder whose block linears are packed in compressed-tensors' form
    /// (`SparseCheckpointEncoder`: values in this dtype, F32 or BF16; checked against the pattern, or
    /// the pattern detected when nil) and every other tensor stored in the dtype.
    case sparse(DType, SparseLayout?)

    /// Parses `--dtype` for a format: hf takes bf16, f16, f32; gguf also q8_0; sparse bf16 and f32
    /// (the pattern detected).
    public init(format: String, dtype: String) throws {
        switch (format, dtype.lowercased()) {
        case ("hf", "bf16"): self = .safetensors(.BF16)
        case ("hf", "f16"): self = .safetensors(.F16)
        case ("hf", "f32"): self = .safetensors(.F32)
        case ("gguf", "bf16"): self = .gguf(.BF16)
        case ("gguf", "f16"): self = .gguf(.F16)
        case ("gguf", "f32"): self = .gguf(.F32)
        case ("gguf", "q8_0"): self = .gguf(.Q8_0)
        case ("sparse", "bf16"): self = .sparse(.BF16, nil)
        case ("sparse", "f32"): self = .sparse(.F32, nil)
        case ("hf", _), ("gguf", _), ("sparse", _):
            throw PruningError("--dtype \(dtype) is not available for --output-format \(format) (hf: bf16, f16, f32; gguf: bf16, f16, f32, q8_0; sparse: bf16, f32)")
        default:
            throw PruningError("unknown output format '\(format)' (hf, gguf, sparse)")
        }
    }

    public var description: String {
        switch self {
        case let .safetensors(d): return "safetensors \(d.rawValue)"
        case let .gguf(t): return "GGUF \(t)"
        case let .sparse(d, _): return "sparse safetensors \(d.rawValue)"
        }
    }

    /// The GGUF type a tensor of `shape` gets: `type` for matrices whose rows are whole blocks, F32 otherwise.
    static func ggufType(_ type: GGMLType, shape: [Int]) -> GGMLType {
        guard shape.count >= 2, (shape.last ?? 0) % type.blockSize == 0 else { return .F32 }
        return type
    }

    /// `block` with every tensor rounded as this storage keeps it (what evaluation must use).
    public func round(_ block: DecoderBlockWeights) throws -> DecoderBlockWeights {
        func r(_ t: Tensor) throws -> Tensor { Tensor(shape: t.shape, data: try stored(t.data, shape: t.shape)) }
        var b = block
        for kind in LinearKind.allCases { b[kind] = try r(b[kind]) }
        b.inputNorm = try r(b.inputNorm)
        b.postAttentionNorm = try r(b.postAttentionNorm)
        b.biases = try b.biases.map { try $0.map(r) }
        return b
    }

    /// The values that reading the written tensor gives back: what evaluation must use so the reported
    /// figure is the written model's.
    public func stored(_ x: [Float], shape: [Int]) throws -> [Float] {
        switch self {
        case .safetensors(.F32), .safetensors(.F64), .sparse(.F32, _):
            return x
        case .safetensors(.F16):
            return x.map { Float(Float16($0)) }
        case .safetensors(.BF16), .sparse(.BF16, _):
            return x.map { Float(bf16Bits: bf16Bits(from: $0)) }
        case let .safetensors(d), let .sparse(d, _):
            throw PruningError("cannot store weights as \(d.rawValue)")
        case let .gguf(t):
            let type = Self.ggufType(t, shape: shape)
            if type == .F32 { return x }
            let bytes = try GGUFWriter.encodeFloats(x, type: type)
            var out = [Float](repeating: 0, count: x.count)
            bytes.withUnsafeBytes { raw in
                out.withUnsafeMutableBufferPointer { GGUFDequantizer.dequantize(raw, type: type, rowLength: shape.last ?? 1, into: $0) }
            }
            return out
        }
    }
}

/// Writes a checkpoint in a chosen storage from any `LlamaCheckpoint` (a GGUF file included): a Hugging
/// Face folder (config.json, model.safetensors, tokenizer.json and tokenizer_config.json from the GGUF's
/// tokenizer or the `tokenizerDirectory`)
/// or a GGUF file (the input GGUF's metadata and tokenizer carried over, q/k rows permuted back to
/// llama.cpp's layout). Pruned blocks are staged as they come (already rounded to the storage), the rest
/// is read from the source at `finish`; everything goes to a hidden temporary sibling renamed into place
/// at the end, so a failed or interrupted run leaves no output (SIGINT/SIGTERM included).
public final class ConvertedCheckpointWriter {
    public let source: LlamaCheckpoint
    public let storage: CheckpointStorage
    public let output: URL
    /// The folder holding everything until the final rename (for GGUF output: the staging folder).
    public var temporary: URL { session.temporary }
    /// The GGUF file the source came from, when it did (metadata to carry over, tokenizer_config.json).
    public let sourceGGUF: GGUFFile?
    /// A folder whose tokenizer.json (and tokenizer_config.json) to copy into a Hugging Face output.
    public let tokenizerDirectory: URL?
    private let session: WorkFolderSession
    private var staged: [String: SafeTensorsFile] = [:]
    /// Called at `exported`, `commit` and `committed` (`RunPointHook`).
    public var atPoint: RunPointHook? {
        get { session.atPoint }
        set { session.atPoint = newValue }
    }

    public init(source: LlamaCheckpoint, storage: CheckpointStorage, output: URL, tokenizerDirectory: URL? = nil,
                registry: WorkFolderRegistry = .shared, atPoint: RunPointHook? = nil) throws {
        let fm = FileManager.default
        self.source = source
        self.storage = storage
        self.output = output.standardizedFileURL
        self.tokenizerDirectory = tokenizerDirectory
        sourceGGUF = (source.source as? GGUFWeights)?.file
        if case .gguf = storage, sourceGGUF == nil {
            throw PruningError("GGUF output needs a GGUF input (its metadata and tokenizer are carried over)")
        }
        guard !fm.fileExists(atPath: self.output.path) else {
            throw PruningError("output \(self.output.path) already exists; choose another --output or remove it")
        }
        try WorkFolders.createParent(of: self.output)
        session = try WorkFolderSession(output: self.output, locked: false, registry: registry, atPoint: atPoint)
    }

    /// Removes the temporary folder (nothing of the run remains).
    public func discard() { session.discard() }

    /// The values of `name` as the output stores them (rounded or quantized).
    public func stored(_ name: String) throws -> [Float] {
        if let f = staged[name] { return try f.floats(name) }
        return try storage.stored(try source.source.floats(name), shape: try source.source.shape(of: name))
    }

    /// Saves a pruned block's seven linears, rounded to the storage, to a staging file (exact float32).
    public func stage(_ block: DecoderBlockWeights) throws {
        var entries: [TensorEntry] = []
        for kind in LinearKind.allCases {
            let w = block[kind]
            entries.append(TensorEntry(name: LlamaTensorNames.weight(kind, layer: block.layer), dtype: .F32, shape: w.shape,
                                       data: .floats(try storage.stored(w.data, shape: w.shape))))
        }
        let file = try session.stage(entries, layer: block.layer)
        for e in entries { staged[e.spec.name] = file }
    }

    /// The tensors of the output in order, with their shapes (Hugging Face names).
    var tensorList: [(name: String, shape: [Int])] {
        var list = LlamaTensorNames.all(configuration: source.configuration)
        if source.headTensorName == LlamaTensorNames.lmHead && source.configuration.tieWordEmbeddings {
            list.append((LlamaTensorNames.lmHead, [source.configuration.vocabSize, source.configuration.hiddenSize]))
        }
        return list
    }

    /// Writes the output and renames it into place; `record` becomes pruning.json (Hugging Face) or the
    /// metadata key `llm_prune.record` (GGUF). Returns the files written.
    @discardableResult
    public func finish(record: PruningRecord?) throws -> [String] {
        guard !session.ended else { throw PruningError("the checkpoint was already written or discarded") }
        do {
            let files: [String]
            let fm = FileManager.default
            switch storage {
            case let .safetensors(dtype):
                files = try writeHuggingFace(dtype: dtype, record: record)
                try? fm.removeItem(at: session.staging)
                try session.commit(temporary)
            case let .sparse(dtype, pattern):
                files = try writeHuggingFace(dtype: dtype, sparse: pattern, record: record)
                try? fm.removeItem(at: session.staging)
                try session.commit(temporary)
            case let .gguf(type):
                let file = temporary.appendingPathComponent("model.gguf")
                try writeGGUF(type: type, record: record, to: file)
                try session.commit(file)
                files = [output.lastPathComponent]
            }
            return files
        } catch {
            discard()
            throw error
        }
    }

    /// Writes the folder; for `.sparse` storage the block linears packed, checked against `pattern` (nil:
    /// detected).
    private func writeHuggingFace(dtype: DType, sparse pattern: SparseLayout? = nil, record: PruningRecord?) throws -> [String] {
        var written: [String] = []
        let list = tensorList
        var encoder: SparseCheckpointEncoder? = nil
        if case .sparse = storage {
            let c = source.configuration
            let linears = (0..<c.numHiddenLayers).flatMap { layer in
                LinearKind.allCases.map { (LlamaTensorNames.weight($0, layer: layer), $0.shape(c)) }
            }
            let names = Set(linears.map(\.0))
            let others = list.filter { !names.contains($0.name) }.reduce(0) { $0 + $1.shape.reduce(1, *) }
            encoder = try SparseCheckpointEncoder(linears: linears, valueType: dtype, pattern: pattern, otherParameters: others) {
                try self.stored($0)
            }
        }
        let specs = list.flatMap { entry in
            encoder?.compresses(entry.name) == true ? encoder!.specs(for: entry.name) : [TensorSpec(name: entry.name, dtype: dtype, shape: entry.shape)]
        }
        let dense = Set(list.map(\.name))
        do {
            try SafeTensorsWriter.write(specs, metadata: ["format": "pt"], to: temporary.appendingPathComponent("model.safetensors")) { spec in
                dense.contains(spec.name) ? .floats(try self.stored(spec.name)) : try encoder!.data(for: spec)
            }
        } catch let e as PruningError {
            throw e
        } catch {
            throw PruningError("cannot write model.safetensors: \(error)")
        }
        written.append("model.safetensors")

        var configuration = source.configuration
        configuration.torchDtype = ["F32": "float32", "F16": "float16", "BF16": "bfloat16"][dtype.rawValue]
        try writeJSON(CompressedTensorsSparsity.config(try Self.configJSON(configuration), setting: encoder?.sparsity), "config.json")
        written.append("config.json")

        if let dir = tokenizerDirectory {
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
                let from = dir.appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: from.path) else { continue }
                do { try FileManager.default.copyItem(at: from, to: temporary.appendingPathComponent(name)) } catch {
                    throw PruningError("cannot copy \(name) from \(dir.path): \(error.localizedDescription)")
                }
                written.append(name)
            }
        }
        if let gguf = sourceGGUF, tokenizerDirectory == nil, let m = try gguf.tokenizerMetadata() {
            // tokenizer.json with the pre-tokenizer tokenizer.ggml.pre names, and tokenizer_config.json.
            do { try GGUFTokenizer.write(GGUFTokenizerSpec(m), to: temporary) } catch {
                throw PruningError("cannot write the tokenizer of \(gguf.url.path): \(error)")
            }
            written += ["tokenizer.json", "tokenizer_config.json"]
        }
        if let record {
            do { try record.jsonData().write(to: temporary.appendingPathComponent("pruning.json")) } catch {
                throw PruningError("cannot write pruning.json: \(error.localizedDescription)")
            }
            written.append("pruning.json")
        }
        return written
    }

    private func writeJSON(_ value: JSONValue, _ name: String) throws {
        do {
            try Data(value.text([.prettyPrinted, .sortedKeys]).utf8).write(to: temporary.appendingPathComponent(name))
        } catch {
            throw PruningError("cannot write \(name): \(error.localizedDescription)")
        }
    }

    /// config.json: the configuration as `LlamaConfiguration` encodes it, plus `architectures`.
    static func configJSON(_ c: LlamaConfiguration) throws -> JSONValue {
        guard case .object(var members) = try JSONValueEncoder().encode(c) else {
            throw PruningError("cannot encode config.json")
        }
        let architecture: String
        switch c.modelType {
        case .llama: architecture = "LlamaForCausalLM"
        case .mistral: architecture = "MistralForCausalLM"
        case .qwen2: architecture = "Qwen2ForCausalLM"
        case .qwen3: architecture = "Qwen3ForCausalLM"
        case .gemma2: architecture = "Gemma2ForCausalLM"
        case .gemma3Text: architecture = "Gemma3ForCausalLM"
        }
        members.append(("architectures", .array([.string(architecture)])))
        return .object(members)
    }

    private func writeGGUF(type: GGMLType, record: PruningRecord?, to url: URL) throws {
        guard let gguf = sourceGGUF, let weights = source.source as? GGUFWeights else {
            throw PruningError("GGUF output needs a GGUF input")
        }
        // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
        let fileType = GGUFValue.uint32([GGMLType.F32: 0, .F16: 1, .Q8_0: 7, .BF16: 32][type]!)
        var metadata: [(key: String, value: GGUFValue)] = []
        for key in gguf.metadataKeys where key != "llm_prune.record" {
            metadata.append((key, key == "general.file_type" ? fileType : gguf[key]!))
        }
        if gguf["general.file_type"] == nil { metadata.append(("general.file_type", fileType)) }
        if let record, let json = String(data: try record.jsonData(), encoding: .utf8) {
            metadata.append(("llm_prune.record", .string(json)))
        }
        var specs: [GGUFTensorSpec] = []
        var hfName: [String: String] = [:]
        for (name, shape) in tensorList {
            guard let g = weights.ggufName(of: name) else { throw PruningError("no GGUF tensor for \(name)") }
            specs.append(GGUFTensorSpec(name: g, type: CheckpointStorage.ggufType(type, shape: shape), shape: shape))
            hfName[g] = name
        }
        do {
            try GGUFWriter.write(metadata: metadata, tensors: specs, to: url) { spec in
                let name = hfName[spec.name]!
                var values = try self.stored(name)
                if let shift = weights.normShift(ggufName: spec.name) {
                    for i in values.indices { values[i] += shift }
                }
                if let heads = weights.permutedHeads(ggufName: spec.name) {
                    values = try GGUFTensorNaming.permuteRows(values, rows: spec.shape.first ?? 1, heads: heads,
                                                              toHuggingFace: false, tensor: name)
                }
                return .floats(values)
            }
        } catch let e as PruningError {
            throw e
        } catch {
            throw PruningError("cannot write the GGUF file: \(error)")
        }
    }
}

/// Opening a model given as a Hugging Face folder or a GGUF file, with its tokenizer.
public enum ModelInput {
    /// The checked checkpoint and the tokenizer of `url` (a folder or a `.gguf` file). `tokenizerDirectory`
    /// (a folder with tokenizer.json) replaces the model's own tokenizer.
    public static func open(_ url: URL, tokenizerDirectory: URL? = nil) throws -> (LlamaCheckpoint, Tokenizer) {
        let checkpoint = try LlamaCheckpoint(model: url)
        return (checkpoint, try tokenizer(for: checkpoint, at: url, tokenizerDirectory: tokenizerDirectory))
    }

    public static func tokenizer(for checkpoint: LlamaCheckpoint, at url: URL, tokenizerDirectory: URL?) throws -> Tokenizer {
        if let dir = tokenizerDirectory { return try Tokenizer(directory: dir) }
        if let gguf = (checkpoint.source as? GGUFWeights)?.file {
            let metadata: GGUFTokenizerMetadata?
            do { metadata = try gguf.tokenizerMetadata() } catch { throw PruningError(String(describing: error)) }
            guard let metadata else {
                throw PruningError("\(url.path) holds no tokenizer (no tokenizer.ggml.model); pass --tokenizer DIR")
            }
            do { return try Tokenizer(gguf: GGUFTokenizerSpec(metadata)) } catch {
                throw PruningError("\(url.path): \(error)")
            }
        }
        return try Tokenizer(directory: url)
    }
}

/// `llm-prune convert`: a model (a GGUF file, or a Hugging Face folder) rewritten as a Hugging Face folder.
public enum ModelConversion {
    /// Writes `model` to the folder `output` (which must not exist) with every tensor in `dtype`.
    /// Returns the files written.
    @discardableResult
    public static func convert(model: URL, output: URL, dtype: DType, tokenizerDirectory: URL? = nil,
                               atPoint: RunPointHook? = nil) throws -> [String] {
        try convert(model: model, output: output, storage: .safetensors(dtype), tokenizerDirectory: tokenizerDirectory,
                    atPoint: atPoint)
    }

    /// Writes `model` to the folder `output` (which must not exist) in `storage` (`.safetensors` or
    /// `.sparse`: a compressed-tensors folder). Returns the files written.
    @discardableResult
    public static func convert(model: URL, output: URL, storage: CheckpointStorage, tokenizerDirectory: URL? = nil,
                               atPoint: RunPointHook? = nil) throws -> [String] {
        let checkpoint = try LlamaCheckpoint(model: model)
        if case .gguf = storage { throw PruningError("convert writes a Hugging Face folder (hf or sparse), not GGUF") }
        let writer = try ConvertedCheckpointWriter(source: checkpoint, storage: storage, output: output,
                                                   tokenizerDirectory: tokenizerDirectory ?? (LlamaCheckpoint.isGGUF(model) ? nil : model),
                                                   atPoint: atPoint)
        return try writer.finish(record: nil)
    }
}

extension GGUFTokenizerSpec {
    /// The Tokenizers module's spec from the GGUF module's raw metadata (the two modules do not depend on
    /// each other; this is the one place they meet).
    public init(_ m: GGUFTokenizerMetadata) {
        self.init(model: m.model, pre: m.pre, tokens: m.tokens, scores: m.scores,
                  tokenTypes: m.tokenTypes?.map { Int32(truncatingIfNeeded: $0) }, merges: m.merges,
                  bosTokenID: m.bosTokenID, eosTokenID: m.eosTokenID, unknownTokenID: m.unknownTokenID,
                  paddingTokenID: m.paddingTokenID, addBOS: m.addBOSToken, addEOS: m.addEOSToken,
                  addSpacePrefix: m.addSpacePrefix, chatTemplate: m.chatTemplate, architecture: m.architecture)
    }
}
