import Foundation
import Tensor

/// How far a forward pass through the block goes. Each case names the activation that is complete
/// (and readable through the tape) when the pass stops there; Wanda-style statistics need the input
/// of each pruning stage with the earlier stages already pruned.
public enum BlockForwardStop: Int, Comparable, Sendable {
    /// `normedInput` (T, C): the input of q, k, v.
    case attentionInput
    /// `attentionOutput` (T, nh·hd): the input of o.
    case oInput
    /// `normedResidual` (T, C): the input of gate and up.
    case mlpInput
    /// `mlpActivation` (T, F): the input of down.
    case downInput
    /// `output` (T, C): the whole block.
    case output

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// A decoder block's forward pass that records what its backward needs, and that backward,
/// for ONE sample of up to `capacity` tokens at a time (Wanda++ takes one calibration sample per step).
///
/// The block is Hugging Face's `LlamaDecoderLayer` / `Qwen2DecoderLayer` in float32:
///
///     xn1  = rmsnorm(x; w_in)                                 (T, C)
///     q, k, v = xn1·W_qᵀ (+b_q), xn1·W_kᵀ (+b_k), xn1·W_vᵀ (+b_v), q and k rotated (rotate-half RoPE)
///     attn = causal GQA softmax attention                     (T, nh·hd)
///     h    = x + attn·W_oᵀ (+b_o)                             (T, C)
///     xn2  = rmsnorm(h; w_post)
///     act  = silu(xn2·W_gateᵀ) ⊙ (xn2·W_upᵀ)                  (T, F)
///     y    = h + act·W_downᵀ                                  (T, C)
///
/// `backward` is that listing read in reverse. Attention probabilities are not stored: the forward
/// keeps each softmax row's log-sum-exp (nh, T) and the backward rebuilds the probabilities of one
/// block of 64 query rows of one head at a time (one such block per core), so memory is fixed by
/// `capacity` and independent of the sample count.
///
/// All buffers are allocated once at init; forward and backward allocate nothing. Not thread-safe:
/// one tape per concurrent caller.
public final class DecoderBlockTape {
    public let geometry: BlockGeometry
    /// The largest T this tape accepts.
    public let capacity: Int
    /// T of the last forward pass.
    public private(set) var tokens: Int = 0
    /// How far the last forward pass went; nil before any.
    public private(set) var completed: BlockForwardStop?

    // Saved activations of the forward pass.
    private let x, xn1, rstd1, q, k, v, lse, attn, h, xn2, rstd2, gate, up, act, y: UnsafeMutablePointer<Float>
    // Backward work buffers.
    private let dh, dxn, dact, dup, dattn, dq, dk, dv: UnsafeMutablePointer<Float>
    private let attentionScratch: BlockKernels.AttentionScratch
    private var allocations: [(UnsafeMutablePointer<Float>, Int)] = []

    public init(geometry: BlockGeometry, capacity: Int) throws {
        try geometry.validate()
        guard capacity > 0 else { throw BlockBackwardError.invalidGeometry("tape capacity \(capacity) tokens") }
        self.geometry = geometry
        self.capacity = capacity
        let T = capacity, C = geometry.hidden, F = geometry.intermediate
        let qw = geometry.qWidth, kw = geometry.kvWidth
        var list: [(UnsafeMutablePointer<Float>, Int)] = []
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            p.initialize(repeating: 0, count: max(1, n))
            list.append((p, max(1, n)))
            return p
        }
        x = buffer(T * C); xn1 = buffer(T * C); rstd1 = buffer(T)
        q = buffer(T * qw); k = buffer(T * kw); v = buffer(T * kw)
        lse = buffer(geometry.heads * T); attn = buffer(T * qw)
        h = buffer(T * C); xn2 = buffer(T * C); rstd2 = buffer(T)
        gate = buffer(T * F); up = buffer(T * F); act = buffer(T * F); y = buffer(T * C)
        dh = buffer(T * C); dxn = buffer(T * C); dact = buffer(T * F); dup = buffer(T * F)
        dattn = buffer(T * qw); dq = buffer(T * qw); dk = buffer(T * kw); dv = buffer(T * kw)
        attentionScratch = BlockKernels.AttentionScratch(capacity: T, kvWidth: kw)
        allocations = list
    }

