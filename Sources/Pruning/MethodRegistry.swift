/// One option a method reads from the command line: `--name <valueName>`, its help line, and its default
/// as `--help` shows it (a value, or a description such as "min(32, nsamples)"); or a flag `--name` that
/// takes no value (`valueName` nil, no default: off unless given).
public struct MethodOption: Sendable, Equatable {
    public var name: String
    public var valueName: String?
    public var help: String
    public var defaultText: String?

    public init(_ name: String, valueName: String, help: String, default defaultText: String) {
        self.name = name; self.valueName = valueName; self.help = help; self.defaultText = defaultText
    }

    /// A flag: present or absent.
    public init(flag name: String, help: String) {
        self.name = name; self.valueName = nil; self.help = help; self.defaultText = nil
    }

    public var isFlag: Bool { valueName == nil }
}

/// A bad method option value; the command line reports it as a usage error.
public struct MethodOptionError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The option values a run gave (absent options are missing from `values`; a flag that was given maps to
/// an empty value), read with typed, checked accessors.
public struct MethodArguments: Sendable {
    public var values: [String: String]
    /// The run's calibration sample count (defaults may depend on it).
    public var sampleCount: Int

    public init(values: [String: String] = [:], sampleCount: Int = 128) {
        self.values = values
        self.sampleCount = sampleCount
    }

    /// Whether the flag `--name` was given.
    public func flag(_ name: String) -> Bool { values[name] != nil }

    /// `--name` as a finite number, or `fallback` when absent.
    public func double(_ name: String, default fallback: Double) throws -> Double {
        guard let s = values[name] else { return fallback }
        guard let v = Double(s), v.isFinite else { throw MethodOptionError("option '--\(name)' needs a number, got '\(s)'") }
        return v
    }

    /// `--name` as an integer in `range`, or `fallback` when absent.
    public func int(_ name: String, range: ClosedRange<Int>, default fallback: Int?) throws -> Int? {
        guard let s = values[name] else { return fallback }
        guard let v = Int(s), range.contains(v) else {
            throw MethodOptionError("option '--\(name)' needs an integer in \(range.lowerBound)...\(range.upperBound == Int.max ? "" : String(range.upperBound)), got '\(s)'")
        }
        return v
    }
}

/// A method as the command line offers it: its name, what it does in one sentence, the options it reads,
/// and how to make it from their values.
public struct MethodRegistration {
    public var name: String
    public var summary: String
    public var options: [MethodOption]
    public var make: (MethodArguments) throws -> PruningMethod

    public init(name: String, summary: String, options: [MethodOption] = [],
                make: @escaping (MethodArguments) throws -> PruningMethod) {
        self.name = name; self.summary = summary; self.options = options; self.make = make
    }
}

/// Every pruning method the tool offers.
public enum PruningMethods {
    /// In the order `--help` lists them. Adding a method is its file (which defines its registration) and
    /// one line here.
    public static let registered: [MethodRegistration] = [
        MagnitudePruning.registration,
        WandaPruning.registration,
        SparseGPTPruning.registration,
    ] + WandaPlusPlusVariant.allCases.map(WandaPlusPlusMethod.registration) + [
        RIAPruning.registration,
    ]

    public static var names: [String] { registered.map(\.name) }

    /// The options of every method, each once, in registration order.
    public static var options: [MethodOption] {
        var seen: Set<String> = []
        return registered.flatMap(\.options).filter { seen.insert($0.name).inserted }
    }

    /// The method named `name`, made from `arguments`.
    public static func make(_ name: String, _ arguments: MethodArguments = MethodArguments()) throws -> PruningMethod {
        guard let r = registered.first(where: { $0.name == name }) else {
            throw PruningError("unknown pruning method '\(name)'; expected one of \(names.joined(separator: ", "))")
        }
        return try r.make(arguments)
    }
}
