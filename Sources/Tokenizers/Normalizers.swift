import Foundation
import JSON

/// The first stage: rewrites the text (of each piece between added tokens) before it is split.
public protocol Normalizer: Sendable {
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar]
}

extension Normalizer {
    /// Convenience for tests and tools: normalizes a `String`.
    public func normalize(_ text: String) -> String {
        makeString(normalize(Array(text.unicodeScalars)))
    }
}

public enum Normalizers {
    /// The normalizer a `tokenizer.json` `"normalizer"` object describes, chosen by its `"type"`.
    public static func make(_ json: JSONValue) throws -> Normalizer {
        let c = try StageConfig(json, stage: "normalizer")
        switch try c.type() {
        case "Sequence":
            return SequenceNormalizer(normalizers: try c.array("normalizers").map(make))
        case "Prepend":
            return PrependNormalizer(prepend: Array(try c.string("prepend").unicodeScalars))
        case "Replace":
            return try ReplaceNormalizer(pattern: Patterns.fromJSON(c.json["pattern"], stage: "Replace normalizer"),
                                         content: Array(c.string("content").unicodeScalars))
        case "NFC": return UnicodeNormalizer(form: .nfc)
        case "NFD": return UnicodeNormalizer(form: .nfd)
        case "NFKC": return UnicodeNormalizer(form: .nfkc)
        case "NFKD": return UnicodeNormalizer(form: .nfkd)
        case "Lowercase": return LowercaseNormalizer()
        case "Strip":
            return StripNormalizer(left: try c.bool("strip_left", default: true),
                                   right: try c.bool("strip_right", default: true))
        case let other:
            throw TokenizerError.unsupported("normalizer", other)
        }
    }
}

/// Applies each normalizer in order.
public struct SequenceNormalizer: Normalizer {
    public let normalizers: [Normalizer]
    public func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        normalizers.reduce(text) { $1.normalize($0) }
    }
}

/// Prepends a string to non-empty text (the legacy SentencePiece "▁" of LLaMA-1/2).
public struct PrependNormalizer: Normalizer {
    public let prepend: [Unicode.Scalar]
    public func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        text.isEmpty ? text : prepend + text
    }
}

/// Replaces every match of a pattern with `content`.
public struct ReplaceNormalizer: Normalizer {
    public let pattern: SplitPattern
    public let content: [Unicode.Scalar]
    public func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        if let literal = pattern as? LiteralMatcher { return replaceAll(text, literal.pattern, with: content) }
        return replaceMatches(text, pattern.matches(in: text), with: content)
    }
}

func replaceMatches(_ text: [Unicode.Scalar], _ ranges: [Range<Int>], with content: [Unicode.Scalar]) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(text.count)
    var last = 0
    for r in ranges {
        out.append(contentsOf: text[last..<r.lowerBound])
        out.append(contentsOf: content)
        last = r.upperBound
    }
    out.append(contentsOf: text[last...])
    return out
}

/// Unicode normalization forms (Foundation's implementations).
public struct UnicodeNormalizer: Normalizer {
    public enum Form: Sendable { case nfc, nfd, nfkc, nfkd }
    public let form: Form
    public func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        // ASCII is invariant under every form.
        if text.allSatisfy({ $0.isASCII }) { return text }
        let s = makeString(text)
        let n: String
        switch form {
        case .nfc: n = s.precomposedStringWithCanonicalMapping
        case .nfd: n = s.decomposedStringWithCanonicalMapping
        case .nfkc: n = s.precomposedStringWithCompatibilityMapping
        case .nfkd: n = s.decomposedStringWithCompatibilityMapping
        }
        return Array(n.unicodeScalars)
    }
}

/// Per-scalar full lowercase mapping (Rust's `char::to_lowercase`, which has no final-sigma context).
public struct LowercaseNormalizer: Normalizer {
    public func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for s in text {
            if s.isASCII {
                out.append(s.value >= 0x41 && s.value <= 0x5A ? Unicode.Scalar(UInt8(s.value + 32)) : s)
            } else {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }
}

/// Removes leading and/or trailing whitespace.
public struct StripNormalizer: Normalizer {
    public let left: Bool
    public let right: Bool
    public func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var lo = 0, hi = text.count
        if left { while lo < hi, CharacterClass.isWhitespace(text[lo]) { lo += 1 } }
        if right { while hi > lo, CharacterClass.isWhitespace(text[hi - 1]) { hi -= 1 } }
        return Array(text[lo..<hi])
    }
}
