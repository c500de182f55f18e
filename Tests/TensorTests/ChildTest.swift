import Foundation

/// Runs this test binary again, restricted to the test `filter`, in the environment of this process less
/// `removing` plus `env`, with `reportVariable` naming a fresh file; returns what the child wrote there.
/// For settings read once per process (OpenBLAS's core, oneDNN's ISA cap), which only a new process sees.
func childTestReport(filter: String, reportVariable: String, env: [String: String], removing: [String]) throws -> String {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("child-test-\(getpid())-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: out) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    p.arguments = ["--testing-library", "swift-testing", "--filter", filter]
    var e = ProcessInfo.processInfo.environment
    for k in removing { e.removeValue(forKey: k) }
    for (k, v) in env { e[k] = v }
    e[reportVariable] = out.path
    p.environment = e
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return try String(contentsOf: out, encoding: .utf8)
}
