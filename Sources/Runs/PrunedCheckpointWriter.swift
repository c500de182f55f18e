import Dispatch
import Foundation
import JSON
import Tensor
import Pruning
import Llama
import SafeTensors
import SparseWeights
#if canImport(Glibc)
import Glibc
#endif

/// The run record written as `pruning.json` beside the pruned checkpoint.
public struct PruningRecord: Codable, Sendable, Equatable {
    /// "llm-prune".
    public var tool: String
    public var toolVersion: String
    /// The full command line, as the user gave it.
    public var arguments: [String]
    /// The input checkpoint folder.
    public var inputModel: String
    /// ISO 8601, UTC.
    public var created: String
    /// Method, pattern, seed, calibration source and hash, per-layer sparsity and per-block times.
    public var summary: PruningSummary
    /// Evaluation results when the run evaluated the pruned model, e.g.
    /// ["wikitext2_perplexity": 130.2, "wikitext2_seqlen": 512].
    public var results: [String: Double]
    /// Anything else worth keeping (memory estimate, notes about the input checkpoint).
    public var notes: [String: String]
    /// Present when the checkpoint was fine-tuned after pruning (`llm-prune finetune`).
    public var fineTuning: FineTuningRecord?

    public init(toolVersion: String, arguments: [String], inputModel: String, summary: PruningSummary,
                results: [String: Double] = [:], notes: [String: String] = [:], created: Date = Date()) {
        tool = "llm-prune"
        self.toolVersion = toolVersion
        self.arguments = arguments
        self.inputModel = inputModel
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        self.created = f.string(from: created)
        self.summary = summary
        self.results = results
        self.notes = notes
    }

    /// Pretty-printed JSON with sorted, snake_case keys. Throws `EncodingError` for a NaN or infinite
    /// number, which JSON cannot hold.
    public func jsonData() throws -> Data {
        Data(try JSONValueEncoder(convertsKeysToSnakeCase: true).encode(self).text([.prettyPrinted, .sortedKeys]).utf8)
    }

    /// Reads `jsonData()`'s text. Throws `JSONSyntaxError` or `DecodingError`.
    public static func decode(_ data: Data) throws -> PruningRecord {
        try JSONValueDecoder(convertsKeysFromSnakeCase: true).decode(PruningRecord.self, from: try JSONValue.parse(data))
    }
}

/// How `PrunedCheckpointWriter` stores the pruned linears.
public enum PrunedLinearStorage: Sendable, Equatable, CustomStringConvertible {
    /// Dense `P.weight` tensors in the input's dtype (a compressed input's linears: in their values'
    /// dtype); config.json loses a compressed-tensors `quantization_config`.
    case dense
    /// compressed-tensors' packed form (`SparseCheckpointEncoder`), values in `values` (nil: the input's
    /// dtype), checked against `pattern` (nil: detected); config.json gets the `quantization_config`.
    case sparse(values: DType?, pattern: SparseLayout?)

    /// `dense`, or `sparse` with the values' dtype and the pattern when set (`sparse BF16 2:4`).
    public var description: String {
        switch self {
        case .dense: return "dense"
        case let .sparse(values, pattern):
            return (["sparse"] + [values?.rawValue, pattern?.description].compactMap { $0 }).joined(separator: " ")
        }
    }
}

/// Writes a pruned checkpoint in the Hugging Face layout of its input.
///
/// The pruned linears are stored dense, or packed in compressed-tensors' form (`PrunedLinearStorage`;
/// by default as the input stores them: a compressed-tensors input stays packed); every other tensor,
/// the shards and their order stay as the input has them.
///
/// Usage: `init` (checks the destination, creates its missing parent folders and a hidden work folder
/// beside it, `WorkFolders`), `stage` each pruned block as the driver produces it (the `blockSink`), then
/// `finish(record:)`, which writes the safetensors files in the input's dtype and sharding (every tensor
/// that was not pruned is copied byte for byte; metadata and tensor order are kept), copies config.json
/// and the tokenizer files, writes `pruning.json`, fsyncs everything and renames the work folder to the
/// destination (atomically, never replacing anything: `Durable.renameNoReplace`). Until then the
/// destination does not exist: `discard()`, deinit without `finish`, or a terminating signal
/// (whose handler empties the `WorkFolderRegistry`) remove the work folder, so a failed or interrupted run leaves no output folder.
public final class PrunedCheckpointWriter {
    /// Files copied from the input folder beside the weights (those present).
    public static let copiedFileNames: Set<String> = [
        "config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json",
        "vocab.json", "merges.txt", "chat_template.json", "chat_template.jinja",
    ]

