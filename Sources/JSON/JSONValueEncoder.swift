/// Encodes `Encodable` values as `JSONValue`, as Foundation's `JSONEncoder` lays them out: a nil optional
/// that synthesized code encodes with `encodeIfPresent` is omitted, an explicit `encodeNil` is `null`,
/// integers are exact, floating-point numbers are their shortest round-trip text (`JSONValue(_: Double)`),
/// and NaN or an infinity throws `EncodingError.invalidValue` (JSON has no such numbers).
///
/// Object members keep the order the value encoded them in; `JSONValue.text(.sortedKeys)` sorts them.
/// Every type is written by its own `Encodable` conformance: unlike `JSONEncoder`, `Date`, `Data` and `URL`
/// get no special forms (the project's records hold none).
public struct JSONValueEncoder {
    /// Whether property names are written as declared or in snake case ("toolVersion" → "tool_version").
    /// The keys of `[String: _]` dictionaries are written as they are either way, as Foundation writes them.
    public var convertsKeysToSnakeCase: Bool

    public init(convertsKeysToSnakeCase: Bool = false) {
        self.convertsKeysToSnakeCase = convertsKeysToSnakeCase
    }

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        try ValueEncoder(snakeCase: convertsKeysToSnakeCase, codingPath: []).box(value).resolved
    }

    /// Foundation's `convertToSnakeCase`: an underscore before each word that starts with a capital
    /// ("sampleCount" → "sample_count"; an acronym is one word, "baseURLPath" → "base_url_path"),
    /// everything lowercased.
    public static func snakeCase(_ key: String) -> String {
        let s = Array(key)
        var out = ""
        for (i, c) in s.enumerated() {
            if c.isUppercase, i > 0 {
                let afterLower = !s[i - 1].isUppercase && s[i - 1] != "_"
                let endsAcronym = s[i - 1].isUppercase && i + 1 < s.count && s[i + 1].isLowercase
                if afterLower || endsAcronym { out += "_" }
            }
            out += c.lowercased()
        }
        return out
    }
}

/// A value being encoded: finished, an object or array that containers may still add to, or whatever a
/// super-encoder handed out earlier ends up holding.
private enum Slot {
    case value(JSONValue)
    case object(ObjectSlot)
    case array(ArraySlot)
    case deferred(ValueEncoder)

    var resolved: JSONValue {
        switch self {
        case let .value(v): return v
        case let .object(o): return .object(o.members.map { ($0.key, $0.value.resolved) })
        case let .array(a): return .array(a.items.map(\.resolved))
        case let .deferred(encoder): return encoder.slot?.resolved ?? .object([])
        }
    }
}

private final class ObjectSlot {
    private(set) var members: [(key: String, value: Slot)] = []
    private var position: [String: Int] = [:]

    /// Adds a member, or replaces the value of the one already named `key` (a key encoded twice).
    func set(_ key: String, _ value: Slot) {
        if let i = position[key] {
            members[i].value = value
        } else {
            position[key] = members.count
            members.append((key, value))
        }
    }
}

private final class ArraySlot {
    var items: [Slot] = []
}

/// `[String: V]`, whose keys are data, not property names: the snake-case conversion leaves them alone.
private protocol StringKeyedDictionary {
    func encodeMembers(_ encoder: ValueEncoder) throws -> ObjectSlot
}

extension Dictionary: StringKeyedDictionary where Key == String, Value: Encodable {
    fileprivate func encodeMembers(_ encoder: ValueEncoder) throws -> ObjectSlot {
        let object = ObjectSlot()
        for (key, value) in self { object.set(key, try encoder.nested(JSONKey(key)).box(value)) }
        return object
    }
}

private final class ValueEncoder: Encoder {
    let snakeCase: Bool
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var slot: Slot?

    init(snakeCase: Bool, codingPath: [CodingKey]) {
        self.snakeCase = snakeCase
        self.codingPath = codingPath
    }

    func nested(_ key: CodingKey) -> ValueEncoder { ValueEncoder(snakeCase: snakeCase, codingPath: codingPath + [key]) }

    func key(_ key: CodingKey) -> String { snakeCase ? JSONValueEncoder.snakeCase(key.stringValue) : key.stringValue }

    /// `value` encoded, at this encoder's coding path.
    func box<T: Encodable>(_ value: T) throws -> Slot {
        if snakeCase, let dictionary = value as? StringKeyedDictionary {
            return .object(try dictionary.encodeMembers(self))
        }
        try value.encode(to: self)
        // A type that encodes nothing at all is an empty object, as in Foundation.
        return slot ?? .object(ObjectSlot())
    }

