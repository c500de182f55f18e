import Tokenizers

/// Generated tokens turned into text as they arrive, printing only complete characters.
///
/// A token's text depends on its neighbours (SentencePiece drops the space of a sequence's first word,
/// byte-fallback and byte-level tokens carry parts of one UTF-8 character), so tokens are never decoded
/// alone. As Hugging Face's incremental detokenizers do, the stream keeps two marks in the ids: text is
/// decoded from `prefixStart` (a few tokens before what is new, so the first word keeps its space), and
/// what follows the decode of ids[prefixStart..<readStart] is new. New text that ends in U+FFFD (an
/// unfinished character) is held back until a later token completes it; `finish` releases whatever is
/// left (an unfinished character then as U+FFFD, as a full decode would show it).
public struct TextStream {
    public let tokenizer: Tokenizer
    private var ids: [Int]
    private var prefixStart: Int
    private var readStart: Int

    /// Tokens of the prompt kept as left context for the first generated word.
    public static let contextTokens = 5

    /// A stream of the tokens generated after `context` (the prompt's ids, of which the last few are used).
    public init(tokenizer: Tokenizer, context: [Int]) {
        self.tokenizer = tokenizer
        ids = Array(context.suffix(Self.contextTokens))
        prefixStart = 0
        readStart = ids.count
    }

    /// The text that `id` completes (possibly empty).
    public mutating func append(_ id: Int) -> String {
        ids.append(id)
        return release(holdingUnfinished: true)
    }

    /// The text still held back.
    public mutating func finish() -> String { release(holdingUnfinished: false) }

    private mutating func release(holdingUnfinished: Bool) -> String {
        guard readStart < ids.count else { return "" }
        let prefix = Array(tokenizer.decode(Array(ids[prefixStart..<readStart])).utf8)
        let text = Array(tokenizer.decode(Array(ids[prefixStart...])).utf8)
        guard text.count > prefix.count else { return "" }
        // U+FFFD is EF BF BD in UTF-8.
        if holdingUnfinished && text.suffix(3) == [0xEF, 0xBF, 0xBD] { return "" }
        prefixStart = readStart
        readStart = ids.count
        // The decoder keeps earlier text as it was, so the new text is what follows the old.
        return String(decoding: text[prefix.count...], as: UTF8.self)
    }
}
