import CommandLineArguments
import Datasets
import Foundation
import Generation
import Llama
import Runs
import Tensor
import Tokenizers

enum GenerateCommand {
    static let spec = CommandSpec(
        name: "generate",
        abstract: "Generate text from a prompt (KV cache; greedy or seeded sampling; --chat applies the model's chat template).",
        discussion: """
        The prompt is encoded as transformers' tokenizer(text) does (a BOS where the tokenizer's post-processor
        adds one) and run in one pass; then one token at a time, each pass continuing the cached keys and values
        of the earlier ones, the next token chosen from the last position's logits: greedy by default (or with
        --temperature 0), else sampled as transformers' generate(do_sample=True) filters (temperature, then
        top-k, then top-p) with this tool's seeded generator (--seed), so a seed reproduces its text.
        Generation stops at the tokenizer's EOS, config.json's eos_token_id, an end-of-turn token
        (<end_of_turn>, <|im_end|>, <|eot_id|>) or after --max-new-tokens. The text is streamed to stdout as
        it is generated (only complete characters); prefill and decode speeds go to stderr at the end.
        --chat wraps the prompt in the model's chat template (tokenizer_config.json's chat_template or the
        GGUF's tokenizer.chat_template), recognized by family: ChatML (SmolLM2, Qwen2) or Gemma's turns (Gemma
        2 and 3 instruct); another template is an error that quotes its beginning.
        """,
        options: [
            OptionSpec(name: "model", valueName: "path", help: modelOptionHelp, required: true),
            tokenizerOption,
            OptionSpec(name: "prompt", valueName: "text", help: "The prompt (or the user's message with --chat)."),
            OptionSpec(name: "prompt-file", valueName: "path", help: "Read the prompt from this UTF-8 file instead of --prompt."),
            OptionSpec(name: "max-new-tokens", valueName: "n", help: "Generate at most n tokens (prompt + n must fit max_position_embeddings).", defaultValue: "128"),
            OptionSpec(name: "temperature", valueName: "t", help: "Sampling temperature; 0 is greedy (the most likely token each step).", defaultValue: "0"),
            OptionSpec(name: "top-k", valueName: "k", help: "Sample only among the k most likely tokens (0: no limit). Needs --temperature > 0.", defaultValue: "0"),
            OptionSpec(name: "top-p", valueName: "p", help: "Sample only among the most likely tokens whose probabilities sum to p (nucleus; 1: no limit), after top-k. Needs --temperature > 0.", defaultValue: "1"),
            OptionSpec(name: "seed", valueName: "n", help: "Seed of the sampling generator (the same seed and settings give the same text).", defaultValue: "0"),
            OptionSpec(name: "chat", valueName: nil, help: "Apply the model's chat template: the prompt is the user's turn, and the text is the assistant's answer."),
            OptionSpec(name: "system", valueName: "text", help: "With --chat: a system message before the user's turn (ChatML: the system turn, replacing a template's default one; Gemma 3: put before the user's text)."),
            OptionSpec(name: "chat-template", valueName: "family", help: "With --chat: render this family (chatml or gemma) instead of recognizing the model's template, e.g. for a base model that carries none.", computedDefault: "the model's template"),
            OptionSpec(name: "quiet", valueName: nil, help: "No timing line on stderr."),
        ],
        examples: [
            "llm-prune generate --model ../shared/models/stories260K --prompt \"Once upon a time\" --max-new-tokens 64",
            "llm-prune generate --model ../shared/models/stories260K --prompt \"Lily saw a\" --temperature 0.8 --top-k 40 --top-p 0.95 --seed 7",
            "llm-prune generate --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt \"What is the capital of France?\"",
        ])

    /// Bytes of a --prompt-file read at most.
    static let maxPromptBytes = 1 << 26

