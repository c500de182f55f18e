import Foundation

/// How a model family builds its decoder: everything besides the sizes that the embedding, the block's
/// forward/backward pair and the head compute differently between families. A family is a value of this
/// type plus the mapping from its config.json (`LlamaConfiguration.architecture`) or GGUF metadata; the
/// block reads the per-layer part through `BlockGeometry`, so a new variant adds no code path.
///
/// LLaMA, Mistral and Qwen2 are `x + attn(norm(x))`, then `h + mlp(norm(h))`, with norms w·x̂, a SiLU-gated
/// MLP, attention scaled by 1/√head_dim and one RoPE base for every layer; they differ in biases and
/// sliding windows only.
public struct Architecture: Sendable, Equatable {
    /// How an RMSNorm applies its stored weight w to x̂ = x / rms(x).
    public enum NormForm: String, Sendable, CaseIterable {
        /// w · x̂ (LLaMA, Mistral, Qwen).
        case scaled
        /// (1 + w) · x̂ (Gemma: the checkpoint stores the offset from one).
        case offset
    }

    /// Where a block's norms sit around its two sublayers f (attention, MLP).
    public enum NormPlacement: String, Sendable, CaseIterable {
        /// x + f(norm(x)): one norm per sublayer (LLaMA's input and post-attention norms).
        case pre
        /// x + norm(f(norm(x))): a second norm on each sublayer's output (Gemma 2 and 3).
        case sandwich
    }

    /// The gate's activation g in the gated MLP act = g(x·W_gateᵀ) ⊙ (x·W_upᵀ).
    public enum Activation: String, Sendable, CaseIterable {
        /// silu(x) = x·σ(x) (LLaMA, Mistral, Qwen).
        case silu
        /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Gemma's `gelu_pytorch_tanh`).
        case geluTanh
    }

    /// The attention of one layer.
    public struct LayerAttention: Sendable, Equatable {
        /// Query i sees keys i − window < j ≤ i; nil for full causal attention.
        public var window: Int?
        /// The RoPE base θ of this layer (Gemma 3: 10,000 for sliding layers, 1,000,000 for global ones).
        public var ropeTheta: Double

        public init(window: Int?, ropeTheta: Double) {
            self.window = window
            self.ropeTheta = ropeTheta
        }
    }

    public var normPlacement: NormPlacement
    public var normForm: NormForm
    public var activation: Activation
    /// An RMSNorm over each head of q and of k before RoPE (Qwen3, Gemma 3).
    public var qkNorm: Bool
    /// The factor on every embedding row (Gemma: √hidden); nil for none.
    public var embeddingScale: Float?
    /// The factor on QKᵀ: 1/√head_dim, or 1/√query_pre_attn_scalar (Gemma).
    public var attentionScale: Float
    /// cap · tanh(S / cap) on the attention scores (Gemma 2); nil for none.
    public var attentionSoftcap: Float?
    /// cap · tanh(z / cap) on the logits (Gemma 2); nil for none.
    public var finalLogitSoftcap: Float?
    /// One entry per layer.
    public var layers: [LayerAttention]
    /// Biases on q, k and v; on o.
    public var qkvBias: Bool
    public var outputBias: Bool
    /// Whether the head is the embedding table.
    public var tiedHead: Bool

    public init(normPlacement: NormPlacement = .pre, normForm: NormForm = .scaled, activation: Activation = .silu,
                qkNorm: Bool = false, embeddingScale: Float? = nil, attentionScale: Float,
                attentionSoftcap: Float? = nil, finalLogitSoftcap: Float? = nil, layers: [LayerAttention],
                qkvBias: Bool = false, outputBias: Bool = false, tiedHead: Bool = false) {
        self.normPlacement = normPlacement
        self.normForm = normForm
        self.activation = activation
        self.qkNorm = qkNorm
        self.embeddingScale = embeddingScale
        self.attentionScale = attentionScale
        self.attentionSoftcap = attentionSoftcap
        self.finalLogitSoftcap = finalLogitSoftcap
        self.layers = layers
        self.qkvBias = qkvBias
        self.outputBias = outputBias
        self.tiedHead = tiedHead
    }

    /// What an RMSNorm adds to its stored weight (`RMSNorm`'s `weightOffset`): 0 for w·x̂, 1 for (1 + w)·x̂.
    public var normWeightOffset: Float { normForm == .offset ? 1 : 0 }

    /// The scale LLaMA's attention uses, 1/√head_dim, rounded as the kernels always computed it.
    public static func defaultAttentionScale(headDim: Int) -> Float { 1 / Float(headDim).squareRoot() }

    /// The features this version computes in the block, the embedding and the head; the others are refused
    /// when a model is opened, naming the feature, rather than computed as another model. Every feature the
    /// description can hold is computed today; a cap must be positive and finite.
    public func checkSupported() throws {
        var missing: [String] = []
        for (name, cap) in [("attention logit soft-cap", attentionSoftcap), ("final logit soft-cap", finalLogitSoftcap)] {
            if let cap, !(cap.isFinite && cap > 0) { missing.append("\(name) \(cap) (must be positive and finite)") }
        }
        if !missing.isEmpty {
            throw LlamaError.invalidConfiguration(missing.joined(separator: ", "))
        }
    }
}

extension LlamaConfiguration {
    /// The architecture this configuration describes, with each model type's semantics (see the type's
    /// documentation for how `attention_bias` and the sliding-window keys read per type).
    ///
    /// gemma3_text is transformers' `Gemma3DecoderLayer`: sandwich norms of the form (1 + w)·x̂ (q and k
    /// normed per head too), a GELU-tanh gate, embeddings times √hidden (as a float32 scalar), attention
    /// scaled by `query_pre_attn_scalar`^−½, sliding layers on base `rope_local_base_freq` and full ones on
    /// `rope_theta`.
    public var architecture: Architecture {
        let layers = (0..<numHiddenLayers).map { l -> Architecture.LayerAttention in
            let window = attentionWindow(layer: l)
            let theta = layerTypes?[l] == "sliding_attention" ? (ropeLocalBaseFreq ?? ropeTheta) : ropeTheta
            return Architecture.LayerAttention(window: window, ropeTheta: theta)
        }
        switch modelType {
        case .llama, .mistral, .qwen2, .qwen3:
            return Architecture(qkNorm: modelType == .qwen3, attentionScale: Architecture.defaultAttentionScale(headDim: headDim),
                                layers: layers, qkvBias: hasQKVBias, outputBias: hasOutputBias, tiedHead: tieWordEmbeddings)
        case .gemma2, .gemma3Text:
            return Architecture(normPlacement: .sandwich, normForm: .offset, activation: .geluTanh, qkNorm: modelType == .gemma3Text,
                                embeddingScale: Float(Double(hiddenSize).squareRoot()),
                                attentionScale: Float(1 / (queryPreAttnScalar ?? Double(headDim)).squareRoot()),
                                attentionSoftcap: attnLogitSoftcapping.map(Float.init),
                                finalLogitSoftcap: finalLogitSoftcapping.map(Float.init),
                                layers: layers, qkvBias: hasQKVBias, outputBias: hasOutputBias, tiedHead: tieWordEmbeddings)
        }
    }
}
