import Foundation
import Tensor
import Tokenizers
import Llama

/// One log-likelihood request (lm-eval's `loglikelihood(context, continuation)`).
public struct LogLikelihoodRequest: Sendable, Equatable {
    public var context: String
    public var continuation: String
    public init(context: String, continuation: String) {
        self.context = context
        self.continuation = continuation
    }
}

/// A request as token ids: the model reads `context + continuation` and is scored on `continuation`.
public struct EncodedRequest: Sendable, Equatable {
    public var context: [Int]
    public var continuation: [Int]
    public init(context: [Int], continuation: [Int]) {
        self.context = context
        self.continuation = continuation
    }
}

/// The score of one request: Σ log p(continuation token | everything before it) in nats, and whether
/// every continuation token is the model's argmax there (lm-eval's `is_greedy`).
public struct LogLikelihood: Sendable, Equatable {
    public var value: Double
    public var isGreedy: Bool
    public init(value: Double, isGreedy: Bool) {
        self.value = value
        self.isGreedy = isGreedy
    }
}

public enum LogLikelihoodError: Error, CustomStringConvertible {
    case continuationTooLong(tokens: Int, maxLength: Int)
    case emptyContextWithoutPrefixToken
    case nonFinite(document: Int)

    public var description: String {
        switch self {
        case .continuationTooLong(let n, let m): return "a continuation of \(n) tokens does not fit the model window of \(m) tokens"
        case .emptyContextWithoutPrefixToken: return "an empty context needs a BOS or EOS token to condition on, and the tokenizer has neither"
        case .nonFinite(let d): return "document \(d) got a non-finite log-likelihood (NaN or infinite logits): are the weights finite?"
        }
    }
}

/// lm-eval's request tokenization (`_encode_pair`, the same in v0.3 and v0.4):
/// trailing spaces of the context move to the front of the continuation; then
/// `context = encode(context)`, `continuation = encode(context + continuation)[len(context):]` —
/// the continuation's tokens are what the whole string has beyond the context's token count, so a BPE merge
/// across the boundary is scored the way lm-eval scores it, not as `encode(continuation)`.
///
/// `addSpecialTokens` true encodes with the tokenizer's post-processor (lm-eval 0.4 with `add_bos_token`
/// unset: a LLaMA tokenizer prepends BOS); false is lm-eval 0.3 / the Wanda setup (`add_special_tokens=False`,
/// no BOS). An empty context is lm-eval 0.4's special case: the context is the single prefix token (BOS,
/// else EOS) and the continuation is encoded alone without special tokens.
public struct RequestEncoder {
    public let tokenizer: Tokenizer
    public let addSpecialTokens: Bool

    public init(tokenizer: Tokenizer, addSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.addSpecialTokens = addSpecialTokens
    }

    public func encode(_ r: LogLikelihoodRequest) throws -> EncodedRequest {
        if r.context.isEmpty {
            guard let prefix = tokenizer.bosTokenID ?? tokenizer.eosTokenID else {
                throw LogLikelihoodError.emptyContextWithoutPrefixToken
            }
            return EncodedRequest(context: [prefix], continuation: tokenizer.encode(r.continuation, addSpecialTokens: false))
        }
        var context = r.context, continuation = r.continuation
        // Python's `context.rstrip()`-length difference: trailing whitespace of any kind moves.
        let scalars = Array(context.unicodeScalars)
        var cut = scalars.count
        while cut > 0 && isPythonWhitespace(scalars[cut - 1]) { cut -= 1 }
        if cut < scalars.count {
            var head = String.UnicodeScalarView(), tail = String.UnicodeScalarView()
            head.append(contentsOf: scalars[..<cut])
            tail.append(contentsOf: scalars[cut...])
            context = String(head)
            continuation = String(tail) + continuation
        }
        let whole = tokenizer.encode(context + continuation, addSpecialTokens: addSpecialTokens)
        let ctx = tokenizer.encode(context, addSpecialTokens: addSpecialTokens)
        return EncodedRequest(context: ctx, continuation: Array(whole.dropFirst(min(ctx.count, whole.count))))
    }
}

/// Python's `str.isspace` for one code point (what `strip`/`rstrip` without arguments remove).
public func isPythonWhitespace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
        return true
    default:
        return false
    }
}

/// Python's `str.strip()`.
public func pythonStrip(_ s: String) -> String {
    let scalars = Array(s.unicodeScalars)
    var lo = 0, hi = scalars.count
    while lo < hi && isPythonWhitespace(scalars[lo]) { lo += 1 }
    while hi > lo && isPythonWhitespace(scalars[hi - 1]) { hi -= 1 }
    if lo == 0 && hi == scalars.count { return s }
    var view = String.UnicodeScalarView()
    view.append(contentsOf: scalars[lo..<hi])
    return String(view)
}

