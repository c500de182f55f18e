import Foundation
import Testing
import TestSupport

/// Gemma 3 270M (fetched by `make setup` into models/) through the command line: prune writes a Gemma 3
/// Hugging Face folder that eval reads back, and the memory estimate prune prints holds to ±25 % of the
/// measured peak (the 262,144-token vocabulary: a 671 MB float32 embedding table, a head evaluated a slab
/// of rows at a time).
@Suite struct Gemma3CommandLineTests {
    /// prune's summary line on stdout, "peak memory 1.70 GiB, estimate 1.33 GiB" → (1.70, 1.33) in bytes.
    private func peakAndEstimate(_ output: String) -> (Double, Double)? {
        // Progress lines end in carriage returns; the summary line may follow one.
        guard let line = output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first(where: { $0.hasPrefix("peak memory ") })
        else { return nil }
        let words = line.replacingOccurrences(of: ",", with: "").split(separator: " ")
        func bytes(_ value: Substring, _ unit: Substring) -> Double? {
            guard let v = Double(value) else { return nil }
            switch unit { case "GiB": return v * 1_073_741_824; case "MiB": return v * 1_048_576; default: return nil }
        }
        guard words.count >= 6, let peak = bytes(words[2], words[3]), let estimate = bytes(words[5], words[6]) else { return nil }
        return (peak, estimate)
    }

    @Test func pruneWritesAGemma3FolderThatEvalReadsAndTheEstimateHolds() throws {
        let model = try gemma3GGUF().path
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("gemma-wanda")
        let prune = try run(["prune", "--model", model, "--method", "wanda", "--sparsity", "2:4",
                             "--calibration-file", try sharedPath("text/wikitext-2/wiki.valid.tokens"), "--calibration-format", "text",
                             "--nsamples", "4", "--seqlen", "256", "--output", output.path])
        #expect(prune.exitCode == 0, "\(prune.stderr)")
        #expect(prune.stdout.contains("achieved 0.500"), "\(prune.stdout)")
        let (peak, estimate) = try #require(peakAndEstimate(prune.stdout), "\(prune.stdout)")
        #expect(abs(estimate - peak) / peak <= 0.25, "estimate \(estimate) vs peak \(peak)")
        let config = try String(contentsOf: output.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(config.contains("\"Gemma3ForCausalLM\"") && config.contains("\"model_type\" : \"gemma3_text\""), "\(config)")
        let eval = try run(["eval", "--model", output.path, "--data-file", try sharedPath("text/wikitext-2-raw/wiki.test.raw"),
                            "--seqlen", "256", "--max-windows", "1", "--json"])
        #expect(eval.exitCode == 0, "\(eval.stderr)")
        #expect(eval.stdout.contains("\"perplexity\""), "\(eval.stdout)")
    }
}
