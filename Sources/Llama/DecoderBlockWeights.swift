import Tensor

extension LinearKind {
    /// The position of the layer in `allCases` (q 0 … down 6): indexes `DecoderBlockWeights.weights`,
    /// `BlockGradients.weights` and per-matrix optimizer state.
    public var index: Int {
        switch self {
        case .q: return 0
        case .k: return 1
        case .v: return 2
        case .o: return 3
        case .gate: return 4
        case .up: return 5
        case .down: return 6
        }
    }

    /// The Hugging Face module name (`q_proj`, ..., `down_proj`), for messages and fixture keys.
    public var projectionName: String { String(modulePath.split(separator: ".").last!) }
}

/// The parameters of one decoder block: seven (out, in) matrices as the checkpoint stores them, optional
/// biases (q/k/v for qwen2 and llama with `attention_bias`; o for llama with `attention_bias`; gate/up/down
/// for `mlp_bias`, which only the block kernels take), and the two RMSNorm weight vectors. Pruning reads
/// and replaces matrices by `LinearKind` through the subscript; the block kernels index `weights` and
/// `biases` by `LinearKind.index`.
public struct DecoderBlockWeights: Sendable, Equatable {
    /// The block's index in the model (selects its attention window, names its tensors).
    public var layer: Int
    /// The (out, in) matrices in `LinearKind.allCases` order.
    public var weights: [Tensor]
    /// The optional (out) biases, same order.
    public var biases: [Tensor?]
    /// (C): `input_layernorm.weight`, applied before attention.
    public var inputNorm: Tensor
    /// (C): `post_attention_layernorm.weight`, applied before the MLP (Gemma's `pre_feedforward_layernorm`).
    public var postAttentionNorm: Tensor
    /// (hd): QK-norm's weights on each head of q and of k (`self_attn.q_norm`, `k_norm`); nil without QK-norm.
    public var queryNorm: Tensor?
    public var keyNorm: Tensor?
    /// (C): sandwich norms on the attention output and on the MLP output (Gemma's `post_attention_layernorm`
    /// and `post_feedforward_layernorm`); nil with pre-norms only.
    public var attentionOutputNorm: Tensor?
    public var mlpOutputNorm: Tensor?

    /// Builds block weights after checking every shape against the configuration
    /// (throws `LlamaError.shapeMismatch` naming the tensor, or `missingTensor` for an absent bias).
    public init(
        layer: Int, configuration c: LlamaConfiguration,
        q: Tensor, k: Tensor, v: Tensor, o: Tensor, gate: Tensor, up: Tensor, down: Tensor,
        qBias: Tensor? = nil, kBias: Tensor? = nil, vBias: Tensor? = nil, oBias: Tensor? = nil,
        inputNorm: Tensor, postAttentionNorm: Tensor, queryNorm: Tensor? = nil, keyNorm: Tensor? = nil,
        attentionOutputNorm: Tensor? = nil, mlpOutputNorm: Tensor? = nil
    ) throws {
        self.init(layer: layer, weights: [q, k, v, o, gate, up, down],
                  biases: [qBias, kBias, vBias, oBias, nil, nil, nil],
                  inputNorm: inputNorm, postAttentionNorm: postAttentionNorm, queryNorm: queryNorm, keyNorm: keyNorm,
                  attentionOutputNorm: attentionOutputNorm, mlpOutputNorm: mlpOutputNorm)
        try validate(configuration: c)
    }

    /// The weight of a block norm by role (nil when the block has none); `postAttentionNorm` is `.mlpInput`.
    public subscript(norm role: BlockNorm) -> Tensor? {
        get {
            switch role {
            case .input: return inputNorm
            case .query: return queryNorm
            case .key: return keyNorm
            case .attentionOutput: return attentionOutputNorm
            case .mlpInput: return postAttentionNorm
            case .mlpOutput: return mlpOutputNorm
            }
        }
        set {
            switch role {
            case .input: if let newValue { inputNorm = newValue }
            case .query: queryNorm = newValue
            case .key: keyNorm = newValue
            case .attentionOutput: attentionOutputNorm = newValue
            case .mlpInput: if let newValue { postAttentionNorm = newValue }
            case .mlpOutput: mlpOutputNorm = newValue
            }
        }
    }

    /// Block weights without a configuration (kernel tests, Wanda++ on a bare block); check them with
    /// `validate(against:)` before running the block.
    public init(layer: Int = 0, weights: [Tensor], biases: [Tensor?] = Array(repeating: nil, count: 7),
                inputNorm: Tensor, postAttentionNorm: Tensor, queryNorm: Tensor? = nil, keyNorm: Tensor? = nil,
                attentionOutputNorm: Tensor? = nil, mlpOutputNorm: Tensor? = nil) {
        self.layer = layer
        self.weights = weights
        self.biases = biases
        self.inputNorm = inputNorm
        self.postAttentionNorm = postAttentionNorm
        self.queryNorm = queryNorm
        self.keyNorm = keyNorm
        self.attentionOutputNorm = attentionOutputNorm
        self.mlpOutputNorm = mlpOutputNorm
    }

