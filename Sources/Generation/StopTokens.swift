import Llama
import Tokenizers

extension GenerationOptions {
    /// End-of-turn tokens of the chat families, which instruct models end their answers with even where
    /// their EOS is another token (Gemma's EOS is `<eos>`, its turns end with `<end_of_turn>`).
    public static let endOfTurnTokens = ["<end_of_turn>", "<|im_end|>", "<|eot_id|>"]

    /// The tokens at which generation stops for a model: the tokenizer's EOS, config.json's
    /// `eos_token_id` (one id or a list), each of `endOfTurnTokens` the vocabulary has, and the chat
    /// template's end of turn.
    public static func stopTokens(tokenizer: Tokenizer, configuration: LlamaConfiguration,
                                  template: ChatTemplate? = nil) -> Set<Int> {
        var ids = Set(configuration.eosTokenIds)
        if let eos = tokenizer.eosTokenID { ids.insert(eos) }
        for t in endOfTurnTokens + [template?.endOfTurn].compactMap({ $0 }) {
            if let id = tokenizer.id(for: t) { ids.insert(id) }
        }
        return ids.filter { $0 >= 0 && $0 < configuration.vocabSize }
    }
}

extension ChatTemplate {
    /// The prompt ids of a conversation: the rendered text encoded without the tokenizer's own special
    /// tokens (the template wrote them, BOS included where it writes one).
    public func encode(_ messages: [ChatMessage], tokenizer: Tokenizer) throws -> [Int] {
        let text = try render(messages, bosToken: tokenizer.bosTokenID.flatMap(tokenizer.token(for:)))
        return tokenizer.encode(text, addSpecialTokens: false)
    }
}
