import CommandLineArguments
import Foundation
import Tensor
import Tokenizers
import Llama
import Datasets
import Evaluation
import Pruning
import Runs


/// A run-time failure found by the command line itself: printed as one `error:` line, exit status 1.
struct RunError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

/// Opens what every command needs from a model folder or GGUF file: the checked checkpoint and its
/// tokenizer (`tokenizer`: a folder whose tokenizer.json replaces the model's own).
func openModel(_ path: String, tokenizer: String? = nil) throws -> (LlamaCheckpoint, Tokenizer) {
    let url = URL(fileURLWithPath: path)
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw UsageError("model '\(path)' does not exist (a Hugging Face folder or a .gguf file)")
    }
    return try ModelInput.open(url, tokenizerDirectory: tokenizer.map { URL(fileURLWithPath: $0) })
}

/// The `--model` option every command shares.
let modelOptionHelp = "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json) or a llama.cpp .gguf file (dequantized to float32 on load)."
/// The `--tokenizer` option.
let tokenizerOption = OptionSpec(name: "tokenizer", valueName: "dir", help: "Use the tokenizer.json (and tokenizer_config.json) in this folder instead of the model's own.")

/// Evaluation windows for `--dataset`/`--data-file`, tokenized with the model's tokenizer.
func evaluationWindows(dataset: String, file: String, seqlen: Int, tokenizer: Tokenizer) throws -> EvaluationWindows {
    guard let kind = EvaluationDataset(rawValue: dataset) else {
        throw UsageError("unknown dataset '\(dataset)' (wikitext2, text)")
    }
    return try EvaluationWindows(dataset: kind, file: URL(fileURLWithPath: file), seqlen: seqlen, tokenizer: tokenizer)
}

/// The WikiText-2 test file in the shared data, relative to the repository root (where commands run).
let defaultWikiText2File = "../shared/text/wikitext-2-raw/wiki.test.raw"

