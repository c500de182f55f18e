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

/// The norms a decoder block can hold, by the role they play; which ones a block has and their names in a
/// checkpoint follow from its `Architecture` (Gemma's `post_attention_layernorm` is the attention output's
/// norm, LLaMA's is the MLP input's).
public enum BlockNorm: CaseIterable, Sendable {
    /// Before attention (`input_layernorm`).
    case input
    /// QK-norm's, on each head of q and of k (`self_attn.q_norm`, `self_attn.k_norm`).
    case query, key
    /// Sandwich norms: on the attention output, before the residual add.
    case attentionOutput
    /// Before the MLP.
    case mlpInput
    /// Sandwich norms: on the MLP output, before the residual add.
    case mlpOutput

    /// Whether a block of this architecture has the norm.
    public func isPresent(in a: Architecture) -> Bool {
        switch self {
        case .input, .mlpInput: return true
        case .query, .key: return a.qkNorm
        case .attentionOutput, .mlpOutput: return a.normPlacement == .sandwich
        }
    }

    /// The module name under `model.layers.N.` in Hugging Face checkpoints.
    public func moduleName(_ a: Architecture) -> String {
        switch self {
        case .input: return "input_layernorm"
        case .query: return "self_attn.q_norm"
        case .key: return "self_attn.k_norm"
        case .attentionOutput: return "post_attention_layernorm"
        case .mlpInput: return a.normPlacement == .sandwich ? "pre_feedforward_layernorm" : "post_attention_layernorm"
        case .mlpOutput: return "post_feedforward_layernorm"
        }
    }

    /// Its width: head_dim for QK-norm's, hidden_size for the others.
    public func width(_ c: LlamaConfiguration) -> Int { self == .query || self == .key ? c.headDim : c.hiddenSize }
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

    /// The weight of a block norm in an architecture.
    public static func norm(_ role: BlockNorm, layer: Int, architecture a: Architecture) -> String {
        "model.layers.\(layer).\(role.moduleName(a)).weight"
    }

    /// Checkpoint entries that carry no parameters (old transformers saved RoPE's buffer) and are skipped.
    public static func isIgnored(_ name: String) -> Bool { name.hasSuffix(".rotary_emb.inv_freq") }

    /// Every tensor of block `layer` with its expected shape, in the order the block uses them.
    public static func block(layer: Int, configuration c: LlamaConfiguration) -> [(name: String, shape: [Int])] {
        blockEntries(layer: layer, configuration: c).map { entry in
            switch entry {
            case .norm(let role): return (norm(role, layer: layer, architecture: c.architecture), [role.width(c)])
            case .weight(let kind): return (weight(kind, layer: layer), kind.shape(c))
            case .bias(let kind): return (bias(kind, layer: layer), [kind.shape(c)[0]])
            }
        }
    }

    /// A block's tensors by role, in the order the block uses them (the order of `block` and of export).
    public enum BlockEntry: Equatable, Sendable {
        case norm(BlockNorm), weight(LinearKind), bias(LinearKind)
    }

    public static func blockEntries(layer: Int, configuration c: LlamaConfiguration) -> [BlockEntry] {
        let a = c.architecture
        var entries: [BlockEntry] = [.norm(.input)]
        for kind in LinearKind.allCases {
            if kind == .o { entries += [BlockNorm.query, .key].filter { $0.isPresent(in: a) }.map(BlockEntry.norm) }
            if kind == .gate { entries += [BlockNorm.attentionOutput, .mlpInput].filter { $0.isPresent(in: a) }.map(BlockEntry.norm) }
            entries.append(.weight(kind))
            if kind.hasBias(c) { entries.append(.bias(kind)) }
        }
        if BlockNorm.mlpOutput.isPresent(in: a) { entries.append(.norm(.mlpOutput)) }
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
