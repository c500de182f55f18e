import Datasets
import Foundation
import Llama
import Pruning
import Runs
import Tokenizers
#if canImport(Glibc)
import Glibc
#endif

/// How one case ended. Only `ok` and `error` are acceptable; every other outcome is a bug.
enum FuzzOutcome: String, CaseIterable, Sendable {
    /// The input was usable and the run succeeded.
    case ok
    /// Refused with a one-line `error: ...` and the documented status (1, or 64 for usage errors).
    case error
    /// Killed by a signal (a Swift trap, an allocation failing under the address-space limit) or an
    /// undocumented exit status.
    case trap
    /// Still running after the time limit.
    case hang
    /// Files left in the case folder that the run did not promise (a `.partial-PID` folder, a half output).
    case leftover
    /// An error whose message is not one `error:` line (several lines, empty, a raw Foundation error).
    case badMessage = "bad-message"
    /// Peak resident memory beyond the bound.
    case memory
}

struct FuzzResult: Sendable {
    var outcome: FuzzOutcome
    var detail: String
}

/// Where the inputs and the binary are.
struct FuzzEnvironment {
    let packageRoot: URL
    let base: FuzzBase
    /// A valid text file (calibration for flag cases, evaluation data for model cases).
    let textFile: URL
    let work: URL

    static func make() throws -> FuzzEnvironment {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shared = root.deletingLastPathComponent().appendingPathComponent("shared")
        let model = shared.appendingPathComponent("models/stories260K")
        let text = shared.appendingPathComponent("text/tinyshakespeare/input.txt")
        guard FileManager.default.fileExists(atPath: model.path) else {
            throw FuzzSetupError("the fuzz suite needs ../shared/models/stories260K beside the repository")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("llm-prune-fuzz-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let base = try FuzzBase(modelFolder: model, textFile: text,
                                ggufFile: root.appendingPathComponent("Fixtures/gguf/tiny-llama.gguf"))
        let small = work.appendingPathComponent("text.txt")
        try Data(base.text).write(to: small)
        return FuzzEnvironment(packageRoot: root, base: base, textFile: small, work: work)
    }

    /// The release binary `swift build -c release` makes (or $LLM_PRUNE_BINARY).
    var binary: URL {
        if let path = ProcessInfo.processInfo.environment["LLM_PRUNE_BINARY"] { return URL(fileURLWithPath: path) }
        return packageRoot.appendingPathComponent(".build/release/llm-prune")
    }
}

struct FuzzSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

enum FuzzRunner {
    /// Bounds the harness enforces.
    /// Peak RSS of one command-line case.
    static let peakMemoryBound = 1 << 30
    /// Growth of this process's peak RSS over one library case: looser, as tests running beside the fuzz
    /// suite raise the same peak (a memory bomb of the kind issue 11 lists allocates 16 GiB).
    static let inProcessMemoryBound = 4 << 30
    static let addressSpaceKiB = 8 << 20
    static let timeLimit: Double = 60

    /// Writes the case's files into a fresh folder and returns it.
    static func materialize(_ c: FuzzCase, in env: FuzzEnvironment, tag: String) throws -> URL {
        let dir = env.work.appendingPathComponent("case-\(tag)-\(c.index)")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (path, file) in c.files {
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            switch file {
            case .bytes(let b): try Data(b).write(to: url)
            case .directory: try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            case .symlink(let target): try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: target)
            }
        }
        return dir
    }