    public let input: URL
    public let output: URL
    /// The hidden sibling folder everything is written to before the final rename.
    public var temporary: URL { session.temporary }
    public let checkpoint: SafeTensorsCheckpoint
    /// The input as dense tensors (a compressed-tensors input decompressed when read).
    public let weights: WeightSource
    /// How the pruned linears are written.
    public let storage: PrunedLinearStorage
    /// The dtype of the packed values (sparse storage).
    private let sparseValueType: DType?
    private let session: WorkFolderSession
    /// Pruned tensor name → staging file.
    private var stagedFile: [String: SafeTensorsFile] = [:]
    /// Called at `exported`, `commit` and `committed` (`RunPointHook`).
    public var atPoint: RunPointHook? {
        get { session.atPoint }
        set { session.atPoint = newValue }
    }

    /// Checks `output` (`WorkFolders.checkDestination`), creates its parent folders as `mkdir -p` does,
    /// opens the input's safetensors and creates the work folder, or takes over `adopting` (the stale work
    /// folder of an interrupted run being resumed) by renaming it to this process's name.
    /// `storage` nil: the input's own (dense for a plain folder; packed, in the values' dtype, for a
    /// compressed-tensors one).
    public init(input: URL, output: URL, adopting: URL? = nil, registry: WorkFolderRegistry = .shared,
                atPoint: RunPointHook? = nil, storage: PrunedLinearStorage? = nil) throws {
        self.input = input.standardizedFileURL
        self.output = output.standardizedFileURL
        try WorkFolders.checkDestination(self.output, input: self.input)
        try WorkFolders.createParent(of: self.output)
        do {
            weights = try CompressedTensorsWeights.open(self.input)
        } catch {
            throw PruningError("cannot open the input checkpoint: \(error)")
        }
        let compressed = weights as? CompressedTensorsWeights
        checkpoint = compressed?.tensors ?? (weights as! SafeTensorsCheckpoint)
        let storage = storage ?? (compressed?.format == nil ? .dense : .sparse(values: nil, pattern: nil))
        self.storage = storage
        if case let .sparse(values, _) = storage {
            // One dtype for every packed linear: asked for, or the input's (its first linear's).
            let first = LlamaTensorNames.weight(.q, layer: 0)
            let dtype = values ?? compressed?.dtype(of: first) ?? checkpoint.info(first)?.dtype ?? .F32
            guard dtype == .F32 || dtype == .BF16 else {
                throw PruningError("sparse checkpoints store their values as bf16 or f32; the input's linears are \(dtype.rawValue): pass --dtype bf16 or --dtype f32")
            }
            sparseValueType = dtype
        } else {
            sparseValueType = nil
        }
        session = try WorkFolderSession(output: self.output, adopting: adopting, locked: true, registry: registry,
                                        atPoint: atPoint)
    }

    /// Removes the temporary folder (nothing of the run remains).
    public func discard() { session.discard() }

    /// Reopens the staged files of `blocks` (a resumed run's finished blocks).
    public func restoreStaged(blocks: Range<Int>) throws {
        for l in blocks {
            do {
                let file = try session.staged(layer: l)
                for kind in LinearKind.allCases {
                    let name = LlamaTensorNames.weight(kind, layer: l)
                    guard file.tensorNames.contains(name) else {
                        throw PruningError("\(file.url.path) has no tensor \(name)")
                    }
                    stagedFile[name] = file
                }
            } catch let e as PruningError {
                throw PruningError("cannot resume: \(e.description)")
            } catch {
                throw PruningError("cannot resume: \(error)")
            }
        }
    }

    /// The dtype `name` is stored in by the input (a compressed linear: its values' dtype).
    private func inputDType(_ name: String) -> DType? {
        (weights as? CompressedTensorsWeights)?.dtype(of: name) ?? checkpoint.info(name)?.dtype
    }

