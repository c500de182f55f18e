import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The folder holding Package.swift, found by walking up from this file.
func packageRoot(_ file: String = #filePath) throws -> URL {
    var dir = URL(fileURLWithPath: file).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
        dir = dir.deletingLastPathComponent()
    }
    throw CLITestError("no Package.swift above \(file)")
}

struct CLITestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A path in the shared data (../shared from the package root); missing data is a failure.
func sharedPath(_ relative: String) throws -> String {
    let url = try packageRoot().deletingLastPathComponent().appendingPathComponent("shared/\(relative)")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw CLITestError("missing shared data \(url.path): see ../shared/README.md")
    }
    return url.path
}

/// The built `llm-prune`, beside this test binary in the build products folder (`swift build` makes both).
func binary() throws -> String {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent(), dir.deletingLastPathComponent().deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("llm-prune").path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue { return path }
    }
    throw CLITestError("no llm-prune binary near \(dir.path); build it first (swift build -c release --build-tests)")
}

func scratchFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("llm-prune-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Every name in `folder`, hidden ones included, sorted.
func listing(_ folder: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
}

/// How a child process ended.
struct Outcome {
    var exitCode: Int32?
    var signal: Int32?
    var stdout: String
    var stderr: String
    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
}

/// `llm-prune` running as a child process, its output collected as it comes.
final class Child {
    let process = Process()
    private let lock = NSLock()
    private var out = Data(), err = Data()
    private let outPipe = Pipe(), errPipe = Pipe()

    init(_ arguments: [String], environment: [String: String] = [:], executable: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: try executable ?? binary())
        process.arguments = arguments
        // Away from the repository: a SIGQUIT may dump core in the working folder.
        process.currentDirectoryURL = FileManager.default.temporaryDirectory
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "LLM_PRUNE_TEST_PAUSE")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = outPipe
        process.standardError = errPipe
        outPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.out.append(d); self.lock.unlock()
        }
        errPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.err.append(d); self.lock.unlock()
        }
        // Children inherit ignored signals; llm-prune rightly keeps those ignored (as for nohup), so make
        // sure the ones the tests send are not.
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGQUIT] { signal(sig, SIG_DFL) }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    var stderrSoFar: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: err, as: UTF8.self)
    }

    /// Waits until stderr contains `text`; false if the process ended or `timeout` passed first.
    func waitFor(_ text: String, timeout: Double = 120) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stderrSoFar.contains(text) { return true }
            if !process.isRunning { return stderrSoFar.contains(text) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return false
    }

    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    func wait() -> Outcome {
        process.waitUntilExit()
        // Drain what the pipes still hold.
        outPipe.fileHandleForReading.readabilityHandler = nil
        errPipe.fileHandleForReading.readabilityHandler = nil
        let restOut = outPipe.fileHandleForReading.readDataToEndOfFile()
        let restErr = errPipe.fileHandleForReading.readDataToEndOfFile()
        lock.lock(); out.append(restOut); err.append(restErr); lock.unlock()
        let byOutput = process.terminationReason == .exit
        return Outcome(exitCode: byOutput ? process.terminationStatus : nil,
                       signal: byOutput ? nil : process.terminationStatus,
                       stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }
}

/// Runs `llm-prune arguments` to the end.
func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
    try Child(arguments, environment: environment).wait()
}

/// A small prune: wanda on stories260K, 8 × 64 calibration tokens, evaluated on a short text.
func pruneArguments(output: URL, scratch: URL, method: String = "wanda", extra: [String] = []) throws -> [String] {
    let evalFile = scratch.appendingPathComponent("eval.txt")
    if !FileManager.default.fileExists(atPath: evalFile.path) {
        let text = try String(contentsOfFile: try sharedPath("text/wikitext-2-raw/wiki.test.raw"), encoding: .utf8)
        try String(text.prefix(4000)).write(to: evalFile, atomically: true, encoding: .utf8)
    }
    return ["prune", "--model", try sharedPath("models/stories260K"), "--method", method, "--sparsity", "2:4",
            "--calibration-file", try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"),
            "--calibration-format", "tokens", "--nsamples", "8", "--seqlen", "64",
            "--eval-dataset", "text", "--eval-file", evalFile.path, "--eval-seqlen", "64",
            "--output", output.path] + extra
}

/// The pruned checkpoint is complete: weights, config, tokenizer and the run record.
func isComplete(_ output: URL) -> Bool {
    let names = Set(listing(output))
    return ["model.safetensors", "config.json", "tokenizer.json", "pruning.json"].allSatisfy(names.contains)
}