/// Scores log-likelihood requests with a LLaMA model, lm-eval's way, but faster:
///
/// * the model input of a request is `(context + continuation)[-(maxLength + 1):][:-1]` (left truncation
///   to the window) and its score is the sum of the log-softmax values of the continuation's tokens at
///   their positions, as lm-eval computes it;
/// * the requests of one document (its choices) share their leading tokens — usually the whole context
///   but its last token: that shared prefix is run once, and its keys and values serve every choice
///   (`KeyValuePrefix`); lm-eval runs the context again for each choice;
/// * documents go in batches of similar length (sorted by prefix length, padded to at most
///   `batchTokens` tokens per pass);
/// * only the scored positions go through the LM head, `headRows` rows at a time, so no (tokens × vocab)
///   logit matrix is held beyond one chunk.
public struct LogLikelihoodScorer {
    public let model: LlamaModel
    /// The window: lm-eval's `max_length` (the model's `max_position_embeddings` by default).
    public let maxLength: Int
    /// Padded tokens per forward pass (prefix pass and continuation pass each).
    public let batchTokens: Int
    public let headRows: Int

    public init(model: LlamaModel, maxLength: Int? = nil, batchTokens: Int = 2048, headRows: Int = 64) {
        self.model = model
        self.maxLength = maxLength ?? model.configuration.maxPositionEmbeddings
        self.batchTokens = max(1, batchTokens)
        self.headRows = max(1, headRows)
    }

    /// One request laid out for the model: its input ids (after truncation) and how many of its last
    /// positions are scored, with the target ids.
    struct Laid {
        var input: [Int]
        var targets: [Int]
    }

    /// A document's requests split into the shared prefix and one suffix per scored request.
    struct Plan {
        var prefix: [Int]
        /// Per request: index into the document's requests, suffix ids, targets (the suffix's last positions).
        var rows: [(request: Int, suffix: [Int], targets: [Int])]
        var requestCount: Int
        var cost: Int { prefix.count + rows.reduce(0) { $0 + $1.suffix.count } }
    }

    func lay(_ r: EncodedRequest) throws -> Laid {
        if r.continuation.count > maxLength {
            throw LogLikelihoodError.continuationTooLong(tokens: r.continuation.count, maxLength: maxLength)
        }
        let whole = r.context + r.continuation
        let input = Array(whole.suffix(maxLength + 1).dropLast())
        return Laid(input: input, targets: r.continuation)
    }

    func plan(_ requests: [EncodedRequest]) throws -> Plan {
        let laid = try requests.map(lay)
        let scored = laid.indices.filter { !laid[$0].targets.isEmpty }
        guard let first = scored.first else { return Plan(prefix: [], rows: [], requestCount: requests.count) }
        // The longest common prefix of every scored input, but never into a scored position.
        var p = laid[first].input.count - laid[first].targets.count
        for i in scored {
            let x = laid[i].input
            p = min(p, x.count - laid[i].targets.count)
            var j = 0
            let ref = laid[first].input
            while j < p && x[j] == ref[j] { j += 1 }
            p = j
        }
        let prefix = Array(laid[first].input.prefix(p))
        let rows = scored.map { i in (request: i, suffix: Array(laid[i].input.dropFirst(p)), targets: laid[i].targets) }
        return Plan(prefix: prefix, rows: rows, requestCount: requests.count)
    }

    /// Scores every document's requests; the result has the documents' shape. `progress` gets the count of
    /// documents finished (in the order batches complete).
    public func score(_ documents: [[EncodedRequest]], progress: ((Int) -> Void)? = nil) throws -> [[LogLikelihood]] {
        let plans = try documents.map(plan)
        var results = plans.map { [LogLikelihood](repeating: LogLikelihood(value: 0, isGreedy: true), count: $0.requestCount) }
        // Longest prefixes first, so a batch pads little; ties by total cost.
        let order = plans.indices.sorted {
            (plans[$0].prefix.count, plans[$0].cost, -$0) > (plans[$1].prefix.count, plans[$1].cost, -$1)
        }
        var done = 0
        var i = 0
        while i < order.count {
            // Grow the batch while both padded passes stay within the token budget.
            var batch = [order[i]]
            var maxPrefix = plans[order[i]].prefix.count
            var rowCount = plans[order[i]].rows.count
            var maxSuffix = plans[order[i]].rows.map(\.suffix.count).max() ?? 0
            var j = i + 1
            while j < order.count {
                let next = plans[order[j]]
                let mp = max(maxPrefix, next.prefix.count), rc = rowCount + next.rows.count
                let ms = max(maxSuffix, next.rows.map(\.suffix.count).max() ?? 0)
                if mp * (batch.count + 1) > batchTokens || rc * ms > batchTokens { break }
                batch.append(order[j]); maxPrefix = mp; rowCount = rc; maxSuffix = ms
                j += 1
            }
            try run(batch, plans: plans, into: &results)
            done += batch.count
            progress?(done)
            i = j
        }
        return results
    }