    deinit {
        for (p, n) in allocations {
            p.deinitialize(count: n)
            p.deallocate()
        }
    }

    /// Bytes a tape of this geometry and capacity allocates (for memory estimates before building one).
    public static func bytes(geometry g: BlockGeometry, capacity T: Int, workers: Int = workerCount) -> Int {
        let C = g.hidden, F = g.intermediate, qw = g.qWidth, kw = g.kvWidth
        // Saved activations 5C + 2qw + 2kw + 3F + 2 + nh per token, backward buffers 2C + 2qw + 2kw + 2F.
        let tape = T * (7 * C + 4 * qw + 4 * kw + 5 * F + 2 + g.heads)
        let scratch = max(1, workers) * (2 * BlockKernels.attentionRowBlock * T + 2 * T * kw)
        return (tape + scratch) * MemoryLayout<Float>.stride
    }

    /// Bytes held by the tape's buffers.
    public var bytes: Int { allocations.reduce(0) { $0 + $1.1 } * MemoryLayout<Float>.stride + attentionScratch.bytes }

    // MARK: Saved activations (valid after a forward pass that reached them)

    /// rmsnorm(x; w_in) (T, C): the input of q, k, v.
    public var normedInput: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: xn1, count: tokens * geometry.hidden) }
    /// The attention output before o (T, nh·hd): the input of o.
    public var attentionOutput: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: attn, count: tokens * geometry.qWidth) }
    /// rmsnorm(h; w_post) (T, C): the input of gate and up.
    public var normedResidual: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: xn2, count: tokens * geometry.hidden) }
    /// silu(gate) ⊙ up (T, F): the input of down.
    public var mlpActivation: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: act, count: tokens * geometry.intermediate) }
    /// The block output (T, C).
    public var output: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: y, count: tokens * geometry.hidden) }

    /// The input of a weight matrix in the last forward pass: (T, in) of `m`.
    public func input(of m: BlockMatrix) -> UnsafeBufferPointer<Float> {
        switch m {
        case .q, .k, .v: return normedInput
        case .o: return attentionOutput
        case .gate, .up: return normedResidual
        case .down: return mlpActivation
        }
    }

    // MARK: Forward

    /// Runs the block on one sample `input` (T, C) with T ≤ capacity, saving activations, up to `stop`.
    /// The caller guarantees `parameters` were validated against the geometry (the Tensor overload
    /// checks) and `rope` covers T positions with hd/2 frequencies.
    public func forward(
        _ input: UnsafePointer<Float>, tokens T: Int, parameters p: BlockParameters, rope: RopeTable,
        stop: BlockForwardStop = .output
    ) {
        precondition(T > 0 && T <= capacity && rope.positions >= T && rope.halfDim * 2 == geometry.headDim,
                     "tape forward: \(T) tokens, capacity \(capacity), RoPE \(rope.positions)×\(rope.halfDim)")
        let g = geometry, C = g.hidden, F = g.intermediate, qw = g.qWidth, kw = g.kvWidth
        tokens = T
        completed = nil
        let singleThreaded = enterBLASPolicy(T)
        defer { if singleThreaded { BLAS.leaveSingleThreaded() } }
        x.update(from: input, count: T * C)
        p.inputNorm.data.withUnsafeBufferPointer { w in
            RMSNorm.forward(out: xn1, rstd: rstd1, inp: x, weight: w.baseAddress!, rows: T, channels: C, eps: g.rmsNormEps)
        }
        completed = .attentionInput
        if stop == .attentionInput { return }

        withWeight(p, .q) { w, b in Linear.forward(out: q, inp: xn1, weight: w, bias: b, rows: T, inFeatures: C, outFeatures: qw) }
        withWeight(p, .k) { w, b in Linear.forward(out: k, inp: xn1, weight: w, bias: b, rows: T, inFeatures: C, outFeatures: kw) }
        withWeight(p, .v) { w, b in Linear.forward(out: v, inp: xn1, weight: w, bias: b, rows: T, inFeatures: C, outFeatures: kw) }
        rotate(q, heads: g.heads, T: T, rope: rope, sign: 1)
        rotate(k, heads: g.kvHeads, T: T, rope: rope, sign: 1)
        Attention.forward(out: attn, logSumExp: lse, q: q, k: k, v: v, batch: 1, length: T,
                          heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim, window: g.attentionWindow)
        completed = .oInput
        if stop == .oInput { return }

        // h = x + attn·W_oᵀ + b_o: start from x and let the GEMM accumulate.
        h.update(from: x, count: T * C)
        withWeight(p, .o) { w, b in Linear.forward(out: h, inp: attn, weight: w, bias: b, rows: T, inFeatures: qw, outFeatures: C, accumulate: true) }
        p.postAttentionNorm.data.withUnsafeBufferPointer { w in
            RMSNorm.forward(out: xn2, rstd: rstd2, inp: h, weight: w.baseAddress!, rows: T, channels: C, eps: g.rmsNormEps)
        }
        completed = .mlpInput
        if stop == .mlpInput { return }

        withWeight(p, .gate) { w, b in Linear.forward(out: gate, inp: xn2, weight: w, bias: b, rows: T, inFeatures: C, outFeatures: F) }
        withWeight(p, .up) { w, b in Linear.forward(out: up, inp: xn2, weight: w, bias: b, rows: T, inFeatures: C, outFeatures: F) }
        SwiGLU.forward(out: act, gate: gate, up: up, count: T * F)
        completed = .downInput
        if stop == .downInput { return }

        y.update(from: h, count: T * C)
        withWeight(p, .down) { w, b in Linear.forward(out: y, inp: act, weight: w, bias: b, rows: T, inFeatures: F, outFeatures: C, accumulate: true) }
        completed = .output
    }

    /// Tensor form of `forward`: x is (T, C); returns the block output (T, C).
    @discardableResult
    public func forward(_ input: Tensor, parameters: BlockParameters, rope: RopeTable) throws -> Tensor {
        let T = try checkSample(input, name: "block input", parameters: parameters, rope: rope)
        input.data.withUnsafeBufferPointer { forward($0.baseAddress!, tokens: T, parameters: parameters, rope: rope) }
        return Tensor(shape: [T, geometry.hidden], data: Array(output))
    }

    // MARK: Backward

    /// Given dL/dy (T, C) for the sample of the last complete forward pass (with the same `parameters`
    /// and `rope`), overwrites `gradients` with dL/dW for the seven matrices (and dL/db for the biases
    /// present) and, when `inputGradient` is given, writes dL/dx (T, C) there.
    public func backward(
        outputGradient dy: UnsafePointer<Float>, parameters p: BlockParameters, rope: RopeTable,
        gradients: inout BlockGradients, inputGradient dx: UnsafeMutablePointer<Float>? = nil
    ) {
        precondition(completed == .output, "tape backward needs a complete forward pass first")
        let g = geometry, T = tokens, C = g.hidden, F = g.intermediate, qw = g.qWidth, kw = g.kvWidth
        let singleThreaded = enterBLASPolicy(T)
        defer { if singleThreaded { BLAS.leaveSingleThreaded() } }

        // y = h + act·W_downᵀ
        withWeight(p, .down) { w, _ in
            withGradient(&gradients, .down) { dw, db in
                BlockKernels.linearBackward(dx: dact, dWeight: dw, dBias: db, dy, act, weight: w,
                                            T: T, inFeatures: F, outFeatures: C, accumulateDx: false)
            }
        }
        BlockKernels.swigluBackward(dgate: dact, dup: dup, dact, gate: gate, up: up, count: T * F)
        withWeight(p, .gate) { w, _ in
            withGradient(&gradients, .gate) { dw, db in
                BlockKernels.linearBackward(dx: dxn, dWeight: dw, dBias: db, dact, xn2, weight: w,
                                            T: T, inFeatures: C, outFeatures: F, accumulateDx: false)
            }
        }
        withWeight(p, .up) { w, _ in
            withGradient(&gradients, .up) { dw, db in
                BlockKernels.linearBackward(dx: dxn, dWeight: dw, dBias: db, dup, xn2, weight: w,
                                            T: T, inFeatures: C, outFeatures: F, accumulateDx: true)
            }
        }
        // h feeds both the residual (dy) and the second norm.
        dh.update(from: dy, count: T * C)
        p.postAttentionNorm.data.withUnsafeBufferPointer { w in
            BlockKernels.rmsnormBackward(dh, dxn, h, rstd: rstd2, weight: w.baseAddress!, T: T, C: C, accumulate: true)
        }
        // h = x + attn·W_oᵀ
        withWeight(p, .o) { w, _ in
            withGradient(&gradients, .o) { dw, db in
                BlockKernels.linearBackward(dx: dattn, dWeight: dw, dBias: db, dh, attn, weight: w,
                                            T: T, inFeatures: qw, outFeatures: C, accumulateDx: false)
            }
        }
        BlockKernels.attentionBackward(dq: dq, dk: dk, dv: dv, dout: dattn, out: attn, lse: lse, q: q, k: k, v: v,
                                       T: T, heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim,
                                       window: g.attentionWindow, scratch: attentionScratch)
        // RoPE is a rotation: its backward is the rotation by the opposite angle.
        rotate(dq, heads: g.heads, T: T, rope: rope, sign: -1)
        rotate(dk, heads: g.kvHeads, T: T, rope: rope, sign: -1)
        // q, k, v = xn1·Wᵀ; dxn1 only matters when the caller wants dL/dx.
        let wantDx = dx != nil
        for (m, d, width) in [(BlockMatrix.q, dq, qw), (.k, dk, kw), (.v, dv, kw)] {
            withWeight(p, m) { w, _ in
                withGradient(&gradients, m) { dw, db in
                    BlockKernels.linearBackward(dx: wantDx ? dxn : nil, dWeight: dw, dBias: db, d, xn1, weight: w,
                                                T: T, inFeatures: C, outFeatures: width, accumulateDx: m != .q)
                }
            }
        }
        if let dx {
            dx.update(from: dh, count: T * C)
            p.inputNorm.data.withUnsafeBufferPointer { w in
                BlockKernels.rmsnormBackward(dx, dxn, x, rstd: rstd1, weight: w.baseAddress!, T: T, C: C, accumulate: true)
            }
        }
    }

    /// Tensor form of `backward`: dy is (T, C) for the last forward sample; returns dL/dx (T, C).
    @discardableResult
    public func backward(
        _ outputGradient: Tensor, parameters: BlockParameters, rope: RopeTable, gradients: inout BlockGradients
    ) throws -> Tensor {
        guard completed == .output else {
            throw BlockBackwardError.shapeMismatch("backward called without a complete forward pass")
        }
        guard outputGradient.shape == [tokens, geometry.hidden] else {
            throw BlockBackwardError.shapeMismatch(
                "output gradient is \(outputGradient.shape), the forward sample was [\(tokens), \(geometry.hidden)]")
        }
        try checkGradients(gradients, parameters: parameters)
        var dx = Tensor.zeros([tokens, geometry.hidden])
        outputGradient.data.withUnsafeBufferPointer { dy in
            dx.data.withUnsafeMutableBufferPointer { d in
                backward(outputGradient: dy.baseAddress!, parameters: parameters, rope: rope,
                         gradients: &gradients, inputGradient: d.baseAddress!)
            }
        }
        return dx
    }

    // MARK: Checks for the Tensor API

    /// Validates a (T, C) sample, the parameters and the RoPE table; returns T.
    public func checkSample(_ input: Tensor, name: String, parameters: BlockParameters, rope: RopeTable) throws -> Int {
        try parameters.validate(against: geometry)
        guard input.rank == 2, input.shape[1] == geometry.hidden else {
            throw BlockBackwardError.shapeMismatch("\(name) is \(input.shape), expected [T, \(geometry.hidden)]")
        }
        let T = input.shape[0]
        guard T > 0, T <= capacity else {
            throw BlockBackwardError.shapeMismatch("\(name) has \(T) tokens; the tape holds 1...\(capacity)")
        }
        guard rope.positions >= T, rope.halfDim * 2 == geometry.headDim else {
            throw BlockBackwardError.shapeMismatch(
                "RoPE table is \(rope.positions)×\(rope.halfDim), need \(T) positions × \(geometry.headDim / 2)")
        }
        return T
    }

    /// Validates that `gradients` has the parameters' shapes, biases included.
    public func checkGradients(_ gradients: BlockGradients, parameters: BlockParameters) throws {
        guard gradients.weights.count == 7, gradients.biases.count == 7 else {
            throw BlockBackwardError.shapeMismatch("gradients need 7 weights and 7 bias slots")
        }
        for m in BlockMatrix.allCases {
            if gradients.weights[m.rawValue].shape != parameters.weights[m.rawValue].shape {
                throw BlockBackwardError.shapeMismatch(
                    "gradient of \(m) is \(gradients.weights[m.rawValue].shape), weight is \(parameters.weights[m.rawValue].shape)")
            }
            if (gradients.biases[m.rawValue]?.count) != (parameters.biases[m.rawValue]?.count) {
                throw BlockBackwardError.shapeMismatch("gradient of \(m).bias does not match the bias")
            }
        }
    }

    // MARK: Helpers

    /// Below this many multiply-adds per projection GEMM, the tape runs BLAS single-threaded: such GEMMs
    /// take well under a millisecond, and OpenBLAS's worker threads, spinning between the many small
    /// calls, compete with the kernels' own threads for the cores (measured on stories260K: ~1.7× less
    /// CPU time per sample).
    public static let singleThreadedBLASBelow = 1 << 24

    /// Opens a single-threaded BLAS scope when the block is small (see above); true when it did.
    private func enterBLASPolicy(_ T: Int) -> Bool {
        let g = geometry
        let work = T * g.hidden * max(g.intermediate, g.qWidth)
        guard work < Self.singleThreadedBLASBelow else { return false }
        BLAS.enterSingleThreaded()
        return true
    }

    /// Rotates (T, heads·hd) in place with the tape's RoPE tables; sign −1 is the inverse rotation.
    private func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, T: Int, rope: RopeTable, sign: Float) {
        rope.cos.withUnsafeBufferPointer { c in
            rope.sin.withUnsafeBufferPointer { s in
                RoPE.rotate(x, batch: 1, length: T, heads: heads, headDim: geometry.headDim,
                            cos: c.baseAddress!, sin: s.baseAddress!, sign: sign)
            }
        }
    }
}

@inline(__always)
private func withWeight<R>(_ p: BlockParameters, _ m: BlockMatrix,
                           _ body: (UnsafePointer<Float>, UnsafePointer<Float>?) -> R) -> R {
    p.weights[m.rawValue].data.withUnsafeBufferPointer { w in
        if let b = p.biases[m.rawValue] {
            return b.data.withUnsafeBufferPointer { bb in body(w.baseAddress!, bb.baseAddress!) }
        }
        return body(w.baseAddress!, nil)
    }
}

@inline(__always)
private func withGradient<R>(_ g: inout BlockGradients, _ m: BlockMatrix,
                             _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?) -> R) -> R {
    let i = m.rawValue
    return g.weights[i].data.withUnsafeMutableBufferPointer { w in
        if g.biases[i] != nil {
            return g.biases[i]!.data.withUnsafeMutableBufferPointer { bb in body(w.baseAddress!, bb.baseAddress!) }
        }
        return body(w.baseAddress!, nil)
    }
}
