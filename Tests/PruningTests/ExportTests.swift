import Datasets
import Foundation
import Llama
import Pruning
import Runs
import SafeTensors
import Tensor
import Testing

/// A fresh empty folder under the system temporary directory, removed by `cleanup`.
private func scratchFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pruning-export-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    return url
}

private func listing(_ url: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
}

private func rawBytes(_ source: SafeTensorsCheckpoint, _ name: String) throws -> [UInt8] {
    try source.withRawBytes(name) { Array($0) }
}

/// Prunes `input` with `method` and exports to `output`, the way the command line does.
@discardableResult
private func pruneAndExport(input: URL, output: URL, method: PruningMethod, pattern: SparsityPattern,
                            calibration: CalibrationSet?) throws -> (PruningRecord, [DecoderBlockWeights]) {
    let checkpoint = try LlamaCheckpoint(directory: input)
    let writer = try PrunedCheckpointWriter(input: input, output: output)
    var blocks: [DecoderBlockWeights] = []
    let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: method,
                                           options: PruningOptions(pattern: pattern)) { block in
        blocks.append(block)
        try writer.stage(block)
    }
    // The staged weights can be evaluated before the files are written.
    let staged = try LlamaCheckpoint(configuration: checkpoint.configuration, source: writer.prunedWeights)
    #expect(try staged.loadBlock(2) == blocks[2])
    let record = PruningRecord(toolVersion: "test", arguments: ["llm-prune", "prune", "--method", method.name],
                               inputModel: input.path, summary: summary, results: ["wikitext2_perplexity": 1.5])
    try writer.finish(record: record)
    return (record, blocks)
}