    /// Saves the seven pruned linears of one block to a staging file, in the dtype they are written in
    /// (the packed values' dtype, or the input's), so that `prunedWeights` reads what the output holds.
    public func stage(_ block: DecoderBlockWeights) throws {
        guard !session.ended else { throw PruningError("the pruned checkpoint was already written or discarded") }
        var entries: [TensorEntry] = []
        for kind in LinearKind.allCases {
            let name = LlamaTensorNames.weight(kind, layer: block.layer)
            guard let dtype = inputDType(name), let shape = try? weights.shape(of: name) else {
                throw PruningError("the input checkpoint has no tensor \(name)")
            }
            let w = block[kind]
            guard shape == w.shape else {
                throw PruningError("\(name): pruned shape \(w.shape) differs from the input's \(shape)")
            }
            guard dtype.isFloatingPoint else {
                throw PruningError("\(name): the input stores it as \(dtype.rawValue), not a floating-point dtype")
            }
            entries.append(TensorEntry(name: name, dtype: sparseValueType ?? dtype, shape: w.shape, data: .floats(w.data)))
        }
        let file = try session.stage(entries, layer: block.layer)
        for e in entries { stagedFile[e.spec.name] = file }
    }

    /// The input's tensors with the staged (pruned) ones in their place, as float32: to evaluate the
    /// pruned model (`LlamaCheckpoint(configuration:source:)`) before or without writing it.
    public var prunedWeights: WeightSource { StagedWeights(base: weights, staged: stagedFile) }

    /// Writes the checkpoint, the copied files and `pruning.json`, then renames the temporary folder to
    /// `output`. Returns the list of files written.
    @discardableResult
    public func finish(record: PruningRecord) throws -> [String] {
        guard !session.ended else { throw PruningError("the pruned checkpoint was already written or discarded") }
        do {
            let files = try writeAll(record: record)
            // The resume state, the staged blocks and the lock are not part of the result. The state goes
            // first: a kill from here on leaves a work folder without one, which the next run removes.
            try? FileManager.default.removeItem(at: temporary.appendingPathComponent("resume"))
            try? FileManager.default.removeItem(at: session.staging)
            unlink(temporary.appendingPathComponent(WorkFolders.lockFileName).path)
            try session.commit(temporary)
            return files
        } catch {
            discard()
            throw error
        }
    }

    /// Where a written tensor's data comes from.
    private enum Origin {
        /// The input's bytes as they are.
        case raw
        /// The staging file (a pruned linear written dense).
        case staged
        /// A compressed input's linear, decompressed and written dense in `dtype`.
        case decompressed
        /// A tensor of a packed linear (`SparseCheckpointEncoder`).
        case encoded
    }

