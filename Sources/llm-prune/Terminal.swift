import Foundation
import JSON
import Tensor

/// Writes a line to standard error (progress and diagnostics never mix with results on stdout).
///
/// Through write(2), errors ignored: FileHandle traps on EPIPE, and a closed pipe (`llm-prune ... 2>&1 |
/// head -1`) must end the run by its SIGPIPE, with cleanup, not by a crash.
func printError(_ s: String) { writeStandardError(s + "\n") }

func writeStandardError(_ s: String) {
    let bytes = Array(s.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(2, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}

/// Shows library progress on stderr: rate and ETA, redrawn in place on a terminal and at most every few
/// seconds (one line each) when stderr is a file or a pipe, so CI logs stay short. The rate and ETA are
/// measured from the stage's first update and shown only once a second has passed since it (see
/// `ProgressRate`); before that the line has no rate.
final class ProgressPrinter {
    private var start = Date()
    private var stage = ""
    private var lastPrint = Date.distantPast
    private var rate = ProgressRate(minimumInterval: 1)
    private let interactive = isatty(2) != 0
    private let quiet: Bool

    init(quiet: Bool = false) { self.quiet = quiet }

    var elapsed: Double { Date().timeIntervalSince(start) }

    func handle(_ u: ProgressUpdate) {
        if quiet { return }
        let now = Date()
        if u.stage != stage {
            // Rate and ETA are per stage (prune, then eval): restart the clock when the stage changes.
            stage = u.stage
            start = now
            lastPrint = .distantPast
            rate.reset()
        }
        let t = elapsed
        // Every update is a sample (the first is the base), printed or not.
        let perSecond = rate.update(time: t, completed: u.completed)
        let finished = u.completed >= u.total
        let minInterval = interactive ? 0.2 : 5.0
        if !finished && now.timeIntervalSince(lastPrint) < minInterval { return }
        lastPrint = now
        let pct = u.total > 0 ? 100 * Double(u.completed) / Double(u.total) : 100
        var line = String(format: "%@ %5.1f%% %d/%d %@", u.stage, pct, u.completed, u.total, u.unit)
        if let perSecond { line += String(format: " | %@/s %@", formatCount(perSecond), u.unit) }
        line += " | elapsed \(formatDuration(t))"
        if !finished, let remaining = ProgressRate.remaining(completed: u.completed, total: u.total, rate: perSecond) {
            line += " | ETA \(formatDuration(remaining))"
        }
        if !u.detail.isEmpty { line += " | \(u.detail)" }
        if interactive {
            writeStandardError("\r\u{1B}[K" + line + (finished ? "\n" : ""))
        } else {
            printError(line)
        }
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return String(format: "%dh%02dm%02ds", t / 3600, (t / 60) % 60, t % 60) }
    if t >= 60 { return String(format: "%dm%02ds", t / 60, t % 60) }
    return String(format: "%.1fs", s)
}

func formatCount(_ x: Double) -> String {
    if x >= 1e6 { return String(format: "%.2fM", x / 1e6) }
    if x >= 1e3 { return String(format: "%.1fk", x / 1e3) }
    return String(format: "%.1f", x)
}

func formatBytes(_ b: Int) -> String {
    let x = Double(b)
    if b >= 1 << 30 { return String(format: "%.2f GiB", x / Double(1 << 30)) }
    if b >= 1 << 20 { return String(format: "%.1f MiB", x / Double(1 << 20)) }
    if b >= 1 << 10 { return String(format: "%.1f KiB", x / Double(1 << 10)) }
    return "\(b) B"
}

/// Serializes a result dictionary as one line of JSON with sorted keys (stable output for scripts).
/// JSON has no NaN or infinity: such a number (an overflowed perplexity) is written as null, with a
/// warning on stderr naming the key.
func jsonLine(_ object: [String: Any]) -> String {
    guard let value = jsonValue(object, path: "") else {
        printError("warning: the result could not be serialized as JSON")
        return "null"
    }
    return value.text(.sortedKeys)
}

/// `value` as JSON: `[String: Any]`, `[Any]`, strings, booleans, integers, Double, Float and NSNull, every
/// non-finite Double or Float as null (a warning per key); nil when something else is inside.
func jsonValue(_ value: Any, path: String) -> JSONValue? {
    func nonFinite(_ text: String) -> JSONValue {
        printError("warning: \(path.isEmpty ? "a result" : path) is \(text), written as null in the JSON output")
        return .null
    }
    switch value {
    case is NSNull: return .null
    case let b as Bool: return .bool(b)
    case let s as String: return .string(s)
    case let i as any BinaryInteger: return JSONValue(i)
    case let d as Double: return JSONValue(d) ?? nonFinite("\(d)")
    case let f as Float: return JSONValue(f) ?? nonFinite("\(f)")
    case let o as [String: Any]:
        var members: [(key: String, value: JSONValue)] = []
        for (k, v) in o {
            guard let member = jsonValue(v, path: path.isEmpty ? k : "\(path).\(k)") else { return nil }
            members.append((k, member))
        }
        return .object(members)
    case let a as [Any]:
        var items: [JSONValue] = []
        for (i, v) in a.enumerated() {
            guard let item = jsonValue(v, path: "\(path)[\(i)]") else { return nil }
            items.append(item)
        }
        return .array(items)
    default:
        return nil
    }
}

