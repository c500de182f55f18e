/// How `JSONValue.text(_:)` lays out JSON text.
public struct JSONLayout: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Object members in the order of their keys' UTF-8 bytes (Unicode scalar order) instead of their
    /// stored order, as Foundation's `JSONEncoder` sorts them.
    public static let sortedKeys = JSONLayout(rawValue: 1)
    /// One member or element per line, indented by two spaces per level, members as `"key" : value`,
    /// an empty object or array as `{`, an empty line, `}`: the layout of Foundation's `.prettyPrinted`,
    /// kept so that files read the same as those earlier versions wrote.
    public static let prettyPrinted = JSONLayout(rawValue: 2)
}

extension JSONValue {
    /// The JSON number of an integer, exactly.
    public init(_ value: some BinaryInteger) { self = .number(String(value)) }

    /// The JSON number of a finite Double: Swift's shortest text that reads back as the same Double
    /// (`description`), with a trailing ".0" dropped as Foundation's encoder drops it (`1`, `0.1`,
    /// `1e-300`, `1e+20`). nil for NaN and the infinities, which JSON cannot hold.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        self = .number(Self.trimmed(value.description))
    }

    /// The JSON number of a finite Float, by the same rule (so 0.1 as a Float is `0.1`, not the Double
    /// nearest to it); nil for NaN and the infinities.
    public init?(_ value: Float) {
        guard value.isFinite else { return nil }
        self = .number(Self.trimmed(value.description))
    }

    private static func trimmed(_ text: String) -> String {
        text.hasSuffix(".0") ? String(text.dropLast(2)) : text
    }

    /// JSON text (RFC 8259) of the value: compact (no whitespace) unless `layout` has `.prettyPrinted`.
    /// Strings are written as `jsonQuoted` writes them; `/` is not escaped. (`jsonText` is the one-line
    /// form with spaces after separators that messages quote.)
    public func text(_ layout: JSONLayout = []) -> String {
        var out = ""
        write(to: &out, layout: layout, indent: 0)
        return out
    }

    private func write(to out: inout String, layout: JSONLayout, indent: Int) {
        let pretty = layout.contains(.prettyPrinted)
        func open(_ bracket: String) {
            out += bracket
            if pretty { out += "\n" }
        }
        func separate(_ first: Bool) {
            if !first { out += pretty ? ",\n" : "," }
            if pretty { out += String(repeating: "  ", count: indent + 1) }
        }
        func close(_ bracket: String) {
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += bracket
        }
        switch self {
        case let .object(members):
            let ordered = layout.contains(.sortedKeys) ? members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) } : members
            open("{")
            for (i, member) in ordered.enumerated() {
                separate(i == 0)
                out += jsonQuoted(member.key) + (pretty ? " : " : ":")
                member.value.write(to: &out, layout: layout, indent: indent + 1)
            }
            close("}")
        case let .array(items):
            open("[")
            for (i, item) in items.enumerated() {
                separate(i == 0)
                item.write(to: &out, layout: layout, indent: indent + 1)
            }
            close("]")
        default:
            out += jsonText
        }
    }
}
