import Foundation
import GGUF
import Llama
import Tensor
import Evaluation
import Pruning

/// The resident memory of a whole `prune` run, by part, in bytes: the pruning phase (`MemoryEstimate`)
/// and everything around it.
///
/// Peak = runtime + mapped + tokenizer + calibration samples
///        + max(calibration read, pruning + kept blocks, staged export + evaluation):
/// the phases run one after the other (reading calibration, block-by-block pruning, evaluating and
/// writing the pruned model) and each frees its buffers before the next, while the memory-mapped
/// checkpoint, the tokenizer and the calibration ids stay for the whole run. Peak RSS counts every page of
/// the mapped files that was read, and over a run every tensor is read. The pruned blocks staged on disk
/// while pruning are mapped but first read at the end (by the export, and by an evaluation of the
/// written model), after the pruning buffers are gone.
public struct RunMemoryEstimate: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The Swift runtime, Foundation, OpenBLAS and their buffers: what `llm-prune inspect` keeps resident
    /// on a tiny model (measured: 21–24 MiB).
    public var runtimeBytes: Int
    /// The memory-mapped input checkpoint files.
    public var mappedBytes: Int
    /// The staged pruned blocks of a run with --output, resident once the export (or the evaluation of the
    /// written model) reads them back.
    public var exportBytes: Int
    /// The parsed tokenizer: vocabulary and merges as strings, dictionaries both ways.
    public var tokenizerBytes: Int
    /// Reading the calibration source: the file's text, its decoded string and its token ids (text, jsonl,
    /// c4), or the token matrix (tokens); freed once the samples are drawn.
    public var calibrationReadBytes: Int
    /// The nsamples × seqlen calibration ids, kept for the whole run.
    public var calibrationSampleBytes: Int
    /// Block-by-block pruning.
    public var pruning: MemoryEstimate
    /// The pruned blocks kept in float32 for the evaluation while pruning (an evaluation without --output;
    /// with one, the evaluation reads the written blocks back).
    public var keptBlocksBytes: Int
    /// The evaluation: the float32 model, one batch's logits and activations, the text and its token ids.
    public var evaluationBytes: Int

    public var totalBytes: Int {
        runtimeBytes + mappedBytes + tokenizerBytes + calibrationSampleBytes
            + max(calibrationReadBytes, pruning.totalBytes + keptBlocksBytes, exportBytes + evaluationBytes)
    }

    /// What the estimate assumes besides the model and the method.
    public struct Inputs: Sendable {
        /// Sum of the input's safetensors file sizes.
        public var checkpointBytes: Int
        /// Bytes per element of the pruned linears as written (the input's dtype).
        public var prunedElementBytes: Int
        public var tokenizerFileBytes: Int
        /// The calibration file's size, and whether it is text to tokenize (not a tokens file).
        public var calibrationFileBytes: Int
        public var calibrationIsText: Bool
        /// The evaluation text's size and window length, when the run evaluates.
        public var evaluation: (fileBytes: Int, seqlen: Int)?
        public var writesOutput: Bool
        /// Whether writing converts every tensor to float32 first (a GGUF input: the writer dequantizes the
        /// tensors outside the blocks, the embedding table the largest, one at a time), rather than copying
        /// the input's bytes.
        public var convertsTensors: Bool

        public init(checkpointBytes: Int, prunedElementBytes: Int = 4, tokenizerFileBytes: Int, calibrationFileBytes: Int = 0,
                    calibrationIsText: Bool = true, evaluation: (fileBytes: Int, seqlen: Int)? = nil, writesOutput: Bool = false,
                    convertsTensors: Bool = false) {
            self.checkpointBytes = checkpointBytes; self.prunedElementBytes = prunedElementBytes
            self.tokenizerFileBytes = tokenizerFileBytes; self.calibrationFileBytes = calibrationFileBytes
            self.calibrationIsText = calibrationIsText; self.evaluation = evaluation; self.writesOutput = writesOutput
            self.convertsTensors = convertsTensors
        }

        /// The sizes of the files in `model` (safetensors, tokenizer.json) and of the given files.
        public static func measuring(model: URL, calibrationFile: URL?, calibrationIsText: Bool,
                                     evaluation: (file: URL, seqlen: Int)?, writesOutput: Bool,
                                     prunedElementBytes: Int = 4) -> Inputs {
            func size(_ url: URL) -> Int {
                // A linked model (a symlink to a downloaded file) is measured by its target, as the mmap reads it.
                ((try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)[.size]) as? NSNumber)?.intValue ?? 0
            }
            // A GGUF file holds weights and tokenizer; a folder its safetensors and tokenizer.json.
            let isFile = model.pathExtension.lowercased() == "gguf"
            let names = isFile ? [] : (try? FileManager.default.contentsOfDirectory(atPath: model.path)) ?? []
            let checkpoint = isFile ? size(model)
                : names.filter { $0.hasSuffix(".safetensors") }.reduce(0) { $0 + size(model.appendingPathComponent($1)) }
            return Inputs(checkpointBytes: checkpoint, prunedElementBytes: prunedElementBytes,
                          // A GGUF file's tokenizer is its metadata, which ends where the tensor data starts.
                          tokenizerFileBytes: isFile ? ((try? GGUFFile(url: model))?.dataOffset ?? 0)
                              : size(model.appendingPathComponent("tokenizer.json")),
                          calibrationFileBytes: calibrationFile.map(size) ?? 0, calibrationIsText: calibrationIsText,
                          evaluation: evaluation.map { (size($0.file), $0.seqlen) }, writesOutput: writesOutput,
                          convertsTensors: isFile)
        }
    }

    static let runtime = 24 << 20

    public static func estimate(configuration c: LlamaConfiguration, method: PruningMethod, sampleCount: Int,
                                sequenceLength: Int, inputs: Inputs,
                                computePrecision: ComputePrecision = .float32) -> RunMemoryEstimate {
        var pruning = MemoryEstimate.estimate(configuration: c, method: method, sampleCount: sampleCount,
                                              sequenceLength: sequenceLength)
        // bf16 GEMMs round both operands into copies: at most one (rows, F) activation and one (F, C) weight.
        let widest = max(c.intermediateSize, c.hiddenSize)
        func roundedCopies(rows: Int) -> Int {
            computePrecision == .float32 ? 0 : 4 * (rows * widest + c.intermediateSize * c.hiddenSize)
        }
        if method.needsCalibrationInputs {
            let rows = max(1, min(sampleCount, 2048 / max(sequenceLength, 1))) * sequenceLength
            pruning.forwardBytes += roundedCopies(rows: rows)
        }
        let uses = method.needsCalibrationInputs
        var prunable = 0, blockParams = 2 * c.hiddenSize
        for kind in LinearKind.allCases {
            let s = kind.shape(c)
            prunable += s[0] * s[1]
            blockParams += s[0] * s[1] + (kind.hasBias(c) ? s[0] : 0)
        }
        prunable *= c.numHiddenLayers
        // Text is held as bytes and as a String while it is tokenized into 8-byte ids, about one per 2 bytes
        // of text for the smallest vocabularies; the encoder's per-word temporaries add about as much again.
        func textBytes(_ fileBytes: Int) -> Int { fileBytes * 2 + fileBytes / 2 * 8 * 2 }
        let calibrationRead = !uses ? 0
            : inputs.calibrationIsText ? textBytes(inputs.calibrationFileBytes) : inputs.calibrationFileBytes * 2
        var evaluation = 0
        if let e = inputs.evaluation {
            let params = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2) + c.hiddenSize + c.numHiddenLayers * blockParams
            let batch = Perplexity.batchSize(seqlen: e.seqlen, vocabularySize: c.vocabSize)
            let qDim = c.numAttentionHeads * c.headDim, kvDim = c.numKeyValueHeads * c.headDim
            let tokens = batch * e.seqlen
            // The forward's activations for the batch, the logits of one head slab (the NLL is fused with the
            // head a slab of rows at a time, `FusedNLL`), attention scratch per worker.
            let activations = tokens * (5 * c.hiddenSize + 2 * qDim + 2 * kvDim + 3 * c.intermediateSize)
                + min(tokens, FusedNLL.rowsPerSlab) * c.vocabSize
                + workerCount * Attention.forwardScratchFloats(length: e.seqlen, heads: c.numAttentionHeads,
                                                               kvHeads: c.numKeyValueHeads, headDim: c.headDim)
            evaluation = 4 * params + max(textBytes(e.fileBytes), 4 * activations + e.fileBytes / 2 * 8)
            // bf16: the head rounded once per batch, besides the per-GEMM copies.
            if computePrecision != .float32 { evaluation += 4 * c.vocabSize * c.hiddenSize + roundedCopies(rows: tokens) }
        }
        return RunMemoryEstimate(
            runtimeBytes: runtime,
            mappedBytes: inputs.checkpointBytes,
            // A converting writer holds the largest tensor outside the blocks (the (V, C) embedding table) in
            // float32 while it writes it, besides the staged linears (measured on Gemma 3 270M's GGUF, whose
            // table is 671 MB: without this term the estimate was 58 % under the peak).
            exportBytes: inputs.writesOutput
                ? prunable * inputs.prunedElementBytes + (inputs.convertsTensors ? 4 * c.vocabSize * c.hiddenSize : 0) : 0,
            tokenizerBytes: inputs.tokenizerFileBytes * 12,
            calibrationReadBytes: calibrationRead,
            calibrationSampleBytes: uses || inputs.calibrationFileBytes > 0 ? sampleCount * sequenceLength * 8 : 0,
            pruning: pruning,
            keptBlocksBytes: inputs.evaluation != nil && !inputs.writesOutput ? c.numHiddenLayers * blockParams * 4 : 0,
            evaluationBytes: evaluation)
    }

    /// "0.31 GiB (runtime 0.02, mapped 0.00, ..., pruning 0.05 [block ...], staged export 0.01 + evaluation 0.10 GiB)".
    public var description: String {
        let g = MemoryEstimate.gib
        return "\(g(totalBytes)) GiB (runtime \(g(runtimeBytes)), mapped files \(g(mappedBytes)), tokenizer \(g(tokenizerBytes)), calibration ids \(g(calibrationSampleBytes)), then the largest of: reading calibration \(g(calibrationReadBytes)), pruning \(g(pruning.totalBytes + keptBlocksBytes)) [\(pruning.breakdown)], staged export \(g(exportBytes)) + evaluation \(g(evaluationBytes)) GiB)"
    }

    /// Throws when `availableBytes` is known and smaller than the estimate (one line).
    public func check(availableBytes: Int?) throws {
        guard let availableBytes, totalBytes > availableBytes else { return }
        throw PruningError("this run needs about \(MemoryEstimate.gib(totalBytes)) GiB, \(MemoryEstimate.gib(availableBytes)) GiB available (\(description)); lower --nsamples or --seqlen")
    }
}
