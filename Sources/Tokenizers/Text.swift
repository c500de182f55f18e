import Foundation

// Text inside the pipeline is `[Unicode.Scalar]`, never `String`: Hugging Face `tokenizers` works on Rust
// `char`s (Unicode scalars) and compares them exactly, while Swift `String` compares and hashes by
// canonical equivalence and iterates grapheme clusters.

/// Appends the UTF-8 encoding of `scalar` to `bytes`.
@inline(__always)
func appendUTF8(_ scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
    let v = scalar.value
    if v < 0x80 {
        bytes.append(UInt8(v))
    } else if v < 0x800 {
        bytes.append(UInt8(0xC0 | (v >> 6)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    } else if v < 0x10000 {
        bytes.append(UInt8(0xE0 | (v >> 12)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    } else {
        bytes.append(UInt8(0xF0 | (v >> 18)))
        bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    }
}

/// The UTF-8 bytes of a scalar sequence.
func utf8Bytes<S: Sequence>(_ scalars: S) -> [UInt8] where S.Element == Unicode.Scalar {
    var out: [UInt8] = []
    out.reserveCapacity(scalars.underestimatedCount)
    for s in scalars { appendUTF8(s, to: &out) }
    return out
}

/// A string built from exactly these scalars.
func makeString<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
    var view = String.UnicodeScalarView()
    view.append(contentsOf: scalars)
    return String(view)
}

/// Character classes as Oniguruma (the regex engine of `tokenizers`) and Rust's `char` define them.
public enum CharacterClass {
    private static let letterBit: UInt8 = 1
    private static let numberBit: UInt8 = 2
    private static let whitespaceBit: UInt8 = 4
    private static let alphanumericBit: UInt8 = 8

    private static func computeFlags(_ s: Unicode.Scalar) -> UInt8 {
        let p = s.properties
        var f: UInt8 = 0
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: f |= letterBit
        case .decimalNumber, .letterNumber, .otherNumber: f |= numberBit
        default: break
        }
        if p.isWhitespace { f |= whitespaceBit }
        if p.isAlphabetic || f & numberBit != 0 { f |= alphanumericBit }
        return f
    }

    /// Flags for the Basic Multilingual Plane, computed once; other planes are looked up on demand.
    private static let bmpFlags: [UInt8] = (0..<0x10000).map { v -> UInt8 in
        guard let s = Unicode.Scalar(UInt32(v)) else { return 0 }
        return computeFlags(s)
    }

    @inline(__always)
    static func flags(_ s: Unicode.Scalar) -> UInt8 {
        s.value < 0x10000 ? bmpFlags[Int(s.value)] : computeFlags(s)
    }

    /// `\p{L}`: general category L (Lu, Ll, Lt, Lm, Lo).
    @inline(__always) public static func isLetter(_ s: Unicode.Scalar) -> Bool { flags(s) & letterBit != 0 }
    /// `\p{N}`: general category N (Nd, Nl, No); also Rust's `char::is_numeric`.
    @inline(__always) public static func isNumber(_ s: Unicode.Scalar) -> Bool { flags(s) & numberBit != 0 }
    /// `\s`: the White_Space property (Oniguruma's Unicode `\s`, Rust's `char::is_whitespace`).
    @inline(__always) public static func isWhitespace(_ s: Unicode.Scalar) -> Bool { flags(s) & whitespaceBit != 0 }
    /// Rust's `char::is_alphanumeric`: Alphabetic or numeric.
    @inline(__always) public static func isAlphanumeric(_ s: Unicode.Scalar) -> Bool { flags(s) & alphanumericBit != 0 }
}

/// GPT-2's reversible map between bytes and printable scalars: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100 and up, in byte order.
public enum ByteLevelTable {
    /// Scalar for each byte value 0...255.
    public static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next) ?? " "
                next += 1
            }
        }
        return table
    }()

    /// Byte for each scalar of the table, keyed by scalar value.
    public static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()
}

/// Replaces every non-overlapping occurrence of `pattern` (leftmost first) with `content`.
func replaceAll(_ text: [Unicode.Scalar], _ pattern: [Unicode.Scalar], with content: [Unicode.Scalar]) -> [Unicode.Scalar] {
    guard !pattern.isEmpty, text.count >= pattern.count else { return text }
    if pattern.count == 1 {
        let p = pattern[0]
        if content.count == 1 {
            let c = content[0]
            return text.map { $0 == p ? c : $0 }
        }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for s in text { if s == p { out.append(contentsOf: content) } else { out.append(s) } }
        return out
    }
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(text.count)
    var i = 0
    let first = pattern[0]
    while i < text.count {
        if text[i] == first, i + pattern.count <= text.count, text[i..<(i + pattern.count)].elementsEqual(pattern) {
            out.append(contentsOf: content)
            i += pattern.count
        } else {
            out.append(text[i])
            i += 1
        }
    }
    return out
}

/// Non-overlapping occurrences of `pattern` in `text`, leftmost first.
func findAll(_ pattern: [Unicode.Scalar], in text: [Unicode.Scalar]) -> [Range<Int>] {
    guard !pattern.isEmpty, text.count >= pattern.count else { return [] }
    var out: [Range<Int>] = []
    var i = 0
    let first = pattern[0]
    while i + pattern.count <= text.count {
        if text[i] == first, text[i..<(i + pattern.count)].elementsEqual(pattern) {
            out.append(i..<(i + pattern.count))
            i += pattern.count
        } else {
            i += 1
        }
    }
    return out
}
