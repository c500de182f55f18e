import Foundation
import Generation
import JSON
import Llama
import Pruning
import Runs
import Testing
import TestSupport
import Tokenizers

/// Chat templates against transformers' `apply_chat_template(add_generation_prompt=True)`
/// (Fixtures/generate/reference.json): SmolLM2-135M-Instruct's ChatML template (from the shared GGUF) and
/// Gemma 3's and Gemma 2's instruct templates, rendered text and ids with the models' own tokenizers.
@Suite struct ChatTemplateTests {
    @Test func renderingEqualsTransformers() throws {
        let cases = try #require(try Paths.reference()["chat"]?.arrayValue)
        #expect(cases.count == 9)
        var tokenizers: [String: Tokenizer] = [:]
        for c in cases {
            let name = try #require(c["template_name"]?.stringValue)
            let source = try #require(c["template"]?.stringValue)
            let template = try ChatTemplate(source: source)
            #expect(template.family == (name == "smollm2" ? .chatML : .gemma), "\(name)")
            let messages = try #require(c["messages"]?.arrayValue).map {
                ChatMessage(role: $0["role"]?.stringValue ?? "", content: $0["content"]?.stringValue ?? "")
            }
            let modelPath = try #require(c["tokenizer_model"]?.stringValue)
            let tokenizer: Tokenizer
            if let t = tokenizers[modelPath] {
                tokenizer = t
            } else {
                let url = modelPath.hasPrefix("models/gemma-3") ? try gemma3GGUF() : try Paths.repository(modelPath)
                tokenizer = try ModelInput.open(url).1
                tokenizers[modelPath] = tokenizer
            }
            if let error = c["error"]?.stringValue {
                #expect(error == "System role not supported")
                #expect(throws: GenerationError("this Gemma chat template does not accept a system message")) {
                    try template.encode(messages, tokenizer: tokenizer)
                }
                continue
            }
            let bos = tokenizer.bosTokenID.flatMap(tokenizer.token(for:))
            #expect(try template.render(messages, bosToken: bos) == c["text"]?.stringValue, "\(name) \(messages)")
            #expect(try template.encode(messages, tokenizer: tokenizer) == (c["ids"]?.ints ?? [-1]), "\(name) \(messages)")
        }
    }

    /// SmolLM2's template writes its own system turn when the conversation has none.
    @Test func defaultSystemTurnIsFound() throws {
        let url = try Paths.repository("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        let checkpoint = try LlamaCheckpoint(model: url)
        let source = try #require(try ModelInput.chatTemplate(for: checkpoint, at: url, tokenizerDirectory: nil))
        let template = try ChatTemplate(source: source)
        #expect(template == ChatTemplate(family: .chatML,
                                         defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        // Gemma 3 270M is a base model: its GGUF holds no template; stories260K's folder neither.
        #expect(try ModelInput.chatTemplate(for: try LlamaCheckpoint(model: try gemma3GGUF()), at: try gemma3GGUF(),
                                            tokenizerDirectory: nil) == nil)
        let stories = try Paths.repository("../shared/models/stories260K")
        #expect(try ModelInput.chatTemplate(for: try LlamaCheckpoint(model: stories), at: stories, tokenizerDirectory: nil) == nil)
    }

    /// A template of another family (LLaMA 3's headers) is refused, quoting its first 60 characters.
    @Test func unsupportedTemplateIsNamed() throws {
        let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
            + "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' %}{% endfor %}"
        #expect(throws: GenerationError(
            "unsupported chat template (neither ChatML nor Gemma turns): \"{% set loop_messages = messages %}{% for message in loop_mes…\"")) {
            try ChatTemplate(source: llama3)
        }
        #expect(throws: GenerationError("unsupported chat template (neither ChatML nor Gemma turns): \"[INST] \\n\"")) {
            try ChatTemplate(source: "[INST] \n")
        }
    }

    /// Roles outside system/user/assistant, and Gemma turns that do not alternate, are errors.
    @Test func badConversationsAreRefused() throws {
        let gemma = ChatTemplate(family: .gemma)
        #expect(throws: GenerationError("chat role 'tool' is not system, user or assistant")) {
            try gemma.render([ChatMessage(role: "tool", content: "x")], bosToken: "<bos>")
        }
        #expect(throws: GenerationError("Gemma chats alternate user and assistant turns, starting with the user")) {
            try gemma.render([ChatMessage(role: "assistant", content: "x")], bosToken: "<bos>")
        }
    }
}

/// Where a Hugging Face folder keeps its template: chat_template.jinja, else tokenizer_config.json's
/// `chat_template` (a string, or a list whose `default` entry is taken).
@Suite struct ChatTemplateSourceTests {
    static func source(files: [String: String]) throws -> String? {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("llm-prune-chat-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for (name, text) in files { try text.write(to: folder.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        let model = try Paths.repository("../shared/models/stories260K")
        return try ModelInput.chatTemplate(for: try LlamaCheckpoint(model: model), at: model, tokenizerDirectory: folder)
    }

    @Test func foldersHoldTheirTemplateInThreeWays() throws {
        #expect(try Self.source(files: ["tokenizer_config.json": #"{"chat_template": "<|im_start|>A"}"#]) == "<|im_start|>A")
        #expect(try Self.source(files: ["tokenizer_config.json":
            #"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#]) == "D")
        #expect(try Self.source(files: ["tokenizer_config.json": #"{"chat_template": "C"}"#, "chat_template.jinja": "J"]) == "J")
        #expect(try Self.source(files: ["tokenizer_config.json": #"{"bos_token": "<s>"}"#]) == nil)
        #expect(try Self.source(files: [:]) == nil)
        #expect(throws: PruningError.self) { try Self.source(files: ["tokenizer_config.json": #"{"chat_template": 3}"#]) }
        #expect(throws: PruningError.self) {
            try Self.source(files: ["tokenizer_config.json": #"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#])
        }
    }
}

/// The stop tokens of the shared models: SmolLM2's EOS is <|im_end|> (id 2), which its GGUF names; Gemma 3
/// stops at <eos> (1) and at <end_of_turn> (106); stories260K at </s> (2).
@Suite struct StopTokenTests {
    @Test func sharedModelsStopAtTheirEndTokens() throws {
        for (url, expected) in [
            (try Paths.repository("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"), Set([2])),
            (try gemma3GGUF(), Set([1, 106])),
            (try Paths.repository("../shared/models/stories260K"), Set([2])),
        ] {
            let (checkpoint, tokenizer) = try ModelInput.open(url)
            let stops = GenerationOptions.stopTokens(tokenizer: tokenizer, configuration: checkpoint.configuration)
            #expect(stops == expected, "\(url.lastPathComponent)")
            // A chat template adds its end of turn, which these vocabularies already stop at (or lack).
            #expect(GenerationOptions.stopTokens(tokenizer: tokenizer, configuration: checkpoint.configuration,
                                                 template: ChatTemplate(family: .gemma)) == expected)
        }
    }
}
