import Foundation
import Tensor
import Datasets

/// Anything that maps token windows to next-token logits: (B, T) ids → (B, T, V) logits.
public protocol CausalLanguageModel {
    var vocabularySize: Int { get }
    func logits(_ tokens: [[Int]]) throws -> Tensor
}

/// The result of a perplexity run. `perplexity = exp(nll / predictedTokens)`: the mean next-token
/// negative log-likelihood over every position of every window but its last (the Wanda/SparseGPT
/// protocol: each window of `seqlen` tokens predicts its own `seqlen − 1` next tokens).
public struct PerplexityResult: Sendable, Equatable {
    public var perplexity: Double
    /// Total negative log-likelihood in nats over `predictedTokens` predictions.
    public var nll: Double
    public var predictedTokens: Int
    public var seqlen: Int
    /// Tokens of the encoded text (with the special tokens the tokenizer adds), windows evaluated, tokens dropped at the end.
    public var tokens: Int
    public var windows: Int
    public var droppedTokens: Int
    public var seconds: Double
}

public enum PerplexityError: Error, CustomStringConvertible {
    case noWindows(tokens: Int, seqlen: Int)
    case nonFiniteLoss(window: Int)
    case badLogits(expected: [Int], got: [Int])

    public var description: String {
        switch self {
        case .noWindows(let n, let s): return "the text has \(n) tokens: fewer than one window of \(s)"
        case .nonFiniteLoss(let w): return "window \(w) produced a non-finite loss (NaN or infinite logits): are the weights finite?"
        case .badLogits(let e, let g): return "model returned logits of shape \(g), expected \(e)"
        }
    }
}

public enum Perplexity {
    /// Sum over positions t < T−1 of −log softmax(logits[b, t])[tokens[b][t+1]], in float64.
    /// `logits` is (B, T, V).
    public static func negativeLogLikelihood(logits: Tensor, tokens: [[Int]]) -> Double {
        let b = tokens.count, t = tokens.first?.count ?? 0, v = logits.shape.last ?? 0
        var partial = [Double](repeating: 0, count: b * max(t - 1, 0))
        logits.data.withUnsafeBufferPointer { l in
            partial.withUnsafeMutableBufferPointer { out in
                parallelFor(b * max(t - 1, 0), minimumPerThread: 64) { i in
                    let s = i / (t - 1), p = i % (t - 1)
                    let row = l.baseAddress! + (s * t + p) * v
                    var m = -Float.infinity
                    for j in 0..<v { m = max(m, row[j]) }
                    var sum = 0.0
                    for j in 0..<v { sum += Double(expf(row[j] - m)) }
                    let target = tokens[s][p + 1]
                    out[i] = (Double(m) + log(sum)) - Double(row[target])
                }
            }
        }
        return partial.reduce(0, +)
    }

    /// How many windows to run at once so that the (B, T, V) logits stay near `logitBudgetBytes`.
    public static func batchSize(seqlen: Int, vocabularySize: Int, logitBudgetBytes: Int = 256 << 20) -> Int {
        max(1, min(64, logitBudgetBytes / max(1, seqlen * vocabularySize * 4)))
    }

    /// Perplexity of `model` over `windows` (only the first `maxWindows` when given, for benchmarks),
    /// batched; reports progress in tokens.
    public static func evaluate(
        model: CausalLanguageModel, windows: EvaluationWindows, batchSize: Int? = nil,
        maxWindows: Int? = nil, progress: ProgressHandler? = nil
    ) throws -> PerplexityResult {
        let start = Date()
        let n = min(windows.count, maxWindows ?? .max), seqlen = windows.seqlen
        guard n > 0 else { throw PerplexityError.noWindows(tokens: windows.tokens.count, seqlen: seqlen) }
        let batch = batchSize ?? Self.batchSize(seqlen: seqlen, vocabularySize: model.vocabularySize)
        var nll = 0.0
        var done = 0
        while done < n {
            let end = min(n, done + batch)
            let ids = (done..<end).map { Array(windows[$0]) }
            let logits = try model.logits(ids)
            let expected = [ids.count, seqlen, model.vocabularySize]
            guard logits.shape == expected else { throw PerplexityError.badLogits(expected: expected, got: logits.shape) }
            let chunk = negativeLogLikelihood(logits: logits, tokens: ids)
            guard chunk.isFinite else { throw PerplexityError.nonFiniteLoss(window: done) }
            nll += chunk
            done = end
            progress?(ProgressUpdate(stage: "eval", completed: done * seqlen, total: n * seqlen, unit: "tokens"))
        }
        let predicted = n * (seqlen - 1)
        return PerplexityResult(
            perplexity: exp(nll / Double(predicted)), nll: nll, predictedTokens: predicted, seqlen: seqlen,
            tokens: windows.tokens.count, windows: n, droppedTokens: windows.droppedTokenCount,
            seconds: Date().timeIntervalSince(start))
    }
}