    func number(_ value: Double) throws -> JSONValue {
        guard let number = JSONValue(value) else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) is not a JSON number"))
        }
        return number
    }

    func number(_ value: Float) throws -> JSONValue {
        guard let number = JSONValue(value) else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) is not a JSON number"))
        }
        return number
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: ObjectSlot
        if case let .object(existing)? = slot { object = existing } else { object = ObjectSlot(); slot = .object(object) }
        return KeyedEncodingContainer(KeyedContainer<Key>(encoder: self, object: object))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        let array: ArraySlot
        if case let .array(existing)? = slot { array = existing } else { array = ArraySlot(); slot = .array(array) }
        return UnkeyedContainer(encoder: self, array: array)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleValueContainer(encoder: self) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: ValueEncoder
    let object: ObjectSlot
    var codingPath: [CodingKey] { encoder.codingPath }

    func set(_ value: JSONValue, _ key: Key) { object.set(encoder.key(key), .value(value)) }

    mutating func encodeNil(forKey key: Key) throws { set(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { set(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { set(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { set(try encoder.nested(key).number(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { set(try encoder.nested(key).number(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { set(JSONValue(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { set(JSONValue(value), key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        object.set(encoder.key(key), try encoder.nested(key).box(value))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = ObjectSlot()
        object.set(encoder.key(key), .object(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder.nested(key), object: nested))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        let nested = ArraySlot()
        object.set(encoder.key(key), .array(nested))
        return UnkeyedContainer(encoder: encoder.nested(key), array: nested)
    }

    mutating func superEncoder() -> Encoder { superEncoder(named: JSONKey("super")) }
    mutating func superEncoder(forKey key: Key) -> Encoder { superEncoder(named: key) }

    private func superEncoder(named key: CodingKey) -> Encoder {
        let nested = encoder.nested(key)
        object.set(encoder.key(key), .deferred(nested))
        return nested
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let encoder: ValueEncoder
    let array: ArraySlot
    var codingPath: [CodingKey] { encoder.codingPath }
    var count: Int { array.items.count }

    private var next: ValueEncoder { encoder.nested(JSONKey(index: array.items.count)) }
    private func append(_ value: JSONValue) { array.items.append(.value(value)) }

    mutating func encodeNil() throws { append(.null) }
    mutating func encode(_ value: Bool) throws { append(.bool(value)) }
    mutating func encode(_ value: String) throws { append(.string(value)) }
    mutating func encode(_ value: Double) throws { append(try next.number(value)) }
    mutating func encode(_ value: Float) throws { append(try next.number(value)) }
    mutating func encode(_ value: Int) throws { append(JSONValue(value)) }
    mutating func encode(_ value: Int8) throws { append(JSONValue(value)) }
    mutating func encode(_ value: Int16) throws { append(JSONValue(value)) }
    mutating func encode(_ value: Int32) throws { append(JSONValue(value)) }
    mutating func encode(_ value: Int64) throws { append(JSONValue(value)) }
    mutating func encode(_ value: UInt) throws { append(JSONValue(value)) }
    mutating func encode(_ value: UInt8) throws { append(JSONValue(value)) }
    mutating func encode(_ value: UInt16) throws { append(JSONValue(value)) }
    mutating func encode(_ value: UInt32) throws { append(JSONValue(value)) }
    mutating func encode(_ value: UInt64) throws { append(JSONValue(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws { array.items.append(try next.box(value)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = ObjectSlot(), path = next
        array.items.append(.object(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: path, object: nested))
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let nested = ArraySlot(), path = next
        array.items.append(.array(nested))
        return UnkeyedContainer(encoder: path, array: nested)
    }

    mutating func superEncoder() -> Encoder {
        let nested = next
        array.items.append(.deferred(nested))
        return nested
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let encoder: ValueEncoder
    var codingPath: [CodingKey] { encoder.codingPath }

    private func set(_ value: JSONValue) { encoder.slot = .value(value) }

    mutating func encodeNil() throws { set(.null) }
    mutating func encode(_ value: Bool) throws { set(.bool(value)) }
    mutating func encode(_ value: String) throws { set(.string(value)) }
    mutating func encode(_ value: Double) throws { set(try encoder.number(value)) }
    mutating func encode(_ value: Float) throws { set(try encoder.number(value)) }
    mutating func encode(_ value: Int) throws { set(JSONValue(value)) }
    mutating func encode(_ value: Int8) throws { set(JSONValue(value)) }
    mutating func encode(_ value: Int16) throws { set(JSONValue(value)) }
    mutating func encode(_ value: Int32) throws { set(JSONValue(value)) }
    mutating func encode(_ value: Int64) throws { set(JSONValue(value)) }
    mutating func encode(_ value: UInt) throws { set(JSONValue(value)) }
    mutating func encode(_ value: UInt8) throws { set(JSONValue(value)) }
    mutating func encode(_ value: UInt16) throws { set(JSONValue(value)) }
    mutating func encode(_ value: UInt32) throws { set(JSONValue(value)) }
    mutating func encode(_ value: UInt64) throws { set(JSONValue(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws { encoder.slot = try encoder.box(value) }
}

/// A coding key for dictionary members and array positions.
struct JSONKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ string: String) { stringValue = string }
    init(index: Int) { stringValue = "Index \(index)"; intValue = index }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.init(index: intValue) }
}
