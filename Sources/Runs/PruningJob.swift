import Foundation
import SafeTensors
import Tensor
import Tokenizers
import Llama
import Datasets
import Evaluation
import Pruning
import SparseWeights

/// Where calibration text comes from and how it is read (`--calibration-format`).
public enum CalibrationFormat: String, CaseIterable, Sendable {
    /// C4-style shards: `.json` or `.json.gz`, one JSON object per line with a `text` field (C4 protocol).
    case c4
    /// JSON lines with a chosen field (C4 protocol).
    case jsonl
    /// A plain text file, tokenized whole (special tokens as the tokenizer adds them), random windows of the stream (SparseGPT protocol).
    case text
    /// A safetensors file holding an integer `input_ids` tensor (nsamples, seqlen), used as is.
    case tokens

    /// Reads the source. `field` is the JSON field for `jsonl`.
    public func source(_ url: URL, field: String = "text") throws -> CalibrationSource {
        switch self {
        case .c4: return try .c4Shard(url)
        case .jsonl: return try .jsonLines(url, field: field)
        case .text: return try .plainText(url)
        case .tokens: return try .tokensFile(url)
        }
    }
}

/// Everything one `llm-prune prune` run needs, already validated by the caller's parser.
public struct PruningJobOptions {
    public var model: URL
    public var method: PruningMethod
    public var pattern: SparsityPattern
    public var calibrationFile: URL?
    public var calibrationFormat: CalibrationFormat
    public var calibrationField: String
    public var nsamples: Int
    /// nil: min(2048, max_position_embeddings).
    public var seqlen: Int?
    public var seed: UInt64
    public var output: URL?
    /// Evaluate the pruned model on this dataset and file.
    public var evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?)?
    /// Evaluate only the first n windows of `evaluation` (`--eval-windows`; the perplexity is then partial,
    /// and `pruning.json` records the window count).
    public var evaluationMaxWindows: Int? = nil
    /// Score the pruned model on these zero-shot tasks.
    public var zeroShot: ZeroShotOptions?
    /// The command line, for the run record.
    public var arguments: [String]
    public var toolVersion: String
    /// Extra settings to record (e.g. Wanda++'s α and RO settings).
    public var settings: [String: String]
    /// How a GGUF input is written (`--output-format`, `--dtype`): a Hugging Face folder in BF16 unless
    /// told otherwise. A Hugging Face input keeps its own dtypes and layout.
    public var ggufOutputStorage: CheckpointStorage = .safetensors(.BF16)
    /// How a Hugging Face input's pruned linears are written (`--output-format hf` or `sparse`, `--dtype`):
    /// nil as the input stores them (dense, or packed for a compressed-tensors folder).
    public var folderOutputStorage: PrunedLinearStorage? = nil
    /// A folder whose tokenizer.json replaces the model's own tokenizer (`--tokenizer`).
    public var tokenizerDirectory: URL? = nil
    /// Continue the interrupted run of the same identity (`RunIdentity`) writing `output`, from its last
    /// finished block; without one, start at block 0.
    public var resume = false
    /// The number format of the calibration and evaluation forward passes (`--compute-dtype`): part of
    /// the run's identity, as it changes the masks.
    public var computePrecision: ComputePrecision = .float32
    /// Sets a per-linear sparsity plan from a pass over the dense model before pruning (`SparsityPlanner`);
    /// nil: every linear gets `pattern`.
    public var planner: SparsityPlanner? = nil
    /// Called at the run's named points (`RunPointHook`): the driver's, `evaluated`, and the writer's.
    public var atPoint: RunPointHook? = nil

    public init(model: URL, method: PruningMethod, pattern: SparsityPattern, calibrationFile: URL?,
                calibrationFormat: CalibrationFormat, calibrationField: String = "text", nsamples: Int = 128,
                seqlen: Int? = nil, seed: UInt64 = 0, output: URL? = nil,
                evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?)? = nil,
                zeroShot: ZeroShotOptions? = nil,
                arguments: [String] = [], toolVersion: String, settings: [String: String] = [:]) {
        self.model = model; self.method = method; self.pattern = pattern
        self.calibrationFile = calibrationFile; self.calibrationFormat = calibrationFormat
        self.calibrationField = calibrationField; self.nsamples = nsamples; self.seqlen = seqlen
        self.seed = seed; self.output = output; self.evaluation = evaluation; self.zeroShot = zeroShot
        self.arguments = arguments; self.toolVersion = toolVersion; self.settings = settings
    }
}