enum EvalCommand {
    static let spec = CommandSpec(
        name: "eval",
        abstract: "Perplexity on WikiText-2 or a text file, and/or zero-shot accuracy on lm-eval tasks.",
        discussion: """
        Perplexity (with --data-file): WikiText-2 follows the Wanda/SparseGPT protocol: the test file's rows
        joined with "\\n\\n", tokenized once as transformers' tokenizer(text) does (a BOS only where the tokenizer's post-processor
        adds one: the LLaMA-2 family's does, SmolLM2's does not), cut into non-overlapping windows of --seqlen
        tokens (the remainder is dropped); perplexity = exp(mean next-token NLL). Perplexity depends on seqlen:
        it is printed with it.
        Zero-shot (with --tasks): lm-evaluation-harness's zero-shot multiple-choice scoring (prompts, choices,
        _encode_pair tokenization, left truncation to the window, acc / acc_norm and their standard errors) on
        the data in --data-dir, laid out as ../shared/data/zeroshot (its README is the specification). Tasks:
        \(ZeroShotTasks.names.joined(separator: ", ")); "all" = the pruning papers' eight (\(ZeroShotTasks.paperTasks.joined(separator: ", "))).
        HellaSwag's original file is not in the shared data: its scores come from a derived copy and are
        marked approximate. By default requests are encoded the lm-eval 0.4 way (the tokenizer's
        post-processor adds its special tokens, e.g. BOS); --no-special-tokens is lm-eval 0.3 as the Wanda
        paper ran it. Both can run in one invocation. Progress (rate, ETA) goes to stderr, the results to stdout.
        """,
        options: [
            OptionSpec(name: "model", valueName: "path", help: modelOptionHelp, required: true),
            tokenizerOption,
            OptionSpec(name: "dataset", valueName: "name", help: "wikitext2 (raw test file) or text (any UTF-8 text file, tokenized whole).", defaultValue: "wikitext2"),
            OptionSpec(name: "data-file", valueName: "path", help: "The text to evaluate perplexity on, e.g. wikitext-2-raw/wiki.test.raw; no perplexity without it or an explicit --dataset wikitext2 (which then reads \(defaultWikiText2File))."),
            OptionSpec(name: "seqlen", valueName: "n", help: "Perplexity window length in tokens.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "batch-size", valueName: "n", help: "Perplexity windows per forward pass.", computedDefault: "as many as fit 256 MiB of logits"),
            OptionSpec(name: "max-windows", valueName: "n", help: "Evaluate only the first n windows (for benchmarks; the perplexity is then partial).", computedDefault: "all"),
            OptionSpec(name: "tasks", valueName: "list", help: "Zero-shot tasks, comma-separated (e.g. boolq,rte,hellaswag,winogrande,arc_easy,arc_challenge,openbookqa,piqa), or all."),
            OptionSpec(name: "data-dir", valueName: "dir", help: "Folder of the zero-shot data files.", defaultValue: ZeroShotOptions.defaultDataDirectory),
            OptionSpec(name: "limit", valueName: "n", help: "Score only the first n documents of each task (the accuracy is then partial).", computedDefault: "all"),
            OptionSpec(name: "batch-tokens", valueName: "n", help: "Zero-shot: padded tokens per forward pass (memory grows with it).", defaultValue: String(ZeroShotOptions.defaultBatchTokens)),
            OptionSpec(name: "max-length", valueName: "n", help: "Zero-shot window: longer requests lose tokens on the left (lm-eval's max_length).", computedDefault: "max_position_embeddings"),
            OptionSpec(name: "no-special-tokens", valueName: nil, help: "Zero-shot: encode without the tokenizer's special tokens (no BOS), as lm-eval 0.3 in the Wanda setup."),
            OptionSpec(name: "write-scores", valueName: "path", help: "Zero-shot: also write every document's per-choice log-likelihoods as JSON lines (for agreement checks)."),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object instead of text."),
            OptionSpec(name: "quiet", valueName: nil, help: "No progress on stderr."),
            ComputeDtypeOption.spec,
            ProfileReport.option,
        ],
        examples: [
            "llm-prune eval --model ../shared/models/stories260K --data-file ../shared/text/wikitext-2-raw/wiki.test.raw",
            "llm-prune eval --model out/pruned --dataset text --data-file notes.txt --seqlen 256 --json",
            "llm-prune eval --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --tasks all --limit 200 --dataset wikitext2",
        ])

    static func run(_ a: ParsedArguments) throws {
        let (checkpoint, tokenizer) = try openModel(try a.requiredString("model"), tokenizer: a.string("tokenizer"))
        let c = checkpoint.configuration
        // An explicit --dataset wikitext2 alone means the shared test file; --dataset text needs its file.
        var dataFile = a.string("data-file")
        if dataFile == nil, let d = a.values["dataset"] {
            guard d == "wikitext2" else { throw UsageError("--dataset \(d) needs --data-file") }
            dataFile = defaultWikiText2File
        }
        let zeroShot = try zeroShotOptions(a, prefix: "")
        guard dataFile != nil || zeroShot != nil else {
            throw UsageError("nothing to evaluate: give --data-file (perplexity) and/or --tasks (zero-shot)")
        }
        var windows: EvaluationWindows? = nil
        let dataset = try a.requiredChoice("dataset", ["wikitext2", "text"])
        if let dataFile {
            let seqlen = try a.int("seqlen", range: 2...1_000_000) ?? Calibration.defaultSequenceLength(maxPositionEmbeddings: c.maxPositionEmbeddings)
            if seqlen > c.maxPositionEmbeddings {
                throw RunError("--seqlen \(seqlen) exceeds the model's max_position_embeddings \(c.maxPositionEmbeddings)")
            }
            windows = try evaluationWindows(dataset: dataset, file: dataFile, seqlen: seqlen, tokenizer: tokenizer)
        }
        let batch = try a.int("batch-size", range: 1...4096)
        let maxWindows = try a.int("max-windows", range: 1...Int.max)
        let precision = try ComputeDtypeOption.parse(a, notice: { if !a.flag("quiet") { printError("note: \($0)") } })
        ProfileReport.start(a)
        defer { ProfileReport.finish() }
        var model = try Profile.phase("loading") { try checkpoint.loadModel() }
        model.computePrecision = precision
        let progress = ProgressPrinter(quiet: a.flag("quiet"))
        let r = try windows.map {
            try Perplexity.evaluate(model: model, windows: $0, batchSize: batch, maxWindows: maxWindows, progress: progress.handle)
        }
        let z = try zeroShot.map { try ZeroShotEvaluation.run(model: model, tokenizer: tokenizer, options: $0, progress: progress.handle) }
        if let z, let path = a.string("write-scores") { try writeScores(z, to: path) }
        if a.flag("json") {
            var o = r.map { perplexityJSON($0, dataset: dataset) } ?? ["peak_memory_bytes": ResidentMemory.peakBytes()]
            o["compute"] = precision.backend
            if let z, let zo = zeroShot { o.merge(zeroShotJSON(z, options: zo)) { _, new in new } }
            print(jsonLine(o))
            return
        }
        if let r {
            print(String(format: "perplexity %.4f  (%@, seqlen %d, %d tokens, %d windows, %.1f s, %.0f tokens/s)",
                         r.perplexity, dataset, r.seqlen, r.tokens, r.windows, r.seconds,
                         Double(r.windows * r.seqlen) / max(r.seconds, 1e-9)))
        }
        if let z, let zo = zeroShot { print(zeroShotTable(z, options: zo), terminator: "") }
    }

    static func perplexityJSON(_ r: PerplexityResult, dataset: String) -> [String: Any] {
        [
            "perplexity": r.perplexity, "seqlen": r.seqlen, "tokens": r.tokens, "windows": r.windows,
            "dropped_tokens": r.droppedTokens, "seconds": r.seconds, "dataset": dataset,
            "tokens_per_second": Double(r.windows * r.seqlen) / max(r.seconds, 1e-9),
            "peak_memory_bytes": ResidentMemory.peakBytes(),
        ]
    }
}

/// The zero-shot options of `eval` (prefix "": --tasks, --data-dir, --limit, --batch-tokens, --max-length,
/// --no-special-tokens) or `prune` (prefix "eval-": --eval-tasks, ...); nil when no tasks are asked for.
func zeroShotOptions(_ a: ParsedArguments, prefix p: String) throws -> ZeroShotOptions? {
    guard let list = a.string(p + "tasks") else { return nil }
    let tasks: [String]
    do { tasks = try ZeroShotOptions.parseTasks(list) } catch { throw UsageError("option '--\(p)tasks': \(error)") }
    return ZeroShotOptions(
        tasks: tasks, dataDirectory: URL(fileURLWithPath: a.string(p + "data-dir") ?? ZeroShotOptions.defaultDataDirectory),
        limit: try a.int(p + "limit", range: 1...Int.max),
        batchTokens: try a.int(p + "batch-tokens", range: 1...1_000_000) ?? ZeroShotOptions.defaultBatchTokens,
        addSpecialTokens: !a.flag(p + "no-special-tokens"), maxLength: try a.int(p + "max-length", range: 2...1_000_000))
}

/// The results table: task, metric, value, stderr, docs (and a note on approximate or partial figures).
func zeroShotTable(_ results: [ZeroShotResult], options: ZeroShotOptions) -> String {
    func cell(_ text: String, _ width: Int, right: Bool = false) -> String {
        let pad = String(repeating: " ", count: max(0, width - text.count))
        return right ? pad + text : text + pad
    }
    func line(_ task: String, _ metric: String, _ value: String, _ stderr: String, _ docs: String, _ note: String) -> String {
        cell(task, 14) + " " + cell(metric, 9) + " " + cell(value, 8, right: true) + " " + cell(stderr, 8, right: true)
            + " " + cell(docs, 6, right: true) + "  " + note + "\n"
    }
    var s = line("task", "metric", "value", "stderr", "docs", "note")
    for r in results {
        var notes: [String] = []
        if r.isApproximate { notes.append("approximate: derived data, not lm-eval's file") }
        if options.limit != nil { notes.append("first \(r.documents) docs only") }
        for m in r.metrics {
            s += line(r.isApproximate ? r.task + "~" : r.task, m.metric.rawValue, String(format: "%.4f", m.value),
                      m.stderr.map { String(format: "%.4f", $0) } ?? "N/A", String(r.documents), notes.joined(separator: "; "))
        }
    }
    if let mean = ZeroShotEvaluation.meanAccuracy(results), results.count > 1 {
        let approx = results.contains { $0.isApproximate }
        s += line("mean", "acc", String(format: "%.4f", mean), "", "",
                  "over \(results.count) tasks" + (approx ? " (includes approximate hellaswag~)" : ""))
    }
    let seconds = results.reduce(0) { $0 + $1.seconds }, docs = results.reduce(0) { $0 + $1.documents }
    s += String(format: "zero-shot: %d docs in %.1f s (%.2f docs/s), %@\n", docs, seconds, Double(docs) / max(seconds, 1e-9),
                options.addSpecialTokens ? "special tokens as the tokenizer adds them (lm-eval 0.4)" : "no special tokens (lm-eval 0.3 / Wanda)")
    return s
}

func zeroShotJSON(_ results: [ZeroShotResult], options: ZeroShotOptions) -> [String: Any] {
    var tasks: [String: Any] = [:]
    for r in results {
        var t: [String: Any] = ["docs": r.documents, "approximate": r.isApproximate, "seconds": r.seconds,
                                "docs_per_second": Double(r.documents) / max(r.seconds, 1e-9)]
        for m in r.metrics {
            t[m.metric.rawValue] = m.value
            t[m.metric.rawValue + "_stderr"] = m.stderr ?? NSNull()
        }
        tasks[r.task] = t
    }
    var o: [String: Any] = ["zeroshot": tasks, "zeroshot_special_tokens": options.addSpecialTokens,
                            "zeroshot_limit": options.limit ?? NSNull()]
    if let mean = ZeroShotEvaluation.meanAccuracy(results) { o["zeroshot_mean_acc"] = mean }
    return o
}

/// One JSON line per document: task, index, gold, prediction, per-choice log-likelihoods and is-greedy.
func writeScores(_ results: [ZeroShotResult], to path: String) throws {
    var text = ""
    for r in results {
        for (i, d) in r.details.enumerated() {
            text += jsonLine(["task": r.task, "doc": i, "gold": d.gold, "prediction": d.prediction,
                              "loglikelihoods": d.logLikelihoods.map(\.value), "is_greedy": d.logLikelihoods.map(\.isGreedy)]) + "\n"
        }
    }
    do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
        throw ZeroShotDataError(file: path, "cannot write: \(error.localizedDescription)")
    }
}
