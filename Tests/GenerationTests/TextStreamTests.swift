import Foundation
import Generation
import Runs
import Testing
import TestSupport
import Tokenizers

/// Streamed detokenization: characters split over several byte tokens (SentencePiece byte fallback,
/// byte-level BPE) appear only once complete, and the pieces add up to the text.
@Suite struct TextStreamTests {
    /// Streams ids[context...] after ids[..<context]; returns the pieces and the text held at the end.
    static func stream(_ tokenizer: Tokenizer, _ ids: [Int], context: Int) -> (pieces: [String], rest: String) {
        var s = TextStream(tokenizer: tokenizer, context: Array(ids[..<context]))
        let pieces = ids[context...].map { s.append($0) }
        return (pieces, s.finish())
    }

    /// Streams `text` after its first words `head`: the pieces add up to the rest of the text, none shows
    /// U+FFFD, and at least `partialBytes` tokens print nothing (they only start a character).
    static func check(_ tokenizer: Tokenizer, text: String, head: String, partialBytes: Int) throws {
        let ids = tokenizer.encode(text)
        // The context: the tokens whose text is `head` (byte-level decodes keep the prefix space).
        let context = try #require((1...ids.count).first {
            tokenizer.decode(Array(ids[..<$0])).drop(while: { $0 == " " }) == head
        })
        let (pieces, rest) = stream(tokenizer, ids, context: context)
        #expect(pieces.joined() + rest == String(text.dropFirst(head.count)))
        #expect(rest.isEmpty)
        #expect(!pieces.contains { $0.contains("\u{FFFD}") }, "\(pieces)")
        #expect(pieces.filter(\.isEmpty).count >= partialBytes, "\(pieces)")
    }

    /// stories260K's 512-token vocabulary spells ✓ (3 bytes) and 😀 (4) in byte-fallback tokens (é is a
    /// piece of its own).
    @Test func byteFallbackCharactersWaitForTheirLastByte() throws {
        let (_, tokenizer) = try ModelInput.open(try Paths.repository("../shared/models/stories260K"))
        for piece in ["✓", "😀"] {
            #expect(tokenizer.encode(piece, addSpecialTokens: false).count >= piece.utf8.count, "\(piece) is not byte tokens")
        }
        try Self.check(tokenizer, text: "Once upon a time, a café had a ✓ and a 😀 smile.", head: "Once upon a time", partialBytes: 2 + 3)
    }

    /// A byte-level BPE (GPT-2 style) tokenizer splits 😀's four bytes over tokens too.
    @Test func byteLevelCharactersWaitForTheirLastByte() throws {
        let tokenizer = try Tokenizer(directory: try Paths.repository("Fixtures/tokenizers/bytelevel-gpt2"))
        let ids = tokenizer.encode("😀", addSpecialTokens: false)
        #expect(ids.count >= 2)
        try Self.check(tokenizer, text: "The king said 😀 and ✓ to thee", head: "The king said", partialBytes: ids.count - 1)
    }

    /// A character left unfinished at the end comes out as U+FFFD from `finish`, as a full decode shows it.
    @Test func unfinishedCharacterIsReleasedAtTheEnd() throws {
        let (_, tokenizer) = try ModelInput.open(try Paths.repository("../shared/models/stories260K"))
        let smile = tokenizer.encode("😀", addSpecialTokens: false)
        let context = tokenizer.encode("Once upon a time")
        var s = TextStream(tokenizer: tokenizer, context: context)
        let first = smile.firstIndex { tokenizer.token(for: $0)?.hasPrefix("<0x") == true }!
        #expect(smile[first...].count == 4)
        for t in smile[...(first + 1)] { #expect(s.append(t) == "" || !tokenizer.token(for: t)!.hasPrefix("<0x")) }
        #expect(s.finish().hasSuffix("\u{FFFD}"))
    }
}
