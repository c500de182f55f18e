import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The command line as a user meets it: exit codes, one-line errors, the output folder's checks.
@Suite struct CommandLineTests {
    @Test func exitCodes() throws {
        let help = try run(["--help"])
        #expect(help.exitCode == 0 && help.stdout.contains("clean"))
        // Every command name stands apart from its summary, the longest one included.
        #expect(help.stdout.contains("  bench-gemm  sgemm GFLOP/s"), "\(help.stdout)")
        let usage = try run(["prune", "--model", "x", "--method", "magnitude", "--sparsity", "0.5", "--bogus"])
        #expect(usage.exitCode == 64)
        #expect(usage.stderrLines.first?.hasPrefix("error: unknown option '--bogus' for 'prune'") == true)
        let unknown = try run(["frobnicate"])
        #expect(unknown.exitCode == 64)
        let missing = try run(["inspect", "--model", "/nonexistent/model"])
        #expect(missing.exitCode == 1)
        #expect(missing.stderrLines.count == 1 && missing.stderrLines[0].hasPrefix("error: "), "\(missing.stderr)")
        let resumeWithoutOutput = try run(["prune", "--model", try sharedPath("models/stories260K"), "--method", "magnitude",
                                           "--sparsity", "0.5", "--resume"])
        #expect(resumeWithoutOutput.exitCode == 1)
        #expect(resumeWithoutOutput.stderrLines == ["error: --resume needs --output (the run to continue is found beside it)"])
    }

    /// `prune --output-format sparse` writes a compressed-tensors folder that `eval` reads to the same
    /// perplexity as the dense output of the same run; `inspect` and `convert` read it too; `--dtype` on a
    /// Hugging Face input without sparse is a usage error.
    @Test func sparseOutputEvaluatesAsTheDenseOutput() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let dense = scratch.appendingPathComponent("dense"), sparse = scratch.appendingPathComponent("sparse")
        let denseRun = try run(try pruneArguments(output: dense, scratch: scratch, extra: ["--json"]))
        #expect(denseRun.exitCode == 0, "\(denseRun.stderr)")
        let sparseRun = try run(try pruneArguments(output: sparse, scratch: scratch,
                                                   extra: ["--output-format", "sparse", "--dtype", "f32", "--json"]))
        #expect(sparseRun.exitCode == 0, "\(sparseRun.stderr)")
        #expect(isComplete(sparse))
        let config = try String(contentsOf: sparse.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(config.contains("\"sparse-24-bitmask\""), "\(config)")
        func perplexity(_ model: URL) throws -> String? {
            let r = try run(["eval", "--model", model.path, "--dataset", "text", "--data-file",
                             scratch.appendingPathComponent("eval.txt").path, "--seqlen", "64", "--json"])
            #expect(r.exitCode == 0, "\(r.stderr)")
            return r.stdout.split(separator: ",").first { $0.hasPrefix("\"perplexity\"") }.map(String.init)
        }
        let densePerplexity = try #require(try perplexity(dense))
        #expect(try perplexity(sparse) == densePerplexity)
        // prune's own figure is the written model's.
        #expect(sparseRun.stdout.contains(densePerplexity), "\(sparseRun.stdout)")
        let inspect = try run(["inspect", "--model", sparse.path])
        #expect(inspect.exitCode == 0 && inspect.stdout.contains("35 linears packed as sparse-24-bitmask (2:4)"), "\(inspect.stdout)")
        let back = scratch.appendingPathComponent("back")
        let convert = try run(["convert", "--model", sparse.path, "--output", back.path])
        #expect(convert.exitCode == 0, "\(convert.stderr)")
        #expect(try perplexity(back) == densePerplexity)
        let misuse = try run(try pruneArguments(output: scratch.appendingPathComponent("x"), scratch: scratch, extra: ["--dtype", "bf16"]))
        #expect(misuse.exitCode == 64)
        #expect(misuse.stderrLines.first?.hasPrefix("error: --dtype applies to a GGUF input or to --output-format sparse") == true, "\(misuse.stderr)")
    }

