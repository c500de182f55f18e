import Foundation
import JSON

/// The last stage of decoding: turns the token strings of some ids back into text. Like
/// `decode_chain` in `tokenizers`, each decoder maps a list of strings to a list of strings; the
/// tokenizer joins the final list.
public protocol TokenDecoder: Sendable {
    func decode(_ tokens: [String]) -> [String]
}

extension TokenDecoder {
    /// The decoded text: `decode(tokens)` joined.
    public func decodeToString(_ tokens: [String]) -> String { decode(tokens).joined() }
}

public enum Decoders {
    /// The decoder a `tokenizer.json` `"decoder"` object describes, chosen by its `"type"`.
    public static func make(_ json: JSONValue) throws -> TokenDecoder {
        let c = try StageConfig(json, stage: "decoder")
        switch try c.type() {
        case "Sequence":
            return SequenceDecoder(decoders: try c.array("decoders").map(make))
        case "Replace":
            guard let literal = c.json["pattern"]?["String"]?.stringValue else {
                // A regex pattern is legal in `tokenizers`; no known LLaMA-family file uses one.
                throw TokenizerError.invalid("Replace decoder", "only {\"String\": ...} patterns are supported")
            }
            return ReplaceDecoder(pattern: Array(literal.unicodeScalars), content: Array(try c.string("content").unicodeScalars))
        case "ByteFallback":
            return ByteFallbackDecoder()
        case "Fuse":
            return FuseDecoder()
        case "Strip":
            return StripDecoder(content: try c.scalar("content"), start: try c.int("start", default: 0),
                                stop: try c.int("stop", default: 0))
        case "Metaspace":
            let scheme: MetaspacePreTokenizer.PrependScheme
            if let s = try c.optionalString("prepend_scheme") {
                guard let p = MetaspacePreTokenizer.PrependScheme(rawValue: s) else {
                    throw TokenizerError.invalid("Metaspace decoder", "unknown prepend_scheme \"\(s)\"")
                }
                scheme = p
            } else {
                scheme = try c.bool("add_prefix_space", default: true) ? .always : .never
            }
            return MetaspaceDecoder(replacement: try c.scalar("replacement", default: "\u{2581}"), prependScheme: scheme)
        case "ByteLevel":
            return ByteLevelDecoder()
        case let other:
            throw TokenizerError.unsupported("decoder", other)
        }
    }
}

/// Applies each decoder in order.
public struct SequenceDecoder: TokenDecoder {
    public let decoders: [TokenDecoder]
    public func decode(_ tokens: [String]) -> [String] { decoders.reduce(tokens) { $1.decode($0) } }
}

/// Replaces a literal in every token.
public struct ReplaceDecoder: TokenDecoder {
    public let pattern: [Unicode.Scalar]
    public let content: [Unicode.Scalar]
    public func decode(_ tokens: [String]) -> [String] {
        tokens.map { makeString(replaceAll(Array($0.unicodeScalars), pattern, with: content)) }
    }
}

/// Turns runs of `<0xAB>` tokens into the text their bytes encode; a run that is not valid UTF-8 becomes
/// one U+FFFD per byte.
public struct ByteFallbackDecoder: TokenDecoder {
    static func byteValue(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }

    public func decode(_ tokens: [String]) -> [String] {
        var out: [String] = []
        var pending: [UInt8] = []
        func flush() {
            if pending.isEmpty { return }
            if let s = String(validating: pending, as: UTF8.self) {
                out.append(s)
            } else {
                out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
            }
            pending.removeAll()
        }
        for t in tokens {
            if let b = ByteFallbackDecoder.byteValue(t) {
                pending.append(b)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }
}

/// Joins all tokens into one.
public struct FuseDecoder: TokenDecoder {
    public func decode(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// Removes up to `start` leading and `stop` trailing occurrences of `content` from every token.
public struct StripDecoder: TokenDecoder {
    public let content: Unicode.Scalar
    public let start: Int
    public let stop: Int
    public func decode(_ tokens: [String]) -> [String] {
        tokens.map { t in
            let s = Array(t.unicodeScalars)
            var lo = 0
            while lo < min(start, s.count), s[lo] == content { lo += 1 }
            var hi = s.count
            while s.count - hi < stop, hi > lo, s[hi - 1] == content { hi -= 1 }
            return makeString(s[lo..<hi])
        }
    }
}

/// Turns `replacement` (▁) back into spaces; in the first token (unless the scheme is `never`) every ▁ is
/// dropped instead, undoing the prepended one.
public struct MetaspaceDecoder: TokenDecoder {
    public let replacement: Unicode.Scalar
    public let prependScheme: MetaspacePreTokenizer.PrependScheme
    public func decode(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { i, t in
            var out = String.UnicodeScalarView()
            for s in t.unicodeScalars {
                if s == replacement {
                    if i == 0 && prependScheme != .never { continue }
                    out.append(" ")
                } else {
                    out.append(s)
                }
            }
            return String(out)
        }
    }
}

/// Maps byte-level scalars back to bytes and decodes them as UTF-8 (invalid sequences become U+FFFD).
/// A token containing a scalar outside the byte-level table contributes its own UTF-8 bytes.
public struct ByteLevelDecoder: TokenDecoder {
    public func decode(_ tokens: [String]) -> [String] {
        let table = ByteLevelTable.scalarToByte
        var bytes: [UInt8] = []
        for t in tokens {
            var tokenBytes: [UInt8] = []
            var mapped = true
            for s in t.unicodeScalars {
                guard let b = table[s.value] else { mapped = false; break }
                tokenBytes.append(b)
            }
            bytes.append(contentsOf: mapped ? tokenBytes : Array(t.utf8))
        }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}
