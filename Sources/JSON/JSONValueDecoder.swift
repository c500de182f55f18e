/// Decodes `Decodable` values from a parsed `JSONValue`, with Foundation `JSONDecoder`'s errors:
/// `DecodingError.keyNotFound` naming the missing key, `.typeMismatch` for a value of another JSON type,
/// `.valueNotFound` for `null` where a value is required, `.dataCorrupted` for a number the type cannot
/// hold. Each carries the coding path to the value.
///
/// Numbers: an integer type reads an integer literal that fits (no fraction or exponent); `Double` and
/// `Float` read any number whose nearest value is finite. An object with a repeated key is read by its
/// first member, as `JSONValue`'s subscript and Foundation's `JSONDecoder` read it. Every type is read by
/// its own `Decodable` conformance (no special forms for `Date`, `Data` or `URL`).
public struct JSONValueDecoder {
    /// Whether the file's snake-case keys are matched to camel-case property names ("tool_version" →
    /// "toolVersion"). The keys of `[String: _]` dictionaries are read as they are either way.
    public var convertsKeysFromSnakeCase: Bool

    public init(convertsKeysFromSnakeCase: Bool = false) {
        self.convertsKeysFromSnakeCase = convertsKeysFromSnakeCase
    }

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try ValueDecoder(value, snakeCase: convertsKeysFromSnakeCase, codingPath: []).unbox(T.self)
    }

    /// Foundation's `convertFromSnakeCase`: the words between underscores joined, each after the first
    /// capitalized ("tool_version" → "toolVersion"); leading and trailing underscores are kept.
    public static func camelCase(_ key: String) -> String {
        guard key.contains("_") else { return key }
        let core = key.drop { $0 == "_" }
        let leading = key.count - core.count
        let body = core.reversed().drop { $0 == "_" }
        let trailing = core.count - body.count
        guard !body.isEmpty else { return key }
        let words = String(body.reversed()).split(separator: "_")
        // Each later word capitalized as Foundation's `capitalized` does: first letter up, the rest down.
        let joined = words.enumerated().map { i, word in
            i == 0 ? String(word) : word.prefix(1).uppercased() + word.dropFirst().lowercased()
        }.joined()
        return String(repeating: "_", count: leading) + joined + String(repeating: "_", count: trailing)
    }
}

/// `[String: V]`, whose keys are data, not property names: the snake-case conversion leaves them alone.
private protocol StringKeyedDecodableDictionary {
    init(members decoder: ValueDecoder) throws
}