    /// `--compute-dtype`: an unknown format is a usage error; bf16 says on stderr how this machine runs it
    /// and records it in the JSON.
    @Test func computeDtype() throws {
        let model = try sharedPath("models/stories260K")
        let bad = try run(["eval", "--model", model, "--tasks", "rte", "--compute-dtype", "half"])
        #expect(bad.exitCode == 64)
        #expect(bad.stderrLines.first == "error: option '--compute-dtype' must be one of float32, bf16, got 'half'")
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let text = scratch.appendingPathComponent("eval.txt")
        try String(repeating: "Once upon a time there was a little girl. ", count: 40).write(to: text, atomically: true, encoding: .utf8)
        let r = try run(["eval", "--model", model, "--dataset", "text", "--data-file", text.path, "--seqlen", "64",
                         "--compute-dtype", "bf16", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stderrLines.contains { $0.hasPrefix("note: compute: bf16 (") }, "\(r.stderr)")
        #expect(r.stdout.contains("\"compute\":\"bf16 ("), "\(r.stdout)")
        // inspect names the bf16 kernel beside the BLAS core, in text and JSON.
        let inspect = try run(["inspect", "--model", model])
        #expect(inspect.exitCode == 0 && inspect.stdout.contains("\nbf16         --compute-dtype bf16 runs bf16 ("), "\(inspect.stdout)")
        let inspectJSON = try run(["inspect", "--model", model, "--json"])
        #expect(inspectJSON.exitCode == 0 && inspectJSON.stdout.contains("\"bf16\":\"bf16 ("), "\(inspectJSON.stdout)")
    }

    /// `make demo` on a fresh clone: --output's parent folders are created as `mkdir -p` does.
    @Test func outputCreatesMissingParents() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("runs/a/b/pruned")
        let r = try run(try pruneArguments(output: output, scratch: scratch, extra: ["--quiet"]))
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(isComplete(output))
        #expect(listing(output.deletingLastPathComponent()) == ["pruned"])
    }

    /// A dangling symbolic link as --output is refused before any pruning (one line, no progress).
    @Test func danglingSymlinkOutputRefusedBeforePruning() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        try FileManager.default.createDirectory(at: runs, withIntermediateDirectories: true)
        let link = runs.appendingPathComponent("out")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "/nonexistent/target")
        let r = try run(try pruneArguments(output: link, scratch: scratch))
        #expect(r.exitCode == 1)
        #expect(r.stderrLines == ["error: --output \(link.path) is a symbolic link to /nonexistent/target, which does not exist; give a folder that does not exist yet"])
        #expect(listing(runs) == ["out"])
    }

    /// An --output name too long for the work folder's name beside it is refused before pruning; the
    /// longest allowed one works.
    @Test func longOutputNames() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        let tooLong = runs.appendingPathComponent(String(repeating: "n", count: 236))
        let r = try run(try pruneArguments(output: tooLong, scratch: scratch))
        #expect(r.exitCode == 1)
        #expect(r.stderrLines == ["error: --output name is 236 bytes long; at most 235 fit beside its temporary work folder (file names are limited to 255 bytes)"])
        #expect(listing(runs) == [])
        let longest = runs.appendingPathComponent(String(repeating: "é", count: 117) + "x")   // 235 bytes
        let ok = try run(try pruneArguments(output: longest, scratch: scratch, extra: ["--quiet"]))
        #expect(ok.exitCode == 0, "\(ok.stderr)")
        #expect(isComplete(longest))
        #expect(listing(runs) == [longest.lastPathComponent])
    }

    /// An --output inside the input model folder (directly or through a symbolic link) is refused.
    @Test func outputInsideTheModelRefused() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let model = scratch.appendingPathComponent("model")
        try FileManager.default.copyItem(atPath: try sharedPath("models/stories260K"), toPath: model.path)
        let before = listing(model)
        let link = scratch.appendingPathComponent("alias")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: model.path)
        for output in [model.appendingPathComponent("pruned"), link.appendingPathComponent("sub/pruned")] {
            let r = try run(["prune", "--model", model.path, "--method", "magnitude", "--sparsity", "0.5",
                             "--output", output.path])
            #expect(r.exitCode == 1)
            #expect(r.stderrLines == ["error: --output \(output.path) lies inside the input model folder \(model.path); choose a folder outside it"])
        }
        #expect(listing(model) == before)
    }

    @Test func existingOutputRefused() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let r = try run(try pruneArguments(output: scratch, scratch: scratch))
        #expect(r.exitCode == 1)
        #expect(r.stderrLines == ["error: output folder \(scratch.path) already exists; choose another --output or remove it"])
    }
}