@Suite struct ExportTests {
    @Test func singleFileFloat32RoundTrip() throws {
        let input = try sharedPath("models/stories260K")
        let (_, calibration) = try stories260K(nsamples: 2)
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("pruned")
        let (record, blocks) = try pruneAndExport(input: input, output: output, method: WandaPruning(),
                                                  pattern: .unstructured(0.5), calibration: calibration)
        // Only the output folder remains beside it: no temporary or staging leftovers.
        #expect(listing(scratch) == ["pruned"])
        #expect(listing(output) == ["config.json", "model.safetensors", "pruning.json", "tokenizer.json",
                                    "tokenizer.model", "tokenizer_config.json"])
        for name in ["config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"] {
            #expect(FileManager.default.contentsEqual(atPath: input.appendingPathComponent(name).path,
                                                      andPath: output.appendingPathComponent(name).path), "\(name)")
        }
        let original = try SafeTensorsCheckpoint(directory: input)
        let pruned = try SafeTensorsCheckpoint(directory: output)
        #expect(pruned.tensorNames == original.tensorNames)
        #expect(pruned.metadata == original.metadata)
        var prunedNames = Set<String>()
        for b in blocks { for k in LinearKind.allCases {
            let name = LlamaTensorNames.weight(k, layer: b.layer)
            prunedNames.insert(name)
            #expect(try pruned.floats(name) == b[k].data, "\(name)")
        } }
        for name in original.tensorNames {
            #expect(pruned.info(name)?.dtype == original.info(name)?.dtype)
            #expect(pruned.info(name)?.shape == original.info(name)?.shape)
            if !prunedNames.contains(name) { #expect(try rawBytes(pruned, name) == rawBytes(original, name), "\(name)") }
        }
        // The run record.
        let json = try Data(contentsOf: output.appendingPathComponent("pruning.json"))
        let decoded = try PruningRecord.decode(json)
        #expect(decoded == record)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("\"calibration_hash\" : \"\(calibration.hash)\""))
        #expect(text.contains("\"wikitext2_perplexity\" : 1.5"))
        #expect(decoded.summary.blocks.count == 5 && decoded.summary.blocks[0].layers.count == 7)
        // The exported model loads and its sparsity is what the summary says.
        let reloaded = try LlamaCheckpoint(directory: output).loadModel()
        var zeros = 0
        for b in reloaded.blocks { for k in LinearKind.allCases { zeros += SparsityCheck.zeroCount(b[k].data) } }
        #expect(zeros == record.summary.zeros)
    }

    /// Shards without an index (globbed on input) still get a valid index on output: transformers loads
    /// several files only through one.
    @Test func shardsWithoutAnIndexAreExportedWithOne() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let shared = try sharedPath("models/stories260K")
        let input = scratch.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: false)
        for name in ["config.json", "tokenizer.json"] {
            try FileManager.default.copyItem(at: shared.appendingPathComponent(name), to: input.appendingPathComponent(name))
        }
        let source = try SafeTensorsCheckpoint(directory: shared)
        let specs = source.tensorNames.map { TensorSpec(name: $0, dtype: .F32, shape: source.info($0)!.shape) }
        var shardOf: [String: String] = [:]
        for (i, s) in specs.enumerated() { shardOf[s.name] = SafeTensorsWriter.shardFileName(i % 2 + 1, of: 2) }
        try SafeTensorsWriter.writeSharded(specs, shardOf: shardOf, to: input) { .floats(try source.floats($0.name)) }
        try FileManager.default.removeItem(at: input.appendingPathComponent(SafeTensorsCheckpoint.indexFileName))
        #expect(try !SafeTensorsCheckpoint(directory: input).usedIndex)
        let output = scratch.appendingPathComponent("out")
        try pruneAndExport(input: input, output: output, method: MagnitudePruning(), pattern: .unstructured(0.5), calibration: nil)
        #expect(listing(output).contains(SafeTensorsCheckpoint.indexFileName))
        let pruned = try SafeTensorsCheckpoint(directory: output)
        #expect(pruned.usedIndex && pruned.shardFiles.count == 2)
        for name in source.tensorNames { #expect(pruned.shardFile(of: name) == shardOf[name]) }
    }

    /// A BF16 checkpoint in two shards with an index keeps its dtype, shard names, index and metadata.
    @Test func shardedBF16KeepsLayout() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let shared = try sharedPath("models/stories260K")
        let input = scratch.appendingPathComponent("bf16-in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: false)
        for name in ["config.json", "tokenizer.json"] {
            try FileManager.default.copyItem(at: shared.appendingPathComponent(name), to: input.appendingPathComponent(name))
        }
        let source = try SafeTensorsCheckpoint(directory: shared)
        let specs = source.tensorNames.map { TensorSpec(name: $0, dtype: .BF16, shape: source.info($0)!.shape) }
        var shardOf: [String: String] = [:]
        for (i, s) in specs.enumerated() {
            shardOf[s.name] = SafeTensorsWriter.shardFileName(i < specs.count / 2 ? 1 : 2, of: 2)
        }
        try SafeTensorsWriter.writeSharded(specs, shardOf: shardOf, metadata: ["format": "pt"], to: input) {
            .floats(try source.floats($0.name))
        }
        let output = scratch.appendingPathComponent("bf16-out")
        let (_, blocks) = try pruneAndExport(input: input, output: output, method: MagnitudePruning(),
                                             pattern: .nm(n: 2, m: 4), calibration: nil)
        #expect(listing(output) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                    SafeTensorsCheckpoint.indexFileName, "pruning.json", "tokenizer.json"])
        let original = try SafeTensorsCheckpoint(directory: input)
        let pruned = try SafeTensorsCheckpoint(directory: output)
        #expect(pruned.usedIndex && pruned.shardFiles == original.shardFiles)
        #expect(pruned.metadata == ["format": "pt"])
        for name in original.tensorNames {
            #expect(pruned.info(name)?.dtype == .BF16)
            #expect(pruned.shardFile(of: name) == original.shardFile(of: name))
        }
        for b in blocks { for k in LinearKind.allCases {
            let name = LlamaTensorNames.weight(k, layer: b.layer)
            let w = try pruned.floats(name)
            // Magnitude on BF16 values: the kept ones round-trip exactly.
            #expect(w == b[k].data)
            try SparsityCheck.validateNM(w, rows: b[k].shape[0], cols: b[k].shape[1], n: 2, m: 4, name: name)
        } }
        #expect(try rawBytes(pruned, LlamaTensorNames.embedTokens) == rawBytes(original, LlamaTensorNames.embedTokens))
    }

    /// A run that fails part-way leaves neither the output folder nor its temporary sibling.
    @Test func failedRunLeavesNothing() throws {
        struct Failing: LayerPruningMethod {
            var name: String { "failing" }
            var statistics: InputStatistics.Kind { [] }
            func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
                if weight.name.hasPrefix("model.layers.2.") { throw PruningError("\(weight.name): failing on purpose") }
                try MagnitudePruning().compress(weight, statistics: statistics, pattern: pattern)
            }
        }
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("pruned")
        #expect(throws: PruningError("model.layers.2.self_attn.q_proj.weight: failing on purpose")) {
            try pruneAndExport(input: try sharedPath("models/stories260K"), output: output, method: Failing(),
                               pattern: .unstructured(0.5), calibration: nil)
        }
        #expect(listing(scratch) == [])
    }

    @Test func destinationChecks() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = try sharedPath("models/stories260K")
        #expect(throws: PruningError("output folder \(scratch.path) already exists; choose another --output or remove it")) {
            _ = try PrunedCheckpointWriter(input: input, output: scratch)
        }
        // Missing parent folders are created (mkdir -p), the work folder goes beside the output.
        let orphan = scratch.appendingPathComponent("missing/deeper/pruned")
        let early = try PrunedCheckpointWriter(input: input, output: orphan)
        #expect(listing(orphan.deletingLastPathComponent()).count == 1)
        early.discard()
        #expect(listing(orphan.deletingLastPathComponent()) == [])
        try FileManager.default.removeItem(at: scratch.appendingPathComponent("missing"))
        // discard() removes the temporary folder at once.
        let writer = try PrunedCheckpointWriter(input: input, output: scratch.appendingPathComponent("out"))
        #expect(listing(scratch).count == 1 && listing(scratch)[0].hasPrefix(".out.partial-"))
        writer.discard()
        #expect(listing(scratch) == [])
    }
}