    /// The case folder's top-level entries that are not inputs (and not `allowed`).
    static func leftovers(_ dir: URL, _ c: FuzzCase, allowed: Set<String>) -> [String] {
        let inputs = Set(c.files.map { String($0.path.split(separator: "/").first ?? "") })
        let listing = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        var extra = listing.filter { !inputs.contains($0) && !allowed.contains($0) }
        // Inside the model folder too (an export must never write into its input).
        if inputs.contains("model") {
            let modelInputs = Set(c.files.compactMap { $0.path.hasPrefix("model/") ? String($0.path.dropFirst(6)) : nil })
            let inside = (try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("model").path)) ?? []
            extra += inside.filter { !modelInputs.contains($0) }.map { "model/" + $0 }
        }
        return extra.sorted()
    }

    // MARK: - In process

    /// Runs the library on the case: what the command line would call, without the process.
    static func runLibrary(_ c: FuzzCase, env: FuzzEnvironment, baseTokenizer: Tokenizer) -> FuzzResult {
        let dir: URL
        do { dir = try materialize(c, in: env, tag: "lib") } catch {
            return FuzzResult(outcome: .trap, detail: "cannot write the case: \(error)")
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let before = ResidentMemory.peakBytes()
        var outcome = FuzzOutcome.ok
        var detail = ""
        var allowed: Set<String> = []
        do {
            switch c.target {
            case .model:
                let model = dir.appendingPathComponent("model")
                if c.index % 2 == 0 {
                    let output = dir.appendingPathComponent("out")
                    _ = try PruningJob.run(PruningJobOptions(
                        model: model, method: MagnitudePruning(), pattern: .nm(n: 2, m: 4), calibrationFile: nil,
                        calibrationFormat: .text, output: output, toolVersion: "fuzz"))
                    allowed = ["out"]
                } else {
                    let checkpoint = try LlamaCheckpoint(directory: model)
                    let tokenizer = try Tokenizer(directory: model)
                    let ids = tokenizer.encode("Once upon a time", addSpecialTokens: true)
                        .filter { $0 < checkpoint.configuration.vocabSize }
                    _ = try checkpoint.loadModel().logits([ids.isEmpty ? [0] : ids])
                }
            case .gguf:
                let file = dir.appendingPathComponent("model.gguf")
                if c.index % 2 == 0 {
                    _ = try PruningJob.run(PruningJobOptions(
                        model: file, method: MagnitudePruning(), pattern: .nm(n: 2, m: 4), calibrationFile: nil,
                        calibrationFormat: .text, output: dir.appendingPathComponent("out"), toolVersion: "fuzz"))
                    allowed = ["out"]
                } else {
                    let (checkpoint, tokenizer) = try ModelInput.open(file)
                    let ids = tokenizer.encode("Once upon a time").filter { $0 < checkpoint.configuration.vocabSize }
                    _ = try checkpoint.loadModel().logits([ids.isEmpty ? [0] : ids])
                }
            case let .calibration(format, field):
                guard let f = CalibrationFormat(rawValue: format) else { throw FuzzSetupError("format \(format)") }
                let source = try f.source(dir.appendingPathComponent("calib"), field: field)
                if case .tokens(let m) = source {
                    _ = try Calibration.takeRows(of: m, nsamples: 2, seqlen: 16, vocabularySize: 512)
                } else {
                    _ = try Calibration.sample(source, nsamples: 2, seqlen: 16, seed: 0,
                                               encode: { baseTokenizer.encode($0, addSpecialTokens: false) },
                                               bosTokenID: baseTokenizer.bosTokenID)
                }
            case let .evaluation(dataset):
                guard let d = EvaluationDataset(rawValue: dataset) else { throw FuzzSetupError("dataset \(dataset)") }
                _ = try EvaluationWindows(dataset: d, file: dir.appendingPathComponent("data"), seqlen: 16,
                                          encode: { baseTokenizer.encode($0, addSpecialTokens: false) },
                                          bosTokenID: baseTokenizer.bosTokenID)
            case let .flags(args):
                // The library's share of flag parsing: the sparsity pattern. (The rest is the CLI's.)
                for (i, a) in args.enumerated() where a == "--sparsity" && i + 1 < args.count {
                    _ = try SparsityPattern(parsing: args[i + 1])
                }
            }
        } catch {
            let text = String(describing: error)
            if text.isEmpty || text.contains("\n") || text.contains("NSCocoaErrorDomain") || text.hasPrefix("Error Domain") {
                outcome = .badMessage
                detail = text
            } else {
                outcome = .error
                detail = text
            }
        }
        let extra = leftovers(dir, c, allowed: allowed)
        if !extra.isEmpty { return FuzzResult(outcome: .leftover, detail: extra.joined(separator: ", ")) }
        let grown = ResidentMemory.peakBytes() - before
        if grown > inProcessMemoryBound { return FuzzResult(outcome: .memory, detail: "peak RSS grew by \(grown) bytes") }
        return FuzzResult(outcome: outcome, detail: detail)
    }

    // MARK: - Command line

    /// The `llm-prune` arguments of a case, folder-relative paths resolved in `dir`.
    static func arguments(_ c: FuzzCase, dir: URL, env: FuzzEnvironment) -> [String] {
        let base = env.base.modelFolder.path
        let out = dir.appendingPathComponent("out").path
        switch c.target {
        case .model:
            let model = dir.appendingPathComponent("model").path
            if c.index % 2 == 0 {
                return ["prune", "--model", model, "--method", "magnitude", "--sparsity", "2:4", "--output", out, "--quiet"]
            }
            return ["eval", "--model", model, "--dataset", "text", "--data-file", env.textFile.path, "--seqlen", "32",
                    "--max-windows", "2", "--quiet", "--json"]
        case .gguf:
            let model = dir.appendingPathComponent("model.gguf").path
            if c.index % 2 == 0 {
                return ["prune", "--model", model, "--method", "magnitude", "--sparsity", "2:4", "--output", out, "--quiet"]
            }
            return ["eval", "--model", model, "--dataset", "text", "--data-file", env.textFile.path, "--seqlen", "16",
                    "--max-windows", "2", "--quiet", "--json"]
        case let .calibration(format, field):
            return ["prune", "--model", base, "--method", "wanda", "--sparsity", "0.5",
                    "--calibration-file", dir.appendingPathComponent("calib").path, "--calibration-format", format,
                    "--calibration-field", field, "--nsamples", "2", "--seqlen", "16", "--output", out, "--quiet"]
        case let .evaluation(dataset):
            return ["eval", "--model", base, "--dataset", dataset, "--data-file", dir.appendingPathComponent("data").path,
                    "--seqlen", "16", "--max-windows", "2", "--quiet", "--json"]
        case let .flags(args):
            return ["prune", "--model", base, "--method", "wanda", "--sparsity", "0.5", "--calibration-file", env.textFile.path,
                    "--nsamples", "2", "--seqlen", "16", "--eval-file", env.textFile.path, "--eval-dataset", "text",
                    "--eval-seqlen", "32", "--output", out, "--quiet"] + args
        }
    }

    /// Runs the binary on the case as a subprocess, under an address-space limit, and classifies it.
    static func runCLI(_ c: FuzzCase, env: FuzzEnvironment) -> FuzzResult {
        let dir: URL
        do { dir = try materialize(c, in: env, tag: "cli") } catch {
            return FuzzResult(outcome: .trap, detail: "cannot write the case: \(error)")
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = arguments(c, dir: dir, env: env)
        let stdoutURL = env.work.appendingPathComponent("stdout-\(c.index)")
        let stderrURL = env.work.appendingPathComponent("stderr-\(c.index)")
        defer {
            try? FileManager.default.removeItem(at: stdoutURL)
            try? FileManager.default.removeItem(at: stderrURL)
        }
        let run = spawn(env.binary.path, args, stdout: stdoutURL.path, stderr: stderrURL.path)
        let stderr = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
        let lines = stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        let messages = lines.filter { !$0.hasPrefix("warning: ") }
        let brief = messages.first ?? ""
        var result: FuzzResult
        switch run {
        case .failedToStart(let why):
            result = FuzzResult(outcome: .trap, detail: "cannot start \(env.binary.path): \(why)")
        case .timedOut:
            result = FuzzResult(outcome: .hang, detail: "still running after \(Int(timeLimit)) s")
        case let .signaled(sig, _):
            result = FuzzResult(outcome: .trap, detail: "signal \(sig): \(stderr.suffix(300))")
        case let .exited(status, peak):
            if peak > peakMemoryBound {
                result = FuzzResult(outcome: .memory, detail: "peak RSS \(peak) bytes")
            } else if status == 0 {
                result = FuzzResult(outcome: .ok, detail: "")
            } else if status == 1 {
                let good = messages.count == 1 && brief.hasPrefix("error: ") && brief.count > 8
                    && !brief.contains("NSCocoaErrorDomain") && !brief.contains("Error Domain=")
                result = FuzzResult(outcome: good ? .error : .badMessage, detail: stderr.prefix(400).description)
            } else if status == 64 {
                let good = brief.hasPrefix("error: ") && messages.count <= 3
                    && messages.dropFirst().allSatisfy { $0.hasPrefix("Usage: ") || $0.hasPrefix("Run 'llm-prune") }
                result = FuzzResult(outcome: good ? .error : .badMessage, detail: stderr.prefix(400).description)
            } else {
                result = FuzzResult(outcome: .trap, detail: "exit status \(status): \(stderr.suffix(300))")
            }
        }
        let allowed: Set<String> = { if case .exited(0, _) = run { return ["out"] } else { return [] } }()
        let extra = leftovers(dir, c, allowed: allowed)
        if !extra.isEmpty && result.outcome != .trap && result.outcome != .hang {
            result = FuzzResult(outcome: .leftover, detail: extra.joined(separator: ", "))
        }
        return result
    }

    enum SpawnResult {
        case exited(Int32, peakBytes: Int)
        case signaled(Int32, peakBytes: Int)
        case timedOut
        case failedToStart(String)
    }

    /// `binary args...` under `ulimit -v`, stdout and stderr to files, killed after `timeLimit`.
    static func spawn(_ binary: String, _ args: [String], stdout: String, stderr: String) -> SpawnResult {
        let argv = ["/bin/sh", "-c", "ulimit -v \(addressSpaceKiB); exec \"$0\" \"$@\" </dev/null >'\(stdout)' 2>'\(stderr)'", binary] + args
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        let rc = posix_spawn(&pid, "/bin/sh", nil, nil, cArgs, environ)
        guard rc == 0 else { return .failedToStart(String(cString: strerror(rc))) }
        let deadline = Date().addingTimeInterval(timeLimit)
        var status: Int32 = 0
        var usage = rusage()
        // The child's own peak is sampled from /proc while it runs: wait4's ru_maxrss cannot be used alone,
        // as posix_spawn's child inherits this process's peak across execve (see ResidentMemory).
        var sampled = 0
        while true {
            let r = wait4(pid, &status, WNOHANG, &usage)
            if r == pid { break }
            if r < 0 && errno != EINTR { return .failedToStart("wait4: \(String(cString: strerror(errno)))") }
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = wait4(pid, &status, 0, &usage)
                return .timedOut
            }
            sampled = max(sampled, ResidentMemory.peakBytes(pid: pid) ?? 0)  // check-tests: integers
            usleep(2000)
        }
        // ru_maxrss is max(inherited, own): well above anything this process could have passed on, it is the
        // child's own exact peak (which sampling may have missed at its very end). Within a few MiB of this
        // process's own peak it can still be the inherited one: the kernel's RSS counters are approximate
        // (batched per thread or per CPU), so this process's ru_maxrss read afterwards can fall short of what
        // the child inherited (a CI run saw a 1.04 GB "peak" for a case that errors out at 26 MB); there the sample decides.
        var mine = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &mine)
        let reported = Int(usage.ru_maxrss) * 1024
        let inheritedLag = 64 << 20
        let peak = reported > Int(mine.ru_maxrss) * 1024 + inheritedLag ? reported : sampled
        let low = status & 0x7F
        if low == 0 { return .exited((status >> 8) & 0xFF, peakBytes: peak) }
        return .signaled(low, peakBytes: peak)
    }
}

