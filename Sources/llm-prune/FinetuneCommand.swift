import CommandLineArguments
import Foundation
import Llama
import Datasets
import Pruning
import Runs
import FineTuning

enum FinetuneCommand {
    static let spec = CommandSpec(
        name: "finetune",
        abstract: "LoRA fine-tuning of a (pruned) checkpoint that keeps its zeros; writes a merged checkpoint and a PEFT adapter.",
        discussion: """
        Trains LoRA adapters (A: Kaiming-uniform as PEFT, seeded; B: zero; base weights frozen) on the
        causal-LM loss of --train-file cut into --seqlen blocks visited in a seeded order, with AdamW
        (PyTorch's defaults), a linear schedule with --warmup, gradient accumulation and clipping. The
        backward recomputes each block (memory: one block's activations plus one seqlen×hidden input per block).
        --lora-mode masked (default) multiplies the update by the layer's mask M (W ≠ 0) in the forward, so
        the merged W + s·(BA ⊙ M) keeps every zero; plain trains PEFT's dense adapter and reports the
        perplexity of the unmerged adapter and of the merged model re-masked to the input's zeros (the model
        written). --output gets the merged checkpoint in the input's dtype with pruning.json extended by the
        fine-tuning record, and adapter/ with adapter_config.json and adapter_model.safetensors in PEFT's
        layout. --save-every writes resumable states to <output>.checkpoints/step-N.safetensors; --resume
        continues one with bit-identical results. Progress (loss, tokens/s, ETA) on stderr.
        """,
        options: [
            OptionSpec(name: "model", valueName: "dir", help: "Hugging Face checkpoint folder (usually pruned) to fine-tune.", required: true),
            OptionSpec(name: "train-file", valueName: "path", help: "Training data.", required: true),
            OptionSpec(name: "train-format", valueName: "fmt", help: "text (tokenized whole with one BOS), c4 (.json/.json.gz lines with \"text\"), jsonl (see --train-field), tokens (safetensors int input_ids, rows concatenated); each document gets a BOS.", defaultValue: "text"),
            OptionSpec(name: "train-field", valueName: "name", help: "The JSON field that holds the text, for --train-format jsonl.", defaultValue: "text"),
            OptionSpec(name: "steps", valueName: "n", help: "Optimizer steps.", required: true),
            OptionSpec(name: "seqlen", valueName: "n", help: "Tokens per training block.", computedDefault: "min(1024, max_position_embeddings)"),
            OptionSpec(name: "lora-rank", valueName: "r", help: "LoRA rank.", defaultValue: "8"),
            OptionSpec(name: "lora-alpha", valueName: "x", help: "LoRA alpha; the update is scaled by alpha / rank.", defaultValue: "16"),
            OptionSpec(name: "lora-dropout", valueName: "p", help: "Dropout on the adapters' input while training.", defaultValue: "0.05"),
            OptionSpec(name: "lora-targets", valueName: "list", help: "Comma-separated linears to adapt among q, k, v, o, gate, up, down.", defaultValue: "q,v"),
            OptionSpec(name: "lora-mode", valueName: "mode", help: "masked (update ⊙ mask, merge keeps the zeros) or plain (PEFT's dense adapter).", defaultValue: "masked"),
            OptionSpec(name: "lr", valueName: "x", help: "Peak learning rate.", defaultValue: "1e-4"),
            OptionSpec(name: "warmup", valueName: "n", help: "Linear warmup steps (then linear decay to 0).", defaultValue: "5"),
            OptionSpec(name: "grad-accum", valueName: "k", help: "Micro-batches (one block each) per optimizer step.", defaultValue: "1"),
            OptionSpec(name: "max-grad-norm", valueName: "x", help: "Clip the global gradient norm (0: no clipping).", defaultValue: "1"),
            OptionSpec(name: "weight-decay", valueName: "x", help: "AdamW weight decay.", defaultValue: "0.01"),
            OptionSpec(name: "seed", valueName: "n", help: "Seed of A's initialization, the data order and the dropout masks.", defaultValue: "0"),
            OptionSpec(name: "output", valueName: "dir", help: "Write the merged checkpoint and adapter/ here; must not exist yet."),
            OptionSpec(name: "save-every", valueName: "n", help: "Write a resumable state every n steps (0: never).", defaultValue: "0"),
            OptionSpec(name: "checkpoint-dir", valueName: "dir", help: "Where --save-every writes.", computedDefault: "<output>.checkpoints"),
            OptionSpec(name: "resume", valueName: "file", help: "Continue from a state written by --save-every (same settings)."),
            OptionSpec(name: "eval-dataset", valueName: "name", help: "Held-out evaluation: wikitext2 or text.", defaultValue: "wikitext2"),
            OptionSpec(name: "eval-file", valueName: "path", help: "Held-out text (e.g. wiki.test.raw); no evaluation without it."),
            OptionSpec(name: "eval-seqlen", valueName: "n", help: "Evaluation window length.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "eval-windows", valueName: "n", help: "Evaluate only the first n windows.", computedDefault: "all"),
            OptionSpec(name: "eval-every", valueName: "n", help: "Also evaluate every n steps (0: before and after only).", defaultValue: "0"),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object with the results instead of text."),
            OptionSpec(name: "quiet", valueName: nil, help: "No progress on stderr."),
        ],
        examples: [
            "llm-prune finetune --model out/stories-wanda-2of4 --train-file ../shared/text/wikitext-2/wiki.valid.tokens \\\n      --steps 50 --seqlen 256 --lora-dropout 0 --eval-file ../shared/text/wikitext-2-raw/wiki.test.raw \\\n      --output out/stories-wanda-2of4-lora",
        ])

    static func run(_ a: ParsedArguments) throws {
        let model = URL(fileURLWithPath: try a.requiredString("model"))
        var targets: [LinearKind] = []
        for word in try a.requiredString("lora-targets").split(separator: ",", omittingEmptySubsequences: false) {
            let name = word.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_proj", with: "")
            guard let k = LinearKind(rawValue: name) else {
                throw UsageError("option '--lora-targets': '\(word)' is not one of q, k, v, o, gate, up, down")
            }
            if !targets.contains(k) { targets.append(k) }
        }
        let mode = try a.requiredChoice("lora-mode", of: LoRAMode.self)
        let format = try a.requiredChoice("train-format", of: CalibrationFormat.self)
        let lora = LoRAOptions(rank: try a.requiredInt("lora-rank", range: 1...65_536), alpha: try a.requiredDouble("lora-alpha"),
                               dropout: try a.requiredDouble("lora-dropout"), targets: targets, mode: mode,
                               seed: UInt64(try a.requiredInt("seed", range: 0...Int.max)))
        let training = TrainingOptions(
            steps: try a.requiredInt("steps", range: 1...100_000_000), learningRate: try a.requiredDouble("lr"),
            warmup: try a.requiredInt("warmup"), gradientAccumulation: try a.requiredInt("grad-accum", range: 1...1_000_000),
            maxGradNorm: try a.requiredDouble("max-grad-norm"), weightDecay: try a.requiredDouble("weight-decay"),
            evalEvery: try a.requiredInt("eval-every"), saveEvery: try a.requiredInt("save-every"))
        do { try lora.validate(); try training.validate() } catch let e as FineTuningError { throw UsageError(e.description) }
        let seqlen = try a.int("seqlen", range: 2...1_000_000)
            ?? min(1024, try LlamaCheckpoint(directory: model).configuration.maxPositionEmbeddings)
        var evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?, maxWindows: Int?)? = nil
        if let file = a.string("eval-file") {
            let ds = try a.requiredChoice("eval-dataset", of: EvaluationDataset.self)
            evaluation = (ds, URL(fileURLWithPath: file), try a.int("eval-seqlen", range: 2...1_000_000),
                          try a.int("eval-windows", range: 1...Int.max))
        }
        var options = FineTuningJobOptions(
            model: model, trainFile: URL(fileURLWithPath: try a.requiredString("train-file")), trainFormat: format,
            trainField: try a.requiredString("train-field"), seqlen: seqlen, lora: lora, training: training,
            output: a.string("output").map { URL(fileURLWithPath: $0) },
            checkpointDirectory: a.string("checkpoint-dir").map { URL(fileURLWithPath: $0) },
            resume: a.string("resume").map { URL(fileURLWithPath: $0) }, evaluation: evaluation,
            arguments: Array(CommandLine.arguments), toolVersion: toolVersion)
        options.atPoint = TestPauses.hook
        let quiet = a.flag("quiet")
        let r = try FineTuningJob.run(options, progress: { line in if !quiet { printError(line) } })
        if a.flag("json") {
            var o: [String: Any] = [
                "steps": r.losses.count, "losses": r.losses, "final_loss": r.losses.last ?? 0,
                "train_tokens_per_second": r.tokensPerSecond, "train_seconds": r.trainingSeconds, "seconds": r.seconds,
                "lora_mode": mode.rawValue, "input_zeros": r.inputZeros, "output_zeros": r.outputZeros,
                "peak_memory_bytes": ResidentMemory.peakBytes(),
            ]
            for (k, v) in r.perplexities { o["perplexity_\(k)"] = v }
            if !r.evaluations.isEmpty { o["evaluations"] = r.evaluations.map { ["step": $0.step, "perplexity": $0.perplexity] as [String: Any] } }
            if let out = r.output { o["output"] = out.path }
            print(jsonLine(o))
            return
        }
        print(String(format: "%d steps, final loss %.4f, %.0f tokens/s over %.1f s", r.losses.count, r.losses.last ?? .nan,
                     r.tokensPerSecond, r.trainingSeconds))
        for k in ["before", "merged", "unmerged", "remasked"] {
            if let p = r.perplexities[k] { print(String(format: "perplexity %@ %.4f", k, p)) }
        }
        print("zeros in the seven linears: input \(r.inputZeros), output \(r.outputZeros)")
        if let out = r.output { print("wrote \(out.path) (adapter in \(out.appendingPathComponent("adapter").path))") }
    }
}