extension Dictionary: StringKeyedDecodableDictionary where Key == String, Value: Decodable {
    fileprivate init(members decoder: ValueDecoder) throws {
        guard case let .object(members) = decoder.value else { throw decoder.mismatch([String: Value].self) }
        self.init()
        for (key, value) in members where self[key] == nil {
            self[key] = try decoder.nested(value, JSONKey(key)).unbox(Value.self)
        }
    }
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let snakeCase: Bool
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, snakeCase: Bool, codingPath: [CodingKey]) {
        self.value = value
        self.snakeCase = snakeCase
        self.codingPath = codingPath
    }

    func nested(_ value: JSONValue, _ key: CodingKey) -> ValueDecoder {
        ValueDecoder(value, snakeCase: snakeCase, codingPath: codingPath + [key])
    }

    func unbox<T: Decodable>(_ type: T.Type) throws -> T {
        if snakeCase, let dictionary = T.self as? StringKeyedDecodableDictionary.Type {
            return try dictionary.init(members: self) as! T
        }
        return try T(from: self)
    }

    func mismatch(_ type: Any.Type) -> DecodingError {
        if value.isNull {
            return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "Expected \(type) but found null instead."))
        }
        return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "Expected \(type) but found \(value.kindDescription) instead."))
    }

    func bool() throws -> Bool {
        guard case let .bool(b) = value else { throw mismatch(Bool.self) }
        return b
    }

    func string() throws -> String {
        guard case let .string(s) = value else { throw mismatch(String.self) }
        return s
    }

    func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard case let .number(text) = value else { throw mismatch(type) }
        guard let n = T(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(text) is not an integer that fits \(type)"))
        }
        return n
    }

    func floatingPoint<T: BinaryFloatingPoint & LosslessStringConvertible>(_ type: T.Type) throws -> T {
        guard case let .number(text) = value else { throw mismatch(type) }
        guard let x = T(text), x.isFinite else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(text) does not fit \(type)"))
        }
        return x
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(members) = value else { throw mismatch([String: Any].self) }
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self, members: members))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case let .array(items) = value else { throw mismatch([Any].self) }
        return UnkeyedContainer(decoder: self, items: items)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleValueContainer(decoder: self) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ValueDecoder
    /// Member values by key as the properties name them (camel case when converting); the first of
    /// repeated keys.
    let values: [String: JSONValue]
    let allKeys: [Key]
    var codingPath: [CodingKey] { decoder.codingPath }

    init(decoder: ValueDecoder, members: [(key: String, value: JSONValue)]) {
        self.decoder = decoder
        var values: [String: JSONValue] = [:]
        var keys: [Key] = []
        for (fileKey, value) in members {
            let name = decoder.snakeCase ? JSONValueDecoder.camelCase(fileKey) : fileKey
            guard values[name] == nil else { continue }
            values[name] = value
            if let key = Key(stringValue: name) { keys.append(key) }
        }
        self.values = values
        allKeys = keys
    }

    func contains(_ key: Key) -> Bool { values[key.stringValue] != nil }

    private func member(_ key: Key) throws -> ValueDecoder {
        guard let value = values[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value for key '\(key.stringValue)'."))
        }
        return decoder.nested(value, key)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try member(key).value.isNull }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try member(key).bool() }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try member(key).string() }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try member(key).floatingPoint(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try member(key).floatingPoint(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try member(key).integer(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try member(key).integer(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try member(key).integer(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try member(key).integer(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try member(key).integer(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try member(key).integer(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try member(key).integer(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try member(key).integer(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try member(key).integer(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try member(key).integer(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try member(key).unbox(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try member(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer { try member(key).unkeyedContainer() }

    func superDecoder() throws -> Decoder { decoder.nested(values["super"] ?? .null, JSONKey("super")) }
    func superDecoder(forKey key: Key) throws -> Decoder { decoder.nested(values[key.stringValue] ?? .null, key) }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: ValueDecoder
    let items: [JSONValue]
    var currentIndex = 0
    var codingPath: [CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(decoder: ValueDecoder, items: [JSONValue]) {
        self.decoder = decoder
        self.items = items
    }

    /// The next element's decoder; the index moves on only once the element decoded, as in Foundation.
    private func element<T>(_ type: T.Type) throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [JSONKey(index: currentIndex)],
                                                          debugDescription: "The array has no element \(currentIndex)."))
        }
        return decoder.nested(items[currentIndex], JSONKey(index: currentIndex))
    }

    private mutating func next<T>(_ decode: (ValueDecoder) throws -> T) throws -> T {
        let value = try decode(try element(T.self))
        currentIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard try element(Any?.self).value.isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next { try $0.bool() } }
    mutating func decode(_ type: String.Type) throws -> String { try next { try $0.string() } }
    mutating func decode(_ type: Double.Type) throws -> Double { try next { try $0.floatingPoint(type) } }
    mutating func decode(_ type: Float.Type) throws -> Float { try next { try $0.floatingPoint(type) } }
    mutating func decode(_ type: Int.Type) throws -> Int { try next { try $0.integer(type) } }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next { try $0.integer(type) } }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next { try $0.integer(type) } }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next { try $0.integer(type) } }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next { try $0.integer(type) } }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next { try $0.integer(type) } }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next { try $0.integer(type) } }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next { try $0.integer(type) } }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next { try $0.integer(type) } }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next { try $0.integer(type) } }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next { try $0.unbox(type) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next { try $0.container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next { try $0.unkeyedContainer() } }
    mutating func superDecoder() throws -> Decoder { try next { $0 } }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.value.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { try decoder.bool() }
    func decode(_ type: String.Type) throws -> String { try decoder.string() }
    func decode(_ type: Double.Type) throws -> Double { try decoder.floatingPoint(type) }
    func decode(_ type: Float.Type) throws -> Float { try decoder.floatingPoint(type) }
    func decode(_ type: Int.Type) throws -> Int { try decoder.integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decoder.integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decoder.integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decoder.integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decoder.integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decoder.integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.integer(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.unbox(type) }
}
