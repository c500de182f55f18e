import Foundation
import JSON

/// A token from `tokenizer.json`'s `"added_tokens"`: matched in the input before the model runs.
public struct AddedToken: Sendable, Equatable {
    public let id: Int
    public let content: String
    /// Skipped by `decode(_:skipSpecialTokens: true)`.
    public let special: Bool
    /// Matched in the normalized text (true) or in the raw input (false).
    public let normalized: Bool
    /// Also swallows the whitespace before / after it.
    public let lstrip: Bool
    public let rstrip: Bool
    /// Only matches when not inside a word.
    public let singleWord: Bool

    init(json: JSONValue) throws {
        let c = try StageConfig(json, stage: "added_tokens entry")
        guard let id = c.json["id"]?.intValue, id >= 0 else { throw TokenizerError.invalid("added_tokens entry", "missing \"id\"") }
        self.id = id
        content = try c.string("content")
        special = try c.bool("special", default: false)
        normalized = try c.bool("normalized", default: !special)
        lstrip = try c.bool("lstrip", default: false)
        rstrip = try c.bool("rstrip", default: false)
        singleWord = try c.bool("single_word", default: false)
    }
}

/// Leftmost-longest matching of a set of patterns (what `tokenizers` does with Aho-Corasick), by
/// walking a trie from each position.
struct PatternTrie {
    private var children: [[UInt32: Int32]] = [[:]]
    /// Index of the token a node completes, or -1.
    private var terminal: [Int32] = [-1]
    /// Which ASCII scalars start some pattern; non-ASCII ones are looked up in the root.
    private var asciiStarts = [Bool](repeating: false, count: 128)

    var isEmpty: Bool { children[0].isEmpty }

    mutating func insert(_ pattern: [Unicode.Scalar], token: Int) {
        guard !pattern.isEmpty else { return }
        var node = 0
        for s in pattern {
            if let next = children[node][s.value] {
                node = Int(next)
            } else {
                children.append([:])
                terminal.append(-1)
                children[node][s.value] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        // The first of identical patterns wins.
        if terminal[node] < 0 { terminal[node] = Int32(token) }
        if pattern[0].isASCII { asciiStarts[Int(pattern[0].value)] = true }
    }

    /// The longest pattern starting at `i`: (end, token index).
    @inline(__always)
    func longestMatch(in text: [Unicode.Scalar], at i: Int) -> (Int, Int)? {
        let first = text[i]
        if first.isASCII && !asciiStarts[Int(first.value)] { return nil }
        var node = 0
        var best: (Int, Int)?
        var j = i
        while j < text.count, let next = children[node][text[j].value] {
            node = Int(next)
            j += 1
            if terminal[node] >= 0 { best = (j, Int(terminal[node])) }
        }
        return best
    }
}

/// The added tokens and the two matchers built from them (raw-text and normalized-text patterns).
struct AddedVocabulary {
    let tokens: [AddedToken]
    private var rawTrie = PatternTrie()
    private var normalizedTrie = PatternTrie()
    let specialIDs: Set<Int>
    let idToContent: [Int: String]
    /// Content (exact UTF-8 bytes) to id.
    let contentToID: [[UInt8]: Int]

    init(tokens: [AddedToken], normalizer: Normalizer?) {
        self.tokens = tokens
        var special = Set<Int>()
        var idToContent: [Int: String] = [:]
        var contentToID: [[UInt8]: Int] = [:]
        for (k, t) in tokens.enumerated() {
            if t.special { special.insert(t.id) }
            idToContent[t.id] = t.content
            contentToID[Array(t.content.utf8)] = t.id
            let scalars = Array(t.content.unicodeScalars)
            if t.normalized {
                // Normalized tokens are matched by their normalized form (e.g. with the legacy LLaMA
                // normalizer, "foo" is matched as "▁foo").
                normalizedTrie.insert(normalizer?.normalize(scalars) ?? scalars, token: k)
            } else {
                rawTrie.insert(scalars, token: k)
            }
        }
        specialIDs = special
        self.idToContent = idToContent
        self.contentToID = contentToID
    }

    /// Rust regex `\w`: Alphabetic, marks, decimal digits, connector punctuation, join controls.
    private static func isWordScalar(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII {
            let v = s.value
            return (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x5F
        }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// Splits `text` into spans, each either plain text (token nil) or an added token, the way
    /// `AddedVocabulary::find_matches` does (including single_word, lstrip and rstrip).
    func split(_ text: [Unicode.Scalar], normalized: Bool) -> [(Range<Int>, AddedToken?)] {
        let trie = normalized ? normalizedTrie : rawTrie
        if trie.isEmpty || text.isEmpty { return [(0..<text.count, nil)] }
        var spans: [(Range<Int>, AddedToken?)] = []
        var startOffset = 0
        var i = 0
        while i < text.count {
            guard let (matchEnd, k) = trie.longestMatch(in: text, at: i) else { i += 1; continue }
            let token = tokens[k]
            var start = i
            var stop = matchEnd
            // The automaton resumes after the raw match, whatever stripping does below.
            i = matchEnd
            if token.singleWord {
                let startOK = start == 0 || !AddedVocabulary.isWordScalar(text[start - 1])
                let stopOK = stop == text.count || !AddedVocabulary.isWordScalar(text[stop])
                if !startOK || !stopOK { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0, CharacterClass.isWhitespace(text[s - 1]) { s -= 1 }
                start = max(s, startOffset)
            }
            if token.rstrip {
                while stop < text.count, CharacterClass.isWhitespace(text[stop]) { stop += 1 }
            }
            if startOffset < start { spans.append((startOffset..<start, nil)) }
            spans.append((start..<stop, token))
            startOffset = stop
        }
        if startOffset < text.count { spans.append((startOffset..<text.count, nil)) }
        return spans
    }
}
