import Foundation

/// One document of a multiple-choice task as lm-eval scores it: one log-likelihood request per choice
/// (a shared context and `" " + choice` as continuation, or — WinoGrande — one context per choice and a
/// shared continuation), and the gold choice.
public struct MultipleChoiceDocument: Sendable, Equatable {
    public var requests: [LogLikelihoodRequest]
    /// The choices' strings without the leading delimiter: `acc_norm` divides each log-likelihood by
    /// the number of Unicode code points of its choice (Python `len`).
    public var choices: [String]
    public var gold: Int

    public init(requests: [LogLikelihoodRequest], choices: [String], gold: Int) {
        self.requests = requests
        self.choices = choices
        self.gold = gold
    }

    /// The usual form: one context, continuation `" " + choice` for each choice (lm-eval's default
    /// `target_delimiter`).
    public init(context: String, choices: [String], gold: Int) {
        self.init(requests: choices.map { LogLikelihoodRequest(context: context, continuation: " " + $0) },
                  choices: choices, gold: gold)
    }
}

/// The metrics lm-eval reports for these tasks.
public enum ZeroShotMetric: String, Sendable, CaseIterable {
    /// 1 when the choice of highest log-likelihood is gold (first index on ties, as `np.argmax`).
    case acc
    /// 1 when the choice of highest log-likelihood per character of the choice is gold.
    case accNorm = "acc_norm"
}

/// A zero-shot task: its lm-eval name, the metrics lm-eval defines for it, and a reader of its data files
/// (below `../shared/data/zeroshot`, whose README is the specification). Adding a task is one small type
/// conforming to this and a line in `ZeroShotTasks.all`.
public protocol ZeroShotTask {
    /// lm-eval's task name, e.g. "arc_easy".
    static var name: String { get }
    static var metrics: [ZeroShotMetric] { get }
    /// The documents in file order (lm-eval's order). `isApproximate` is set when the data is not the
    /// split lm-eval reads, so the scores only approximate lm-eval's.
    static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool)
}

public enum ZeroShotTasks {
    public static let all: [any ZeroShotTask.Type] = [
        BoolQ.self, RTE.self, SuperGLUERTE.self, HellaSwag.self, WinoGrande.self, ARCEasy.self,
        ARCChallenge.self, OpenBookQA.self, PIQA.self,
    ]
    public static var names: [String] { all.map { $0.name } }

    /// The Wanda / Wanda++ papers' seven tasks (plus PIQA), in their tables' order.
    public static let paperTasks = ["boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa", "piqa"]

    public static func named(_ name: String) -> (any ZeroShotTask.Type)? {
        all.first { $0.name == name }
    }
}

/// A per-task result: each metric's mean over the documents with lm-eval's standard error of the mean
/// (sample standard deviation / √n; nil for fewer than 2 documents).
public struct ZeroShotResult: Sendable {
    public var task: String
    public var documents: Int
    public var isApproximate: Bool
    public var metrics: [(metric: ZeroShotMetric, value: Double, stderr: Double?)]
    /// Per document: each choice's log-likelihood and is-greedy, the gold index, and the acc prediction.
    public var details: [(logLikelihoods: [LogLikelihood], gold: Int, prediction: Int)]
    public var seconds: Double

    public func value(_ m: ZeroShotMetric) -> Double? { metrics.first { $0.metric == m }?.value }
}

public enum ZeroShotScoring {
    /// argmax with the first index winning ties (`np.argmax`).
    public static func argmax(_ x: [Double]) -> Int {
        var best = 0
        for i in x.indices where x[i] > x[best] { best = i }
        return best
    }

    /// lm-eval's `mean_stderr`: sample standard deviation (n − 1) over √n.
    public static func meanStandardError(_ x: [Double]) -> Double? {
        guard x.count >= 2 else { return nil }
        let n = Double(x.count), mean = x.reduce(0, +) / n
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        return (variance / n).squareRoot()
    }

    /// The per-document metric values and predictions from each document's choice log-likelihoods.
    public static func result(task: String, metrics: [ZeroShotMetric], documents: [MultipleChoiceDocument],
                              scores: [[LogLikelihood]], isApproximate: Bool, seconds: Double) -> ZeroShotResult {
        var values: [ZeroShotMetric: [Double]] = [:]
        var details: [(logLikelihoods: [LogLikelihood], gold: Int, prediction: Int)] = []
        for (doc, ll) in zip(documents, scores) {
            let lls = ll.map(\.value)
            let prediction = argmax(lls)
            details.append((ll, doc.gold, prediction))
            for m in metrics {
                let pick: Int
                switch m {
                case .acc: pick = prediction
                case .accNorm: pick = argmax(zip(lls, doc.choices).map { $0 / Double($1.unicodeScalars.count) })
                }
                values[m, default: []].append(pick == doc.gold ? 1 : 0)
            }
        }
        let summary = metrics.map { m -> (metric: ZeroShotMetric, value: Double, stderr: Double?) in
            let v = values[m] ?? []
            return (m, v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count), meanStandardError(v))
        }
        return ZeroShotResult(task: task, documents: documents.count, isApproximate: isApproximate,
                              metrics: summary, details: details, seconds: seconds)
    }

    /// Encodes, scores and summarizes `documents` of one task. `progress` receives documents finished.
    public static func evaluate(
        task: String, metrics: [ZeroShotMetric], documents: [MultipleChoiceDocument], isApproximate: Bool,
        scorer: LogLikelihoodScorer, encoder: RequestEncoder, progress: ((Int) -> Void)? = nil
    ) throws -> ZeroShotResult {
        let start = Date()
        let encoded = try documents.map { try $0.requests.map(encoder.encode) }
        let scores = try scorer.score(encoded, progress: progress)
        return result(task: task, metrics: metrics, documents: documents, scores: scores,
                      isApproximate: isApproximate, seconds: Date().timeIntervalSince(start))
    }
}
