import Foundation
import JSON

/// A piece of normalized text; after pre-tokenization each piece is one word for the model.
public struct PreToken: Sendable, Equatable {
    public var text: [Unicode.Scalar]
    /// Whether the piece begins at offset 0 of the input (Metaspace's `prepend_scheme: "first"` uses it).
    public var atInputStart: Bool

    public init(text: [Unicode.Scalar], atInputStart: Bool) {
        self.text = text
        self.atInputStart = atInputStart
    }
}

/// The second stage: splits normalized text into words (and may rewrite them, as ByteLevel does).
public protocol PreTokenizer: Sendable {
    func preTokenize(_ pieces: [PreToken]) -> [PreToken]
}

extension PreTokenizer {
    /// Convenience for tests and tools: pre-tokenizes a whole input (which starts at offset 0).
    public func preTokenize(_ text: String) -> [String] {
        preTokenize([PreToken(text: Array(text.unicodeScalars), atInputStart: true)]).map { makeString($0.text) }
    }
}

/// What happens to the delimiters a split pattern matches (`SplitDelimiterBehavior` in `tokenizers`).
public enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

public enum PreTokenizers {
    /// The pre-tokenizer a `tokenizer.json` `"pre_tokenizer"` object describes, chosen by its `"type"`.
    public static func make(_ json: JSONValue) throws -> PreTokenizer {
        let c = try StageConfig(json, stage: "pre_tokenizer")
        switch try c.type() {
        case "Sequence":
            return SequencePreTokenizer(preTokenizers: try c.array("pretokenizers").map(make))
        case "ByteLevel":
            return ByteLevelPreTokenizer(addPrefixSpace: try c.bool("add_prefix_space", default: true),
                                         useRegex: try c.bool("use_regex", default: true))
        case "Split":
            let b = try c.string("behavior")
            guard let behavior = SplitBehavior(rawValue: b) else {
                throw TokenizerError.invalid("Split pre_tokenizer", "unknown behavior \"\(b)\"")
            }
            return SplitPreTokenizer(pattern: try Patterns.fromJSON(c.json["pattern"], stage: "Split pre_tokenizer"),
                                     behavior: behavior, invert: try c.bool("invert", default: false))
        case "Metaspace":
            let scheme: MetaspacePreTokenizer.PrependScheme
            if let s = try c.optionalString("prepend_scheme") {
                guard let p = MetaspacePreTokenizer.PrependScheme(rawValue: s) else {
                    throw TokenizerError.invalid("Metaspace pre_tokenizer", "unknown prepend_scheme \"\(s)\"")
                }
                scheme = p
            } else {
                // Files written before prepend_scheme existed say add_prefix_space instead.
                scheme = try c.bool("add_prefix_space", default: true) ? .always : .never
            }
            return MetaspacePreTokenizer(replacement: try c.scalar("replacement", default: "\u{2581}"),
                                         prependScheme: scheme, split: try c.bool("split", default: true))
        case "Digits":
            return DigitsPreTokenizer(individualDigits: try c.bool("individual_digits", default: false))
        case "WhitespaceSplit":
            return WhitespaceSplitPreTokenizer()
        case let other:
            throw TokenizerError.unsupported("pre_tokenizer", other)
        }
    }
}

/// Every scalar satisfying `pred` as its own one-scalar match (how `tokenizers` matches a `char` pattern).
func scalarMatches(_ text: [Unicode.Scalar], _ pred: (Unicode.Scalar) -> Bool) -> [Range<Int>] {
    var out: [Range<Int>] = []
    for (i, s) in text.enumerated() where pred(s) { out.append(i..<(i + 1)) }
    return out
}

