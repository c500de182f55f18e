import Foundation
import JSON
import FineTuning
import Datasets
import Evaluation
import Llama
import Pruning
import SafeTensors
import Tensor
import Tokenizers

/// Everything one `llm-prune finetune` run needs, validated by the caller's parser.
public struct FineTuningJobOptions {
    public var model: URL
    public var trainFile: URL
    public var trainFormat: CalibrationFormat
    public var trainField: String
    public var seqlen: Int
    public var lora: LoRAOptions
    public var training: TrainingOptions
    /// Write the merged checkpoint and the PEFT adapter here (must not exist yet); nil: train and report only.
    public var output: URL?
    /// Resumable states go to `<output>.checkpoints/step-N.safetensors` (or this folder).
    public var checkpointDirectory: URL?
    public var resume: URL?
    public var evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?, maxWindows: Int?)?
    public var arguments: [String]
    public var toolVersion: String
    /// Called at the writer's named points (`RunPointHook`).
    public var atPoint: RunPointHook? = nil

    public init(model: URL, trainFile: URL, trainFormat: CalibrationFormat = .text, trainField: String = "text",
                seqlen: Int, lora: LoRAOptions, training: TrainingOptions, output: URL?, checkpointDirectory: URL? = nil,
                resume: URL? = nil, evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?, maxWindows: Int?)? = nil,
                arguments: [String] = [], toolVersion: String) {
        self.model = model; self.trainFile = trainFile; self.trainFormat = trainFormat; self.trainField = trainField
        self.seqlen = seqlen; self.lora = lora; self.training = training; self.output = output
        self.checkpointDirectory = checkpointDirectory; self.resume = resume; self.evaluation = evaluation
        self.arguments = arguments; self.toolVersion = toolVersion
    }
}

public struct FineTuningJobResult {
    public var losses: [Double]
    public var evaluations: [FineTuningEvaluation]
    /// Final held-out perplexities: "before" (the input), "merged" (the model written; for plain mode the
    /// unmerged adapter, equal up to rounding), and in plain mode "remasked" (merged then multiplied by M).
    public var perplexities: [String: Double]
    public var tokensPerSecond: Double
    public var trainingSeconds: Double
    public var seconds: Double
    public var output: URL?
    /// Zeros of the seven linears in the input and in the written model.
    public var inputZeros: Int
    public var outputZeros: Int
}

/// One fine-tuning run: training text → LoRA training → evaluation → merged checkpoint + PEFT adapter.
public enum FineTuningJob {
    /// The tokens of the training file, read as `format` says: a plain text tokenized whole with one BOS;
    /// documents (c4, jsonl) each tokenized with a BOS and concatenated; a tokens file's rows concatenated.
    public static func trainingStream(_ source: CalibrationSource, tokenizer: Tokenizer) -> [Int] {
        let bos = tokenizer.bosTokenID.map { [$0] } ?? []
        switch source {
        case .text(let s, _): return bos + tokenizer.encode(s, addSpecialTokens: false)
        case .documents(let docs, _): return docs.flatMap { bos + tokenizer.encode($0, addSpecialTokens: false) }
        case .tokens(let m): return m.values
        }
    }

    /// The settings a resumed run must share with the run that saved the state.
    static func resumeSettings(_ o: FineTuningJobOptions, data: TrainingBlocks) -> [String: String] {
        ["model": o.model.standardizedFileURL.path, "train_source": data.source, "train_blocks": String(data.blocks.count),
         "seqlen": String(o.seqlen), "lora_rank": String(o.lora.rank), "lora_alpha": "\(o.lora.alpha)",
         "lora_dropout": "\(o.lora.dropout)", "lora_targets": o.lora.targets.map(\.rawValue).joined(separator: ","),
         "lora_mode": o.lora.mode.rawValue, "seed": String(o.lora.seed), "steps": String(o.training.steps),
         "lr": "\(o.training.learningRate)", "warmup": String(o.training.warmup),
         "grad_accum": String(o.training.gradientAccumulation), "max_grad_norm": "\(o.training.maxGradNorm)",
         "weight_decay": "\(o.training.weightDecay)"]
    }

