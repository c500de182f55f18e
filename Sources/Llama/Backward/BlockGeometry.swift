import Foundation
import Tensor

/// The seven linear layers of a LLaMA decoder block, in the order the block consumes them.
/// Raw values index `BlockParameters.weights` and `BlockGradients.weights`.
public enum BlockMatrix: Int, CaseIterable, Sendable, CustomStringConvertible {
    case q, k, v, o, gate, up, down

    /// The Hugging Face module name (`self_attn.q_proj`, `mlp.down_proj`, ...), for messages.
    public var description: String {
        switch self {
        case .q: return "q_proj"
        case .k: return "k_proj"
        case .v: return "v_proj"
        case .o: return "o_proj"
        case .gate: return "gate_proj"
        case .up: return "up_proj"
        case .down: return "down_proj"
        }
    }
}

/// The sizes of one decoder block, everything the forward/backward pair needs besides the weights.
///
/// C = `hidden`, F = `intermediate`, nh = `heads`, nkv = `kvHeads`, hd = `headDim`
/// (hd need not be C / nh: some checkpoints set `head_dim` explicitly).
public struct BlockGeometry: Sendable, Equatable {
    public var hidden: Int
    public var intermediate: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    /// Sliding-window attention: query i sees keys i − window < j ≤ i; nil for full causal attention
    /// (Mistral and some Qwen2 layers set it).
    public var attentionWindow: Int?

    public init(hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int? = nil, rmsNormEps: Float,
                attentionWindow: Int? = nil) {
        self.hidden = hidden
        self.intermediate = intermediate
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim ?? (heads > 0 ? hidden / heads : 0)
        self.rmsNormEps = rmsNormEps
        self.attentionWindow = attentionWindow
    }

    /// nh · hd, the width of q and of the attention output.
    public var qWidth: Int { heads * headDim }
    /// nkv · hd, the width of k and v.
    public var kvWidth: Int { kvHeads * headDim }

    /// (out, in) of a weight matrix as stored in checkpoints.
    public func shape(of m: BlockMatrix) -> (out: Int, in: Int) {
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

/// Rotary position tables for the rotate-half form, one row per position.
///
/// `cos[p, i]`, `sin[p, i]` for i < hd/2 are the cosine and sine of the angle of frequency i at
/// position p; the rotate-half form uses the same angle for dimensions i and i + hd/2, so the
/// tables store each angle once: shapes (T, hd/2).
public struct RopeTable: Sendable, Equatable {
    public let positions: Int
    public let halfDim: Int
    public let cos: [Float]
    public let sin: [Float]

    /// Tables given by the caller (e.g. a model's scaled RoPE), each (positions, halfDim).
    public init(positions: Int, halfDim: Int, cos: [Float], sin: [Float]) throws {
        guard cos.count == positions * halfDim, sin.count == positions * halfDim else {
            throw BlockBackwardError.shapeMismatch(
                "RoPE tables hold \(cos.count) and \(sin.count) values, expected \(positions) × \(halfDim)")
        }
        self.positions = positions
        self.halfDim = halfDim
        self.cos = cos
        self.sin = sin
    }

    /// The model's unscaled RoPE (`RoPE(headDim:theta:scaling:positions:)`, transformers' default rotary
    /// embedding) for `positions` positions.
    public init(headDim: Int, positions: Int, theta: Double) {
        self.init(RoPE(headDim: headDim, theta: theta, scaling: nil, positions: positions))
    }
}

/// The trainable and frozen parameters of one decoder block, as float32 tensors in checkpoint layout.
///
/// `weights[m.rawValue]` is the (out, in) matrix of `m`; `biases[m.rawValue]` its optional (out) bias
/// (LLaMA with `attention_bias` has q/k/v/o biases, Qwen2 q/k/v, `mlp_bias` gate/up/down).
/// The two RMSNorm weights are (C) each.
public struct BlockParameters: Sendable, Equatable {
    public var weights: [Tensor]
    public var biases: [Tensor?]
    public var inputNorm: Tensor
    public var postAttentionNorm: Tensor

    public init(weights: [Tensor], biases: [Tensor?] = Array(repeating: nil, count: 7),
                inputNorm: Tensor, postAttentionNorm: Tensor) {
        self.weights = weights
        self.biases = biases
        self.inputNorm = inputNorm
        self.postAttentionNorm = postAttentionNorm
    }

    public subscript(_ m: BlockMatrix) -> Tensor {
        get { weights[m.rawValue] }
        set { weights[m.rawValue] = newValue }
    }

    /// Checks every tensor against the geometry; the message names the offending tensor.
    public func validate(against g: BlockGeometry) throws {
        guard weights.count == 7, biases.count == 7 else {
            throw BlockBackwardError.shapeMismatch("block needs 7 weights and 7 bias slots, got \(weights.count) and \(biases.count)")
        }
        for m in BlockMatrix.allCases {
            let (o, i) = g.shape(of: m)
            if weights[m.rawValue].shape != [o, i] {
                throw BlockBackwardError.shapeMismatch("\(m).weight is \(weights[m.rawValue].shape), expected [\(o), \(i)]")
            }
            if let b = biases[m.rawValue], b.count != o {
                throw BlockBackwardError.shapeMismatch("\(m).bias has \(b.count) values, expected \(o)")
            }
        }
        if inputNorm.count != g.hidden {
            throw BlockBackwardError.shapeMismatch("input_layernorm.weight has \(inputNorm.count) values, expected \(g.hidden)")
        }
        if postAttentionNorm.count != g.hidden {
            throw BlockBackwardError.shapeMismatch(
                "post_attention_layernorm.weight has \(postAttentionNorm.count) values, expected \(g.hidden)")
        }
    }
}

/// Gradients of a scalar loss w.r.t. the seven weight matrices (and the biases the block has),
/// laid out like `BlockParameters`. Norm weights are frozen in Wanda++ and get no gradient.
public struct BlockGradients: Sendable {
    public var weights: [Tensor]
    public var biases: [Tensor?]

    /// Zero gradients shaped for a block with the given geometry and bias slots.
    public init(geometry g: BlockGeometry, hasBias: [Bool] = Array(repeating: false, count: 7)) {
        weights = BlockMatrix.allCases.map { m in
            let (o, i) = g.shape(of: m)
            return Tensor.zeros([o, i])
        }
        biases = BlockMatrix.allCases.map { m in hasBias[m.rawValue] ? Tensor.zeros([g.shape(of: m).out]) : nil }
    }

    /// Zero gradients shaped like `parameters`.
    public init(like parameters: BlockParameters) {
        weights = parameters.weights.map { Tensor.zeros($0.shape) }
        biases = parameters.biases.map { $0.map { Tensor.zeros($0.shape) } }
    }

    public subscript(_ m: BlockMatrix) -> Tensor {
        get { weights[m.rawValue] }
        set { weights[m.rawValue] = newValue }
    }
}
