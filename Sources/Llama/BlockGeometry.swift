import Foundation
import Tensor

/// The sizes of one decoder block, everything the forward/backward pair needs besides the weights.
///
/// C = `hidden`, F = `intermediate`, nh = `heads`, nkv = `kvHeads`, hd = `headDim`
/// (hd need not be C / nh: some checkpoints set `head_dim` explicitly).
public struct BlockGeometry: Sendable, Hashable {
    public var hidden: Int
    public var intermediate: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    /// Sliding-window attention: query i sees keys i − window < j ≤ i; nil for full causal attention
    /// (Mistral and some Qwen2 layers set it).
    public var attentionWindow: Int?
    /// The block's recipe, from its model's `Architecture`: how its norms apply their weights, the gated
    /// MLP's activation, and the factor on QKᵀ.
    public var normForm: Architecture.NormForm
    public var activation: Architecture.Activation
    public var attentionScale: Float
    /// Where the block's norms sit (`pre`, or `sandwich` with norms on the attention and MLP outputs too).
    public var normPlacement: Architecture.NormPlacement
    /// An RMSNorm over each head of q and of k, before RoPE.
    public var qkNorm: Bool
    /// cap · tanh(S / cap) on the attention scores (Gemma 2); nil for none.
    public var attentionSoftcap: Float?
    /// The layer's RoPE base: the block rotates with `rope.table(theta:)` of the tables it is given (nil:
    /// the given tables themselves).
    public var ropeTheta: Double?

    public init(hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int? = nil, rmsNormEps: Float,
                attentionWindow: Int? = nil, normForm: Architecture.NormForm = .scaled,
                activation: Architecture.Activation = .silu, attentionScale: Float? = nil,
                normPlacement: Architecture.NormPlacement = .pre, qkNorm: Bool = false, ropeTheta: Double? = nil,
                attentionSoftcap: Float? = nil) {
        self.hidden = hidden
        self.intermediate = intermediate
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim ?? (heads > 0 ? hidden / heads : 0)
        self.rmsNormEps = rmsNormEps
        self.attentionWindow = attentionWindow
        self.normForm = normForm
        self.activation = activation
        self.attentionScale = attentionScale ?? Architecture.defaultAttentionScale(headDim: self.headDim)
        self.normPlacement = normPlacement
        self.qkNorm = qkNorm
        self.ropeTheta = ropeTheta
        self.attentionSoftcap = attentionSoftcap
    }

    /// The geometry of block `layer` of a model: its sizes, and the layer's part of the architecture (its
    /// attention window can differ between layers).
    public init(configuration c: LlamaConfiguration, layer: Int) {
        self.init(configuration: c, architecture: c.architecture, layer: layer)
    }

    public init(configuration c: LlamaConfiguration, architecture a: Architecture, layer: Int) {
        self.init(hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
                  kvHeads: c.numKeyValueHeads, headDim: c.headDim, rmsNormEps: Float(c.rmsNormEps),
                  attentionWindow: a.layers[layer].window, normForm: a.normForm, activation: a.activation,
                  attentionScale: a.attentionScale, normPlacement: a.normPlacement, qkNorm: a.qkNorm,
                  ropeTheta: a.layers[layer].ropeTheta, attentionSoftcap: a.attentionSoftcap)
    }

    /// What an RMSNorm of this block adds to its stored weight (`RMSNorm`'s `weightOffset`).
    public var normWeightOffset: Float { normForm == .offset ? 1 : 0 }  // as Architecture.normWeightOffset

    /// nh · hd, the width of q and of the attention output.
    public var qWidth: Int { heads * headDim }
    /// nkv · hd, the width of k and v.
    public var kvWidth: Int { kvHeads * headDim }

    /// (out, in) of a weight matrix as stored in checkpoints.
    public func shape(of m: LinearKind) -> (out: Int, in: Int) {
        switch m {
        case .q: return (qWidth, hidden)
        case .k, .v: return (kvWidth, hidden)
        case .o: return (hidden, qWidth)
        case .gate, .up: return (intermediate, hidden)
        case .down: return (hidden, intermediate)
        }
    }

    /// Checks the sizes are usable: positive, heads a multiple of KV heads, even head size (rotate-half RoPE).
    public func validate() throws {
        if hidden <= 0 || intermediate <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 {
            throw BlockBackwardError.invalidGeometry("non-positive size in \(self)")
        }
        if heads % kvHeads != 0 {
            throw BlockBackwardError.invalidGeometry("\(heads) heads is not a multiple of \(kvHeads) KV heads")
        }
        if headDim % 2 != 0 {
            throw BlockBackwardError.invalidGeometry("head size \(headDim) is odd; rotate-half RoPE needs it even")
        }
        if let w = attentionWindow, w <= 0 {
            throw BlockBackwardError.invalidGeometry("attention window \(w) is not positive")
        }
        if !(attentionScale.isFinite && attentionScale > 0) {
            throw BlockBackwardError.invalidGeometry("attention scale \(attentionScale) is not positive and finite")
        }
        if !(rmsNormEps >= 0) {
            throw BlockBackwardError.invalidGeometry("RMSNorm epsilon \(rmsNormEps) is negative or NaN")
        }
    }
}

/// Errors of the block forward/backward pair; each description is one line.
public enum BlockBackwardError: Error, CustomStringConvertible, Equatable {
    case invalidGeometry(String)
    case shapeMismatch(String)

    public var description: String {
        switch self {
        case .invalidGeometry(let s): return "invalid block geometry: \(s)"
        case .shapeMismatch(let s): return "shape mismatch: \(s)"
        }
    }
}

/// Gradients of a scalar loss w.r.t. the seven weight matrices (and the biases the block has),
/// laid out like `DecoderBlockWeights` (indexed by `LinearKind.index`). Norm weights are frozen in
/// Wanda++ and fine-tuning and get no gradient.
public struct BlockGradients: Sendable {
    public var weights: [Tensor]
    public var biases: [Tensor?]

    /// Zero gradients shaped for a block with the given geometry and bias slots.
    public init(geometry g: BlockGeometry, hasBias: [Bool] = Array(repeating: false, count: 7)) {
        weights = LinearKind.allCases.map { m in
            let (o, i) = g.shape(of: m)
            return Tensor.zeros([o, i])
        }
        biases = LinearKind.allCases.map { m in hasBias[m.index] ? Tensor.zeros([g.shape(of: m).out]) : nil }
    }

    /// Zero gradients shaped like `parameters`.
    public init(like parameters: DecoderBlockWeights) {
        weights = parameters.weights.map { Tensor.zeros($0.shape) }
        biases = parameters.biases.map { $0.map { Tensor.zeros($0.shape) } }
    }

    public subscript(_ m: LinearKind) -> Tensor {
        get { weights[m.index] }
        _modify { yield &weights[m.index] }
    }
}
