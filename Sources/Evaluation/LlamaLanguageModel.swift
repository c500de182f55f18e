import Llama

/// The LLaMA model already has `logits(_:)` (B, T) → (B, T, V) and `vocabularySize`.
extension LlamaModel: CausalLanguageModel {}
