import Foundation
import Tensor
import Tokenizers
import Llama
import Datasets
import Evaluation
import Pruning


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
    return try EvaluationWindows(
        dataset: kind, file: URL(fileURLWithPath: file), seqlen: seqlen,
        encode: { tokenizer.encode($0) }, bosTokenID: nil)
}

enum EvalCommand {
    static let spec = CommandSpec(
        name: "eval",
        abstract: "Perplexity of a checkpoint on WikiText-2 or a text file.",
        discussion: """
        WikiText-2 follows the Wanda/SparseGPT protocol: the test file's rows joined with "\\n\\n", tokenized
        once as transformers' tokenizer(text) does (a BOS only where the tokenizer's post-processor adds
        one: the LLaMA-2 family's does, SmolLM2's does not), cut into non-overlapping windows of --seqlen tokens (the remainder is
        dropped); perplexity = exp(mean next-token NLL). Perplexity depends on seqlen: it is printed with it.
        Progress (tokens/s, ETA) goes to stderr, the result to stdout.
        """,
        options: [
            OptionSpec(name: "model", valueName: "path", help: modelOptionHelp, required: true),
            tokenizerOption,
            OptionSpec(name: "dataset", valueName: "name", help: "wikitext2 (raw test file) or text (any UTF-8 text file, tokenized whole).", defaultValue: "wikitext2"),
            OptionSpec(name: "data-file", valueName: "path", help: "The text to evaluate on, e.g. wikitext-2-raw/wiki.test.raw.", required: true),
            OptionSpec(name: "seqlen", valueName: "n", help: "Window length in tokens.", computedDefault: "min(2048, max_position_embeddings)"),
            OptionSpec(name: "batch-size", valueName: "n", help: "Windows per forward pass.", computedDefault: "as many as fit 256 MiB of logits"),
            OptionSpec(name: "max-windows", valueName: "n", help: "Evaluate only the first n windows (for benchmarks; the perplexity is then partial).", computedDefault: "all"),
            OptionSpec(name: "json", valueName: nil, help: "Print one JSON object instead of text."),
            OptionSpec(name: "quiet", valueName: nil, help: "No progress on stderr."),
        ],
        examples: [
            "llm-prune eval --model ../shared/models/stories260K --data-file ../shared/text/wikitext-2-raw/wiki.test.raw",
            "llm-prune eval --model out/pruned --dataset text --data-file notes.txt --seqlen 256 --json",
        ])

    static func run(_ a: ParsedArguments) throws {
        let (checkpoint, tokenizer) = try openModel(try a.requiredString("model"), tokenizer: a.string("tokenizer"))
        let c = checkpoint.configuration
        let seqlen = try a.int("seqlen", range: 2...1_000_000) ?? Calibration.defaultSequenceLength(maxPositionEmbeddings: c.maxPositionEmbeddings)
        if seqlen > c.maxPositionEmbeddings {
            throw RunError("--seqlen \(seqlen) exceeds the model's max_position_embeddings \(c.maxPositionEmbeddings)")
        }
        let batch = try a.int("batch-size", range: 1...4096)
        let dataset = try a.choice("dataset", ["wikitext2", "text"])!
        let windows = try evaluationWindows(dataset: dataset, file: try a.requiredString("data-file"), seqlen: seqlen, tokenizer: tokenizer)
        let model = try checkpoint.loadModel()
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