/// Counts by outcome, and the first few cases of each bad outcome (to reproduce them).
final class FuzzTally: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var counts: [FuzzOutcome: Int] = [:]
    private(set) var examples: [FuzzOutcome: [String]] = [:]
    private(set) var byFormat: [String: [FuzzOutcome: Int]] = [:]

    func add(_ c: FuzzCase, _ r: FuzzResult) {
        lock.lock(); defer { lock.unlock() }
        counts[r.outcome, default: 0] += 1
        byFormat[c.format, default: [:]][r.outcome, default: 0] += 1
        if r.outcome != .ok && r.outcome != .error && examples[r.outcome, default: []].count < 5 {
            let oneLine = r.detail.split(whereSeparator: \.isNewline).joined(separator: " ⏎ ")
            examples[r.outcome, default: []].append("\(c): \(oneLine.prefix(300))")
        }
    }

    var total: Int { counts.values.reduce(0, +) }
    var failures: Int { total - counts[.ok, default: 0] - counts[.error, default: 0] }

    var report: String {
        var s = "fuzz: \(total) cases: " + FuzzOutcome.allCases.map { "\($0.rawValue) \(counts[$0, default: 0])" }.joined(separator: ", ")
        for format in byFormat.keys.sorted() {
            let f = byFormat[format]!
            s += "\n  \(format.padding(toLength: 12, withPad: " ", startingAt: 0))"
                + FuzzOutcome.allCases.filter { f[$0] != nil }.map { "\($0.rawValue) \(f[$0]!)" }.joined(separator: ", ")
        }
        for (o, list) in examples.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            s += "\n  \(o.rawValue):\n" + list.map { "    \($0)" }.joined(separator: "\n")
        }
        return s
    }
}
