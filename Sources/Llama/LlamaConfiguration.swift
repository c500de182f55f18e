import Foundation
import JSON
import SparseWeights

/// The architecture of a LLaMA-family decoder as Hugging Face's config.json describes it, for the model
/// types `llama`, `mistral`, `qwen2`, `qwen3` and `gemma3_text`, with transformers' defaults and per-type semantics.
///
/// Decoding refuses what the forward pass does not compute (other RoPE types, MLP biases, activations other
/// than SiLU, quantization) with a `LlamaError` naming the option, rather than silently computing another model.
///
/// Per-type semantics (transformers 5):
/// - `llama`: `attention_bias` puts biases on q, k, v **and** o; `mlp_bias` would bias gate/up/down (refused).
/// - `qwen2`: q, k, v always have biases and o never does (Qwen2Attention ignores `attention_bias`);
///   `sliding_window` applies only when `use_sliding_window` is true, to the layers `layer_types` marks
///   `sliding_attention` (by default the layers with index ≥ `max_window_layers`).
/// - `mistral`: no attention biases; a non-null `sliding_window` applies to every layer (an absent key
///   means 4096, as in `MistralConfig`; only an explicit null turns the window off).
/// - `qwen3`: Qwen2's windows, QK-norm (w·x̂ per head of q and k), and `attention_bias` biasing q, k, v and o
///   (false by default).
/// - `gemma2` (`Gemma2Config`): Gemma 3's recipe without QK-norm, every second layer sliding, one RoPE base,
///   and soft-capping of the attention scores (`attn_logit_softcapping`, 50) and the logits
///   (`final_logit_softcapping`, 30), both on by default.
/// - `gemma3_text` (`Gemma3TextConfig`): the Gemma 3 recipe (see `architecture`); `layer_types` (by
///   default every sixth layer `full_attention`, the others `sliding_attention` with `sliding_window`,
///   4096 when absent); RoPE base `rope_theta` on full layers and `rope_local_base_freq` (10,000) on sliding
///   ones, or transformers 5's `rope_parameters` per layer type; attention scaled by
///   `query_pre_attn_scalar`^−½ (256); `attention_bias` biases q, k, v and o.
///
/// RoPE parameters are read from transformers 5's `rope_parameters` dict or the older `rope_theta` +
/// `rope_scaling` (whose kind is under `rope_type` or `type`), with `rope_scaling` taking priority as in
/// transformers. Encoding writes the older form, which transformers 4 and 5 both read.
public struct LlamaConfiguration: Codable, Equatable, Sendable {
    public enum ModelType: String, Codable, Sendable, CaseIterable {
        case llama, mistral, qwen2, qwen3
        case gemma2
        case gemma3Text = "gemma3_text"

        /// Gemma 2 and 3: sandwich (1 + w) norms, GELU-tanh, √hidden embeddings, query_pre_attn_scalar.
        public var isGemma: Bool { self == .gemma2 || self == .gemma3Text }
    }