/// The registry a signal handler empties (the library installs none: the executable's `Signals` calls
/// `beginExit` from its watcher thread; the CLI tests send real signals at chosen moments).
@Suite struct WorkFolderRegistryTests {
    /// A writer's work folder is registered while it writes, and `removeAll` takes it away.
    @Test func removeAllRemovesAWritersFolder() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let registry = WorkFolderRegistry()
        let writer = try PrunedCheckpointWriter(input: try sharedPath("models/stories260K"),
                                                output: scratch.appendingPathComponent("pruned"), registry: registry)
        let before = listing(scratch)
        #expect(before.count == 1 && before.first?.hasPrefix(".pruned.partial-") == true, "\(before)")
        registry.removeAll()
        #expect(listing(scratch) == [])
        writer.discard()
    }

    /// `beginExit` removes every registered folder and keeps the lock (nothing may be created or renamed
    /// afterwards); after a commit that left nothing registered it spares the run when asked, and releases
    /// the lock.
    @Test func beginExitRemovesFoldersOrSparesACommittedRun() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = try sharedPath("models/stories260K")

        let committed = WorkFolderRegistry()
        let done = try PrunedCheckpointWriter(input: input, output: scratch.appendingPathComponent("done"), registry: committed)
        let checkpoint = try LlamaCheckpoint(directory: input)
        let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: nil, method: MagnitudePruning(),
                                               options: PruningOptions(pattern: .nm(n: 2, m: 4))) { try done.stage($0) }
        try done.finish(record: PruningRecord(toolVersion: "test", arguments: [], inputModel: input.path, summary: summary))
        #expect(committed.beginExit(sparingCompletedRun: true) == false)
        committed.removeAll()   // would never return if beginExit had kept the lock
        #expect(listing(scratch) == ["done"])

        let exiting = WorkFolderRegistry()
        let writer = try PrunedCheckpointWriter(input: input, output: scratch.appendingPathComponent("pruned"), registry: exiting)
        #expect(listing(scratch).count == 2)
        #expect(exiting.beginExit(sparingCompletedRun: true) == true)
        #expect(listing(scratch) == ["done"])
        // The lock stays held, as for a process about to die: the writer must never touch the registry again.
        _ = Unmanaged.passRetained(writer)
    }
}
