import Tensor

// Conversions between the model's types (LlamaConfiguration, DecoderBlockWeights, RoPE) and the
// backward's (BlockGeometry, BlockParameters, RopeTable). Tensors are copy-on-write, so a conversion
// shares storage until one side writes.

extension BlockMatrix {
    /// The same linear as the model's `LinearKind` (both list q, k, v, o, gate, up, down in block order).
    public init(_ kind: LinearKind) {
        switch kind {
        case .q: self = .q
        case .k: self = .k
        case .v: self = .v
        case .o: self = .o
        case .gate: self = .gate
        case .up: self = .up
        case .down: self = .down
        }
    }

    public var kind: LinearKind {
        switch self {
        case .q: return .q
        case .k: return .k
        case .v: return .v
        case .o: return .o
        case .gate: return .gate
        case .up: return .up
        case .down: return .down
        }
    }
}

extension BlockGeometry {
    /// The geometry of block `layer` of a model (its attention window can differ between layers).
    public init(configuration c: LlamaConfiguration, layer: Int) {
        self.init(hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
                  kvHeads: c.numKeyValueHeads, headDim: c.headDim, rmsNormEps: Float(c.rmsNormEps),
                  attentionWindow: c.attentionWindow(layer: layer))
    }
}

extension BlockParameters {
    /// The block's matrices, biases and norms (shared storage, no copy).
    public init(_ w: DecoderBlockWeights) {
        self.init(weights: BlockMatrix.allCases.map { w[$0.kind] },
                  biases: BlockMatrix.allCases.map { w.bias($0.kind) },
                  inputNorm: w.inputNorm, postAttentionNorm: w.postAttentionNorm)
    }

    /// Writes the seven matrices back into `w` (biases and norms are never changed by Wanda++).
    public func write(into w: inout DecoderBlockWeights) {
        for m in BlockMatrix.allCases { w[m.kind] = weights[m.rawValue] }
    }
}

extension RopeTable {
    /// The model's RoPE tables (scaling included), same layout: (positions, hd/2).
    public init(_ rope: RoPE) {
        positions = rope.positions
        halfDim = rope.headDim / 2
        cos = rope.cosTable
        sin = rope.sinTable
    }
}
