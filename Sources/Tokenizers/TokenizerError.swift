import Foundation
import JSON

/// A tokenizer that cannot be loaded: a missing or unreadable file, malformed JSON, a stage whose
/// `"type"` is not supported, or a configuration that contradicts itself. The description is one line
/// naming the file (when known) and the problem.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    /// Path of the file the problem is in, or nil for a configuration parsed from memory.
    public let file: String?
    /// What is wrong, e.g. `unsupported pre_tokenizer type "Whitespace"`.
    public let message: String

    public init(file: String? = nil, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String {
        let oneLine = message.replacingOccurrences(of: "\n", with: " ")
        if let file { return "\(file): \(oneLine)" }
        return oneLine
    }

    /// The same error attributed to `file`, unless it already names one.
    func attributed(to file: String) -> TokenizerError {
        self.file == nil ? TokenizerError(file: file, message) : self
    }

    static func unsupported(_ stage: String, _ type: String) -> TokenizerError {
        TokenizerError("unsupported \(stage) type \"\(type)\"")
    }

    static func invalid(_ stage: String, _ reason: String) -> TokenizerError {
        TokenizerError("invalid \(stage): \(reason)")
    }
}

/// Typed accessors over a stage's JSON object that throw `TokenizerError` naming the stage and field.
struct StageConfig {
    let json: JSONValue
    let stage: String

    init(_ json: JSONValue, stage: String) throws {
        guard json.objectValue != nil else { throw TokenizerError.invalid(stage, "expected a JSON object") }
        self.json = json
        self.stage = stage
    }

    /// The `"type"` tag.
    func type() throws -> String {
        guard let t = json["type"]?.stringValue else { throw TokenizerError.invalid(stage, "missing \"type\"") }
        return t
    }

    func has(_ key: String) -> Bool {
        if let v = json[key] { return !v.isNull }
        return false
    }

    func string(_ key: String) throws -> String {
        guard let s = json[key]?.stringValue else { throw TokenizerError.invalid(stage, "missing string \"\(key)\"") }
        return s
    }

    func optionalString(_ key: String) throws -> String? {
        guard let v = json[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw TokenizerError.invalid(stage, "\"\(key)\" is not a string") }
        return s
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let v = json[key], !v.isNull else { return value }
        guard let b = v.boolValue else { throw TokenizerError.invalid(stage, "\"\(key)\" is not a boolean") }
        return b
    }

    func int(_ key: String, default value: Int) throws -> Int {
        guard let v = json[key], !v.isNull else { return value }
        guard let i = v.intValue else { throw TokenizerError.invalid(stage, "\"\(key)\" is not an integer") }
        return i
    }

    func array(_ key: String) throws -> [JSONValue] {
        guard let a = json[key]?.arrayValue else { throw TokenizerError.invalid(stage, "missing array \"\(key)\"") }
        return a
    }

    /// A single-scalar string field (HF stores `char` fields as one-character strings).
    func scalar(_ key: String, default value: Unicode.Scalar? = nil) throws -> Unicode.Scalar {
        guard let v = json[key], !v.isNull else {
            if let value { return value }
            throw TokenizerError.invalid(stage, "missing \"\(key)\"")
        }
        guard let s = v.stringValue, s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw TokenizerError.invalid(stage, "\"\(key)\" must be a single character")
        }
        return c
    }
}
