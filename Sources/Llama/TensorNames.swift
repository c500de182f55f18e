/// The seven linear layers of a decoder block, the unit pruning addresses.
/// Raw values are the short names used in logs and run records.
public enum LinearKind: String, CaseIterable, Codable, Sendable {
    case q, k, v, o, gate, up, down

    /// The module path inside a block: `self_attn.q_proj`, ..., `mlp.down_proj`.
    public var modulePath: String {
        switch self {
        case .q: return "self_attn.q_proj"
        case .k: return "self_attn.k_proj"
        case .v: return "self_attn.v_proj"
        case .o: return "self_attn.o_proj"
        case .gate: return "mlp.gate_proj"
        case .up: return "mlp.up_proj"
        case .down: return "mlp.down_proj"
        }
    }

    /// The weight's (out, in) shape under a configuration.
    public func shape(_ c: LlamaConfiguration) -> [Int] {
        switch self {
        case .q: return [c.numAttentionHeads * c.headDim, c.hiddenSize]
        case .k, .v: return [c.numKeyValueHeads * c.headDim, c.hiddenSize]
        case .o: return [c.hiddenSize, c.numAttentionHeads * c.headDim]
        case .gate, .up: return [c.intermediateSize, c.hiddenSize]
        case .down: return [c.hiddenSize, c.intermediateSize]
        }
    }

    /// Whether this layer has a bias under a configuration (q/k/v: `hasQKVBias`; o: `hasOutputBias`).
    public func hasBias(_ c: LlamaConfiguration) -> Bool {
        switch self {
        case .q, .k, .v: return c.hasQKVBias
        case .o: return c.hasOutputBias
        case .gate, .up, .down: return false
        }
    }
}

/// The single table of Hugging Face tensor names for LLaMA-family checkpoints, and the shapes a
/// configuration implies for them. Loading, strict validation and export all go through it.
public enum LlamaTensorNames {
    public static let embedTokens = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"

    public static func weight(_ kind: LinearKind, layer: Int) -> String {
        "model.layers.\(layer).\(kind.modulePath).weight"
    }

    public static func bias(_ kind: LinearKind, layer: Int) -> String {
        "model.layers.\(layer).\(kind.modulePath).bias"
    }

    public static func inputNorm(layer: Int) -> String { "model.layers.\(layer).input_layernorm.weight" }
    public static func postAttentionNorm(layer: Int) -> String { "model.layers.\(layer).post_attention_layernorm.weight" }

    /// Checkpoint entries that carry no parameters (old transformers saved RoPE's buffer) and are skipped.
    public static func isIgnored(_ name: String) -> Bool { name.hasSuffix(".rotary_emb.inv_freq") }

    /// Every tensor of block `layer` with its expected shape, in the order the block uses them.
    public static func block(layer: Int, configuration c: LlamaConfiguration) -> [(name: String, shape: [Int])] {
        var entries: [(name: String, shape: [Int])] = [(inputNorm(layer: layer), [c.hiddenSize])]
        for kind in LinearKind.allCases {
            if kind == .gate { entries.append((postAttentionNorm(layer: layer), [c.hiddenSize])) }
            entries.append((weight(kind, layer: layer), kind.shape(c)))
            if kind.hasBias(c) { entries.append((bias(kind, layer: layer), [kind.shape(c)[0]])) }
        }
        return entries
    }

    /// Every tensor the model needs with its shape. `lm_head.weight` is listed only for untied models
    /// (see `LlamaCheckpoint` for a tied model whose checkpoint still holds one).
    public static func all(configuration c: LlamaConfiguration) -> [(name: String, shape: [Int])] {
        var entries: [(name: String, shape: [Int])] = [(embedTokens, [c.vocabSize, c.hiddenSize])]
        for layer in 0..<c.numHiddenLayers { entries += block(layer: layer, configuration: c) }
        entries.append((finalNorm, [c.hiddenSize]))
        if !c.tieWordEmbeddings { entries.append((lmHead, [c.vocabSize, c.hiddenSize])) }
        return entries
    }
}
