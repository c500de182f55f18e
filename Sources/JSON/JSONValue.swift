import Foundation

/// A parsed JSON value (RFC 8259), as the project's file formats need it.
///
/// Why not Foundation: `JSONSerialization` and `JSONDecoder` lose member order, merge duplicate keys
/// silently, blur `1`, `1.0` and `true` into one `NSNumber`, and key objects by Swift `String`, whose
/// equality is canonical equivalence, so two distinct vocabulary entries such as "ί" (U+03AF) and "ί"
/// (U+1F77), both in the LLaMA-2 vocabulary, would collapse into one. Safetensors header validation and
/// tokenizer vocabularies need all of these distinctions kept.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's literal text, so integers are read exactly (no detour through Double) and `1` and
    /// `1.0` stay apart.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in document order; repeated keys are all kept so callers can refuse or report them.
    case object([(key: String, value: JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count
                && zip(x, y).allSatisfy { $0.key.utf8.elementsEqual($1.key.utf8) && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// The member named `key` of an object (the first one if repeated), or nil.
    /// Keys compare by their exact UTF-8 bytes, not by canonical equivalence.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for (k, v) in members where k.utf8.elementsEqual(key.utf8) { return v }
        return nil
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var objectValue: [(key: String, value: JSONValue)]? {
        if case .object(let o) = self { return o } else { return nil }
    }

    /// What the value is, for messages: "null", "a boolean", "a number", "a string", "an array" or "an object".
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The number as a Double (nearest representable value).
    public var doubleValue: Double? { if case .number(let text) = self { return Double(text) } else { return nil } }

    /// The number as an `Int` when it is an integer literal (no fraction or exponent) that fits.
    public var intValue: Int? {
        guard case let .number(text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
        else { return nil }
        return Int(text)
    }

    /// Compact JSON text of the value.
    public var jsonText: String {
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

    /// Compact JSON text cut to `limit` characters (with "…"), so error messages stay one short line.
    public func rendered(limit: Int = 60) -> String {
        let text = jsonText
        return text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }
}

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped.
public func jsonQuoted(_ s: String) -> String {
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