    public static func run(_ o: FineTuningJobOptions, progress: ((String) -> Void)? = nil) throws -> FineTuningJobResult {
        let start = Date()
        try o.lora.validate()
        try o.training.validate()
        let checkpoint = try LlamaCheckpoint(directory: o.model)
        let c = checkpoint.configuration
        guard o.seqlen >= 2, o.seqlen <= c.maxPositionEmbeddings else {
            throw FineTuningError("--seqlen \(o.seqlen) must lie in 2...\(c.maxPositionEmbeddings) (max_position_embeddings)")
        }
        let tokenizer = try Tokenizer(directory: o.model)
        let source = try o.trainFormat.source(o.trainFile, field: o.trainField)
        let stream = trainingStream(source, tokenizer: tokenizer)
        if let bad = stream.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw FineTuningError("training token id \(bad) is outside the vocabulary 0..<\(c.vocabSize)")
        }
        let data = try TrainingBlocks(stream: stream, seqlen: o.seqlen, seed: o.lora.seed, source: source.name)
        let model = try checkpoint.loadModel()
        let trainer = try LoRATrainer(model: model, lora: o.lora, data: data, options: o.training)
        let settings = resumeSettings(o, data: data)
        if let r = o.resume {
            try trainer.resume(from: r, settings: settings)
            progress?("resumed at step \(trainer.step) from \(r.path)")
        }
        let inputZeros = model.blocks.reduce(0) { z, b in z + b.weights.reduce(0) { $0 + SparsityCheck.zeroCount($1.data) } }

        // Held-out evaluation of the adapted model (dropout off): the merged weights.
        let windows: EvaluationWindows? = try o.evaluation.map { e in
            try EvaluationWindows(dataset: e.dataset, file: e.file, seqlen: e.seqlen ?? min(2048, c.maxPositionEmbeddings),
                                  tokenizer: tokenizer)
        }
        func perplexity(_ blocks: [DecoderBlockWeights]) throws -> Double? {
            guard let windows else { return nil }
            let m = try LlamaModel(configuration: c, embeddings: model.embeddings, blocks: blocks, finalNorm: model.finalNorm, head: model.head)
            return try Perplexity.evaluate(model: m, windows: windows, maxWindows: o.evaluation?.maxWindows).perplexity
        }
        var perplexities: [String: Double] = [:]
        var evaluations: [FineTuningEvaluation] = []
        if trainer.step == 0, let p = try perplexity(model.blocks) {
            perplexities["before"] = p
            progress?("held-out perplexity before fine-tuning: \(format(p))")
        }

        let checkpoints = o.checkpointDirectory ?? o.output.map { URL(fileURLWithPath: $0.path + ".checkpoints") }
        let t0 = Date()
        let firstStep = trainer.step
        try trainer.train(progress: { p in
            progress?("step \(p.step)/\(p.steps) loss \(format(p.loss)) lr \(String(format: "%.3g", p.learningRate)) "
                      + "grad-norm \(String(format: "%.3g", p.gradNorm)) \(Int(p.tokensPerSecond)) tok/s ETA \(duration(p.secondsLeft))")
        }, checkpoint: { t in
            guard let dir = checkpoints else { return }
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let url = dir.appendingPathComponent("step-\(t.step).safetensors")
            try t.save(to: url, settings: settings)
            progress?("saved \(url.path)")
        }, evaluate: { t in
            t.adapters.training = false
            if let p = try perplexity(t.adapters.mergedBlocks()) {
                evaluations.append(FineTuningEvaluation(step: t.step, perplexity: p))
                progress?("step \(t.step): held-out perplexity \(format(p))")
            }
        })
        let trainingSeconds = Date().timeIntervalSince(t0)
        let trainedTokens = (trainer.step - firstStep) * o.training.gradientAccumulation * o.seqlen
        trainer.adapters.training = false

        let merged = trainer.adapters.mergedBlocks(remask: false)
        let remasked = o.lora.mode == .plain ? trainer.adapters.mergedBlocks(remask: true) : merged
        if let p = try perplexity(merged) {
            perplexities[o.lora.mode == .plain ? "unmerged" : "merged"] = p
            evaluations.append(FineTuningEvaluation(step: trainer.step, perplexity: p))
        }
        if o.lora.mode == .plain, let p = try perplexity(remasked) { perplexities["remasked"] = p }
        // The written model keeps the input's zeros: masked by construction, plain by re-masking.
        let written = remasked
        let outputZeros = written.reduce(0) { z, b in z + b.weights.reduce(0) { $0 + SparsityCheck.zeroCount($1.data) } }