    static func run(_ a: ParsedArguments) throws {
        let text = try promptText(a)
        let maxNewTokens = try a.requiredInt("max-new-tokens", range: 1...1_000_000)
        let sampling = SamplingOptions(temperature: try a.requiredDouble("temperature"), topK: try a.requiredInt("top-k"),
                                       topP: try a.requiredDouble("top-p"),
                                       seed: UInt64(try a.requiredInt("seed", range: 0...Int.max)))
        do { try sampling.validate() } catch { throw UsageError(String(describing: error)) }
        if sampling.isGreedy && (sampling.topK != 0 || sampling.topP != 1) {
            throw UsageError("--top-k and --top-p apply to sampling: give --temperature > 0 with them")
        }
        let forcedFamily = try a.choice("chat-template", of: ChatTemplate.Family.self)
        if !a.flag("chat") && (a.string("system") != nil || forcedFamily != nil) {
            throw UsageError("--system and --chat-template need --chat")
        }

        let modelPath = try a.requiredString("model")
        let (checkpoint, tokenizer) = try openModel(modelPath, tokenizer: a.string("tokenizer"))
        let prompt: [Int]
        var chatTemplate: ChatTemplate?
        if a.flag("chat") {
            let template: ChatTemplate
            if let forcedFamily {
                template = ChatTemplate(family: forcedFamily)
            } else {
                guard let source = try ModelInput.chatTemplate(for: checkpoint, at: URL(fileURLWithPath: modelPath),
                                                               tokenizerDirectory: a.string("tokenizer").map { URL(fileURLWithPath: $0) }) else {
                    throw RunError("\(modelPath) has no chat template (a base model?); --chat-template chatml|gemma renders one")
                }
                template = try ChatTemplate(source: source)
            }
            var messages: [ChatMessage] = []
            if let system = a.string("system") { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: text))
            prompt = try template.encode(messages, tokenizer: tokenizer)
            chatTemplate = template
        } else {
            prompt = tokenizer.encode(text)
        }
        guard !prompt.isEmpty else {
            throw UsageError("the prompt encodes to no tokens (this tokenizer adds no BOS): give a non-empty prompt")
        }

        let model = try checkpoint.loadModel()
        let options = GenerationOptions(maxNewTokens: maxNewTokens, sampling: sampling,
                                        stopTokens: GenerationOptions.stopTokens(tokenizer: tokenizer, configuration: checkpoint.configuration,
                                                                                 template: chatTemplate))
        var stream = TextStream(tokenizer: tokenizer, context: prompt)
        var endsWithNewline = true
        func emit(_ s: String) {
            guard !s.isEmpty else { return }
            fputs(s, stdout)
            fflush(stdout)
            endsWithNewline = s.hasSuffix("\n")
        }
        let result = try TextGeneration.run(model: model, prompt: prompt, options: options) { token in
            if !options.stopTokens.contains(token) { emit(stream.append(token)) }
        }
        emit(stream.finish())
        if !endsWithNewline { emit("\n") }
        if !a.flag("quiet") { printError(timingLine(result, tokenizer: tokenizer)) }
    }

    /// The prompt's text from --prompt or --prompt-file (exactly one).
    static func promptText(_ a: ParsedArguments) throws -> String {
        switch (a.string("prompt"), a.string("prompt-file")) {
        case (let p?, nil):
            return p
        case (nil, let path?):
            return try TextReader.plainText(at: URL(fileURLWithPath: path), maxBytes: maxPromptBytes)
        case (.some, .some):
            throw UsageError("give --prompt or --prompt-file, not both")
        case (nil, nil):
            throw UsageError("missing --prompt (or --prompt-file)")
        }
    }

    static func timingLine(_ r: GenerationResult, tokenizer: Tokenizer) -> String {
        let stop: String
        switch r.stop {
        case .stopToken(let id): stop = "stop token \(tokenizer.token(for: id) ?? String(id))"
        case .maxNewTokens: stop = "max new tokens"
        }
        return String(format: "prefill %d tokens in %.3f s (%.1f tokens/s); generated %d tokens, decode %.1f tokens/s (%d passes in %.3f s); ended at %@",
                      r.promptTokens, r.prefillSeconds, Double(r.promptTokens) / max(r.prefillSeconds, 1e-9), r.tokens.count,
                      Double(r.decodePasses) / max(r.decodeSeconds, 1e-9), r.decodePasses, r.decodeSeconds, stop)
    }
}