    /// One batch: the prefix pass for the documents that have a prefix, then every row's suffix.
    private func run(_ batch: [Int], plans: [Plan], into results: inout [[LogLikelihood]]) throws {
        let withPrefix = batch.filter { !plans[$0].prefix.isEmpty }
        var prefixIndex: [Int: Int] = [:]
        for (k, d) in withPrefix.enumerated() { prefixIndex[d] = k }
        var rows: [[Int]] = [], rowPrefix: [Int?] = [], owners: [(doc: Int, row: Int)] = []
        for d in batch {
            for (r, row) in plans[d].rows.enumerated() {
                rows.append(row.suffix); rowPrefix.append(prefixIndex[d]); owners.append((d, r))
            }
        }
        if rows.isEmpty { return }
        let maxPrefix = withPrefix.map { plans[$0].prefix.count }.max() ?? 0
        let s = rows.map(\.count).max()!
        let rope = model.rope(length: maxPrefix + s)
        let prefix = withPrefix.isEmpty ? nil : try model.keyValuePrefix(withPrefix.map { plans[$0].prefix }, rope: rope)
        let hidden = try model.hiddenStates(continuing: rows, prefixRows: rowPrefix, prefix: prefix, rope: rope)

        // The scored positions: row q's last `targets.count` suffix positions.
        var sources: [Int] = [], targets: [Int] = [], rowOf: [Int] = []
        for (q, o) in owners.enumerated() {
            let row = plans[o.doc].rows[o.row]
            let start = row.suffix.count - row.targets.count
            for (k, t) in row.targets.enumerated() {
                sources.append(q * s + start + k); targets.append(t); rowOf.append(q)
            }
        }
        let (logp, greedy) = tokenLogProbabilities(hidden: hidden, sources: sources, targets: targets)
        var sums = [Double](repeating: 0, count: rows.count)
        var allGreedy = [Bool](repeating: true, count: rows.count)
        for k in 0..<sources.count {
            sums[rowOf[k]] += logp[k]
            if !greedy[k] { allGreedy[rowOf[k]] = false }
        }
        for (q, o) in owners.enumerated() {
            guard sums[q].isFinite else { throw LogLikelihoodError.nonFinite(document: o.doc) }
            results[o.doc][plans[o.doc].rows[o.row].request] = LogLikelihood(value: sums[q], isGreedy: allGreedy[q])
        }
    }

    /// log softmax(head(h[source]))[target] (float64 log-sum-exp) and whether the target is the argmax
    /// (first maximum on ties, as `torch.argmax`), for each (source row of `hidden`, target) pair.
    func tokenLogProbabilities(hidden: Tensor, sources: [Int], targets: [Int]) -> ([Double], [Bool]) {
        let c = model.configuration.hiddenSize, v = model.vocabularySize
        let w = model.head ?? model.embeddings
        let n = sources.count
        var logp = [Double](repeating: 0, count: n), greedy = [Bool](repeating: false, count: n)
        var slabs = HeadSlabs(rowsPerSlab: headRows, maxRows: n, channels: c, vocabulary: v, precision: model.computePrecision,
                              softcap: model.configuration.architecture.finalLogitSoftcap)
        hidden.data.withUnsafeBufferPointer { hp in
            w.data.withUnsafeBufferPointer { wp in
                logp.withUnsafeMutableBufferPointer { op in
                    greedy.withUnsafeMutableBufferPointer { gp in
                        slabs.forEach(hidden: hp.baseAddress!, head: wp.baseAddress!, rows: n, source: { sources[$0] }) { start, count, l in
                            parallelFor(count, minimumPerThread: 8) { r in
                                let row = l + r * v
                                var best = 0
                                for j in 1..<v where row[j] > row[best] { best = j }
                                let target = targets[start + r]
                                op[start + r] = Double(row[target]) - CrossEntropy.logSumExp(row, count: v)
                                gp[start + r] = best == target
                            }
                        }
                    }
                }
            }
        }
        return (logp, greedy)
    }
}