/// Signals at chosen moments of a run (the LLM_PRUNE_TEST_PAUSE hook): before the commit each one ends the
/// process by that signal with nothing left on disk; from the commit on, the run completes and exits 0.
@Suite struct SignalTests {
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGQUIT]
    static let beforeCommit = ["calibrated", "block-1", "evaluated", "exported"]

    @Test(arguments: beforeCommit)
    func signalBeforeTheCommitLeavesNothing(moment: String) throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        for sig in Self.signals {
            let output = runs.appendingPathComponent("out-\(sig)")
            let child = try Child(try pruneArguments(output: output, scratch: scratch),
                                  environment: ["LLM_PRUNE_TEST_PAUSE": "\(moment):60"])
            #expect(child.waitFor("paused at \(moment)"), "signal \(sig): \(child.stderrSoFar)")
            #expect(listing(runs).count == 1 && listing(runs).first?.hasPrefix(".out-\(sig).partial-") == true, "\(listing(runs))")
            child.send(sig)
            let r = child.wait()
            #expect(r.signal == sig, "signal \(sig) at \(moment): exit \(String(describing: r.exitCode)) \(r.stderr)")
            #expect(listing(runs) == [], "signal \(sig) at \(moment)")
            #expect(!r.stderr.contains("Backtrace") && !r.stderr.contains("Crash"), "\(r.stderr)")
        }
    }

    @Test(arguments: ["commit", "committed"])
    func signalFromTheCommitOnCompletes(moment: String) throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let output = runs.appendingPathComponent("out-\(sig)")
            let child = try Child(try pruneArguments(output: output, scratch: scratch),
                                  environment: ["LLM_PRUNE_TEST_PAUSE": "\(moment):1"])
            #expect(child.waitFor("paused at \(moment)"), "\(child.stderrSoFar)")
            child.send(sig)
            let r = child.wait()
            #expect(r.exitCode == 0, "signal \(sig) at \(moment): \(r.stderr)")
            #expect(isComplete(output))
            #expect(listing(runs).allSatisfy { !$0.hasPrefix(".") }, "\(listing(runs))")
        }
    }

    /// `llm-prune prune ... 2>&1 | head -1`: the closed pipe ends the run by SIGPIPE, after cleanup.
    /// Without RENAME_NOREPLACE (older kernels, some network file systems) the result still lands, folder
    /// or a single GGUF file, and no work folder is left behind.
    @Test func outputWithoutRenameNoReplace() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let env = ["LLM_PRUNE_TEST_NO_RENAMEAT2": "1"]
        let folder = scratch.appendingPathComponent("hf")
        let a = try run(try pruneArguments(output: folder, scratch: scratch), environment: env)
        #expect(a.exitCode == 0, "\(a.stderr)")
        #expect(isComplete(folder))
        let gguf = scratch.appendingPathComponent("out.gguf")
        let tiny = try packageRoot().appendingPathComponent("Fixtures/gguf/tiny-llama.gguf").path
        let b = try run(["prune", "--model", tiny, "--method", "magnitude", "--sparsity", "0.5",
                         "--output-format", "gguf", "--dtype", "f32", "--output", gguf.path], environment: env)
        #expect(b.exitCode == 0, "\(b.stderr)")
        let bytes = try Data(contentsOf: gguf)
        #expect(bytes.prefix(4) == Data("GGUF".utf8))
        #expect(listing(scratch).filter { $0.contains("partial") }.isEmpty, "\(listing(scratch))")
    }

    @Test func closedPipe() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        let output = runs.appendingPathComponent("out")
        let args = try pruneArguments(output: output, scratch: scratch).map { "'\($0)'" }.joined(separator: " ")
        // `env --default-signal=PIPE`: the test process may run with SIGPIPE ignored (Foundation ignores it
        // once it has used pipes), the child would inherit that and llm-prune keeps inherited ignores (as
        // under nohup); a user's shell starts it with the default action.
        let script = "set -o pipefail; LLM_PRUNE_TEST_PAUSE=block-0:1 env --default-signal=PIPE '\(try binary())' \(args) 2>&1 | head -1"
        let r = try Child(["-c", script], executable: "/bin/bash").wait()
        #expect(r.exitCode == 128 + SIGPIPE, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.split(separator: "\n").count == 1)
        #expect(listing(runs) == [], "\(listing(runs))")
    }

    /// SIGKILL leaves the work folder; `llm-prune clean` removes it, and so does the next run (saying so).
    @Test func killLeavesAWorkFolderThatIsCleaned() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        let output = runs.appendingPathComponent("out")
        for cleaner in ["clean", "next run"] {
            let child = try Child(try pruneArguments(output: output, scratch: scratch),
                                  environment: ["LLM_PRUNE_TEST_PAUSE": "block-1:60"])
            #expect(child.waitFor("paused at block-1"))
            child.send(SIGKILL)
            let k = child.wait()
            #expect(k.signal == SIGKILL)
            let left = ".out.partial-\(child.pid)"
            #expect(listing(runs) == [left])
            if cleaner == "clean" {
                let r = try run(["clean", "--output", output.path])
                #expect(r.exitCode == 0)
                #expect(r.stdout == "removed \(runs.appendingPathComponent(left).path) (process \(child.pid) is gone, 2 blocks finished)\n")
                #expect(listing(runs) == [])
            } else {
                let r = try run(try pruneArguments(output: output, scratch: scratch, extra: ["--quiet"]))
                #expect(r.exitCode == 0)
                #expect(r.stderrLines == ["note: removed \(runs.appendingPathComponent(left).path), the work folder of an interrupted run (process \(child.pid) is gone, 2 blocks finished); --resume would have continued it"])
                #expect(listing(runs) == ["out"])
            }
        }
        let nothing = try run(["clean", "--output", output.path])
        #expect(nothing.stdout == "nothing to clean beside \(output.path)\n")
    }
}

