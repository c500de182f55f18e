import Foundation

/// One turn of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// `system`, `user` or `assistant`.
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A model's chat template, recognized by family rather than run: the Jinja source a checkpoint carries
/// (`chat_template` in tokenizer_config.json, `tokenizer.chat_template` in a GGUF) is matched against the
/// families this project renders, each rendered as its templates render plain-text conversations:
///
/// - **ChatML** (SmolLM2, Qwen2): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
///   `<|im_start|>assistant\n`; a template that writes a fixed system turn when the conversation has
///   none (SmolLM2's "You are a helpful AI assistant named SmolLM…") has it as `defaultSystem`.
/// - **Gemma turns** (Gemma 2 and 3 instruct): `{bos}`, then `<start_of_turn>{user|model}\n{content,
///   trimmed}<end_of_turn>\n` per message, then `<start_of_turn>model\n`; Gemma 3 puts a system message in
///   front of the first user turn followed by a blank line, Gemma 2's template refuses one.
///
/// Anything else is refused with an error that quotes the template's beginning.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, CaseIterable, Sendable {
        case chatML = "chatml"
        case gemma
    }

    public var family: Family
    /// The system turn the template writes when the conversation has none (ChatML only).
    public var defaultSystem: String?
    /// Whether a system message is accepted (Gemma 2's template raises on one).
    public var acceptsSystem: Bool

    public init(family: Family, defaultSystem: String? = nil, acceptsSystem: Bool = true) {
        self.family = family
        self.defaultSystem = defaultSystem
        self.acceptsSystem = acceptsSystem
    }

    /// The token that ends a turn, at which generation stops.
    public var endOfTurn: String {
        switch family {
        case .chatML: return "<|im_end|>"
        case .gemma: return "<end_of_turn>"
        }
    }

    /// Characters of an unrecognized template quoted in the error.
    static let quotedCharacters = 60

    /// The family of a template's Jinja source.
    public init(source: String) throws {
        if source.contains("<|im_start|>") && source.contains("<|im_end|>") {
            self.init(family: .chatML, defaultSystem: Self.fixedSystemTurn(in: source))
        } else if source.contains("<start_of_turn>") && source.contains("<end_of_turn>") {
            self.init(family: .gemma, acceptsSystem: !source.contains("System role not supported"))
        } else {
            var quoted = String(source.prefix(Self.quotedCharacters))
            quoted = quoted.replacingOccurrences(of: "\n", with: "\\n")
            if source.count > Self.quotedCharacters { quoted += "…" }
            throw GenerationError("unsupported chat template (neither ChatML nor Gemma turns): \"\(quoted)\"")
        }
    }

    /// The literal system turn `<|im_start|>system\n…<|im_end|>` written inside one template string, if any
    /// (text with no quote, brace or `+`, so it is a constant and not the conversation's own system message).
    static func fixedSystemTurn(in source: String) -> String? {
        let open = "<|im_start|>system\n", close = "<|im_end|>"
        var rest = source[...]
        while let start = rest.range(of: open) {
            let after = rest[start.upperBound...]
            if let end = after.range(of: close) {
                let text = after[..<end.lowerBound]
                if !text.isEmpty && !text.contains(where: { "'\"{}+".contains($0) }) { return String(text) }
            }
            rest = after
        }
        return nil
    }

    /// The prompt text of `messages` followed by the opening of the assistant's turn. `bosToken` is the
    /// tokenizer's BOS text, which Gemma's templates write first. The text is then encoded without the
    /// tokenizer's own special tokens (the template placed them).
    public func render(_ messages: [ChatMessage], bosToken: String?) throws -> String {
        guard !messages.isEmpty else { throw GenerationError("a chat needs at least one message") }
        for m in messages where !["system", "user", "assistant"].contains(m.role) {
            throw GenerationError("chat role '\(m.role)' is not system, user or assistant")
        }
        switch family {
        case .chatML:
            var text = ""
            if messages[0].role != "system", let defaultSystem {
                text += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
            }
            for m in messages { text += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            return text + "<|im_start|>assistant\n"
        case .gemma:
            var turns = messages[...]
            var firstPrefix = ""
            if messages[0].role == "system" {
                guard acceptsSystem else { throw GenerationError("this Gemma chat template does not accept a system message") }
                firstPrefix = messages[0].content + "\n\n"
                turns = messages.dropFirst()
            }
            var text = bosToken ?? ""
            for (i, m) in turns.enumerated() {
                guard (m.role == "user") == (i % 2 == 0), m.role != "system" else {
                    throw GenerationError("Gemma chats alternate user and assistant turns, starting with the user")
                }
                let role = m.role == "assistant" ? "model" : m.role
                text += "<start_of_turn>\(role)\n\(i == 0 ? firstPrefix : "")\(Self.trimmed(m.content))<end_of_turn>\n"
            }
            return text + "<start_of_turn>model\n"
        }
    }

    /// Jinja's `trim`: leading and trailing whitespace removed (Python's `str.strip()`).
    static func trimmed(_ s: String) -> String {
        let scalars = s.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }
}