    private func writeAll(record: PruningRecord) throws -> [String] {
        let fm = FileManager.default
        var written: [String] = []
        let source = checkpoint
        let compressedInput = weights as? CompressedTensorsWeights
        // The linears written packed: every pruned one and every one the input packs.
        var encoder: SparseCheckpointEncoder? = nil
        if case let .sparse(_, pattern) = storage, let valueType = sparseValueType {
            var names = Set(stagedFile.keys)
            names.formUnion(compressedInput?.compressedNames ?? [])
            let linears = try weights.tensorNames.filter(names.contains).map { ($0, try weights.shape(of: $0)) }
            // The elements of every stored tensor that is not one of those linears (the config's global sparsity).
            let packedKeys = Set(linears.flatMap { compressedInput?.storedNames(of: $0.0) ?? [$0.0] })
            let others = source.tensorNames.filter { !packedKeys.contains($0) }.reduce(0) { $0 + (source.info($1)?.elementCount ?? 0) }
            let staged = stagedFile, dense = weights
            encoder = try SparseCheckpointEncoder(linears: linears, valueType: valueType, pattern: pattern, otherParameters: others) { name in
                if let f = staged[name] { return try f.floats(name) }
                return try CheckpointStorage.safetensors(valueType).stored(try dense.floats(name), shape: try dense.shape(of: name))
            }
        }
        // The tensors in the input's shard order: a compressed input's linear where its `P.compressed` is.
        let denseNames = Set(compressedInput?.tensorNames ?? [])
        var origin: [String: Origin] = [:]
        var specsByFile: [[TensorSpec]] = Array(repeating: [], count: source.shardFiles.count)
        var shardOf: [String: String] = [:]
        var allSpecs: [TensorSpec] = []
        for name in source.tensorNames {
            guard let info = source.info(name), let shard = source.shardFile(of: name),
                  let i = source.shardFiles.firstIndex(of: shard) else {
                throw PruningError("the input checkpoint lost track of tensor \(name)")
            }
            var specs: [TensorSpec]
            var from = Origin.raw
            if let compressedInput, name.hasSuffix(".compressed"),
               case let dense = String(name.dropLast(".compressed".count)) + ".weight", compressedInput.isCompressed(dense) {
                if let encoder {
                    specs = encoder.specs(for: dense)
                    from = .encoded
                } else {
                    specs = [TensorSpec(name: dense, dtype: inputDType(dense) ?? .F32, shape: try weights.shape(of: dense))]
                    from = stagedFile[dense] != nil ? .staged : .decompressed
                }
            } else if compressedInput != nil && !denseNames.contains(name) {
                continue   // another tensor of a compressed linear, written with its `P.compressed`
            } else if let encoder, encoder.compresses(name) {
                specs = encoder.specs(for: name)
                from = .encoded
            } else {
                specs = [TensorSpec(name: name, dtype: info.dtype, shape: info.shape)]
                if stagedFile[name] != nil { from = .staged }
            }
            for spec in specs {
                origin[spec.name] = from
                specsByFile[i].append(spec)
                shardOf[spec.name] = shard
                allSpecs.append(spec)
            }
        }
        let dense = weights
        func data(_ spec: TensorSpec) throws -> TensorData {
            switch origin[spec.name] ?? .raw {
            case .encoded:
                return try encoder!.data(for: spec)
            case .staged:
                return try stagedFile[spec.name]!.withRawBytes(spec.name) { .bytes(Array($0)) }
            case .decompressed:
                return .floats(try dense.floats(spec.name))
            case .raw:
                return try source.withRawBytes(spec.name) { .bytes(Array($0)) }
            }
        }
        do {
            // Several files need an index for transformers to load them, whether or not the input had one.
            if source.usedIndex || source.shardFiles.count > 1 {
                written += try SafeTensorsWriter.writeSharded(allSpecs, shardOf: shardOf, metadata: source.metadata,
                                                              to: temporary, data: data)
                written.append(SafeTensorsCheckpoint.indexFileName)
            } else {
                for (i, name) in source.shardFiles.enumerated() {
                    try SafeTensorsWriter.write(specsByFile[i], metadata: source.files[i].metadata,
                                                to: temporary.appendingPathComponent(name), data: data)
                    written.append(name)
                }
            }
        } catch let e as PruningError {
            throw e
        } catch {
            throw PruningError("cannot write the pruned checkpoint: \(error)")
        }
        // config.json says how the linears are stored: with the packed ones' quantization_config, without
        // one when they are dense.
        if encoder != nil || compressedInput != nil {
            let file = input.appendingPathComponent("config.json")
            guard let bytes = fm.contents(atPath: file.path), let root = try? JSONValue.parse(bytes) else {
                throw PruningError("cannot read \(file.path)")
            }
            let config = CompressedTensorsSparsity.config(root, setting: encoder?.sparsity)
            do {
                try Data(config.text([.prettyPrinted, .sortedKeys]).utf8).write(to: temporary.appendingPathComponent("config.json"))
            } catch {
                throw PruningError("cannot write config.json: \(error.localizedDescription)")
            }
            written.append("config.json")
        }
        stagedFile = [:]

        // config.json and tokenizer files.
        let listing = (try? fm.contentsOfDirectory(atPath: input.path)) ?? []
        for name in listing.sorted() where Self.copiedFileNames.contains(name) || name.hasPrefix("tokenizer") {
            if name == "config.json" && written.contains(name) { continue }
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: input.appendingPathComponent(name).path, isDirectory: &isDir), !isDir.boolValue else { continue }
            do {
                try fm.copyItem(at: input.appendingPathComponent(name), to: temporary.appendingPathComponent(name))
            } catch {
                throw PruningError("cannot copy \(name) from the input model: \(error.localizedDescription)")
            }
            written.append(name)
        }
        do {
            try record.jsonData().write(to: temporary.appendingPathComponent("pruning.json"))
        } catch {
            throw PruningError("cannot write pruning.json: \(error.localizedDescription)")
        }
        written.append("pruning.json")
        return written
    }
}

/// The input checkpoint with some tensors replaced by staged ones.
struct StagedWeights: WeightSource {
    let base: WeightSource
    let staged: [String: SafeTensorsFile]
    var tensorNames: [String] { base.tensorNames }
    func shape(of name: String) throws -> [Int] { try base.shape(of: name) }
    func floats(_ name: String) throws -> [Float] {
        if let f = staged[name] { return try f.floats(name) }
        return try base.floats(name)
    }
}

extension PrunedCheckpointWriter {
    /// Removes the temporary folders of every unfinished writer registered in `WorkFolderRegistry.shared`.
    public static func removeTemporaryFolders() { WorkFolderRegistry.shared.removeAll() }
}
