import Foundation
import Tensor
import Tokenizers
import Llama
import Datasets
import Evaluation


/// Opens what every command needs from a model folder: the checked checkpoint and its tokenizer.
func openModel(_ path: String) throws -> (LlamaCheckpoint, Tokenizer) {
    let url = URL(fileURLWithPath: path)
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
        throw UsageError("model folder '\(path)' does not exist")
    }
    let checkpoint = try LlamaCheckpoint(directory: url)
    let tokenizer = try Tokenizer(directory: url)
    return (checkpoint, tokenizer)
}

/// Evaluation windows for `--dataset`/`--data-file`, tokenized with the model's tokenizer.
func evaluationWindows(dataset: String, file: String, seqlen: Int, tokenizer: Tokenizer) throws -> EvaluationWindows {
    guard let kind = EvaluationDataset(rawValue: dataset) else {
        throw UsageError("unknown dataset '\(dataset)' (wikitext2, text)")
    }
    return try EvaluationWindows(
        dataset: kind, file: URL(fileURLWithPath: file), seqlen: seqlen,
        encode: { tokenizer.encode($0, addSpecialTokens: false) }, bosTokenID: tokenizer.bosTokenID)
}

enum EvalCommand {
    static let spec = CommandSpec(
        name: "eval",
        abstract: "Perplexity of a checkpoint on WikiText-2 or a text file.",
        discussion: """
        WikiText-2 follows the Wanda/SparseGPT protocol: the test file's rows joined with "\\n\\n", tokenized
        once with one leading BOS, cut into non-overlapping windows of --seqlen tokens (the remainder is
        dropped); perplexity = exp(mean next-token NLL). Perplexity depends on seqlen: it is printed with it.
        Progress (tokens/s, ETA) goes to stderr, the result to stdout.
        """,
        options: [
            OptionSpec(name: "model", valueName: "dir", help: "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).", required: true),
            OptionSpec(name: "dataset", valueName: "name", help: "wikitext2 (raw test file) or text (any UTF-8 text file, one BOS for the whole file).", defaultValue: "wikitext2"),
            OptionSpec(name: "data-file", valueName: "path", help: "The text to evaluate on, e.g. wikitext-2-raw/wiki.test.raw.", required: true),
            OptionSpec(name: "seqlen", valueName: "n", help: "Window length in tokens.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "batch-size", valueName: "n", help: "Windows per forward pass.", computedDefault: "as many as fit 256 MiB of logits"),
            OptionSpec(name: "max-windows", valueName: "n", help: "Evaluate only the first n windows (for benchmarks; the perplexity is then partial).", computedDefault: "all"),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object instead of text."),
            OptionSpec(name: "quiet", valueName: nil, help: "No progress on stderr."),
            ProfileReport.option,
        ],
        examples: [
            "llm-prune eval --model ../shared/models/stories260K --data-file ../shared/text/wikitext-2-raw/wiki.test.raw",
            "llm-prune eval --model out/pruned --dataset text --data-file notes.txt --seqlen 256 --json",
        ])

    static func run(_ a: ParsedArguments) throws {
        let (checkpoint, tokenizer) = try openModel(try a.requiredString("model"))
        let c = checkpoint.configuration
        let seqlen = try a.int("seqlen", range: 2...1_000_000) ?? Calibration.defaultSequenceLength(maxPositionEmbeddings: c.maxPositionEmbeddings)
        let batch = try a.int("batch-size", range: 1...4096)
        let dataset = try a.choice("dataset", ["wikitext2", "text"])!
        let windows = try evaluationWindows(dataset: dataset, file: try a.requiredString("data-file"), seqlen: seqlen, tokenizer: tokenizer)
        ProfileReport.start(a)
        defer { ProfileReport.finish() }
        let model = try Profile.phase("loading") { try checkpoint.loadModel() }
        let progress = ProgressPrinter(quiet: a.flag("quiet"))
        let r = try Perplexity.evaluate(model: model, windows: windows, batchSize: batch,
                                        maxWindows: try a.int("max-windows", range: 1...Int.max), progress: progress.handle)
        if a.flag("json") {
            print(jsonLine(perplexityJSON(r, dataset: dataset)))
        } else {
            print(String(format: "perplexity %.4f  (%@, seqlen %d, %d tokens, %d windows, %.1f s, %.0f tokens/s)",
                         r.perplexity, dataset, r.seqlen, r.tokens, r.windows, r.seconds,
                         Double(r.windows * r.seqlen) / max(r.seconds, 1e-9)))
        }
    }

    static func perplexityJSON(_ r: PerplexityResult, dataset: String) -> [String: Any] {
        [
            "perplexity": r.perplexity, "seqlen": r.seqlen, "tokens": r.tokens, "windows": r.windows,
            "dropped_tokens": r.droppedTokens, "seconds": r.seconds, "dataset": dataset,
            "tokens_per_second": Double(r.windows * r.seqlen) / max(r.seconds, 1e-9),
            "peak_memory_bytes": peakResidentBytes(),
        ]
    }
}