extension PruningJobOptions {
    /// Sets how the output is written from `--output-format` and `--dtype` (nil: not given). A GGUF
    /// input: `hf` (default), `gguf` or `sparse`, in `--dtype` (default bf16). A Hugging Face folder:
    /// as it is stored unless `hf` (pruned linears dense) or `sparse` (packed, values in `--dtype`,
    /// default the input's dtype) is asked for; `--dtype` only with `sparse`, `gguf` not at all. Throws a
    /// `PruningError` for a combination that does not apply.
    public mutating func setOutput(format: String?, dtype: String?) throws {
        if LlamaCheckpoint.isGGUF(model) {
            ggufOutputStorage = try CheckpointStorage(format: format ?? "hf", dtype: dtype ?? "bf16")
            return
        }
        switch format {
        case "gguf"?:
            throw PruningError("--output-format gguf needs a GGUF input (its metadata and tokenizer are carried over)")
        case "sparse"?:
            switch dtype?.lowercased() {
            case nil: folderOutputStorage = .sparse(values: nil, pattern: nil)
            case "bf16"?: folderOutputStorage = .sparse(values: .BF16, pattern: nil)
            case "f32"?: folderOutputStorage = .sparse(values: .F32, pattern: nil)
            case let other?: throw PruningError("--dtype \(other) is not available for --output-format sparse (bf16, f32)")
            }
        case let f?:
            guard f == "hf" else { throw PruningError("unknown output format '\(f)' (hf, gguf, sparse)") }
            guard dtype == nil else {
                throw PruningError("--dtype applies to a GGUF input or to --output-format sparse; a Hugging Face folder written as hf keeps its own dtypes")
            }
            folderOutputStorage = .dense
        case nil:
            guard dtype == nil else {
                throw PruningError("--dtype applies to a GGUF input or to --output-format sparse; a Hugging Face folder is otherwise written in its own dtypes")
            }
            folderOutputStorage = nil
        }
    }
}

/// What a run produced: the driver's summary, the evaluation (if any), where it was written.
public struct PruningJobResult {
    public var summary: PruningSummary
    public var perplexity: PerplexityResult?
    public var zeroShot: [ZeroShotResult] = []
    public var output: URL?
    public var memoryEstimate: RunMemoryEstimate
    /// How the forward GEMMs ran (`ComputePrecision.backend`).
    public var computeBackend: String = ComputePrecision.float32.backend
    public var seconds: Double
}

