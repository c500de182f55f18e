/// A minimal JSON reader and writer for safetensors headers and shard indexes.
///
/// Foundation's `JSONSerialization` loses key order, merges duplicate keys silently and blurs
/// `1`, `1.0` and `true` into one `NSNumber`; header validation needs all three distinctions, so the
/// header goes through this small strict parser (RFC 8259 grammar, UTF-8 only).
enum JSONValue: Equatable {
    /// Members in document order; duplicates are kept so the caller can report them.
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The number's literal text, so integers can be checked exactly (no detour through Double).
    case number(String)
    case bool(Bool)
    case null

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// The value as an `Int` when it is an integer literal (no fraction or exponent) that fits.
    var intValue: Int? {
        guard case let .number(text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
        else { return nil }
        return Int(text)
    }

    /// Compact JSON text, cut to `limit` characters (with "…") so error messages stay one short line.
    func rendered(limit: Int = 60) -> String {
        let text = jsonText
        return text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }

    /// Compact JSON text of the value.
    var jsonText: String {
        switch self {
        case let .object(members):
            return "{" + members.map { jsonQuoted($0.key) + ": " + $0.value.jsonText }.joined(separator: ", ") + "}"
        case let .array(items): return "[" + items.map(\.jsonText).joined(separator: ", ") + "]"
        case let .string(s): return jsonQuoted(s)
        case let .number(n): return n
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// Why a JSON text failed to parse, and the byte offset where it did.
struct JSONSyntaxError: Error {
    var reason: String
    var offset: Int
}

/// Recursive-descent parser over raw bytes. Nesting is bounded so a hostile header of a million `[`
/// cannot overflow the stack.
struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private var depth = 0
    static let maxDepth = 64

    private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Parses one JSON value filling `bytes`, allowing whitespace (including the header's space
    /// padding) around it.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var p = JSONParser(bytes)
        p.skipWhitespace()
        let value = try p.parseValue()
        p.skipWhitespace()
        if p.pos != bytes.count { throw p.fail("unexpected text after the JSON value") }
        return value
    }

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0) }
    }

    private func fail(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(reason: reason, offset: pos) }

    private var atEnd: Bool { pos >= bytes.count }
    private var peek: UInt8 { bytes[pos] }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func expect(_ literal: String, _ value: JSONValue) throws -> JSONValue {
        for byte in literal.utf8 {
            guard !atEnd, peek == byte else { throw fail("invalid literal") }
            pos += 1
        }
        return value
    }

    private mutating func parseValue() throws -> JSONValue {
        guard !atEnd else { throw fail("unexpected end of text") }
        switch peek {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character")
        }
    }

    private mutating func enter() throws {
        depth += 1
        if depth > Self.maxDepth { throw fail("nesting deeper than \(Self.maxDepth) levels") }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enter(); defer { depth -= 1 }
        pos += 1  // {
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if !atEnd, peek == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard !atEnd, peek == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard !atEnd, peek == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipWhitespace()
            members.append((key, try parseValue()))
            skipWhitespace()
            guard !atEnd else { throw fail("unexpected end of text in an object") }
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            if peek == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enter(); defer { depth -= 1 }
        pos += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if !atEnd, peek == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard !atEnd else { throw fail("unexpected end of text in an array") }
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            if peek == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = pos
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.pos
            while !p.atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.peek) { p.pos += 1 }
            return p.pos - s
        }
        if peek == UInt8(ascii: "-") { pos += 1 }
        guard !atEnd else { throw fail("invalid number") }
        if peek == UInt8(ascii: "0") {
            pos += 1
        } else if digits(&self) == 0 {
            throw fail("invalid number")
        }
        if !atEnd, peek == UInt8(ascii: ".") {
            pos += 1
            if digits(&self) == 0 { throw fail("invalid number") }
        }
        if !atEnd, peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            pos += 1
            if !atEnd, peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
            if digits(&self) == 0 { throw fail("invalid number") }
        }
        return .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self))
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = peek
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private mutating func parseString() throws -> String {
        let start = pos
        pos += 1  // "
        var utf8: [UInt8] = []
        while true {
            guard !atEnd else { pos = start; throw fail("unterminated string") }
            let c = peek
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { pos -= 1; throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { utf8.append(c); continue }
            guard !atEnd else { throw fail("unterminated escape") }
            let e = peek
            pos += 1
            switch e {
            case UInt8(ascii: "\""): utf8.append(0x22)
            case UInt8(ascii: "\\"): utf8.append(0x5C)
            case UInt8(ascii: "/"): utf8.append(0x2F)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard pos + 2 <= bytes.count, peek == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                    else { throw fail("unpaired surrogate in \\u escape") }
                    pos += 2
                    let low = try parseHex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(code) {
                    throw fail("unpaired surrogate in \\u escape")
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                utf8.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw fail("invalid escape")
            }
        }
        guard let s = String(validating: utf8, as: UTF8.self) else {
            pos = start
            throw fail("string is not valid UTF-8")
        }
        return s
    }
}
