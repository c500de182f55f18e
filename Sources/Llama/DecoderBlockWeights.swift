import Tensor

/// The parameters of one decoder block: seven (out, in) matrices as the checkpoint stores them, optional
/// biases (q/k/v for qwen2 and llama with `attention_bias`; o for llama with `attention_bias`), and the two
/// RMSNorm weight vectors. Pruning reads and replaces matrices by `LinearKind` through the subscript.
public struct DecoderBlockWeights: Sendable, Equatable {
    /// The block's index in the model (selects its attention window, names its tensors).
    public var layer: Int
    public var q: Tensor, k: Tensor, v: Tensor, o: Tensor
    public var gate: Tensor, up: Tensor, down: Tensor
    public var qBias: Tensor?, kBias: Tensor?, vBias: Tensor?, oBias: Tensor?
    /// (C): `input_layernorm.weight`, applied before attention.
    public var inputNorm: Tensor
    /// (C): `post_attention_layernorm.weight`, applied before the MLP.
    public var postAttentionNorm: Tensor

    /// Builds block weights after checking every shape against the configuration
    /// (throws `LlamaError.shapeMismatch` naming the tensor, or `missingTensor` for an absent bias).
    public init(
        layer: Int, configuration c: LlamaConfiguration,
        q: Tensor, k: Tensor, v: Tensor, o: Tensor, gate: Tensor, up: Tensor, down: Tensor,
        qBias: Tensor? = nil, kBias: Tensor? = nil, vBias: Tensor? = nil, oBias: Tensor? = nil,
        inputNorm: Tensor, postAttentionNorm: Tensor
    ) throws {
        self.layer = layer
        self.q = q; self.k = k; self.v = v; self.o = o
        self.gate = gate; self.up = up; self.down = down
        self.qBias = qBias; self.kBias = kBias; self.vBias = vBias; self.oBias = oBias
        self.inputNorm = inputNorm
        self.postAttentionNorm = postAttentionNorm
        try validate(configuration: c)
    }

    /// The (out, in) weight of a linear layer.
    public subscript(kind: LinearKind) -> Tensor {
        get {
            switch kind {
            case .q: return q
            case .k: return k
            case .v: return v
            case .o: return o
            case .gate: return gate
            case .up: return up
            case .down: return down
            }
        }
        set {
            precondition(newValue.shape == self[kind].shape, "\(kind) weight must keep shape \(self[kind].shape), got \(newValue.shape)")
            switch kind {
            case .q: q = newValue
            case .k: k = newValue
            case .v: v = newValue
            case .o: o = newValue
            case .gate: gate = newValue
            case .up: up = newValue
            case .down: down = newValue
            }
        }
    }

    /// The bias of a linear layer, nil when it has none.
    public func bias(_ kind: LinearKind) -> Tensor? {
        switch kind {
        case .q: return qBias
        case .k: return kBias
        case .v: return vBias
        case .o: return oBias
        case .gate, .up, .down: return nil
        }
    }

    /// Checks every tensor against the shapes the configuration implies.
    public func validate(configuration c: LlamaConfiguration) throws {
        func check(_ t: Tensor?, _ name: String, _ shape: [Int]) throws {
            guard let t else { throw LlamaError.missingTensor(name) }
            if t.shape != shape { throw LlamaError.shapeMismatch(tensor: name, expected: shape, found: t.shape) }
        }
        try check(inputNorm, LlamaTensorNames.inputNorm(layer: layer), [c.hiddenSize])
        try check(postAttentionNorm, LlamaTensorNames.postAttentionNorm(layer: layer), [c.hiddenSize])
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

    /// The block's tensors under their checkpoint names (for export and round trips).
    public func namedTensors() -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = [(LlamaTensorNames.inputNorm(layer: layer), inputNorm)]
        for kind in LinearKind.allCases {
            if kind == .gate { out.append((LlamaTensorNames.postAttentionNorm(layer: layer), postAttentionNorm)) }
            out.append((LlamaTensorNames.weight(kind, layer: layer), self[kind]))
            if let b = bias(kind) { out.append((LlamaTensorNames.bias(kind, layer: layer), b)) }
        }
        return out
    }
}