/// One pruning run end to end: calibration → block-by-block pruning → optional evaluation → export.
/// The output folder appears only when everything succeeded (see `PrunedCheckpointWriter`).
public enum PruningJob {
    ///
    /// With `output`, the destination is checked first (nothing there, not inside the model, name short
    /// enough); stale work folders of dead runs for the same output are removed (each reported through
    /// `notice`), or with `resume` the one of the same identity is continued. A work folder of a different
    /// run is never resumed: the run stops with an error naming the difference.
    public static func run(_ o: PruningJobOptions, availableMemory: Int? = MemoryEstimate.availableBytes(),
                           progress: ProgressHandler? = nil, notice: ((String) -> Void)? = nil) throws -> PruningJobResult {
        let start = Date()
        if let output = o.output { try WorkFolders.checkDestination(output, input: o.model) }
        if o.resume && o.output == nil { throw PruningError("--resume needs --output (the run to continue is found beside it)") }
        let checkpoint = try LlamaCheckpoint(model: o.model)
        let c = checkpoint.configuration
        // Opened only when text is to be tokenized (token-id calibration and no evaluation need none).
        var openedTokenizer: Tokenizer?
        func textTokenizer() throws -> Tokenizer {
            if let t = openedTokenizer { return t }
            let t = try ModelInput.tokenizer(for: checkpoint, at: o.model, tokenizerDirectory: o.tokenizerDirectory)
            openedTokenizer = t
            return t
        }
        let isGGUF = checkpoint.source is GGUFWeights
        if o.resume && isGGUF {
            throw PruningError("--resume continues Hugging Face inputs only; a GGUF input is pruned from the start")
        }
        let seqlen = o.seqlen ?? Calibration.defaultSequenceLength(maxPositionEmbeddings: c.maxPositionEmbeddings)
        if seqlen > c.maxPositionEmbeddings {
            throw PruningError("--seqlen \(seqlen) exceeds the model's max_position_embeddings \(c.maxPositionEmbeddings)")
        }
        if let e = o.evaluation, let s = e.seqlen, s > c.maxPositionEmbeddings {
            throw PruningError("--eval-seqlen \(s) exceeds the model's max_position_embeddings \(c.maxPositionEmbeddings)")
        }
        // The tensors the blocks do not hold are copied to the output as they are: refuse NaN or ∞ there
        // as loading refuses it in the blocks, before any work.
        try checkpoint.checkNonBlockTensorsFinite()

        // Refuse a run that cannot fit before any work is done.
        let evalSeqlen = o.evaluation.map { $0.seqlen ?? Calibration.defaultSequenceLength(maxPositionEmbeddings: c.maxPositionEmbeddings) }
        let readsCalibration = o.method.needsCalibrationInputs || (o.planner?.needsCalibrationInputs ?? false)
        // A planning pass over activations for a method that reads none (OWL with magnitude) holds what
        // Wanda's block step holds: both activation buffers, the forward's temporaries, column statistics.
        let estimatedMethod: PruningMethod = readsCalibration && !o.method.needsCalibrationInputs ? WandaPruning() : o.method
        let estimate = RunMemoryEstimate.estimate(
            configuration: c, method: estimatedMethod, sampleCount: o.nsamples, sequenceLength: seqlen,
            inputs: .measuring(model: o.model, calibrationFile: o.calibrationFile, calibrationIsText: o.calibrationFormat != .tokens,
                               evaluation: o.evaluation.map { ($0.file, evalSeqlen!) }, writesOutput: o.output != nil,
                               prunedElementBytes: prunedElementBytes(checkpoint)),
            computePrecision: o.computePrecision)
        try estimate.check(availableBytes: availableMemory)
        if o.evaluation != nil || o.zeroShot != nil { _ = try textTokenizer() }   // a missing tokenizer fails before any pruning

        // Zero-shot data is read now, so a bad file fails before the pruning time is spent.
        let zeroShotSuite = try o.zeroShot.map { try ZeroShotSuite(options: $0) }

        var calibration: CalibrationSet? = nil
        if readsCalibration {
            guard let file = o.calibrationFile else {
                throw PruningError("\(o.method.needsCalibrationInputs ? o.method.name : o.planner!.name) needs calibration data: give --calibration-file")
            }
            let source = try o.calibrationFormat.source(file, field: o.calibrationField)
            if case .tokens(let m) = source {
                calibration = try Calibration.takeRows(of: m, nsamples: o.nsamples, seqlen: seqlen, vocabularySize: c.vocabSize)
            } else {
                let tokenizer = try textTokenizer()
                calibration = try Calibration.sample(
                    source, nsamples: o.nsamples, seqlen: seqlen, seed: o.seed,
                    encode: { tokenizer.encode($0) }, bosTokenID: nil)
            }
        }

        // A packed output is checked against the run's pattern (a planned run's patterns vary: detected).
        let packedPattern: SparseLayout? = o.planner != nil ? nil : o.pattern.packedLayout
        var ggufStorage = o.ggufOutputStorage
        if case .sparse(let d, nil) = ggufStorage { ggufStorage = .sparse(d, packedPattern) }
        var folderStorage = o.folderOutputStorage
        if folderStorage == nil && checkpoint.source is CompressedTensorsWeights { folderStorage = .sparse(values: nil, pattern: nil) }
        if case .sparse(let values, nil)? = folderStorage { folderStorage = .sparse(values: values, pattern: packedPattern) }

        // The weights are evaluated as they are (or would be) written: rounded to the output's storage
        // (a Hugging Face input: each pruned linear in its input dtype; a GGUF input: `ggufOutputStorage`),
        // so the reported perplexity is the written model's.
        let converter = try o.output.map { output in
            isGGUF ? try ConvertedCheckpointWriter(source: checkpoint, storage: ggufStorage, output: output,
                                                   tokenizerDirectory: o.tokenizerDirectory, atPoint: o.atPoint) : nil
        } ?? nil
        func rounded(_ block: DecoderBlockWeights) throws -> DecoderBlockWeights {
            if isGGUF { return try ggufStorage.round(block) }
            var b = block
            for kind in LinearKind.allCases {
                let dtype = checkpoint.storedDType(of: LlamaTensorNames.weight(kind, layer: block.layer)) ?? .F32
                b[kind] = Tensor(shape: b[kind].shape, data: try CheckpointStorage.safetensors(dtype).stored(b[kind].data, shape: b[kind].shape))
            }
            return b
        }
        func stored(_ t: Tensor) throws -> Tensor {
            isGGUF ? Tensor(shape: t.shape, data: try ggufStorage.stored(t.data, shape: t.shape)) : t
        }
        // The evaluation text is read and cut into windows now: a missing or broken --eval-file is an error
        // before hours of pruning, not after.
        var evaluationWindows: EvaluationWindows? = nil
        if let e = o.evaluation {
            let tokenizer = try textTokenizer()
            let evalSeqlen = e.seqlen ?? Calibration.defaultSequenceLength(maxPositionEmbeddings: c.maxPositionEmbeddings)
            evaluationWindows = try EvaluationWindows(dataset: e.dataset, file: e.file, seqlen: evalSeqlen, tokenizer: tokenizer)
            if let w = evaluationWindows, w.count == 0 {
                throw PerplexityError.noWindows(tokens: w.tokens.count, seqlen: w.seqlen)
            }
        }

        let pruningOptions = PruningOptions(pattern: o.pattern, seed: o.seed, computePrecision: o.computePrecision)
        var identitySettings = o.settings
        if o.computePrecision != .float32 { identitySettings["compute_dtype"] = o.computePrecision.rawValue }
        if let planner = o.planner {
            identitySettings["planner"] = planner.name
            identitySettings.merge(planner.settings) { _, plan in plan }
        }
        if let storage = folderStorage, storage != .dense { identitySettings["output_storage"] = "\(storage)" }
        var writer: PrunedCheckpointWriter? = nil
        var runCheckpoint: RunCheckpoint? = nil
        var resumedAt: Int? = nil
        if let output = o.output, !isGGUF {
            let identity = RunIdentity(
                toolVersion: o.toolVersion, model: o.model, method: o.method.name, settings: identitySettings,
                pattern: o.pattern.description, seed: o.seed, nsamples: calibration?.nsamples ?? o.nsamples,
                seqlen: calibration?.seqlen ?? seqlen,
                samplesPerForward: pruningOptions.resolvedSamplesPerForward(sampleCount: calibration?.nsamples ?? o.nsamples,
                                                                             sequenceLength: calibration?.seqlen ?? seqlen),
                calibrationHash: calibration?.hash, output: output)
            let adopt = try staleWorkFolder(for: output, identity: identity, resume: o.resume, notice: notice)
            let w = try PrunedCheckpointWriter(input: o.model, output: output, adopting: adopt, atPoint: o.atPoint,
                                               storage: folderStorage)
            let rc = try RunCheckpoint(folder: w.temporary, identity: identity)
            if adopt != nil {
                let done = try rc.resumePoint()?.nextBlock ?? 0
                try w.restoreStaged(blocks: 0..<done)
                resumedAt = done
                notice?("resuming \(output.path) after block \(done) of \(c.numHiddenLayers)")
            }
            writer = w
            runCheckpoint = rc
        }
        var keptBlocks: [DecoderBlockWeights] = []
        let summary = try BlockwisePruning.run(
            checkpoint: checkpoint, calibration: calibration, method: o.method,
            options: pruningOptions, progress: progress, checkpoints: runCheckpoint, planner: o.planner, atPoint: o.atPoint
        ) { block in
            if isGGUF { try converter?.stage(block) } else { try writer?.stage(block) }
            if (o.evaluation != nil || o.zeroShot != nil) && writer == nil { keptBlocks.append(try rounded(block)) }
        }

        var perplexity: PerplexityResult? = nil
        var zeroShot: [ZeroShotResult] = []
        if o.evaluation != nil || o.zeroShot != nil {
            // The model evaluated is the one written: with a Hugging Face output, the pruned blocks read back
            // from the staged files (so a resumed run's figure equals an uninterrupted one's); otherwise the
            // blocks kept in memory, rounded to the output's storage.
            var model: LlamaModel
            if let writer {
                model = try LlamaCheckpoint(configuration: c, source: writer.prunedWeights).loadModel()
            } else {
                model = try LlamaModel(
                    configuration: c, embeddings: try stored(try checkpoint.loadEmbeddings()), blocks: keptBlocks,
                    finalNorm: try stored(try checkpoint.loadFinalNorm()), head: try checkpoint.loadHead().map(stored))
            }
            keptBlocks = []
            model.computePrecision = o.computePrecision
            if let windows = evaluationWindows {
                perplexity = try Perplexity.evaluate(model: model, windows: windows, maxWindows: o.evaluationMaxWindows,
                                                     progress: progress)
            }
            if let suite = zeroShotSuite {
                zeroShot = try ZeroShotEvaluation.run(model: model, tokenizer: try textTokenizer(), suite: suite, progress: progress)
            }
            o.atPoint?("evaluated")
        }

        if writer != nil || converter != nil {
            var results: [String: Double] = [:]
            var notes = o.settings
            if let p = perplexity, let e = o.evaluation {
                // JSON has no infinity: a perplexity that overflowed is kept as a note.
                if p.perplexity.isFinite {
                    results["\(e.dataset.rawValue)_perplexity"] = p.perplexity
                } else {
                    notes["\(e.dataset.rawValue)_perplexity"] = "\(p.perplexity)"
                }
                results["\(e.dataset.rawValue)_seqlen"] = Double(p.seqlen)
                results["\(e.dataset.rawValue)_tokens"] = Double(p.tokens)
                results["\(e.dataset.rawValue)_windows"] = Double(p.windows)
            }
            results.merge(ZeroShotEvaluation.flatResults(zeroShot)) { _, new in new }
            notes.merge(o.method.runNotes) { _, method in method }
            notes.merge(o.planner?.settings ?? [:]) { _, plan in plan }
            notes["memory_estimate_bytes"] = String(estimate.totalBytes)
            // Which BLAS kernels produced these weights (the last bits depend on them).
            for (k, v) in BLASRuntime.current.record { notes["blas.\(k)"] = v }
            notes["compute"] = o.computePrecision.backend
            if let resumedAt { notes["resumed_at_block"] = String(resumedAt) }
            let record = PruningRecord(toolVersion: o.toolVersion, arguments: o.arguments,
                                       inputModel: o.model.path, summary: summary, results: results, notes: notes)
            if let writer { try writer.finish(record: record) }
            if let converter { try converter.finish(record: record) }
        }
        var result = PruningJobResult(summary: summary, perplexity: perplexity, zeroShot: zeroShot, output: o.output,
                                      memoryEstimate: estimate, seconds: Date().timeIntervalSince(start))
        result.computeBackend = o.computePrecision.backend
        return result
    }