/// Splits `piece` around `matches` (sorted, non-overlapping) the way `NormalizedString::split` does,
/// appending the non-empty results to `out`.
func split(_ piece: PreToken, matches: [Range<Int>], behavior: SplitBehavior, invert: Bool = false,
           into out: inout [PreToken]) {
    let text = piece.text
    if text.isEmpty { return }
    // The whole text as alternating (range, isMatch) spans.
    var spans: [(Range<Int>, Bool)] = []
    spans.reserveCapacity(2 * matches.count + 1)
    var prev = 0
    for m in matches {
        if prev != m.lowerBound { spans.append((prev..<m.lowerBound, invert)) }
        spans.append((m, !invert))
        prev = m.upperBound
    }
    if prev != text.count { spans.append((prev..<text.count, invert)) }

    var pieces: [Range<Int>] = []
    pieces.reserveCapacity(spans.count)
    switch behavior {
    case .isolated:
        pieces = spans.map { $0.0 }
    case .removed:
        pieces = spans.filter { !$0.1 }.map { $0.0 }
    case .mergedWithPrevious:
        // A match joins the piece before it (unless that piece is itself a match).
        var previousMatch = false
        for (r, isMatch) in spans {
            if isMatch, !previousMatch, let last = pieces.last {
                pieces[pieces.count - 1] = last.lowerBound..<r.upperBound
            } else {
                pieces.append(r)
            }
            previousMatch = isMatch
        }
    case .mergedWithNext:
        // Mirror image of mergedWithPrevious, scanning from the end.
        var previousMatch = false
        for (r, isMatch) in spans.reversed() {
            if isMatch, !previousMatch, let last = pieces.last {
                pieces[pieces.count - 1] = r.lowerBound..<last.upperBound
            } else {
                pieces.append(r)
            }
            previousMatch = isMatch
        }
        pieces.reverse()
    case .contiguous:
        var previousMatch = false
        for (r, isMatch) in spans {
            if isMatch == previousMatch, let last = pieces.last {
                pieces[pieces.count - 1] = last.lowerBound..<r.upperBound
            } else {
                pieces.append(r)
            }
            previousMatch = isMatch
        }
    }
    for r in pieces where !r.isEmpty {
        out.append(PreToken(text: Array(text[r]), atInputStart: piece.atInputStart && r.lowerBound == 0))
    }
}

/// Applies each pre-tokenizer in order to all pieces.
public struct SequencePreTokenizer: PreTokenizer {
    public let preTokenizers: [PreTokenizer]
    public func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        preTokenizers.reduce(pieces) { $1.preTokenize($0) }
    }
}

/// GPT-2's pre-tokenizer: optionally prepends a space to every piece not starting with one, optionally
/// splits with `gpt2Pattern`, then maps each piece's UTF-8 bytes to the scalars of `ByteLevelTable`.
public struct ByteLevelPreTokenizer: PreTokenizer {
    public let addPrefixSpace: Bool
    public let useRegex: Bool

    public func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var split: [PreToken] = []
        let matcher = GPT2Matcher()
        for var p in pieces {
            if addPrefixSpace, let first = p.text.first, first != " " { p.text.insert(" ", at: 0) }
            if useRegex {
                Tokenizers.split(p, matches: matcher.matches(in: p.text), behavior: .isolated, into: &split)
            } else if !p.text.isEmpty {
                split.append(p)
            }
        }
        let table = ByteLevelTable.byteToScalar
        var bytes: [UInt8] = []
        return split.map { p in
            bytes.removeAll(keepingCapacity: true)
            for s in p.text { appendUTF8(s, to: &bytes) }
            return PreToken(text: bytes.map { table[Int($0)] }, atInputStart: p.atInputStart)
        }
    }
}

/// Splits on a pattern's matches.
public struct SplitPreTokenizer: PreTokenizer {
    public let pattern: SplitPattern
    public let behavior: SplitBehavior
    public let invert: Bool

    public func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for p in pieces {
            Tokenizers.split(p, matches: pattern.matches(in: p.text), behavior: behavior, invert: invert, into: &out)
        }
        return out
    }
}

/// SentencePiece-style: spaces become `replacement` (▁), a ▁ is prepended per `prependScheme`, and
/// with `split` each ▁ starts a new word.
public struct MetaspacePreTokenizer: PreTokenizer {
    public enum PrependScheme: String, Sendable {
        case first, always, never
    }
    public let replacement: Unicode.Scalar
    public let prependScheme: PrependScheme
    public let split: Bool

    public func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for var p in pieces {
            p.text = p.text.map { $0 == " " ? replacement : $0 }
            let prepend = prependScheme == .always || (prependScheme == .first && p.atInputStart)
            if prepend, let first = p.text.first, first != replacement { p.text.insert(replacement, at: 0) }
            if split {
                let r = replacement
                Tokenizers.split(p, matches: scalarMatches(p.text) { $0 == r }, behavior: .mergedWithNext, into: &out)
            } else if !p.text.isEmpty {
                out.append(p)
            }
        }
        return out
    }
}

/// Splits digits from the rest: each digit alone, or runs of digits together.
public struct DigitsPreTokenizer: PreTokenizer {
    public let individualDigits: Bool
    public func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for p in pieces {
            Tokenizers.split(p, matches: scalarMatches(p.text, CharacterClass.isNumber),
                             behavior: individualDigits ? .isolated : .contiguous, into: &out)
        }
        return out
    }
}

/// Splits on whitespace, dropping it.
public struct WhitespaceSplitPreTokenizer: PreTokenizer {
    public func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for p in pieces {
            Tokenizers.split(p, matches: scalarMatches(p.text, CharacterClass.isWhitespace), behavior: .removed, into: &out)
        }
        return out
    }
}
