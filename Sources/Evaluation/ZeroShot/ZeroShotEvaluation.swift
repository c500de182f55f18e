import Foundation
import Tensor
import Tokenizers
import Llama

/// How a zero-shot run is set up (the `--tasks` family of options).
public struct ZeroShotOptions: Sendable {
    public var tasks: [String]
    /// The folder laid out as `../shared/data/zeroshot` (one subfolder per task).
    public var dataDirectory: URL
    /// Only the first `limit` documents of each task (lm-eval's `--limit`).
    public var limit: Int?
    public var batchTokens: Int
    /// true: encode with the tokenizer's post-processor (lm-eval 0.4 default: BOS for LLaMA tokenizers);
    /// false: no special tokens (lm-eval 0.3 as the Wanda paper ran it).
    public var addSpecialTokens: Bool
    /// lm-eval's `max_length`; nil: the model's `max_position_embeddings`.
    public var maxLength: Int?

    public static let defaultDataDirectory = "../shared/data/zeroshot"
    public static let defaultBatchTokens = 2048

    public init(tasks: [String], dataDirectory: URL, limit: Int? = nil, batchTokens: Int = defaultBatchTokens,
                addSpecialTokens: Bool = true, maxLength: Int? = nil) {
        self.tasks = tasks; self.dataDirectory = dataDirectory; self.limit = limit
        self.batchTokens = batchTokens; self.addSpecialTokens = addSpecialTokens; self.maxLength = maxLength
    }

    /// Parses a comma-separated task list ("all" = the papers' eight); unknown names are an error naming them.
    public static func parseTasks(_ list: String) throws -> [String] {
        let names = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if names == ["all"] { return ZeroShotTasks.paperTasks }
        let unknown = names.filter { ZeroShotTasks.named($0) == nil }
        if names.isEmpty || !unknown.isEmpty {
            throw ZeroShotDataError(file: "task list", "unknown task(s) \(unknown.joined(separator: ", ")); known: \(ZeroShotTasks.names.joined(separator: ", ")), or all")
        }
        return names
    }
}

/// The documents of every task of a run, read and checked before any model time is spent.
public struct ZeroShotSuite {
    public var options: ZeroShotOptions
    public var tasks: [(task: any ZeroShotTask.Type, documents: [MultipleChoiceDocument], isApproximate: Bool)]

    /// Reads every task's data (the first `limit` documents of each); a bad file is an error here.
    public init(options o: ZeroShotOptions) throws {
        options = o
        tasks = []
        for name in o.tasks {
            guard let task = ZeroShotTasks.named(name) else {
                throw ZeroShotDataError(file: "--tasks", "unknown task \(name)")
            }
            let (docs, approximate) = try task.load(dataDirectory: o.dataDirectory)
            tasks.append((task, o.limit.map { Array(docs.prefix($0)) } ?? docs, approximate))
        }
    }
}

public enum ZeroShotEvaluation {
    /// Reads the tasks' data, then scores them task by task.
    public static func run(model: LlamaModel, tokenizer: Tokenizer, options o: ZeroShotOptions,
                           progress: ProgressHandler? = nil) throws -> [ZeroShotResult] {
        try run(model: model, tokenizer: tokenizer, suite: try ZeroShotSuite(options: o), progress: progress)
    }

    /// Scores a read suite task by task. Progress: stage "zeroshot <task>", unit "docs".
    public static func run(model: LlamaModel, tokenizer: Tokenizer, suite: ZeroShotSuite,
                           progress: ProgressHandler? = nil) throws -> [ZeroShotResult] {
        let o = suite.options
        let scorer = LogLikelihoodScorer(model: model, maxLength: o.maxLength, batchTokens: o.batchTokens)
        let encoder = RequestEncoder(tokenizer: tokenizer, addSpecialTokens: o.addSpecialTokens)
        var results: [ZeroShotResult] = []
        for (k, entry) in suite.tasks.enumerated() {
            let stage = "zeroshot \(entry.task.name)", total = entry.documents.count
            let detail = "task \(k + 1)/\(suite.tasks.count)"
            progress?(ProgressUpdate(stage: stage, completed: 0, total: total, unit: "docs", detail: detail))
            results.append(try ZeroShotScoring.evaluate(
                task: entry.task.name, metrics: entry.task.metrics, documents: entry.documents,
                isApproximate: entry.isApproximate, scorer: scorer, encoder: encoder,
                progress: { progress?(ProgressUpdate(stage: stage, completed: $0, total: total, unit: "docs", detail: detail)) }))
        }
        return results
    }

    /// Flat figures for a run record: `zeroshot_<task>_<metric>`, `…_<metric>_stderr`, `…_docs`, and
    /// `zeroshot_mean_acc` over the tasks.
    public static func flatResults(_ results: [ZeroShotResult]) -> [String: Double] {
        var out: [String: Double] = [:]
        for r in results {
            for m in r.metrics {
                out["zeroshot_\(r.task)_\(m.metric.rawValue)"] = m.value
                if let s = m.stderr { out["zeroshot_\(r.task)_\(m.metric.rawValue)_stderr"] = s }
            }
            out["zeroshot_\(r.task)_docs"] = Double(r.documents)
            if r.isApproximate { out["zeroshot_\(r.task)_approximate"] = 1 }
        }
        if let mean = meanAccuracy(results) { out["zeroshot_mean_acc"] = mean }
        return out
    }

    /// The mean of the tasks' `acc` (the papers' "Mean" column).
    public static func meanAccuracy(_ results: [ZeroShotResult]) -> Double? {
        let accs = results.compactMap { $0.value(.acc) }
        return accs.isEmpty ? nil : accs.reduce(0, +) / Double(accs.count)
    }
}