        if let out = o.output {
            let writer = try PrunedCheckpointWriter(input: o.model, output: out, atPoint: o.atPoint)
            do {
                for b in written { try writer.stage(b) }
                try writeAdapter(trainer.adapters, base: o.model, to: writer.temporary.appendingPathComponent("adapter"))
                var record: PruningRecord
                if let data = try? Data(contentsOf: o.model.appendingPathComponent("pruning.json")),
                   let previous = try? PruningRecord.decode(data) {
                    record = previous
                } else {
                    let parameters = model.blocks.reduce(0) { $0 + $1.weights.reduce(0) { $0 + $1.count } }
                    record = PruningRecord(toolVersion: o.toolVersion, arguments: [], inputModel: o.model.path,
                                           summary: .unpruned(parameters: parameters, zeros: inputZeros))
                }
                var results: [String: Double] = [:]
                for (k, v) in perplexities { results["\(o.evaluation!.dataset.rawValue)_perplexity_\(k)"] = v }
                results["train_tokens_per_second"] = Double(trainedTokens) / max(trainingSeconds, 1e-9)
                results["train_seconds"] = trainingSeconds
                results["input_zeros"] = Double(inputZeros)
                results["output_zeros"] = Double(outputZeros)
                var s = settings
                s["written_model"] = o.lora.mode == .plain ? "merged, then re-masked with the input's zeros" : "merged W + s·(BA ⊙ M)"
                record.fineTuning = FineTuningRecord(arguments: o.arguments, inputModel: o.model.path, settings: s,
                                                     losses: trainer.losses, evaluations: evaluations, results: results)
                try writer.finish(record: record)
            } catch {
                writer.discard()
                throw error
            }
        }
        return FineTuningJobResult(losses: trainer.losses, evaluations: evaluations, perplexities: perplexities,
                                   tokensPerSecond: Double(trainedTokens) / max(trainingSeconds, 1e-9),
                                   trainingSeconds: trainingSeconds, seconds: Date().timeIntervalSince(start),
                                   output: o.output, inputZeros: inputZeros, outputZeros: outputZeros)
    }

    /// The adapter in PEFT's layout: `adapter_config.json` and `adapter_model.safetensors` with keys
    /// `base_model.model.model.layers.<l>.<module>.lora_A.weight` (r, in) and `.lora_B.weight` (out, r),
    /// float32. (PEFT applies a plain adapter: a masked-mode adapter loaded there is W + s·BA, not the
    /// masked model; the merged checkpoint is the masked model.)
    public static func writeAdapter(_ a: LoRAAdapters, base: URL, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var entries: [TensorEntry] = []
        for l in a.a.indices {
            for (t, kind) in a.options.targets.enumerated() {
                let prefix = "base_model.model.model.layers.\(l).\(kind.modulePath)"
                entries.append(TensorEntry(name: "\(prefix).lora_A.weight", dtype: .F32, shape: a.a[l][t].shape, data: .floats(a.a[l][t].data)))
                entries.append(TensorEntry(name: "\(prefix).lora_B.weight", dtype: .F32, shape: a.b[l][t].shape, data: .floats(a.b[l][t].data)))
            }
        }
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: dir.appendingPathComponent("adapter_model.safetensors"))
        let modules = a.options.targets.map { "\"\($0.modulePath.split(separator: ".").last!)\"" }.joined(separator: ", ")
        let json = """
        {
          "alpha_pattern": {},
          "auto_mapping": null,
          "base_model_name_or_path": \(jsonQuoted(base.standardizedFileURL.path)),
          "bias": "none",
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "layers_pattern": null,
          "layers_to_transform": null,
          "lora_alpha": \(a.options.alpha),
          "lora_dropout": \(a.options.dropout),
          "modules_to_save": null,
          "peft_type": "LORA",
          "r": \(a.options.rank),
          "rank_pattern": {},
          "revision": null,
          "target_modules": [\(modules)],
          "task_type": "CAUSAL_LM",
          "use_dora": false,
          "use_rslora": false
        }

        """
        try Data(json.utf8).write(to: dir.appendingPathComponent("adapter_config.json"))
    }

    static func format(_ x: Double) -> String { String(format: "%.4f", x) }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}