    /// How the rotary inverse frequencies are rescaled for long contexts.
    public enum RopeScaling: Equatable, Sendable {
        /// Position interpolation: every inverse frequency divided by `factor`.
        case linear(factor: Double)
        /// LLaMA-3.1: low frequencies divided by `factor`, high ones kept, a smooth blend in between.
        case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositionEmbeddings: Int)
    }

    public var modelType: ModelType
    /// C: the width of the residual stream.
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    /// NH: query heads.
    public var numAttentionHeads: Int
    /// NKV: key/value heads (NH when absent; NH / NKV query heads share each KV head).
    public var numKeyValueHeads: Int
    /// HD: per-head width (hidden_size / num_attention_heads when absent).
    public var headDim: Int
    /// The MLP's hidden width (gate and up outputs).
    public var intermediateSize: Int
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    /// The raw `attention_bias` key (llama only; see `hasQKVBias` / `hasOutputBias` for what it means).
    public var attentionBias: Bool
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    /// `eos_token_id` as a list (config.json may hold one id or a list).
    public var eosTokenIds: [Int]
    /// `torch_dtype` (transformers 4) or `dtype` (transformers 5): the checkpoint's storage type.
    public var torchDtype: String?
    /// mistral: the window of every layer; qwen2: the window of sliding layers when `use_sliding_window`.
    public var slidingWindow: Int?
    /// qwen2's `use_sliding_window` (nil for other types).
    public var useSlidingWindow: Bool?
    /// qwen2's `max_window_layers` (nil for other types).
    public var maxWindowLayers: Int?
    /// qwen2's `layer_types` when the file gives them; gemma3_text's always (`full_attention` /
    /// `sliding_attention`).
    public var layerTypes: [String]?
    /// gemma3_text: the attention scale is `query_pre_attn_scalar`^−½ (nil for other types).
    public var queryPreAttnScalar: Double?
    /// gemma3_text: the RoPE base of sliding layers (nil for other types).
    public var ropeLocalBaseFreq: Double?
    /// gemma3_text's soft-caps (nil: none; the block refuses them).
    public var finalLogitSoftcapping: Double?
    public var attnLogitSoftcapping: Double?

    /// Whether q, k and v projections carry biases.
    public var hasQKVBias: Bool {
        switch modelType {
        case .llama, .qwen3, .gemma2, .gemma3Text: return attentionBias
        case .qwen2: return true
        case .mistral: return false
        }
    }

    /// Whether the o projection carries a bias (llama's and gemma3's `attention_bias` cover o too).
    public var hasOutputBias: Bool { [.llama, .qwen3, .gemma2, .gemma3Text].contains(modelType) && attentionBias }

    /// How many query heads share one key/value head.
    public var queryGroupSize: Int { numAttentionHeads / numKeyValueHeads }

    /// The sliding attention window of layer `layer`, as transformers applies it: query position i attends
    /// to key positions j with i − window < j ≤ i. nil means full causal attention.
    public func attentionWindow(layer: Int) -> Int? {
        switch modelType {
        case .llama:
            return nil
        case .mistral:
            return slidingWindow
        case .qwen2, .qwen3:
            guard useSlidingWindow == true, let window = slidingWindow else { return nil }
            if let layerTypes {
                return layer < layerTypes.count && layerTypes[layer] == "sliding_attention" ? window : nil
            }
            return layer >= (maxWindowLayers ?? 28) ? window : nil
        case .gemma2, .gemma3Text:
            guard let layerTypes, layer < layerTypes.count else { return nil }
            return layerTypes[layer] == "sliding_attention" ? slidingWindow : nil
        }
    }

    // MARK: - Decoding

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case intermediateSize = "intermediate_size"
        case vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters"
        case partialRotaryFactor = "partial_rotary_factor"
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case hiddenAct = "hidden_act"
        case torchDtype = "torch_dtype"
        case dtype = "dtype"
        case slidingWindow = "sliding_window"
        case useSlidingWindow = "use_sliding_window"
        case maxWindowLayers = "max_window_layers"
        case layerTypes = "layer_types"
        case quantizationConfig = "quantization_config"
        case hiddenActivation = "hidden_activation"
        case queryPreAttnScalar = "query_pre_attn_scalar"
        case ropeLocalBaseFreq = "rope_local_base_freq"
        case slidingWindowPattern = "sliding_window_pattern"
        case finalLogitSoftcapping = "final_logit_softcapping"
        case attnLogitSoftcapping = "attn_logit_softcapping"
        case useBidirectionalAttention = "use_bidirectional_attention"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let typeName = try c.decode(String.self, forKey: .modelType)
        guard let type = ModelType(rawValue: typeName) else { throw LlamaError.unsupportedModelType(typeName) }
        modelType = type

        if c.contains(.quantizationConfig), try !c.decodeNil(forKey: .quantizationConfig) {
            throw LlamaError.unsupportedOption("quantization_config is present (quantized checkpoints are not supported)")
        }
        if type.isGemma {
            // Gemma names it hidden_activation (hidden_act is an older alias it also reads).
            let act = try c.decodeIfPresent(String.self, forKey: .hiddenActivation)
                ?? c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu_pytorch_tanh"
            guard act == "gelu_pytorch_tanh" else {
                throw LlamaError.unsupportedOption("hidden_activation '\(act)' (gemma3_text: only gelu_pytorch_tanh is supported)")
            }
            if try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) == true {
                throw LlamaError.unsupportedOption("use_bidirectional_attention = true (only causal attention is supported)")
            }
        } else {
            let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
            guard act == "silu" else {
                throw LlamaError.unsupportedOption("hidden_act '\(act)' (only silu is supported)")
            }
        }
        if try c.decodeIfPresent(Bool.self, forKey: .mlpBias) == true {
            throw LlamaError.unsupportedOption("mlp_bias = true (biases on gate/up/down projections)")
        }

        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        let defaultMaxPositions: Int
        switch type {
        case .llama: defaultMaxPositions = 2048
        case .mistral: defaultMaxPositions = 4096 * 32
        case .qwen2, .qwen3: defaultMaxPositions = 32768
        case .gemma2: defaultMaxPositions = 8192
        case .gemma3Text: defaultMaxPositions = 131072
        }
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? defaultMaxPositions
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        attentionBias = [.llama, .qwen3, .gemma2, .gemma3Text].contains(type) ? (try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false) : false
        // Gemma3TextConfig ties the head by default; the LLaMA family does not.
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? type.isGemma
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        if let one = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) {
            eosTokenIds = [one]
        } else {
            eosTokenIds = try c.decodeIfPresent([Int].self, forKey: .eosTokenId) ?? []
        }
        torchDtype = try c.decodeIfPresent(String.self, forKey: .torchDtype)
            ?? c.decodeIfPresent(String.self, forKey: .dtype)

        if !(hiddenSize > 0 && numHiddenLayers > 0 && numAttentionHeads > 0 && numKeyValueHeads > 0
             && intermediateSize > 0 && vocabSize > 0 && maxPositionEmbeddings > 0) {
            throw LlamaError.invalidConfiguration(
                "sizes must be positive (hidden_size \(hiddenSize), num_hidden_layers \(numHiddenLayers), "
                + "num_attention_heads \(numAttentionHeads), num_key_value_heads \(numKeyValueHeads), "
                + "intermediate_size \(intermediateSize), vocab_size \(vocabSize), "
                + "max_position_embeddings \(maxPositionEmbeddings))")
        }
        if let dim = try c.decodeIfPresent(Int.self, forKey: .headDim) {
            headDim = dim
        } else {
            guard hiddenSize % numAttentionHeads == 0 else {
                throw LlamaError.invalidConfiguration(
                    "hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads) and head_dim is not given")
            }
            headDim = hiddenSize / numAttentionHeads
        }
        guard headDim > 0, headDim % 2 == 0 else {
            throw LlamaError.invalidConfiguration("head_dim \(headDim) must be positive and even for rotary embeddings")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw LlamaError.invalidConfiguration(
                "num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        try Self.checkBounds([
            ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
            ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads),
            ("head_dim", headDim), ("intermediate_size", intermediateSize), ("vocab_size", vocabSize),
            ("max_position_embeddings", maxPositionEmbeddings),
        ])
        if numAttentionHeads * headDim > Self.limits["hidden_size"]! {
            throw LlamaError.invalidConfiguration(
                "num_attention_heads × head_dim = \(numAttentionHeads * headDim) exceeds the \(Self.limits["hidden_size"]!) this tool accepts")
        }
        guard rmsNormEps.isFinite, rmsNormEps > 0 else { throw LlamaError.invalidConfiguration("rms_norm_eps \(rmsNormEps) must be positive and finite") }

        // RoPE: rope_scaling (older files) wins over rope_parameters (transformers 5), as in transformers.
        let scalingDict = try c.decodeIfPresent([String: ConfigValue].self, forKey: .ropeScaling)
        var parameterDict = try c.decodeIfPresent([String: ConfigValue].self, forKey: .ropeParameters)
        // gemma3_text in transformers 5: rope_parameters per layer type; the full layers' entry is the model's
        // RoPE (scaling included), the sliding layers' base is rope_local_base_freq.
        var localBase: Double?
        if type == .gemma3Text, let perType = parameterDict, case .object(let full)? = perType["full_attention"] {
            if case .object(let sliding)? = perType["sliding_attention"] {
                if let v = sliding["rope_theta"] { localBase = try v.number("rope_theta") }
                let kind = try (sliding["rope_type"] ?? sliding["type"]).map { try $0.string("rope_type") } ?? "default"
                guard kind == "default" else {
                    throw LlamaError.unsupportedOption("rope scaling '\(kind)' on sliding layers (only default is supported there)")
                }
            }
            parameterDict = full
        }
        let rope = scalingDict ?? parameterDict ?? [:]
        if rope.values.contains(where: { if case .object = $0 { return true } else { return false } }) {
            throw LlamaError.unsupportedOption("per-layer-type rope_parameters (one RoPE for all layers is supported)")
        }
        let topTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        ropeTheta = try rope["rope_theta"].map { try $0.number("rope_theta") } ?? topTheta ?? 10000
        guard ropeTheta.isFinite, ropeTheta > 0 else { throw LlamaError.invalidConfiguration("rope_theta \(ropeTheta) must be positive and finite") }
        let partial = try rope["partial_rotary_factor"].map { try $0.number("partial_rotary_factor") }
            ?? c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        if let partial, partial != 1 {
            throw LlamaError.unsupportedOption("partial_rotary_factor \(partial) (only full rotary embeddings are supported)")
        }
        let ropeType = try (rope["rope_type"] ?? rope["type"]).map { try $0.string("rope_type") } ?? "default"
        func factor(_ key: String) throws -> Double {
            guard let value = rope[key] else {
                throw LlamaError.invalidConfiguration("rope scaling '\(ropeType)' needs '\(key)'")
            }
            let v = try value.number(key)
            guard v.isFinite else { throw LlamaError.invalidConfiguration("rope key '\(key)' is \(v), not a finite number") }
            return v
        }
        switch ropeType {
        case "default":
            ropeScaling = nil
        case "linear":
            let f = try factor("factor")
            guard f > 0 else { throw LlamaError.invalidConfiguration("rope scaling factor \(f) must be positive") }
            ropeScaling = .linear(factor: f)
        case "llama3":
            let f = try factor("factor"), low = try factor("low_freq_factor"), high = try factor("high_freq_factor")
            let original = try rope["original_max_position_embeddings"].map { value -> Int in
                // A float too large for Int (1e30) would trap in the conversion: check it first.
                let v = try value.number("original_max_position_embeddings")
                let bound = Self.limits["max_position_embeddings"]!
                guard v.isFinite, v == v.rounded(), v >= 1, v <= Double(bound) else {
                    throw LlamaError.invalidConfiguration(
                        "rope key 'original_max_position_embeddings' is \(v), not an integer in 1...\(bound)")
                }
                return Int(v)
            } ?? maxPositionEmbeddings
            guard f > 0, low > 0, high > low, original > 0 else {
                throw LlamaError.invalidConfiguration(
                    "llama3 rope scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0 (got \(f), \(high), \(low))")
            }
            ropeScaling = .llama3(factor: f, lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: original)
        default:
            throw LlamaError.unsupportedOption("rope scaling type '\(ropeType)' (supported: default, linear, llama3)")
        }

        // Sliding windows, per model type.
        // transformers' MistralConfig and Qwen2Config default an absent key to 4096 (null means none).
        let window = c.contains(.slidingWindow) ? try c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 4096
        if let window, window <= 0 {
            throw LlamaError.invalidConfiguration("sliding_window \(window) must be positive")
        }
        if let window { try Self.checkBounds([("sliding_window", window)], limit: Self.limits["max_position_embeddings"]!) }
        switch type {
        case .llama:
            slidingWindow = nil; useSlidingWindow = nil; maxWindowLayers = nil; layerTypes = nil
        case .mistral:
            slidingWindow = window; useSlidingWindow = nil; maxWindowLayers = nil; layerTypes = nil
        case .qwen2, .qwen3:
            slidingWindow = window
            useSlidingWindow = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? false
            maxWindowLayers = try c.decodeIfPresent(Int.self, forKey: .maxWindowLayers) ?? 28
            layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        case .gemma2, .gemma3Text:
            slidingWindow = window
            useSlidingWindow = nil; maxWindowLayers = nil
            // Gemma3TextConfig: every sliding_window_pattern-th layer (6) is full, the others sliding;
            // Gemma2Config: every second layer.
            let pattern = try c.decodeIfPresent(Int.self, forKey: .slidingWindowPattern) ?? (type == .gemma2 ? 2 : 6)
            guard pattern > 0 else { throw LlamaError.invalidConfiguration("sliding_window_pattern \(pattern) must be positive") }
            layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
                ?? (0..<numHiddenLayers).map { ($0 + 1) % pattern == 0 ? "full_attention" : "sliding_attention" }
        }
        if let layerTypes {
            guard layerTypes.count == numHiddenLayers else {
                throw LlamaError.invalidConfiguration("layer_types has \(layerTypes.count) entries for \(numHiddenLayers) layers")
            }
            if let bad = layerTypes.first(where: { $0 != "full_attention" && $0 != "sliding_attention" }) {
                throw LlamaError.unsupportedOption("layer type '\(bad)' (supported: full_attention, sliding_attention)")
            }
        }
        if type.isGemma {
            queryPreAttnScalar = try c.decodeIfPresent(Double.self, forKey: .queryPreAttnScalar) ?? 256
            // Gemma 2 rotates every layer on rope_theta; Gemma 3's sliding layers have their own base.
            ropeLocalBaseFreq = type == .gemma2 ? nil
                : try localBase ?? c.decodeIfPresent(Double.self, forKey: .ropeLocalBaseFreq) ?? 10000
            // Gemma2Config caps by default (final 30, attention 50; null turns a cap off); Gemma 3 does not.
            func cap(_ key: CodingKeys, _ gemma2Default: Double) throws -> Double? {
                if c.contains(key) { return try c.decodeIfPresent(Double.self, forKey: key) }
                return type == .gemma2 ? gemma2Default : nil
            }
            finalLogitSoftcapping = try cap(.finalLogitSoftcapping, 30)
            attnLogitSoftcapping = try cap(.attnLogitSoftcapping, 50)
            for (key, v) in [("query_pre_attn_scalar", queryPreAttnScalar), ("rope_local_base_freq", ropeLocalBaseFreq),
                             ("final_logit_softcapping", finalLogitSoftcapping), ("attn_logit_softcapping", attnLogitSoftcapping)] {
                if let v, !(v.isFinite && v > 0) { throw LlamaError.invalidConfiguration("\(key) \(v) must be positive and finite") }
            }
        } else {
            queryPreAttnScalar = nil; ropeLocalBaseFreq = nil; finalLogitSoftcapping = nil; attnLogitSoftcapping = nil
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType.rawValue, forKey: .modelType)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        switch ropeScaling {
        case nil:
            break
        case let .linear(factor)?:
            try c.encode(["rope_type": ConfigValue.string("linear"), "factor": .number(factor)], forKey: .ropeScaling)
        case let .llama3(factor, low, high, original)?:
            try c.encode(["rope_type": ConfigValue.string("llama3"), "factor": .number(factor),
                          "low_freq_factor": .number(low), "high_freq_factor": .number(high),
                          "original_max_position_embeddings": .number(Double(original))], forKey: .ropeScaling)
        }
        if [.llama, .qwen3, .gemma2, .gemma3Text].contains(modelType) {
            try c.encode(attentionBias, forKey: .attentionBias)
        }
        if modelType == .llama { try c.encode(false, forKey: .mlpBias) }
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        if eosTokenIds.count == 1 {
            try c.encode(eosTokenIds[0], forKey: .eosTokenId)
        } else if !eosTokenIds.isEmpty {
            try c.encode(eosTokenIds, forKey: .eosTokenId)
        }
        if modelType.isGemma {
            try c.encode("gelu_pytorch_tanh", forKey: .hiddenActivation)
        } else {
            try c.encode("silu", forKey: .hiddenAct)
        }
        try c.encodeIfPresent(torchDtype, forKey: .torchDtype)
        switch modelType {
        case .llama:
            break
        case .mistral:
            if let slidingWindow { try c.encode(slidingWindow, forKey: .slidingWindow) } else { try c.encodeNil(forKey: .slidingWindow) }
        case .qwen2, .qwen3:
            try c.encodeIfPresent(slidingWindow, forKey: .slidingWindow)
            try c.encodeIfPresent(useSlidingWindow, forKey: .useSlidingWindow)
            try c.encodeIfPresent(maxWindowLayers, forKey: .maxWindowLayers)
            try c.encodeIfPresent(layerTypes, forKey: .layerTypes)
        case .gemma2, .gemma3Text:
            try c.encodeIfPresent(slidingWindow, forKey: .slidingWindow)
            try c.encodeIfPresent(layerTypes, forKey: .layerTypes)
            try c.encodeIfPresent(queryPreAttnScalar, forKey: .queryPreAttnScalar)
            try c.encodeIfPresent(ropeLocalBaseFreq, forKey: .ropeLocalBaseFreq)
            if let finalLogitSoftcapping { try c.encode(finalLogitSoftcapping, forKey: .finalLogitSoftcapping) } else { try c.encodeNil(forKey: .finalLogitSoftcapping) }
            if let attnLogitSoftcapping { try c.encode(attnLogitSoftcapping, forKey: .attnLogitSoftcapping) } else { try c.encodeNil(forKey: .attnLogitSoftcapping) }
        }
    }

    // MARK: - Reading config.json

    /// Decodes config.json bytes; `source` names the file in errors.
    public init(jsonData: Data, source: String = "config.json") throws {
        let root: JSONValue
        do {
            root = try JSONValue.parse(jsonData)
        } catch let e as JSONSyntaxError {
            throw LlamaError.unreadableConfiguration(file: source, reason: "not valid JSON: \(e.reason) at byte \(e.offset)")
        }
        try self.init(json: root, source: source)
    }

    /// Decodes a parsed config.json; `source` names the file in errors.
    init(json root: JSONValue, source: String) throws {
        try Self.precheck(root, source: source)
        var root = root
        // compressed-tensors' sparsity config says how the weights are stored, not what the model computes:
        // the weight source reads it (`CompressedTensorsWeights`). Any other quantization_config is refused
        // below.
        do {
            if try CompressedTensorsSparsity.of(config: root) != nil {
                root = CompressedTensorsSparsity.config(root, setting: nil)
            }
        } catch {
            throw LlamaError.unsupportedOption(String(describing: error))
        }
        do {
            self = try JSONValueDecoder().decode(LlamaConfiguration.self, from: root)
        } catch let error as DecodingError {
            throw LlamaError.unreadableConfiguration(file: source, reason: Self.describe(error))
        }
    }

    /// Reads a config.json file, or the config.json inside a checkpoint folder.
    public init(contentsOf url: URL) throws {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url.appendingPathComponent("config.json") : url
        var st = stat()
        if stat(file.path, &st) == 0 {
            // A folder or a device (/dev/zero would be read forever) where the file should be.
            let kind = st.st_mode & S_IFMT
            if kind == S_IFDIR { throw LlamaError.unreadableConfiguration(file: file.path, reason: "is a directory, not a file") }
            if kind != S_IFREG { throw LlamaError.unreadableConfiguration(file: file.path, reason: "is not a regular file") }
            if st.st_size > 1 << 26 {
                throw LlamaError.unreadableConfiguration(file: file.path, reason: "is \(st.st_size) bytes, more than a config.json can need")
            }
        }
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            let reason = FileManager.default.fileExists(atPath: file.path) ? "cannot read the file" : "no such file"
            throw LlamaError.unreadableConfiguration(file: file.path, reason: reason)
        }
        try self.init(jsonData: data, source: file.path)
    }

    /// The largest value accepted for each size key. Far above any released model (the largest have
    /// hidden 16384, 126 layers, vocab 262144, 10M positions), they keep a corrupt or hostile config.json
    /// from overflowing the shape arithmetic or sizing a table of billions of entries before any tensor
    /// is read; the checkpoint's tensors must then match the shapes exactly.
    public static let limits: [String: Int] = [
        "hidden_size": 1 << 20, "num_hidden_layers": 1 << 14, "num_attention_heads": 1 << 14,
        "num_key_value_heads": 1 << 14, "head_dim": 1 << 14, "intermediate_size": 1 << 22,
        "vocab_size": 1 << 24, "max_position_embeddings": 1 << 30,
    ]

    private static func checkBounds(_ values: [(String, Int)], limit: Int? = nil) throws {
        for (key, value) in values {
            let bound = limit ?? limits[key]!
            if value > bound {
                throw LlamaError.invalidConfiguration("\(key) \(value) exceeds the limit of \(bound) this tool accepts")
            }
        }
    }

    /// Checks, with the file's own key names, what decoding would report vaguely: that the top level is
    /// an object, and that every integer key holds an integer that fits.
    private static func precheck(_ root: JSONValue, source: String) throws {
        guard case .object = root else {
            throw LlamaError.unreadableConfiguration(file: source, reason: "the top level is \(root.kindDescription), not a JSON object")
        }
        let integerKeys: [CodingKeys] = [
            .hiddenSize, .numHiddenLayers, .numAttentionHeads, .numKeyValueHeads, .headDim, .intermediateSize,
            .vocabSize, .maxPositionEmbeddings, .bosTokenId, .slidingWindow, .maxWindowLayers, .slidingWindowPattern,
        ]
        var checked: [(String, JSONValue)] = integerKeys.compactMap { k in root[k.rawValue].map { (k.rawValue, $0) } }
        if case .array(let ids)? = root[CodingKeys.eosTokenId.rawValue] {
            checked += ids.map { (CodingKeys.eosTokenId.rawValue, $0) }
        } else if let id = root[CodingKeys.eosTokenId.rawValue] {
            checked.append((CodingKeys.eosTokenId.rawValue, id))
        }
        for (key, value) in checked {
            guard case .number(let text) = value else { continue }  // wrong types: decoding names them
            if value.intValue == nil {
                let v = Double(text) ?? .nan
                let why = !(v.isFinite && v == v.rounded()) ? "not an integer"
                    : abs(v) < 0x1p63 ? "not an integer literal" : "outside the range of a 64-bit integer"
                throw LlamaError.unreadableConfiguration(file: source, reason: "key '\(key)' is \(text), \(why)")
            }
        }
        for (key, value) in [("rms_norm_eps", root["rms_norm_eps"]), ("rope_theta", root["rope_theta"])] {
            if case .number(let text)? = value, !(Double(text)?.isFinite ?? false) {
                throw LlamaError.unreadableConfiguration(file: source, reason: "key '\(key)' is \(text), too large for a double")
            }
        }
    }

    private static func path(_ codingPath: [CodingKey]) -> String {
        codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .keyNotFound(key, context):
            let at = path(context.codingPath + [key])
            return "missing key '\(at)'"
        case let .typeMismatch(type, context):
            return "key '\(path(context.codingPath))' is not \(typeName(type))"
        case let .valueNotFound(type, context):
            return "key '\(path(context.codingPath))' is null, expected \(typeName(type))"
        case let .dataCorrupted(context):
            return "key '\(path(context.codingPath))': \(oneLine(context.debugDescription))"
        @unknown default:
            return oneLine("\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "a boolean"
        case is String.Type: return "a string"
        default: return "of type \(type)"
        }
    }

    private static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// A value of the free-form RoPE dictionaries of config.json, decoded through Codable like the rest of
/// the configuration.
enum ConfigValue: Codable, Equatable, Sendable {
    case number(Double), string(String), bool(Bool), null, array([ConfigValue]), object([String: ConfigValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([ConfigValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: ConfigValue].self)) }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .number(n): try c.encode(n)
        case let .string(s): try c.encode(s)
        case let .bool(b): try c.encode(b)
        case .null: try c.encodeNil()
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }

    func number(_ key: String) throws -> Double {
        guard case let .number(n) = self else { throw LlamaError.invalidConfiguration("rope key '\(key)' is not a number") }
        return n
    }

    func string(_ key: String) throws -> String {
        guard case let .string(s) = self else { throw LlamaError.invalidConfiguration("rope key '\(key)' is not a string") }
        return s
    }
}
