import Dispatch
import Foundation
import JSON
import Tensor
import Pruning
import Llama
import SafeTensors
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

/// Writes a pruned checkpoint in the Hugging Face layout of its input.
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
    public init(input: URL, output: URL, adopting: URL? = nil, registry: WorkFolderRegistry = .shared,
                atPoint: RunPointHook? = nil) throws {
        self.input = input.standardizedFileURL
        self.output = output.standardizedFileURL
        try WorkFolders.checkDestination(self.output, input: self.input)
        try WorkFolders.createParent(of: self.output)
        do {
            checkpoint = try SafeTensorsCheckpoint(directory: self.input)
        } catch {
            throw PruningError("cannot open the input checkpoint: \(error)")
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

    /// Saves the seven pruned linears of one block, in the input's dtype, to a staging file.
    public func stage(_ block: DecoderBlockWeights) throws {
        guard !session.ended else { throw PruningError("the pruned checkpoint was already written or discarded") }
        var entries: [TensorEntry] = []
        for kind in LinearKind.allCases {
            let name = LlamaTensorNames.weight(kind, layer: block.layer)
            guard let info = checkpoint.info(name) else {
                throw PruningError("the input checkpoint has no tensor \(name)")
            }
            let w = block[kind]
            guard info.shape == w.shape else {
                throw PruningError("\(name): pruned shape \(w.shape) differs from the input's \(info.shape)")
            }
            guard info.dtype.isFloatingPoint else {
                throw PruningError("\(name): the input stores it as \(info.dtype.rawValue), not a floating-point dtype")
            }
            entries.append(TensorEntry(name: name, dtype: info.dtype, shape: w.shape, data: .floats(w.data)))
        }
        let file = try session.stage(entries, layer: block.layer)
        for e in entries { stagedFile[e.spec.name] = file }
    }

    /// The input's tensors with the staged (pruned) ones in their place, as float32: to evaluate the
    /// pruned model (`LlamaCheckpoint(configuration:source:)`) before or without writing it.
    public var prunedWeights: WeightSource { StagedWeights(base: checkpoint, staged: stagedFile) }

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

    private func writeAll(record: PruningRecord) throws -> [String] {
        let fm = FileManager.default
        var written: [String] = []
        // Tensors, shard by shard in the input's order; pruned ones from staging, the rest copied raw.
        let source = checkpoint
        func data(_ spec: TensorSpec) throws -> TensorData {
            let file: SafeTensorsFile? = stagedFile[spec.name]
            if let file {
                return try file.withRawBytes(spec.name) { .bytes(Array($0)) }
            }
            return try source.withRawBytes(spec.name) { .bytes(Array($0)) }
        }
        var specsByFile: [[TensorSpec]] = Array(repeating: [], count: source.shardFiles.count)
        var shardOf: [String: String] = [:]
        var allSpecs: [TensorSpec] = []
        for name in source.tensorNames {
            guard let info = source.info(name), let shard = source.shardFile(of: name),
                  let i = source.shardFiles.firstIndex(of: shard) else {
                throw PruningError("the input checkpoint lost track of tensor \(name)")
            }
            let spec = TensorSpec(name: name, dtype: info.dtype, shape: info.shape)
            specsByFile[i].append(spec)
            shardOf[name] = shard
            allSpecs.append(spec)
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
        } catch {
            throw PruningError("cannot write the pruned checkpoint: \(error)")
        }
        stagedFile = [:]

        // config.json and tokenizer files.
        let listing = (try? fm.contentsOfDirectory(atPath: input.path)) ?? []
        for name in listing.sorted() where Self.copiedFileNames.contains(name) || name.hasPrefix("tokenizer") {
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
    let base: SafeTensorsCheckpoint
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
