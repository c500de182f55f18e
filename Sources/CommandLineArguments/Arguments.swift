import Foundation

/// A command-line usage problem: reported with the command's usage line, exit status 64 (EX_USAGE).
public struct UsageError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ message: String) { description = message }
}

/// One `--long-option` of a command. `valueName == nil` makes it a flag that takes no value.
public struct OptionSpec {
    public var name: String
    public var valueName: String?
    public var help: String
    /// The value used when the option is absent.
    public var defaultValue: String? = nil
    public var required = false
    /// How `--help` describes a default that depends on the model (the option is then absent → nil).
    public var computedDefault: String? = nil

    public init(name: String, valueName: String?, help: String, defaultValue: String? = nil, required: Bool = false,
                computedDefault: String? = nil) {
        self.name = name; self.valueName = valueName; self.help = help; self.defaultValue = defaultValue
        self.required = required; self.computedDefault = computedDefault
    }
}

/// A subcommand: its options and help text. The generated `--help` lists every option with its default.
public struct CommandSpec {
    public var name: String
    public var abstract: String
    public var discussion: String = ""
    public var options: [OptionSpec]
    public var examples: [String] = []

    public init(name: String, abstract: String, discussion: String = "", options: [OptionSpec], examples: [String] = []) {
        self.name = name; self.abstract = abstract; self.discussion = discussion; self.options = options; self.examples = examples
    }

    public var usage: String {
        let parts = options.map { o -> String in
            let body = o.valueName.map { "--\(o.name) <\($0)>" } ?? "--\(o.name)"
            return o.required ? body : "[\(body)]"
        }
        return "llm-prune \(name) " + parts.joined(separator: " ")
    }

    public var help: String {
        var s = "OVERVIEW: \(abstract)\n\nUSAGE: \(usage)\n"
        if !discussion.isEmpty { s += "\n\(discussion)\n" }
        s += "\nOPTIONS:\n"
        let all = options + [OptionSpec(name: "help", valueName: nil, help: "Show this help and exit.")]
        let labels = all.map { o in "  --\(o.name)" + (o.valueName.map { " <\($0)>" } ?? "") }
        let width = min(34, (labels.map(\.count).max() ?? 0) + 2)
        for (o, label) in zip(all, labels) {
            var text = o.help
            if let d = o.defaultValue ?? o.computedDefault { text += " (default: \(d))" }
            if o.required { text += " (required)" }
            let pad = label.count < width ? String(repeating: " ", count: width - label.count) : "\n" + String(repeating: " ", count: width)
            s += label + pad + text + "\n"
        }
        if !examples.isEmpty {
            s += "\nEXAMPLES:\n" + examples.map { "  \($0)" }.joined(separator: "\n") + "\n"
        }
        return s
    }

    /// Parses `arguments` (the words after the subcommand name) against this command's options.
    public func parse(_ arguments: [String]) throws -> ParsedArguments {
        var parsed = ParsedArguments(command: self)
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            guard word.hasPrefix("--") else {
                throw UsageError("unexpected argument '\(word)' (options start with --)")
            }
            var name = String(word.dropFirst(2))
            var inlineValue: String? = nil
            if let eq = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let spec = options.first(where: { $0.name == name }) else {
                if name == "help" { parsed.helpRequested = true; i += 1; continue }
                let close = options.map(\.name).min { editDistance($0, name) < editDistance($1, name) }
                let hint = close.map { editDistance($0, name) <= 3 ? " (did you mean --\($0)?)" : "" } ?? ""
                throw UsageError("unknown option '--\(name)' for '\(self.name)'\(hint)")
            }
            if spec.valueName == nil {
                if inlineValue != nil { throw UsageError("option '--\(name)' takes no value") }
                parsed.flags.insert(name)
                i += 1
            } else if let v = inlineValue {
                parsed.values[name] = v
                i += 1
            } else {
                guard i + 1 < arguments.count else { throw UsageError("option '--\(name)' needs a value <\(spec.valueName!)>") }
                parsed.values[name] = arguments[i + 1]
                i += 2
            }
        }
        if !parsed.helpRequested {
            for o in options where o.required && parsed.values[o.name] == nil {
                throw UsageError("missing required option '--\(o.name) <\(o.valueName ?? "")>'")
            }
        }
        return parsed
    }
}

/// The options one invocation gave, with typed accessors that turn bad values into usage errors.
public struct ParsedArguments {
    public var command: CommandSpec
    public var values: [String: String] = [:]
    public var flags: Set<String> = []
    public var helpRequested = false

    public func flag(_ name: String) -> Bool { flags.contains(name) }

    public func string(_ name: String) -> String? {
        values[name] ?? command.options.first(where: { $0.name == name })?.defaultValue
    }

    public func requiredString(_ name: String) throws -> String {
        guard let v = string(name) else { throw UsageError("missing required option '--\(name)'") }
        return v
    }

    public func int(_ name: String, range: ClosedRange<Int> = 0...Int.max) throws -> Int? {
        guard let s = string(name) else { return nil }
        guard let v = Int(s), range.contains(v) else {
            throw UsageError("option '--\(name)' needs an integer in \(range.lowerBound)...\(range.upperBound == Int.max ? "" : String(range.upperBound)), got '\(s)'")
        }
        return v
    }

    public func double(_ name: String) throws -> Double? {
        guard let s = string(name) else { return nil }
        guard let v = Double(s), v.isFinite else { throw UsageError("option '--\(name)' needs a number, got '\(s)'") }
        return v
    }

    /// An option the command gives a default (or requires): its value as an integer in `range`.
    public func requiredInt(_ name: String, range: ClosedRange<Int> = 0...Int.max) throws -> Int {
        guard let v = try int(name, range: range) else { throw UsageError("missing required option '--\(name)'") }
        return v
    }

    /// An option the command gives a default (or requires): its value as a finite number.
    public func requiredDouble(_ name: String) throws -> Double {
        guard let v = try double(name) else { throw UsageError("missing required option '--\(name)'") }
        return v
    }

    /// A choice among an enumeration's raw values (`--lora-mode masked`), as the enumeration's case.
    public func choice<T: RawRepresentable & CaseIterable>(_ name: String, of type: T.Type) throws -> T? where T.RawValue == String {
        guard let s = try choice(name, T.allCases.map(\.rawValue)) else { return nil }
        return T(rawValue: s)
    }

    /// `choice(_:of:)` for an option the command gives a default (or requires).
    public func requiredChoice<T: RawRepresentable & CaseIterable>(_ name: String, of type: T.Type) throws -> T where T.RawValue == String {
        guard let v = try choice(name, of: type) else { throw UsageError("missing required option '--\(name)'") }
        return v
    }

    /// `choice(_:_:)` for an option the command gives a default (or requires).
    public func requiredChoice(_ name: String, _ allowed: [String]) throws -> String {
        guard let v = try choice(name, allowed) else { throw UsageError("missing required option '--\(name)'") }
        return v
    }

    /// A choice from a fixed set, so a typo is a usage error that lists the valid words.
    public func choice(_ name: String, _ allowed: [String]) throws -> String? {
        guard let s = string(name) else { return nil }
        guard allowed.contains(s) else {
            throw UsageError("option '--\(name)' must be one of \(allowed.joined(separator: ", ")), got '\(s)'")
        }
        return s
    }
}

/// Levenshtein distance, for "did you mean" hints on mistyped options.
public func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
