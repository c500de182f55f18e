import Foundation
import Testing

/// `llm-prune generate` as a user meets it: streamed text, the timing line, usage errors (64) and run-time
/// errors (1) in one line.
@Suite struct GenerateCLITests {
    /// The first stories260K case of Fixtures/generate/reference.json: prompt text and transformers' text.
    static func storiesCase() throws -> (prompt: String, text: String) {
        let url = try packageRoot().appendingPathComponent("Fixtures/generate/reference.json")
        let root = try JSONSerialization.jsonObject(with: try Data(contentsOf: url)) as? [String: Any]
        let first = (root?["greedy"] as? [[String: Any]])?.first
        guard let prompt = first?["prompt_text"] as? String, let text = first?["text"] as? String else {
            throw CLITestError("no stories260K case in \(url.path)")
        }
        return (prompt, text)
    }

    /// Greedy generation prints what transformers generates (32 tokens), then a newline; the timing goes
    /// to stderr.
    @Test func greedyTextEqualsTransformers() throws {
        let (prompt, text) = try Self.storiesCase()
        let r = try run(["generate", "--model", try sharedPath("models/stories260K"), "--prompt", prompt, "--max-new-tokens", "32"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout == text + "\n")
        #expect(r.stderrLines.count == 1 && r.stderrLines[0].hasPrefix("prefill 5 tokens in "), "\(r.stderr)")
        #expect(r.stderr.contains("generated 32 tokens") && r.stderr.contains("ended at max new tokens"), "\(r.stderr)")
        let quiet = try run(["generate", "--model", try sharedPath("models/stories260K"), "--prompt", prompt, "--max-new-tokens", "32",
                             "--quiet"])
        #expect(quiet.exitCode == 0 && quiet.stdout == r.stdout && quiet.stderr.isEmpty)
    }

    /// A prompt file, and seeded sampling: the same seed prints the same text, another seed another.
    @Test func promptFileAndSeededSampling() throws {
        let scratch = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let file = scratch.appendingPathComponent("prompt.txt")
        try "Lily saw a".write(to: file, atomically: true, encoding: .utf8)
        let model = try sharedPath("models/stories260K")
        func sample(_ seed: String) throws -> Outcome {
            try run(["generate", "--model", model, "--prompt-file", file.path, "--temperature", "0.9", "--top-k", "40",
                     "--top-p", "0.95", "--seed", seed, "--max-new-tokens", "48", "--quiet"])
        }
        let a = try sample("7"), b = try sample("7"), c = try sample("8")
        #expect(a.exitCode == 0 && !a.stdout.isEmpty, "\(a.stderr)")
        #expect(a.stdout == b.stdout)
        #expect(a.stdout != c.stdout)
    }

    @Test func helpAndErrors() throws {
        let help = try run(["generate", "--help"])
        #expect(help.exitCode == 0)
        for flag in ["--prompt", "--prompt-file", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--chat",
                     "--system", "--chat-template", "--quiet"] {
            #expect(help.stdout.contains(flag), "\(flag)")
        }
        let top = try run(["--help"])
        #expect(top.stdout.contains("generate"))

        let model = try sharedPath("models/stories260K")
        let usage: [([String], String)] = [
            (["--prompt", "x", "--bogus"], "error: unknown option '--bogus' for 'generate'"),
            ([], "error: missing --prompt (or --prompt-file)"),
            (["--prompt", "x", "--prompt-file", "y"], "error: give --prompt or --prompt-file, not both"),
            (["--prompt", "x", "--temperature", "hot"], "error: option '--temperature' needs a number, got 'hot'"),
            (["--prompt", "x", "--temperature", "1", "--top-p", "0"], "error: top-p 0.0 is not in (0, 1]"),
            (["--prompt", "x", "--top-k", "5"], "error: --top-k and --top-p apply to sampling: give --temperature > 0 with them"),
            (["--prompt", "x", "--max-new-tokens", "0"], "error: option '--max-new-tokens' needs an integer in 1...1000000, got '0'"),
            (["--prompt", "x", "--system", "be brief"], "error: --system and --chat-template need --chat"),
            (["--prompt", "x", "--chat", "--chat-template", "llama3"], "error: option '--chat-template' must be one of chatml, gemma, got 'llama3'"),
        ]
        for (arguments, line) in usage {
            let r = try run(["generate", "--model", model] + arguments)
            #expect(r.exitCode == 64, "\(arguments): \(r.stderr)")
            #expect(r.stderrLines.first == line, "\(arguments)")
        }
        let runtime: [([String], String)] = [
            (["--prompt", "x", "--max-new-tokens", "600"],
             "error: the prompt's 3 tokens + 600 new tokens exceed the model's max_position_embeddings 512"),
            (["--prompt", "x", "--chat"],
             "error: \(model) has no chat template (a base model?); --chat-template chatml|gemma renders one"),
            (["--prompt-file", "/nonexistent/prompt.txt"], ""),
        ]
        for (arguments, line) in runtime {
            let r = try run(["generate", "--model", model] + arguments)
            #expect(r.exitCode == 1, "\(arguments): \(r.stderr)")
            #expect(r.stderrLines.count == 1 && r.stdout.isEmpty, "\(arguments): \(r.stderr)")
            if !line.isEmpty { #expect(r.stderrLines.first == line, "\(arguments)") }
        }
    }

    /// --chat on SmolLM2-135M-Instruct: its ChatML template, the answer ends at <|im_end|>.
    @Test func chatOnSmolLM2() throws {
        let r = try run(["generate", "--model", try sharedPath("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
                         "--chat", "--prompt", "What is the capital of France?", "--max-new-tokens", "24"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Paris"), "\(r.stdout)")
        #expect(r.stderr.contains("ended at stop token <|im_end|>"), "\(r.stderr)")
    }
}
