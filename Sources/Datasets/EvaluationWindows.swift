import Foundation
import Tokenizers

/// The text a perplexity evaluation runs on.
public enum EvaluationDataset: String, CaseIterable, Sendable {
    /// A WikiText raw file (normally `wiki.test.raw` of WikiText-2): the evaluation string of
    /// `TextReader.wikiTextEvaluationString(at:)`, the Wanda / SparseGPT protocol.
    case wikitext2
    /// Any plain text file, taken whole and byte for byte (`TextReader.plainText(at:)`): the file is one
    /// document, tokenized once (with the special tokens the tokenizer adds), with no row splitting or newline
    /// translation.
    case text

    /// The text to tokenize for `file`.
    public func loadText(from file: URL) throws -> String {
        switch self {
        case .wikitext2: return try TextReader.wikiTextEvaluationString(at: file)
        case .text: return try TextReader.plainText(at: file)
        }
    }
}

/// A token stream cut into non-overlapping windows of `seqlen` tokens for perplexity.
///
/// Definition: `tokens` = encode(text), the ids transformers' `tokenizer(text)` gives (a BOS only where the
/// tokenizer's post-processor adds one); window i is
/// `tokens[i·seqlen ..< (i+1)·seqlen]` for i in 0..<⌊tokens.count / seqlen⌋; the last
/// `tokens.count mod seqlen` tokens are dropped. Perplexity is exp of the mean next-token NLL over every
/// position of every window that has a successor in the same window.
public struct EvaluationWindows: Sendable, Equatable {
    /// The whole token stream, (N,).
    public let tokens: [Int]
    public let seqlen: Int
    /// What the tokens came from, for printing and the run record (e.g. the file and dataset kind).
    public let source: String

    /// Wraps an already tokenized stream.
    /// - Throws: `DatasetError` when `seqlen` < 2 (no next-token target inside a window) or the stream is
    ///   shorter than one window.
    public init(tokens: [Int], seqlen: Int, source: String) throws {
        guard seqlen >= 2 else {
            throw DatasetError(.invalidArgument, "\(source): evaluation seqlen must be at least 2, got \(seqlen)")
        }
        guard tokens.count >= seqlen else {
            throw DatasetError(.tooSmall,
                "\(source): \(formatCount(tokens.count)) tokens, fewer than one evaluation window of \(formatCount(seqlen))")
        }
        self.tokens = tokens
        self.seqlen = seqlen
        self.source = source
    }

    /// Tokenizes `text` once (`bosTokenID` first if given, then `encode(text)`) and windows it.
    /// - Parameter encode: text → the token ids the model sees (with the post-processor's special tokens).
    public init(text: String, source: String, seqlen: Int,
                encode: (String) throws -> [Int], bosTokenID: Int?) throws {
        if text.isEmpty { throw DatasetError(.emptySource, "\(source): the evaluation text is empty") }
        var ids: [Int] = []
        if let bosTokenID { ids.append(bosTokenID) }
        ids.append(contentsOf: try encode(text))
        try self.init(tokens: ids, seqlen: seqlen, source: source)
    }

    /// Reads `file` as `dataset` says, then tokenizes and windows it.
    public init(dataset: EvaluationDataset, file: URL, seqlen: Int,
                encode: (String) throws -> [Int], bosTokenID: Int?) throws {
        let text = try dataset.loadText(from: file)
        try self.init(text: text, source: "\(dataset.rawValue) \(file.path)", seqlen: seqlen,
                      encode: encode, bosTokenID: bosTokenID)
    }

    /// Number of full windows, ⌊N / seqlen⌋.
    public var count: Int { tokens.count / seqlen }

    /// Tokens past the last full window, not evaluated.
    public var droppedTokenCount: Int { tokens.count - count * seqlen }

    /// Window `i` (0 ≤ i < count), `seqlen` tokens.
    public subscript(i: Int) -> ArraySlice<Int> {
        precondition(i >= 0 && i < count, "window \(i) out of 0..<\(count)")
        return tokens[(i * seqlen)..<((i + 1) * seqlen)]
    }

    /// All windows in order.
    public var windows: [ArraySlice<Int>] { (0..<count).map { self[$0] } }
}

extension EvaluationWindows {
    /// The evaluation protocol of every command (eval, prune, finetune): the text encoded as transformers'
    /// `tokenizer(text)` does, with special tokens only where the tokenizer's post-processor adds them (the
    /// LLaMA-2 family's `<s>`; nothing for SmolLM2, whose `bos_token` in tokenizer_config.json adds nothing),
    /// then cut into windows of `seqlen`.
    public init(dataset: EvaluationDataset, file: URL, seqlen: Int, tokenizer: Tokenizer) throws {
        try self.init(dataset: dataset, file: file, seqlen: seqlen, encode: { tokenizer.encode($0) }, bosTokenID: nil)
    }
}
