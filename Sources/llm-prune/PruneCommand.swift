import CommandLineArguments
import Foundation
import Tensor
import Llama
import Datasets
import Evaluation
import Pruning
import Runs

enum PruneCommand {
    static let methodNames = PruningMethods.names

    static let spec = CommandSpec(
        name: "prune",
        abstract: "Prune a checkpoint block by block and write a pruned checkpoint plus a report.",
        discussion: """
        Methods:
        \(PruningMethods.registered.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n"))

        Sparsity: a ratio such as 0.5 (unstructured, per output row), or N:M such as 2:4 or 4:8 (N kept of
        every M consecutive input weights). Only the seven linear layers of each decoder block are pruned;
        embeddings, norms and lm_head are kept. The next block is calibrated on the
        outputs of the already pruned blocks. With --output the result is written to a hidden work folder
        (.NAME.partial-PID beside it) and renamed at the end: a failed or interrupted run (Ctrl-C, SIGTERM,
        SIGHUP, a closed pipe, ...) leaves no output folder. The work folder keeps each finished block, so a run
        that was killed outright (SIGKILL, power loss) can be continued with --resume; any other run for the
        same --output, or 'llm-prune clean', removes such a leftover. Missing parent folders of --output are
        created. Progress per block on stderr.

        Exit status: 0 done, 1 run-time error (one line 'error: ...' on stderr), 64 usage error, 128+n killed
        by signal n (nothing left on disk).
        """,
        options: [
            OptionSpec(name: "model", valueName: "path", help: modelOptionHelp, required: true),
            tokenizerOption,
            OptionSpec(name: "method", valueName: "name", help: "Pruning method: \(methodNames.joined(separator: ", ")).", required: true),
            OptionSpec(name: "sparsity", valueName: "spec", help: "A ratio in [0, 1) such as 0.5, or N:M such as 2:4 or 4:8.", required: true),
            OptionSpec(name: "calibration-file", valueName: "path", help: "Calibration data (not needed by magnitude)."),
            OptionSpec(name: "calibration-format", valueName: "fmt", help: "c4 (.json/.json.gz lines with \"text\"), jsonl (see --calibration-field), text (plain text, random windows of the token stream), tokens (safetensors with int input_ids (nsamples, seqlen)).", defaultValue: "text"),
            OptionSpec(name: "calibration-field", valueName: "name", help: "The JSON field that holds the text, for --calibration-format jsonl.", defaultValue: "text"),
            OptionSpec(name: "nsamples", valueName: "n", help: "Calibration samples.", defaultValue: "128"),
            OptionSpec(name: "seqlen", valueName: "n", help: "Calibration sample length in tokens.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "seed", valueName: "n", help: "Seed of every random draw (calibration windows, Wanda++ rounds).", defaultValue: "0"),
        ] + PruningMethods.options.map(methodOptionSpec) + [
            OptionSpec(name: "owl", valueName: nil, help: "OWL (outlier-weighted layerwise sparsity): before pruning, a pass over the dense model counts each block's outliers (Wanda scores above --owl-m times the block's mean score) and gives blocks with more outliers a lower ratio, averaging --sparsity and spanning ±--owl-lambda; every linear of a block is then pruned at its block's ratio by --method (any method; needs --calibration-file). Unstructured ratios only: not with N:M."),
            OptionSpec(name: "owl-lambda", valueName: "x", help: "OWL: λ, the per-block ratios span --sparsity ± λ.", defaultValue: "0.08"),
            OptionSpec(name: "owl-m", valueName: "x", help: "OWL: M, a Wanda score above M times its block's mean counts as an outlier.", defaultValue: "5"),
            OptionSpec(name: "output", valueName: "dir", help: "Write the pruned checkpoint (HF layout + pruning.json) here; must not exist yet (its parent folders are created)."),
            OptionSpec(name: "output-format", valueName: "fmt", help: "hf (a Hugging Face folder), gguf (GGUF input only: one .gguf file with the input's metadata and tokenizer, the run record under llm_prune.record) or sparse (a Hugging Face folder whose pruned linears are packed in compressed-tensors' sparse-24-bitmask form for 2:4, sparse-bitmask otherwise; compressed-tensors <= 0.14.0.1 reads it, and transformers 4.x with it loads the 2:4 form). A Hugging Face input keeps its layout, shards and dtypes apart from the pruned linears.", computedDefault: "hf; for a Hugging Face input, as it is stored (a compressed-tensors folder stays sparse)"),
            OptionSpec(name: "dtype", valueName: "type", help: "How tensors are stored: for a GGUF input bf16, f16 or f32 (hf); bf16, f16, f32 or q8_0 (gguf: matrices; norms stay f32); bf16 or f32 (sparse); for a Hugging Face input only with sparse: the packed values' dtype. The reported perplexity is measured on the weights as written.", computedDefault: "bf16 for a GGUF input; the input's dtype for a Hugging Face one"),
            OptionSpec(name: "resume", valueName: nil, help: "Continue the killed run with the same arguments that was writing --output, from its last finished block (the result is bit-identical to an uninterrupted run); starts at block 0 when there is none."),
            OptionSpec(name: "eval-dataset", valueName: "name", help: "Evaluate the pruned model: wikitext2 or text.", defaultValue: "wikitext2"),
            OptionSpec(name: "eval-file", valueName: "path", help: "Text to evaluate the pruned model on (e.g. wiki.test.raw); no evaluation without it."),
            OptionSpec(name: "eval-seqlen", valueName: "n", help: "Evaluation window length.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "eval-windows", valueName: "n", help: "Evaluate only the first n windows (the perplexity is then partial; pruning.json records the count).", computedDefault: "all"),
            OptionSpec(name: "eval-tasks", valueName: "list", help: "Also score the pruned model on zero-shot tasks (as eval --tasks, e.g. all); the figures go into pruning.json."),
            OptionSpec(name: "eval-data-dir", valueName: "dir", help: "Folder of the zero-shot data files.", defaultValue: ZeroShotOptions.defaultDataDirectory),
            OptionSpec(name: "eval-limit", valueName: "n", help: "Zero-shot: only the first n documents of each task.", computedDefault: "all"),
            OptionSpec(name: "eval-batch-tokens", valueName: "n", help: "Zero-shot: padded tokens per forward pass.", defaultValue: String(ZeroShotOptions.defaultBatchTokens)),
            OptionSpec(name: "eval-no-special-tokens", valueName: nil, help: "Zero-shot: encode without special tokens (no BOS), as lm-eval 0.3 in the Wanda setup."),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object with the results instead of text."),
            OptionSpec(name: "quiet", valueName: nil, help: "No progress on stderr."),
            ComputeDtypeOption.spec,
            ProfileReport.option,
        ],
        examples: [
            "llm-prune prune --model ../shared/models/stories260K --method wanda --sparsity 2:4 \\\n      --calibration-file ../shared/text/wikitext-2/wiki.valid.tokens --nsamples 128 --seqlen 512 \\\n      --eval-file ../shared/text/wikitext-2-raw/wiki.test.raw --output out/stories-wanda-2of4",
            "llm-prune prune --model ../shared/models/stories260K --method sparsegpt --sparsity 0.5 \\\n      --calibration-file ../shared/calibration/stories260K-wikitext2valid-128x512-seed0.safetensors --calibration-format tokens --json",
        ])

    /// The method named `name` with its options from the command line, and its settings for the record.
    static func makeMethod(_ name: String, _ a: ParsedArguments) throws -> (PruningMethod, [String: String]) {
        guard methodNames.contains(name) else {
            throw UsageError("option '--method' must be one of \(methodNames.joined(separator: ", ")), got '\(name)'")
        }
        // Commands without these options (inspect) get the defaults: the estimate does not depend on them.
        var given = a.values.filter { key, _ in PruningMethods.options.contains { $0.name == key } }
        for o in PruningMethods.options where o.isFlag && a.flag(o.name) { given[o.name] = "" }
        let arguments = MethodArguments(values: given, sampleCount: try a.int("nsamples", range: 1...1_000_000) ?? 128)
        let method: PruningMethod
        do { method = try PruningMethods.make(name, arguments) } catch let e as MethodOptionError {
            throw UsageError(e.description)
        }
        return (method, method.settings)
    }

    /// The OWL planner `--owl` asks for (nil without it), its options checked.
    static func owlPlanner(_ a: ParsedArguments, pattern: SparsityPattern) throws -> OWLPlanner? {
        guard a.flag("owl") else {
            if a.values["owl-lambda"] != nil || a.values["owl-m"] != nil {
                throw UsageError("--owl-lambda and --owl-m need --owl")
            }
            return nil
        }
        if case .nm = pattern {
            throw UsageError("--owl sets unstructured ratios per block and does not apply to the N:M --sparsity \(pattern) (an N:M pattern is the same in every block)")
        }
        let lambda = try a.requiredDouble("owl-lambda")
        let m = try a.requiredDouble("owl-m")
        guard lambda >= 0, lambda < 0.5 else { throw UsageError("option '--owl-lambda' needs a number in [0, 0.5), got '\(a.values["owl-lambda"] ?? "")'") }
        guard m > 0 else { throw UsageError("option '--owl-m' needs a number > 0, got '\(a.values["owl-m"] ?? "")'") }
        return OWLPlanner(lambda: lambda, outlierMultiple: m)
    }

    /// A method's option as the parser and `--help` take it.
    static func methodOptionSpec(_ o: MethodOption) -> OptionSpec {
        guard let defaultText = o.defaultText else { return OptionSpec(name: o.name, valueName: o.valueName, help: o.help) }
        return Double(defaultText) != nil
            ? OptionSpec(name: o.name, valueName: o.valueName, help: o.help, defaultValue: defaultText)
            : OptionSpec(name: o.name, valueName: o.valueName, help: o.help, computedDefault: defaultText)
    }

    static func run(_ a: ParsedArguments) throws {
        let pattern: SparsityPattern
        do { pattern = try SparsityPattern(parsing: try a.requiredString("sparsity")) } catch {
            throw UsageError("option '--sparsity': \(error)")
        }
        let (method, settings) = try makeMethod(try a.requiredString("method"), a)
        if a.flag("ria-permute"), case .unstructured = pattern {
            throw UsageError("--ria-permute reorders channels for N:M groups; it does not apply to the unstructured --sparsity \(pattern)")
        }
        let planner = try owlPlanner(a, pattern: pattern)
        let format = try a.requiredChoice("calibration-format", of: CalibrationFormat.self)
        var evaluation: (dataset: EvaluationDataset, file: URL, seqlen: Int?)? = nil
        if let file = a.string("eval-file") {
            let ds = try a.requiredChoice("eval-dataset", of: EvaluationDataset.self)
            evaluation = (ds, URL(fileURLWithPath: file), try a.int("eval-seqlen", range: 2...1_000_000))
        }
        let options = PruningJobOptions(
            model: URL(fileURLWithPath: try a.requiredString("model")), method: method, pattern: pattern,
            calibrationFile: a.string("calibration-file").map { URL(fileURLWithPath: $0) },
            calibrationFormat: format, calibrationField: try a.requiredString("calibration-field"),
            nsamples: try a.requiredInt("nsamples", range: 1...1_000_000), seqlen: try a.int("seqlen", range: 2...1_000_000),
            seed: UInt64(try a.requiredInt("seed", range: 0...Int.max)), output: a.string("output").map { URL(fileURLWithPath: $0) },
            evaluation: evaluation, zeroShot: try zeroShotOptions(a, prefix: "eval-"), arguments: Array(CommandLine.arguments), toolVersion: toolVersion, settings: settings)
        var job = options
        job.evaluationMaxWindows = try a.int("eval-windows", range: 1...Int.max)
        if job.evaluationMaxWindows != nil && evaluation == nil {
            throw UsageError("--eval-windows needs --eval-file (the text to evaluate)")
        }
        let outputFormat = try a.choice("output-format", ["hf", "gguf", "sparse"])
        do { try job.setOutput(format: outputFormat, dtype: a.string("dtype")) } catch {
            throw UsageError("\(error)")
        }
        job.planner = planner
        job.tokenizerDirectory = a.string("tokenizer").map { URL(fileURLWithPath: $0) }
        job.resume = a.flag("resume")
        job.atPoint = TestPauses.hook
        job.computePrecision = try ComputeDtypeOption.parse(a, notice: { if !a.flag("quiet") { printError("note: \($0)") } })
        let progress = ProgressPrinter(quiet: a.flag("quiet"))
        ProfileReport.start(a)
        defer { ProfileReport.finish() }
        // Once the output is committed, a late signal no longer changes the outcome: exit 0.
        Signals.completedRunExitsNormally = true
        let r = try PruningJob.run(job, progress: progress.handle, notice: { printError("note: \($0)") })
        report(r, method: method.name, pattern: pattern, zeroShot: options.zeroShot, json: a.flag("json"))
    }

    static func report(_ r: PruningJobResult, method: String, pattern: SparsityPattern, zeroShot: ZeroShotOptions?, json: Bool) {
        let s = r.summary
        // Achieved sparsity per layer type, over all blocks.
        var zeros: [LinearKind: Int] = [:], counts: [LinearKind: Int] = [:]
        for b in s.blocks { for l in b.layers {
            zeros[l.kind, default: 0] += l.zeros
            counts[l.kind, default: 0] += l.shape.reduce(1, *)
        } }
        var perKind: [String: Double] = [:]
        for k in LinearKind.allCases {
            if let count = counts[k], count > 0 { perKind[k.rawValue] = Double(zeros[k, default: 0]) / Double(count) }
        }
        // Per block: achieved sparsity, and the planned patterns of its linears (one for OWL's plans).
        let perBlock = s.blocks.map { b -> Double in
            let count = b.layers.reduce(0) { $0 + $1.shape.reduce(1, *) }
            return count == 0 ? 0 : Double(b.layers.reduce(0) { $0 + $1.zeros }) / Double(count)
        }
        let plannedPerBlock = s.blocks.map { b -> String in
            var seen: [String] = []
            for k in LinearKind.allCases {
                let p = s.plan?["\(b.layer).\(k.rawValue)"] ?? pattern.description
                if !seen.contains(p) { seen.append(p) }
            }
            return seen.joined(separator: ", ")
        }
        if json {
            var o: [String: Any] = [
                "method": method, "sparsity": pattern.description, "achieved_sparsity": s.sparsity,
                "achieved_sparsity_by_layer_type": perKind, "seconds": r.seconds,
                "prune_seconds": s.seconds, "peak_memory_bytes": ResidentMemory.peakBytes(),
                "memory_estimate_bytes": r.memoryEstimate.totalBytes, "nsamples": s.sampleCount, "seqlen": s.sequenceLength,
                "seed": s.seed, "block_seconds": s.blocks.map(\.seconds), "compute": r.computeBackend,
                "achieved_sparsity_by_block": perBlock,
            ]
            if s.plan != nil { o["planned_sparsity_by_block"] = plannedPerBlock; o["planner"] = s.planner ?? "" }
            if let h = s.calibrationHash { o["calibration_hash"] = h }
            if let p = r.perplexity {
                o["perplexity"] = p.perplexity; o["eval_seqlen"] = p.seqlen; o["eval_tokens"] = p.tokens; o["eval_windows"] = p.windows
            }
            if let zo = zeroShot { o.merge(zeroShotJSON(r.zeroShot, options: zo)) { _, new in new } }
            if let out = r.output { o["output"] = out.path }
            print(jsonLine(o))
            return
        }
        print("method \(method), sparsity \(pattern.description): achieved \(String(format: "%.4f", s.sparsity)) over \(s.parameters) prunable weights in \(String(format: "%.1f", s.seconds)) s")
        for k in LinearKind.allCases {
            guard let fraction = perKind[k.rawValue] else { continue }
            print("  \(k.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)) \(String(format: "%.4f", fraction))")
        }
        if s.plan != nil {
            print("per block (\(s.planner ?? "plan")):")
            for (b, fraction) in zip(s.blocks, perBlock) {
                print("  block \(b.layer) \(String(format: "%.4f", fraction)) (planned \(plannedPerBlock[b.layer]))")
            }
        }
        if let p = r.perplexity {
            print(String(format: "perplexity %.4f (seqlen %d, %d tokens, %d windows)", p.perplexity, p.seqlen, p.tokens, p.windows))
        }
        if let zo = zeroShot { print(zeroShotTable(r.zeroShot, options: zo), terminator: "") }
        if let out = r.output { print("wrote \(out.path)") }
        print("peak memory \(formatBytes(ResidentMemory.peakBytes())), estimate \(formatBytes(r.memoryEstimate.totalBytes))")
    }
}