    /// The stale work folder to continue (with `resume`, the one whose identity matches), after removing
    /// the others; each step reported through `notice`.
    static func staleWorkFolder(for output: URL, identity: RunIdentity, resume: Bool,
                                notice: ((String) -> Void)?) throws -> URL? {
        var adopt: URL? = nil
        for f in WorkFolders.list(for: output) {
            guard f.isStale else {
                notice?("\(f.url.path) belongs to process \(f.pid), which is still running; left alone")
                continue
            }
            let done = f.finishedBlocks.map { ", \($0) blocks finished" } ?? ""
            if resume && adopt == nil, let saved = RunCheckpoint.identity(in: f.url) {
                if let diff = identity.difference(from: saved) {
                    throw PruningError("cannot resume: the interrupted run in \(f.url.path) is a different run (\(diff)); rerun it with its own arguments, or remove it with 'llm-prune clean --output \(output.path)'")
                }
                adopt = f.url
                continue
            }
            try? FileManager.default.removeItem(at: f.url)
            notice?("removed \(f.url.path), the work folder of an interrupted run (process \(f.pid) is gone\(done))\(resume ? "" : "; --resume would have continued it")")
        }
        if resume && adopt == nil { notice?("nothing to resume for \(output.path); starting at block 0") }
        return adopt
    }

    /// Bytes per element of the pruned blocks a run with --output keeps staged (mapped, so resident once the
    /// export reads them back): the input's dtype for safetensors; float32 for a GGUF input, whose blocks are
    /// staged exactly (already rounded to the output's storage) whatever `--dtype` writes at the end.
    public static func prunedElementBytes(_ checkpoint: LlamaCheckpoint) -> Int {
        checkpoint.storedDType(of: LlamaTensorNames.weight(.q, layer: 0))?.byteSize ?? 4
    }
}