/// `prune --resume` after SIGKILL gives the same bytes as an uninterrupted run.
@Suite struct ResumeTests {
    func arguments(_ output: URL, _ scratch: URL, _ extra: [String] = []) throws -> [String] {
        // Wanda++ with regional optimization: its rounds draw samples from the run's generator.
        try pruneArguments(output: output, scratch: scratch, method: "wanda++",
                           extra: ["--ro-rounds", "2", "--ro-samples", "4", "--quiet"] + extra)
    }

    @Test func resumedRunIsBitIdentical() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        let reference = runs.appendingPathComponent("reference")
        let whole = try run(try arguments(reference, scratch))
        #expect(whole.exitCode == 0, "\(whole.stderr)")
        let referenceBytes = try Data(contentsOf: reference.appendingPathComponent("model.safetensors"))
        // The model has 5 blocks: kill after a random one of the first four, and once after the last
        // block (during the evaluation, before the export).
        var generator = SystemRandomNumberGenerator()
        for moment in ["block-\(Int.random(in: 0..<4, using: &generator))", "evaluated"] {
            let output = runs.appendingPathComponent("resumed-\(moment)")
            let child = try Child(try arguments(output, scratch), environment: ["LLM_PRUNE_TEST_PAUSE": "\(moment):60"])
            #expect(child.waitFor("paused at \(moment)"))
            child.send(SIGKILL)
            #expect(child.wait().signal == SIGKILL)
            let r = try run(try arguments(output, scratch, ["--resume"]))
            #expect(r.exitCode == 0, "\(moment): \(r.stderr)")
            if moment.hasPrefix("block-") {
                let done = Int(moment.dropFirst(6))! + 1
                #expect(r.stderrLines == ["note: resuming \(output.path) after block \(done) of 5"], "\(r.stderr)")
            }
            let bytes = try Data(contentsOf: output.appendingPathComponent("model.safetensors"))
            #expect(bytes == referenceBytes, "\(moment)")
            #expect(listing(runs).allSatisfy { !$0.hasPrefix(".") }, "\(listing(runs))")
        }
    }

    /// A work folder of a different run is never resumed, and is left in place.
    @Test func differentRunIsRefused() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runs = scratch.appendingPathComponent("runs")
        let output = runs.appendingPathComponent("out")
        let child = try Child(try arguments(output, scratch), environment: ["LLM_PRUNE_TEST_PAUSE": "block-1:60"])
        #expect(child.waitFor("paused at block-1"))
        child.send(SIGKILL)
        _ = child.wait()
        let left = runs.appendingPathComponent(".out.partial-\(child.pid)")
        let r = try run(try arguments(output, scratch, ["--resume", "--seed", "1"]))
        #expect(r.exitCode == 1)
        #expect(r.stderrLines == ["error: cannot resume: the interrupted run in \(left.path) is a different run (seed 0 there, 1 here); rerun it with its own arguments, or remove it with 'llm-prune clean --output \(output.path)'"])
        #expect(listing(runs) == [left.lastPathComponent])
        // Nothing to resume: --resume starts at block 0.
        let fresh = runs.appendingPathComponent("fresh")
        let f = try run(try arguments(fresh, scratch, ["--resume"]))
        #expect(f.exitCode == 0)
        #expect(f.stderrLines == ["note: nothing to resume for \(fresh.path); starting at block 0"])
    }
}
