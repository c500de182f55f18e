import Foundation

/// `llm-prune-test-child` (Tests/TestChild): a separate executable for the checks that need a fresh process
/// (settings read once per process, such as OpenBLAS's core or oneDNN's ISA cap, and a peak resident size
/// not raised by other tests). It is built beside the test binary by `swift build --build-tests`.
public enum TestChild {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The built child, found beside this test binary in the build products folder.
    public static func executable() throws -> URL {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent(), dir.deletingLastPathComponent().deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("llm-prune-test-child")
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue { return url }
        }
        throw Failure(description: "no llm-prune-test-child near \(dir.path); build it first (swift build -c release --build-tests)")
    }

    /// Runs `llm-prune-test-child command` in the environment of this process less `removing` plus `env`
    /// and returns the `key=value` lines it prints. A non-zero exit throws with what it wrote to stderr.
    public static func run(_ command: String, env: [String: String] = [:], removing: [String] = []) throws -> [String: String] {
        let p = Process()
        p.executableURL = try executable()
        p.arguments = [command]
        var e = ProcessInfo.processInfo.environment
        for k in removing { e.removeValue(forKey: k) }
        for (k, v) in env { e[k] = v }
        p.environment = e
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationReason == .exit && p.terminationStatus == 0 else {
            throw Failure(description: "llm-prune-test-child \(command) failed (status \(p.terminationStatus)): \(message)")
        }
        var report: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            report[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return report
    }
}

/// The fixed GEMM a BLAS child and its parent both compute: small integers and eighths, so the product is
/// exact on every core and the two can be compared bit for bit.
public enum BLASProbe {
    public static let m = 23, n = 19, k = 40
    public static var a: [Float] { (0..<(m * k)).map { Float(($0 * 7) % 13) / 8 - 0.75 } }
    public static var b: [Float] { (0..<(k * n)).map { Float(($0 * 5) % 11) / 4 - 1.25 } }
}