    public var q: Tensor { get { weights[0] } _modify { yield &weights[0] } }
    public var k: Tensor { get { weights[1] } _modify { yield &weights[1] } }
    public var v: Tensor { get { weights[2] } _modify { yield &weights[2] } }
    public var o: Tensor { get { weights[3] } _modify { yield &weights[3] } }
    public var gate: Tensor { get { weights[4] } _modify { yield &weights[4] } }
    public var up: Tensor { get { weights[5] } _modify { yield &weights[5] } }
    public var down: Tensor { get { weights[6] } _modify { yield &weights[6] } }
    public var qBias: Tensor? { biases[0] }
    public var kBias: Tensor? { biases[1] }
    public var vBias: Tensor? { biases[2] }
    public var oBias: Tensor? { biases[3] }

    /// The (out, in) weight of a linear layer; a new value must keep the shape.
    public subscript(kind: LinearKind) -> Tensor {
        get { weights[kind.index] }
        _modify {
            let shape = weights[kind.index].shape
            yield &weights[kind.index]
            precondition(weights[kind.index].shape == shape, "\(kind) weight must keep shape \(shape), got \(weights[kind.index].shape)")
        }
    }

    /// The bias of a linear layer, nil when it has none.
    public func bias(_ kind: LinearKind) -> Tensor? { biases[kind.index] }

    /// Checks every tensor against the shapes the configuration implies.
    public func validate(configuration c: LlamaConfiguration) throws {
        func check(_ t: Tensor?, _ name: String, _ shape: [Int]) throws {
            guard let t else { throw LlamaError.missingTensor(name) }
            if t.shape != shape { throw LlamaError.shapeMismatch(tensor: name, expected: shape, found: t.shape) }
        }
        guard weights.count == 7, biases.count == 7 else {
            throw LlamaError.invalidInput("block \(layer) holds \(weights.count) weights and \(biases.count) bias slots, not 7")
        }
        let a = c.architecture
        for role in BlockNorm.allCases {
            let name = LlamaTensorNames.norm(role, layer: layer, architecture: a)
            if role.isPresent(in: a) {
                try check(self[norm: role], name, [role.width(c)])
            } else if self[norm: role] != nil {
                throw LlamaError.unusedTensors([name])
            }
        }
        for kind in LinearKind.allCases {
            let shape = kind.shape(c)
            try check(self[kind], LlamaTensorNames.weight(kind, layer: layer), shape)
            let name = LlamaTensorNames.bias(kind, layer: layer)
            if kind.hasBias(c) {
                try check(bias(kind), name, [shape[0]])
            } else if bias(kind) != nil {
                throw LlamaError.unusedTensors([name])
            }
        }
    }

    /// Checks every tensor against a bare geometry (no configuration); the message names the tensor.
    public func validate(against g: BlockGeometry) throws {
        guard weights.count == 7, biases.count == 7 else {
            throw BlockBackwardError.shapeMismatch("block needs 7 weights and 7 bias slots, got \(weights.count) and \(biases.count)")
        }
        for m in LinearKind.allCases {
            let (o, i) = g.shape(of: m)
            if weights[m.index].shape != [o, i] {
                throw BlockBackwardError.shapeMismatch("\(m.projectionName).weight is \(weights[m.index].shape), expected [\(o), \(i)]")
            }
            if let b = biases[m.index], b.count != o {
                throw BlockBackwardError.shapeMismatch("\(m.projectionName).bias has \(b.count) values, expected \(o)")
            }
        }
        if inputNorm.count != g.hidden {
            throw BlockBackwardError.shapeMismatch("input_layernorm.weight has \(inputNorm.count) values, expected \(g.hidden)")
        }
        if postAttentionNorm.count != g.hidden {
            throw BlockBackwardError.shapeMismatch(
                "post_attention_layernorm.weight has \(postAttentionNorm.count) values, expected \(g.hidden)")
        }
        // The block's optional norms: present exactly when its architecture has them.
        func checkOptional(_ name: String, _ t: Tensor?, wanted: Bool, count: Int) throws {
            if let t {
                guard wanted else { throw BlockBackwardError.shapeMismatch("\(name) (\(t.count) values) given to a block without it") }
                guard t.count == count else { throw BlockBackwardError.shapeMismatch("\(name) has \(t.count) values, expected \(count)") }
            } else if wanted {
                throw BlockBackwardError.shapeMismatch("\(name) is missing")
            }
        }
        let sandwich = g.normPlacement == .sandwich
        try checkOptional("q_norm.weight", queryNorm, wanted: g.qkNorm, count: g.headDim)
        try checkOptional("k_norm.weight", keyNorm, wanted: g.qkNorm, count: g.headDim)
        try checkOptional("attention output norm", attentionOutputNorm, wanted: sandwich, count: g.hidden)
        try checkOptional("MLP output norm", mlpOutputNorm, wanted: sandwich, count: g.hidden)
    }

    /// The block's tensors under their checkpoint names in a configuration (for export and round trips).
    public func namedTensors(configuration c: LlamaConfiguration) -> [(name: String, tensor: Tensor)] {
        let a = c.architecture
        return LlamaTensorNames.blockEntries(layer: layer, configuration: c).compactMap { entry in
            switch entry {
            case .norm(let role): return self[norm: role].map { (LlamaTensorNames.norm(role, layer: layer, architecture: a), $0) }
            case .weight(let kind): return (LlamaTensorNames.weight(kind, layer: layer), self[kind])
            case .bias(let kind): return bias(kind).map { (LlamaTensorNames.bias(kind, layer: layer), $0) }
            }
        }
    }
}
