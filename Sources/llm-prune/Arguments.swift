import Foundation

/// A command-line usage problem: reported with the command's usage line, exit status 64 (EX_USAGE).
struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

/// One `--long-option` of a command. `valueName == nil` makes it a flag that takes no value.
struct OptionSpec {
    var name: String
    var valueName: String?
    var help: String
    /// The value used when the option is absent.
    var defaultValue: String? = nil
    var required = false
    /// How `--help` describes a default that depends on the model (the option is then absent → nil).
    var computedDefault: String? = nil
}

/// A subcommand: its options and help text. The generated `--help` lists every option with its default.
struct CommandSpec {
    var name: String
    var abstract: String
    var discussion: String = ""
    var options: [OptionSpec]
    var examples: [String] = []

    var usage: String {
        let parts = options.map { o -> String in
            let body = o.valueName.map { "--\(o.name) <\($0)>" } ?? "--\(o.name)"
            return o.required ? body : "[\(body)]"
        }
        return "llm-prune \(name) " + parts.joined(separator: " ")
    }

    var help: String {
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
    func parse(_ arguments: [String]) throws -> ParsedArguments {
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
struct ParsedArguments {
    var command: CommandSpec
    var values: [String: String] = [:]
    var flags: Set<String> = []
    var helpRequested = false

    func flag(_ name: String) -> Bool { flags.contains(name) }

    func string(_ name: String) -> String? {
        values[name] ?? command.options.first(where: { $0.name == name })?.defaultValue
    }

    func requiredString(_ name: String) throws -> String {
        guard let v = string(name) else { throw UsageError("missing required option '--\(name)'") }
        return v
    }

    func int(_ name: String, range: ClosedRange<Int> = 0...Int.max) throws -> Int? {
        guard let s = string(name) else { return nil }
        guard let v = Int(s), range.contains(v) else {
            throw UsageError("option '--\(name)' needs an integer in \(range.lowerBound)...\(range.upperBound == Int.max ? "" : String(range.upperBound)), got '\(s)'")
        }
        return v
    }

    func double(_ name: String) throws -> Double? {
        guard let s = string(name) else { return nil }
        guard let v = Double(s), v.isFinite else { throw UsageError("option '--\(name)' needs a number, got '\(s)'") }
        return v
    }

    /// A choice from a fixed set, so a typo is a usage error that lists the valid words.
    func choice(_ name: String, _ allowed: [String]) throws -> String? {
        guard let s = string(name) else { return nil }
        guard allowed.contains(s) else {
            throw UsageError("option '--\(name)' must be one of \(allowed.joined(separator: ", ")), got '\(s)'")
        }
        return s
    }
}

/// Levenshtein distance, for "did you mean" hints on mistyped options.
func editDistance(_ a: String, _ b: String) -> Int {
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
