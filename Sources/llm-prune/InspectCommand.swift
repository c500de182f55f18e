import CommandLineArguments
import Foundation
import Tensor
import SafeTensors
import Llama
import Pruning
import Runs
import Evaluation

enum InspectCommand {
    static let spec = CommandSpec(
        name: "inspect",
        abstract: "Architecture, parameter count, dtypes and memory needs of a checkpoint.",
        discussion: "Reads only config.json and the safetensors headers (or the GGUF metadata and tensor infos): no weights are loaded. A compressed-tensors folder counts the dense parameters its packed linears stand for.",
        options: [
            OptionSpec(name: "model", valueName: "path", help: modelOptionHelp, required: true),
            OptionSpec(name: "nsamples", valueName: "n", help: "Calibration samples assumed for the pruning memory estimate.", defaultValue: "128"),
            OptionSpec(name: "seqlen", valueName: "n", help: "Calibration length assumed for the pruning memory estimate.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "method", valueName: "name", help: "Method assumed for the pruning memory estimate.", defaultValue: "sparsegpt"),
            OptionSpec(name: "calibration-file", valueName: "path", help: "Calibration file assumed for the estimate (its size counts)."),
            OptionSpec(name: "calibration-format", valueName: "fmt", help: "Its format, as for prune.", defaultValue: "text"),
            OptionSpec(name: "eval-file", valueName: "path", help: "Evaluation text assumed for the estimate (a prune that evaluates)."),
            OptionSpec(name: "eval-seqlen", valueName: "n", help: "Evaluation window length assumed.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object instead of text."),
        ],
        examples: ["llm-prune inspect --model ../shared/models/stories260K"])

    static func run(_ a: ParsedArguments) throws {
        let url = URL(fileURLWithPath: try a.requiredString("model"))
        let checkpoint = try LlamaCheckpoint(model: url)
        let c = checkpoint.configuration
        // Parameter count, storage types and file count, from the safetensors headers or the GGUF tensor infos.
        let parameters: Int, dtypeSummary: String, fileCount: Int
        if let gguf = (checkpoint.source as? GGUFWeights)?.file {
            parameters = gguf.infos.reduce(0) { $0 + $1.elementCount }
            var counts: [String: Int] = [:]
            for info in gguf.infos { counts[info.type.description, default: 0] += 1 }
            dtypeSummary = counts.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(separator: ", ") + ", GGUF v\(gguf.version)"
            fileCount = 1
        } else if let packed = checkpoint.source as? CompressedTensorsWeights {
            // The dense parameters the packed linears stand for; the stored tensors' dtypes.
            parameters = try packed.tensorNames.reduce(0) { $0 + (try packed.shape(of: $1)).reduce(1, *) }
            dtypeSummary = packed.tensors.dtypeSummary
                + "; \(packed.compressedNames.count) linears packed as \(packed.format?.rawValue ?? "dense") (\(packed.sparsity.structure))"
            fileCount = packed.tensors.shardFiles.count
        } else {
            let tensors = try SafeTensorsCheckpoint(directory: url)
            parameters = tensors.tensorNames.reduce(0) { $0 + (tensors.info($1)?.elementCount ?? 0) }
            dtypeSummary = tensors.dtypeSummary
            fileCount = tensors.shardFiles.count
        }
        let nsamples = try a.requiredInt("nsamples", range: 1...1_000_000)
        let seqlen = try a.int("seqlen", range: 2...1_000_000) ?? min(2048, c.maxPositionEmbeddings)
        let prunable = (0..<c.numHiddenLayers).reduce(0) { sum, _ in
            sum + LinearKind.allCases.reduce(0) { $0 + $1.shape(c).reduce(1, *) }
        }
        let methodName = try a.requiredString("method")
        guard PruneCommand.methodNames.contains(methodName) else {
            throw UsageError("option '--method' must be one of \(PruneCommand.methodNames.joined(separator: ", ")), got '\(methodName)'")
        }
        let (method, _) = try PruneCommand.makeMethod(methodName, a)
        // The estimate of a prune with --output (what `prune` itself checks and reports).
        let format = try a.requiredChoice("calibration-format", CalibrationFormat.allCases.map(\.rawValue))
        let evalSeqlen = try a.int("eval-seqlen", range: 2...1_000_000) ?? min(2048, c.maxPositionEmbeddings)
        let dtypeBytes = PruningJob.prunedElementBytes(checkpoint)
        let estimate = RunMemoryEstimate.estimate(
            configuration: c, method: method, sampleCount: nsamples, sequenceLength: seqlen,
            inputs: .measuring(model: url, calibrationFile: a.string("calibration-file").map { URL(fileURLWithPath: $0) },
                               calibrationIsText: format != "tokens",
                               evaluation: a.string("eval-file").map { (URL(fileURLWithPath: $0), evalSeqlen) },
                               writesOutput: true, prunedElementBytes: dtypeBytes))
        // Evaluation holds the whole model in float32 plus one window's activations and one head slab's
        // logits (the NLL is fused with the head a slab of rows at a time, `FusedNLL`), besides the runtime,
        // the mapped checkpoint and the tokenizer.
        let window = min(2048, c.maxPositionEmbeddings)
        let evaluationBytes = 4 * (parameters + window * (6 * c.hiddenSize + 3 * c.intermediateSize)
                                   + min(window, FusedNLL.rowsPerSlab) * c.vocabSize)
            + estimate.runtimeBytes + estimate.mappedBytes + estimate.tokenizerBytes
        if a.flag("json") {
            print(jsonLine([
                "model_type": c.modelType.rawValue, "hidden_size": c.hiddenSize, "layers": c.numHiddenLayers,
                "attention_heads": c.numAttentionHeads, "kv_heads": c.numKeyValueHeads, "head_dim": c.headDim,
                "intermediate_size": c.intermediateSize, "vocab_size": c.vocabSize,
                "tie_word_embeddings": c.tieWordEmbeddings, "parameters": parameters, "prunable_parameters": prunable,
                "dtypes": dtypeSummary, "shards": fileCount,
                "eval_memory_bytes": evaluationBytes, "prune_memory_bytes": estimate.totalBytes, "prune_method": methodName,
                "blas": Dictionary(uniqueKeysWithValues: BLASRuntime.current.record),
                "bf16": ComputePrecision.bfloat16.backend,
            ]))
            return
        }
        print("""
        model        \(url.path)
        architecture \(c.modelType.rawValue): \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), \(c.numAttentionHeads) heads (\(c.numKeyValueHeads) KV, head_dim \(c.headDim)), FFN \(c.intermediateSize), vocab \(c.vocabSize)
        head         \(c.tieWordEmbeddings ? "tied to the embeddings" : "separate lm_head"), context \(c.maxPositionEmbeddings)
        parameters   \(parameters) (\(prunable) in the seven linear layers of the blocks)
        dtypes       \(dtypeSummary) in \(fileCount) file(s)
        memory       eval: \(formatBytes(evaluationBytes)) (float32 weights, activations of one window of \(window), one head slab's logits, mapped files, tokenizer)
                     prune (\(methodName)): \(formatBytes(estimate.totalBytes)) (a run with --output, calibration \(nsamples) x \(seqlen))
                     \(estimate.description)
        blas         \(BLASRuntime.current.summary)
        bf16         --compute-dtype bf16 runs \(ComputePrecision.bfloat16.backend)
        """)
    }
}

