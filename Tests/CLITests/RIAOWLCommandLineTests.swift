import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `prune --method ria` and `prune --owl` as a user meets them: help, usage errors, the record, resume.
@Suite struct RIAOWLCommandLineTests {
    /// A small prune of stories260K on 8 × 64 calibration ids, no evaluation.
    func arguments(method: String, sparsity: String, _ extra: [String]) throws -> [String] {
        ["prune", "--model", try sharedPath("models/stories260K"), "--method", method, "--sparsity", sparsity,
         "--calibration-file", try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"),
         "--calibration-format", "tokens", "--nsamples", "8", "--seqlen", "64", "--quiet"] + extra
    }

    @Test func helpExplainsTheFlags() throws {
        let help = try run(["prune", "--help"])
        #expect(help.exitCode == 0)
        for text in ["  ria: (|W|/colsum + |W|/rowsum)·sqrt(mean x²)^a", "--ria-a <x>", "--ria-per-row", "--ria-permute",
                     "The other six linears are not permuted: their inputs are the residual stream or the attention heads",
                     "--owl ", "--owl-lambda <x>", "(default: 0.08)", "--owl-m <x>", "Unstructured ratios only: not with N:M."] {
            #expect(help.stdout.contains(text), "missing '\(text)'")
        }
    }

    @Test func usageErrors() throws {
        let cases: [([String], String)] = [
            (try arguments(method: "wanda", sparsity: "2:4", ["--owl"]),
             "error: --owl sets unstructured ratios per block and does not apply to the N:M --sparsity 2:4 (an N:M pattern is the same in every block)"),
            (try arguments(method: "wanda", sparsity: "0.5", ["--owl-lambda", "0.1"]), "error: --owl-lambda and --owl-m need --owl"),
            (try arguments(method: "wanda", sparsity: "0.5", ["--owl", "--owl-lambda", "0.5"]),
             "error: option '--owl-lambda' needs a number in [0, 0.5), got '0.5'"),
            (try arguments(method: "wanda", sparsity: "0.5", ["--owl", "--owl-m", "0"]), "error: option '--owl-m' needs a number > 0, got '0'"),
            (try arguments(method: "ria", sparsity: "0.5", ["--ria-permute"]),
             "error: --ria-permute reorders channels for N:M groups; it does not apply to the unstructured --sparsity 0.5"),
            (try arguments(method: "ria", sparsity: "0.5", ["--ria-a", "-1"]), "error: option '--ria-a' needs a number >= 0, got '-1'"),
        ]
        for (args, message) in cases {
            let r = try run(args)
            #expect(r.exitCode == 64, "\(args)")
            #expect(r.stderrLines.first == message, "\(r.stderr)")
        }
    }

    /// RIA with the folded permutation writes a valid 2:4 checkpoint and records its settings.
    @Test func riaRunIsRecorded() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("ria")
        let r = try run(try arguments(method: "ria", sparsity: "2:4", ["--ria-permute", "--output", output.path]))
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("method ria, sparsity 2:4: achieved 0.5000"), "\(r.stdout)")
        let record = try String(contentsOf: output.appendingPathComponent("pruning.json"), encoding: .utf8)
        for text in ["\"ria_permute\" : \"true\"", "\"ria_a\" : \"0.5\"", "\"ria_per_row\" : \"false\""] {
            #expect(record.contains(text), "missing \(text)")
        }
    }

    /// OWL with magnitude: per-block ratios on stdout and in pruning.json (plan, planner, λ and M); a killed
    /// run resumes to the same bytes, and not with another λ.
    @Test func owlRunIsRecordedAndResumed() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let whole = scratch.appendingPathComponent("whole")
        let r = try run(try arguments(method: "magnitude", sparsity: "0.7", ["--owl", "--output", whole.path]))
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("per block (owl):\n  block 0 0."), "\(r.stdout)")
        #expect(r.stdout.components(separatedBy: "(planned 0.").count == 6, "\(r.stdout)")
        let record = try String(contentsOf: whole.appendingPathComponent("pruning.json"), encoding: .utf8)
        for text in ["\"planner\" : \"owl\"", "\"owl_lambda\" : \"0.08\"", "\"owl_m\" : \"5.0\"", "\"4.down\" : \"0."] {
            #expect(record.contains(text), "missing \(text)")
        }

        let output = scratch.appendingPathComponent("resumed")
        let args = try arguments(method: "magnitude", sparsity: "0.7", ["--owl", "--output", output.path])
        let child = try Child(args, environment: ["LLM_PRUNE_TEST_PAUSE": "block-1:60"])
        #expect(child.waitFor("paused at block-1"))
        child.send(SIGKILL)
        #expect(child.wait().signal == SIGKILL)
        let other = try run(args + ["--resume", "--owl-lambda", "0.1"])
        #expect(other.exitCode == 1)
        #expect(other.stderrLines.first?.contains("is a different run (method settings") == true, "\(other.stderr)")
        #expect(other.stderrLines.first?.contains("owl_lambda=0.08") == true, "\(other.stderr)")
        let resumed = try run(args + ["--resume"])
        #expect(resumed.exitCode == 0, "\(resumed.stderr)")
        #expect(resumed.stderrLines == ["note: resuming \(output.path) after block 2 of 5"], "\(resumed.stderr)")
        let a = try Data(contentsOf: whole.appendingPathComponent("model.safetensors"))
        let b = try Data(contentsOf: output.appendingPathComponent("model.safetensors"))
        #expect(a == b)
    }
}
