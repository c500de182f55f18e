import Foundation
import Tensor

/// How far a forward pass through the block goes. Each case names the activation that is complete
/// (and readable through the block) when the pass stops there; Wanda-style statistics need the input
/// of each pruning stage with the earlier stages already pruned.
public enum BlockForwardStop: Int, Comparable, Sendable {
    /// `normedInput` (N, C): the input of q, k, v.
    case attentionInput
    /// `attentionOutput` (N, nh·hd): the input of o.
    case oInput
    /// `normedResidual` (N, C): the input of gate and up.
    case mlpInput
    /// `mlpActivation` (N, F): the input of down.
    case downInput
    /// `output` (N, C): the whole block.
    case output

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Where a resumed forward pass starts (`DecoderBlock.forward(resuming:...)`), with the saved activations
/// it starts from, each for the same B·T rows as the pass.
public enum BlockForwardResume {
    /// At the o projection: the block input x (N, C) and the attention output attn (N, nh·hd).
    case oProjection(input: UnsafePointer<Float>, attention: UnsafePointer<Float>)
    /// At the post-attention norm: the residual h = x + attn·W_oᵀ (N, C).
    case postAttentionNorm(residual: UnsafePointer<Float>)
}

/// Rows that continue earlier text (zero-shot scoring with a cached context): sequence b's tokens sit at
/// positions `offsets[b]` + 0..<T, and its queries attend to the cached keys and values of prefix
/// `prefixRows[b]` (−1: none, and then its offset is 0) before its own keys.
public struct BlockContinuation {
    /// Per sequence of the batch: the position of its first token (the length of its prefix).
    public var offsets: [Int]
    /// Per sequence of the batch: the prefix it continues, or −1.
    public var prefixRows: [Int]
    /// This layer's cached keys (after RoPE) and values, each (prefixes, stride, nkv·hd).
    public var keys: UnsafePointer<Float>
    public var values: UnsafePointer<Float>
    public var stride: Int
    /// Work memory the attention uses instead of allocating its own when it is large enough:
    /// `Attention.continuationScratchFloats` (a decode step's, sized once by its owner).
    public var scratch: UnsafeMutableBufferPointer<Float>?

    public init(offsets: [Int], prefixRows: [Int], keys: UnsafePointer<Float>, values: UnsafePointer<Float>, stride: Int,
                scratch: UnsafeMutableBufferPointer<Float>? = nil) {
        self.offsets = offsets
        self.prefixRows = prefixRows
        self.keys = keys
        self.values = values
        self.stride = stride
        self.scratch = scratch
    }
}

/// A trainable addition to some of a block's linear layers (LoRA): for a layer it adapts,
/// out (N, out) += f(inp (N, in)) in the forward, and in the backward dx (N, in) += (∂f/∂inp)ᵀ·dy while
/// the adapter accumulates its own parameters' gradients. The block calls `forward` right after the
/// base linear and `backward` right after the base linear's backward, with the saved input, so a
/// recomputed forward sees the same input it saw the first time.
public protocol BlockAdapter: AnyObject {
    /// Whether the adapter acts on this linear layer of the current block.
    func adapts(_ kind: LinearKind) -> Bool
    func forward(_ kind: LinearKind, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int)
    /// dx is nil when the caller does not need dL/dinp (the first block's q, k, v without an input gradient).
    func backward(_ kind: LinearKind, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, rows: Int)
}

/// One LLaMA decoder block — Hugging Face's `LlamaDecoderLayer` / `Qwen2DecoderLayer` in float32 — as the
/// single forward/backward pair that evaluation, pruning statistics, Wanda++ and fine-tuning all run.
///
/// On a batch of B sequences of T tokens (N = B·T rows, positions 0..<T in every sequence):
///
///     xn1  = rmsnorm(x; w_in)                                 (N, C)
///     q, k, v = xn1·W_qᵀ (+b_q), xn1·W_kᵀ (+b_k), xn1·W_vᵀ (+b_v), q and k rotated (rotate-half RoPE)
///     attn = causal GQA softmax attention, per sequence      (N, nh·hd)
///     h    = x + attn·W_oᵀ (+b_o)                             (N, C)
///     xn2  = rmsnorm(h; w_post)
///     act  = g(xn2·W_gateᵀ) ⊙ (xn2·W_upᵀ)                     (N, F)
///     y    = h + act·W_downᵀ                                  (N, C)
///
/// The geometry carries the architecture's choices (`Architecture`): the norm form w·x̂ or (1 + w)·x̂,
/// the activation g (SiLU or GELU-tanh), the attention scale and window; with QK-norm, q and k are
/// rmsnorm'd per head before RoPE (weights (hd)); with sandwich norms, h = x + rmsnorm(attn·W_oᵀ; w_ao) and
/// y = h + rmsnorm(act·W_downᵀ; w_mo). Rows may continue cached
/// prefixes at position offsets (`BlockContinuation`, zero-shot scoring), through the same listing.
///
/// `forward` saves every activation of that listing in the block's buffers; `backward` is the listing
/// read in reverse, op by op (llm.c style), reading those buffers. Attention probabilities are never
/// stored: the forward keeps each softmax row's log-sum-exp (B, nh, T) and the backward rebuilds the
/// probabilities of one block of 64 query rows of one head at a time (one such tile per core), so memory
/// is fixed by `capacity` rows.
///
/// All buffers are allocated once at init; forward and backward allocate nothing. A block made with
/// `backward: false` holds only the forward's buffers (evaluation). Not thread-safe: one block per
/// concurrent caller.
public final class DecoderBlock {
    /// Hands the input of a linear layer to a consumer (pruning statistics), as (B·T, in) row-major, a view of
    /// the block's own buffer valid only during the call. It is called once per distinct input, in the order
    /// q (the input of q, k and v), o, gate (the input of gate and up), down.
    public typealias Capture = (LinearKind, UnsafeBufferPointer<Float>) -> Void

    public let geometry: BlockGeometry
    /// The most rows (B·T) one pass accepts.
    public let capacity: Int
    /// The longest sequence T one pass accepts (sizes the backward's attention scratch).
    public let maxLength: Int
    /// Whether the backward's work buffers exist.
    public let hasBackward: Bool
    /// Where the block's math runs (`ComputeBackend`); every op of the listing goes through it.
    public let backend: any ComputeBackend
    /// The number format of the forward's seven projections (the backward stays float32): bfloat16
    /// rounds their inputs and weights, accumulating in float32 (`ComputePrecision`). In a forward-only
    /// block (evaluation, calibration statistics, propagation) attention's QKᵀ and PV products too.
    public var precision: ComputePrecision = .float32
    /// B and T of the last forward pass.
    public private(set) var batch: Int = 0
    public private(set) var length: Int = 0
    /// How far the last forward pass went; nil before any.
    public private(set) var completed: BlockForwardStop?
    /// Whether the last forward pass resumed from saved activations (`forward(resuming:...)`).
    public private(set) var resumed = false
    /// Whether the last forward pass continued cached prefixes (`continuing:`); such a pass has no backward.
    public private(set) var continued = false

    /// N = B·T of the last forward pass.
    public var rows: Int { batch * length }

    // Saved activations of the forward pass.
    private let x, xn1, rstd1, q, k, v, lse, attn, h, xn2, rstd2, gate, up, act, y: UnsafeMutablePointer<Float>
    // QK-norm: q and k before their norms, and each head's rstd (N·nh and N·nkv); sandwich norms: the
    // attention's and the MLP's outputs before their norms, and their rstd (1-float placeholders without).
    private let qRaw, kRaw, rstdQ, rstdK, attentionProjection, rstdA, mlpProjection, rstdM: UnsafeMutablePointer<Float>
    // Backward work buffers (unallocated placeholders without a backward).
    private let dh, dxn, dact, dup, dattn, dq, dk, dv: UnsafeMutablePointer<Float>
    private let attentionWorkspace: (any AttentionWorkspace)?
    private var allocations: [(UnsafeMutablePointer<Float>, Int)] = []

    /// A block for passes of up to `capacity` rows in sequences of up to `maxLength` (default `capacity`) tokens.
    public init(geometry: BlockGeometry, capacity: Int, maxLength: Int? = nil, backward: Bool = true,
                backend: any ComputeBackend = CPUBackend()) throws {
        try geometry.validate()
        guard capacity > 0 else { throw BlockBackwardError.invalidGeometry("block capacity \(capacity) rows") }
        let L = min(capacity, maxLength ?? capacity)
        guard L > 0 else { throw BlockBackwardError.invalidGeometry("block sequence length \(L)") }
        self.geometry = geometry
        self.capacity = capacity
        self.maxLength = L
        self.hasBackward = backward
        self.backend = backend
        let N = capacity, C = geometry.hidden, F = geometry.intermediate
        let qw = geometry.qWidth, kw = geometry.kvWidth
        var list: [(UnsafeMutablePointer<Float>, Int)] = []
        func buffer(_ n: Int, _ wanted: Bool = true) -> UnsafeMutablePointer<Float> {
            let n = wanted ? max(1, n) : 1
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            list.append((p, n))
            return p
        }
        x = buffer(N * C); xn1 = buffer(N * C); rstd1 = buffer(N)
        q = buffer(N * qw); k = buffer(N * kw); v = buffer(N * kw)
        lse = buffer(geometry.heads * N); attn = buffer(N * qw)
        h = buffer(N * C); xn2 = buffer(N * C); rstd2 = buffer(N)
        gate = buffer(N * F); up = buffer(N * F); act = buffer(N * F); y = buffer(N * C)
        let qk = geometry.qkNorm, sandwich = geometry.normPlacement == .sandwich
        qRaw = buffer(N * qw, qk); kRaw = buffer(N * kw, qk)
        rstdQ = buffer(N * geometry.heads, qk); rstdK = buffer(N * geometry.kvHeads, qk)
        attentionProjection = buffer(N * C, sandwich); rstdA = buffer(N, sandwich)
        mlpProjection = buffer(N * C, sandwich); rstdM = buffer(N, sandwich)
        dh = buffer(N * C, backward); dxn = buffer(N * C, backward); dact = buffer(N * F, backward)
        dup = buffer(N * F, backward); dattn = buffer(N * qw, backward); dq = buffer(N * qw, backward)
        dk = buffer(N * kw, backward); dv = buffer(N * kw, backward)
        attentionWorkspace = backward ? backend.attentionWorkspace(capacity: L, kvWidth: kw) : nil
        allocations = list
    }

    deinit {
        for (p, n) in allocations {
            p.deinitialize(count: n)
            p.deallocate()
        }
    }

    /// Bytes a block of this geometry and capacity allocates (for memory estimates before building one).
    public static func bytes(geometry g: BlockGeometry, capacity T: Int, workers: Int = workerCount) -> Int {
        let C = g.hidden, F = g.intermediate, qw = g.qWidth, kw = g.kvWidth
        // Saved activations 5C + 2qw + 2kw + 3F + 2 + nh per token, backward buffers 2C + 2qw + 2kw + 2F;
        // QK-norm's qw + kw + nh + nkv and the sandwich norms' 2C + 2 per token, or 4 placeholder floats each.
        let qk = g.qkNorm ? T * (qw + kw + g.heads + g.kvHeads) : 4
        let sandwich = g.normPlacement == .sandwich ? T * (2 * C + 2) : 4
        let tape = T * (7 * C + 4 * qw + 4 * kw + 5 * F + 2 + g.heads) + qk + sandwich
        let scratch = max(1, workers) * (2 * Attention.rowBlock * T + 2 * T * kw)
        return (tape + scratch) * MemoryLayout<Float>.stride
    }

    /// Bytes held by the block's buffers.
    public var bytes: Int {
        allocations.reduce(0) { $0 + $1.1 } * MemoryLayout<Float>.stride + (attentionWorkspace?.bytes ?? 0)
    }

    // MARK: Saved activations (valid after a forward pass that reached them)

    /// rmsnorm(x; w_in) (N, C): the input of q, k, v.
    public var normedInput: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: xn1, count: rows * geometry.hidden) }
    /// The attention output before o (N, nh·hd): the input of o.
    public var attentionOutput: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: attn, count: rows * geometry.qWidth) }
    /// rmsnorm(h; w_post) (N, C): the input of gate and up.
    public var normedResidual: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: xn2, count: rows * geometry.hidden) }
    /// silu(gate) ⊙ up (N, F): the input of down.
    public var mlpActivation: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: act, count: rows * geometry.intermediate) }
    /// h = x + attn·W_oᵀ (N, C): the residual stream after attention, the start of a resumed pass.
    public var residual: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: h, count: rows * geometry.hidden) }
    /// The block output (N, C).
    public var output: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: y, count: rows * geometry.hidden) }
    /// The keys after RoPE (N, nkv·hd): what a KV cache keeps of this pass's rows.
    public var keys: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: k, count: rows * geometry.kvWidth) }
    /// The values (N, nkv·hd).
    public var values: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: v, count: rows * geometry.kvWidth) }

    /// Every saved activation by name (tests compare them with a reference): inputRstd (N), normedInput,
    /// q, k (after RoPE), v, lse (B, nh, T), attention, residual (h), postAttentionRstd (N),
    /// normedResidual, gate, up, activation.
    public var savedActivations: [String: UnsafeBufferPointer<Float>] {
        let n = rows, g = geometry
        func b(_ p: UnsafeMutablePointer<Float>, _ w: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: p, count: n * w) }
        return ["inputRstd": b(rstd1, 1), "normedInput": b(xn1, g.hidden), "q": b(q, g.qWidth), "k": b(k, g.kvWidth),
                "v": b(v, g.kvWidth), "lse": b(lse, g.heads), "attention": b(attn, g.qWidth), "residual": b(h, g.hidden),
                "postAttentionRstd": b(rstd2, 1), "normedResidual": b(xn2, g.hidden), "gate": b(gate, g.intermediate),
                "up": b(up, g.intermediate), "activation": b(act, g.intermediate)]
    }

    /// The input of a weight matrix in the last forward pass: (N, in) of `m`.
    public func input(of m: LinearKind) -> UnsafeBufferPointer<Float> {
        switch m {
        case .q, .k, .v: return normedInput
        case .o: return attentionOutput
        case .gate, .up: return normedResidual
        case .down: return mlpActivation
        }
    }

    // MARK: Forward

    /// Runs the block on `input` (B, T, C) with B·T ≤ capacity and T ≤ maxLength, saving activations,
    /// up to `stop`. The caller guarantees `parameters` were validated against the geometry (the Tensor
    /// overloads check) and `rope` covers T positions of the geometry's head size.
    ///
    /// With `continuing`, the rows continue cached prefixes at position offsets (`BlockContinuation`);
    /// `rope` must then cover the longest offset plus T.
    public func forward(
        _ input: UnsafePointer<Float>, batch B: Int = 1, tokens T: Int, parameters p: DecoderBlockWeights, rope: RoPE,
        stop: BlockForwardStop = .output, adapter: BlockAdapter? = nil, continuing: BlockContinuation? = nil
    ) {
        precondition(continuing.map { $0.offsets.count == B && $0.prefixRows.count == B } ?? true,
                     "block forward: a continuation needs one offset and one prefix row per sequence")
        begin(batch: B, tokens: T, rope: rope, resumed: false, furthestOffset: continuing?.offsets.max() ?? 0)
        continued = continuing != nil
        x.update(from: input, count: B * T * geometry.hidden)
        run(from: .input, parameters: p, rope: rope, stop: stop, adapter: adapter, continuing: continuing)
    }

    /// Runs the rest of the block from activations an earlier pass (with the same batch shape) saved, up to
    /// `stop` (at least `.mlpInput`): the stage-by-stage prune collects each stage's input with the earlier
    /// stages pruned without recomputing the block before them. A resumed pass saves only what it
    /// computes, so it cannot be differentiated: `backward` refuses it.
    public func forward(
        resuming start: BlockForwardResume, batch B: Int = 1, tokens T: Int, parameters p: DecoderBlockWeights,
        rope: RoPE, stop: BlockForwardStop = .output
    ) {
        precondition(stop >= .mlpInput, "a resumed block forward runs from the o projection on; stop \(stop)")
        begin(batch: B, tokens: T, rope: rope, resumed: true)
        continued = false
        let N = B * T
        switch start {
        case .oProjection(let input, let attention):
            x.update(from: input, count: N * geometry.hidden)
            attn.update(from: attention, count: N * geometry.qWidth)
            run(from: .oProjection, parameters: p, rope: rope, stop: stop, adapter: nil, continuing: nil)
        case .postAttentionNorm(let residual):
            h.update(from: residual, count: N * geometry.hidden)
            run(from: .postAttentionNorm, parameters: p, rope: rope, stop: stop, adapter: nil, continuing: nil)
        }
    }

    private enum Entry: Int, Comparable {
        case input, oProjection, postAttentionNorm
        static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    private func begin(batch B: Int, tokens T: Int, rope: RoPE, resumed: Bool, furthestOffset: Int = 0) {
        precondition(B > 0 && T > 0 && B * T <= capacity && T <= maxLength && rope.positions >= furthestOffset + T
                     && rope.headDim == geometry.headDim,
                     "block forward: \(B)×\(T) rows, capacity \(capacity) (T ≤ \(maxLength)), offsets up to \(furthestOffset), RoPE \(rope.positions)×\(rope.headDim)")
        batch = B
        length = T
        completed = nil
        self.resumed = resumed
    }

    /// The forward listing from `entry` on; x (or attn, or h) already holds the entry's activation.
    private func run(from entry: Entry, parameters p: DecoderBlockWeights, rope tables: RoPE, stop: BlockForwardStop,
                     adapter: BlockAdapter?, continuing: BlockContinuation?) {
        let rope = tables.table(theta: geometry.ropeTheta)
        let g = geometry, B = batch, T = length, N = B * T, C = g.hidden, F = g.intermediate, qw = g.qWidth, kw = g.kvWidth
        let singleThreaded = enterBLASPolicy(N)
        defer { if singleThreaded { BLAS.leaveSingleThreaded() } }
        // out = inp·W_mᵀ + b_m (out += … when accumulating), plus the adapter's term where it adapts m.
        func project(_ m: LinearKind, _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                     inFeatures: Int, outFeatures: Int, accumulate: Bool = false) {
            withWeight(p, m) { w, b in
                backend.linear(out: out, inp: inp, weight: w, bias: b, rows: N, inFeatures: inFeatures, outFeatures: outFeatures,
                               accumulate: accumulate, precision: precision)
            }
            if let adapter, adapter.adapts(m) { adapter.forward(m, out: out, inp: inp, rows: N) }
        }
        // out (N, C) = residual + f, f = inp·W_mᵀ + b_m, or rmsnorm(f; norm) under sandwich norms (keeping f and
        // its rstd for the backward). With pre-norms, out starts as the residual and the GEMM accumulates.
        func addSublayer(_ m: LinearKind, _ inp: UnsafePointer<Float>, inFeatures: Int, residual: UnsafePointer<Float>,
                         out: UnsafeMutablePointer<Float>, projection: UnsafeMutablePointer<Float>, norm: Tensor?,
                         rstd: UnsafeMutablePointer<Float>) {
            guard g.normPlacement == .sandwich, let norm else {
                out.update(from: residual, count: N * C)
                project(m, out, inp, inFeatures: inFeatures, outFeatures: C, accumulate: true)
                return
            }
            project(m, projection, inp, inFeatures: inFeatures, outFeatures: C)
            norm.data.withUnsafeBufferPointer { w in
                backend.rmsNorm(out: out, rstd: rstd, inp: projection, weight: w.baseAddress!, rows: N, channels: C,
                                eps: g.rmsNormEps, weightOffset: g.normWeightOffset)
            }
            for i in 0..<(N * C) { out[i] += residual[i] }
        }
        if entry == .input {
            p.inputNorm.data.withUnsafeBufferPointer { w in
                backend.rmsNorm(out: xn1, rstd: rstd1, inp: x, weight: w.baseAddress!, rows: N, channels: C, eps: g.rmsNormEps,
                                weightOffset: g.normWeightOffset)
            }                                                                                 // xn1 (N, C), rstd1 (N)
            completed = .attentionInput
            if stop == .attentionInput { return }

            if g.qkNorm {
                // q, k = rmsnorm(xn1·Wᵀ) per head (N·nh and N·nkv rows of hd), before RoPE.
                project(.q, qRaw, xn1, inFeatures: C, outFeatures: qw)
                project(.k, kRaw, xn1, inFeatures: C, outFeatures: kw)
                p.queryNorm!.data.withUnsafeBufferPointer { w in
                    backend.rmsNorm(out: q, rstd: rstdQ, inp: qRaw, weight: w.baseAddress!, rows: N * g.heads, channels: g.headDim,
                                    eps: g.rmsNormEps, weightOffset: g.normWeightOffset)
                }
                p.keyNorm!.data.withUnsafeBufferPointer { w in
                    backend.rmsNorm(out: k, rstd: rstdK, inp: kRaw, weight: w.baseAddress!, rows: N * g.kvHeads, channels: g.headDim,
                                    eps: g.rmsNormEps, weightOffset: g.normWeightOffset)
                }
            } else {
                project(.q, q, xn1, inFeatures: C, outFeatures: qw)
                project(.k, k, xn1, inFeatures: C, outFeatures: kw)
            }
            project(.v, v, xn1, inFeatures: C, outFeatures: kw)
            let offsets = continuing?.offsets
            backend.rope(q, table: rope, batch: B, length: T, heads: g.heads, sign: 1, offsets: offsets)   // q (N, nh·hd)
            backend.rope(k, table: rope, batch: B, length: T, heads: g.kvHeads, sign: 1, offsets: offsets) // k, v (N, nkv·hd)
            Profile.phase("attention") {
                if let c = continuing, c.prefixRows.contains(where: { $0 >= 0 }) {
                    backend.attention(out: attn, q: q, k: k, v: v, continuing: c, batch: B, length: T, heads: g.heads,
                                      kvHeads: g.kvHeads, headDim: g.headDim, window: g.attentionWindow,
                                      scale: g.attentionScale, softcap: g.attentionSoftcap, precision: precision)
                } else {
                    // A block with a backward keeps attention float32: its backward recomputes P from q, k and
                    // L, which must then be the float32 softmax's.
                    backend.attention(out: attn, logSumExp: lse, q: q, k: k, v: v, batch: B, length: T,
                                      heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim, window: g.attentionWindow,
                                      scale: g.attentionScale, softcap: g.attentionSoftcap,
                                      precision: hasBackward ? .float32 : precision)
                }
            }
            completed = .oInput                                                               // attn (N, nh·hd), lse (B, nh, T)
            if stop == .oInput { return }
        }

        if entry <= .oProjection {
            // h = x + attn·W_oᵀ + b_o (sandwich: x + rmsnorm(attn·W_oᵀ + b_o; w_ao))
            addSublayer(.o, attn, inFeatures: qw, residual: x, out: h, projection: attentionProjection,
                        norm: p.attentionOutputNorm, rstd: rstdA)
        }
        p.postAttentionNorm.data.withUnsafeBufferPointer { w in
            backend.rmsNorm(out: xn2, rstd: rstd2, inp: h, weight: w.baseAddress!, rows: N, channels: C, eps: g.rmsNormEps,
                            weightOffset: g.normWeightOffset)
        }                                                                                     // h, xn2 (N, C), rstd2 (N)
        completed = .mlpInput
        if stop == .mlpInput { return }

        project(.gate, gate, xn2, inFeatures: C, outFeatures: F)
        project(.up, up, xn2, inFeatures: C, outFeatures: F)
        backend.gatedActivation(out: act, gate: gate, up: up, count: N * F, activation: g.activation)   // gate, up, act (N, F)
        completed = .downInput
        if stop == .downInput { return }

        // y = h + act·W_downᵀ (sandwich: h + rmsnorm(act·W_downᵀ; w_mo))
        addSublayer(.down, act, inFeatures: F, residual: h, out: y, projection: mlpProjection, norm: p.mlpOutputNorm, rstd: rstdM)
        completed = .output                                                                   // y (N, C)
    }

    /// Tensor form of `forward`: x is (T, C) or (B, T, C); returns the block output of the same shape.
    @discardableResult
    public func forward(_ input: Tensor, parameters: DecoderBlockWeights, rope: RoPE) throws -> Tensor {
        let (B, T) = try checkSample(input, name: "block input", parameters: parameters, rope: rope)
        input.data.withUnsafeBufferPointer { forward($0.baseAddress!, batch: B, tokens: T, parameters: parameters, rope: rope) }
        return Tensor(shape: input.shape, data: Array(output))
    }

    /// The model's block forward (evaluation, the next block's inputs): x (B, T, C) → y (B, T, C), through a
    /// forward-only block sized for this batch.
    public static func forward(
        _ x: Tensor, weights: DecoderBlockWeights, configuration c: LlamaConfiguration, rope: RoPE,
        precision: ComputePrecision = .float32, pool: DecoderBlockPool? = nil
    ) -> Tensor {
        precondition(x.rank == 3 && x.shape[2] == c.hiddenSize, "DecoderBlock: input \(x.shape), hidden size \(c.hiddenSize)")
        let b = x.shape[0], t = x.shape[1]
        if b * t == 0 { return x }
        return x.data.withUnsafeBufferPointer { xp in
            forward(xp.baseAddress!, batch: b, tokens: t, weights: weights, configuration: c, rope: rope,
                    precision: precision, pool: pool) { y in
                Profile.phase("block copies") { Tensor(shape: x.shape, data: Array(y)) }
            }
        }
    }

    /// The same forward on x (b, t, C) in place: hands y (b · t · C floats, the block's own buffer, valid
    /// only inside `output`) to `output` instead of copying it out, for a caller that moves it where it
    /// belongs (the pruning driver's next inputs) in one copy.
    public static func forward<R>(
        _ x: UnsafePointer<Float>, batch b: Int, tokens t: Int, weights: DecoderBlockWeights,
        configuration c: LlamaConfiguration, rope: RoPE, precision: ComputePrecision = .float32,
        pool: DecoderBlockPool? = nil, output: (UnsafeBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        precondition(b * t > 0, "DecoderBlock: empty batch")
        let block = forwardBlock(weights: weights, configuration: c, rope: rope, rows: b * t, length: t, precision: precision, pool: pool)
        block.forward(x, batch: b, tokens: t, parameters: weights, rope: rope)
        return try output(block.output)
    }

    /// The pruning methods' statistics pass: runs the block on x (B, T, C) as far as the input of down, and
    /// hands each linear's input to `capture` straight from the block's buffers. The block's output is not
    /// needed there, so the down projection (a quarter of the block's multiply-adds) is not computed and
    /// nothing is copied. The forward is timed as "block forward"; `capture` runs outside that phase.
    public static func captureInputs(
        _ x: UnsafePointer<Float>, batch b: Int, tokens t: Int, weights: DecoderBlockWeights,
        configuration c: LlamaConfiguration, rope: RoPE, precision: ComputePrecision = .float32,
        pool: DecoderBlockPool? = nil, capture: Capture
    ) {
        let n = b * t
        guard n > 0 else { return }
        let block = forwardBlock(weights: weights, configuration: c, rope: rope, rows: n, length: t, precision: precision, pool: pool)
        Profile.phase("block forward") {
            block.forward(x, batch: b, tokens: t, parameters: weights, rope: rope, stop: .downInput)
        }
        capture(.q, block.normedInput)
        capture(.o, block.attentionOutput)
        capture(.gate, block.normedResidual)
        capture(.down, block.mlpActivation)
    }

    /// The pool's block for this geometry and batch (or a fresh forward-only one), set to `precision`.
    static func forwardBlock(
        weights: DecoderBlockWeights, configuration c: LlamaConfiguration, rope: RoPE, rows n: Int, length t: Int,
        precision: ComputePrecision, pool: DecoderBlockPool?
    ) -> DecoderBlock {
        precondition(rope.headDim == c.headDim && rope.positions >= t,
                     "DecoderBlock: RoPE table (\(rope.positions) positions, head_dim \(rope.headDim)) for sequences of \(t)")
        let block: DecoderBlock
        do {
            let geometry = BlockGeometry(configuration: c, layer: weights.layer)
            block = try Profile.phase("block buffers") {
                if let pool { return try pool.block(geometry: geometry, rows: n, length: t) }
                return try DecoderBlock(geometry: geometry, capacity: n, maxLength: t, backward: false)
            }
        } catch {
            preconditionFailure("DecoderBlock: \(error)")
        }
        block.precision = precision
        return block
    }

    // MARK: Backward

    /// Given dL/dy (N, C) for the batch of the last complete forward pass (with the same `parameters`
    /// and `rope`), overwrites `gradients` with dL/dW of the matrices in `matrices` (default all seven;
    /// with dL/db for the biases present) and, when `inputGradient` is given, writes dL/dx (N, C) there.
    /// Matrices left out keep their previous gradient and cost no GEMM.
    public func backward(
        outputGradient dy: UnsafePointer<Float>, parameters p: DecoderBlockWeights, rope: RoPE,
        gradients: inout BlockGradients, inputGradient dx: UnsafeMutablePointer<Float>? = nil,
        matrices: Set<LinearKind>? = nil, adapter: BlockAdapter? = nil
    ) {
        precondition(completed == .output && !resumed && !continued && hasBackward,
                     "block backward needs a backward-capable block and a complete forward pass from position 0")
        let rope = rope.table(theta: geometry.ropeTheta)
        let g = geometry, B = batch, T = length, N = rows, C = g.hidden, F = g.intermediate, qw = g.qWidth, kw = g.kvWidth
        let singleThreaded = enterBLASPolicy(N)
        defer { if singleThreaded { BLAS.leaveSingleThreaded() } }
        let all = matrices == nil
        func wants(_ m: LinearKind) -> Bool { all || matrices!.contains(m) }
        func adapted(_ m: LinearKind) -> Bool { adapter?.adapts(m) ?? false }

        // y = h + act·W_downᵀ (sandwich: h + rmsnorm(act·W_downᵀ))  dact (N, F), dW_down (C, F)
        var dDown = dy
        if g.normPlacement == .sandwich {
            // d(act·W_downᵀ) (N, C), held in dxn until the MLP input's gradient needs it.
            p.mlpOutputNorm!.data.withUnsafeBufferPointer { w in
                backend.rmsNormBackward(dx: dxn, dy: dy, inp: mlpProjection, rstd: rstdM, weight: w.baseAddress!, rows: N,
                                        channels: C, accumulate: false, weightOffset: g.normWeightOffset)
            }
            dDown = UnsafePointer(dxn)
        }
        withWeight(p, .down) { w, _ in
            withGradient(&gradients, .down, wants(.down)) { dw, db in
                backend.linearBackward(dx: dact, dWeight: dw, dBias: db, dy: dDown, inp: act, weight: w,
                                            rows: N, inFeatures: F, outFeatures: C, accumulateDx: false)
            }
        }
        if adapted(.down) { adapter!.backward(.down, dy: dDown, inp: act, dx: dact, rows: N) }
        // act = silu(gate) ⊙ up                                 dgate (in dact), dup (N, F)
        backend.gatedActivationBackward(dgate: dact, dup: dup, dact: dact, gate: gate, up: up, count: N * F, activation: g.activation)
        // gate, up = xn2·W_gateᵀ, xn2·W_upᵀ                      dxn2 (N, C)
        withWeight(p, .gate) { w, _ in
            withGradient(&gradients, .gate, wants(.gate)) { dw, db in
                backend.linearBackward(dx: dxn, dWeight: dw, dBias: db, dy: dact, inp: xn2, weight: w,
                                            rows: N, inFeatures: C, outFeatures: F, accumulateDx: false)
            }
        }
        if adapted(.gate) { adapter!.backward(.gate, dy: dact, inp: xn2, dx: dxn, rows: N) }
        withWeight(p, .up) { w, _ in
            withGradient(&gradients, .up, wants(.up)) { dw, db in
                backend.linearBackward(dx: dxn, dWeight: dw, dBias: db, dy: dup, inp: xn2, weight: w,
                                            rows: N, inFeatures: C, outFeatures: F, accumulateDx: true)
            }
        }
        if adapted(.up) { adapter!.backward(.up, dy: dup, inp: xn2, dx: dxn, rows: N) }
        // xn2 = rmsnorm(h); h also feeds the residual (dy)       dh (N, C)
        dh.update(from: dy, count: N * C)
        p.postAttentionNorm.data.withUnsafeBufferPointer { w in
            backend.rmsNormBackward(dx: dh, dy: dxn, inp: h, rstd: rstd2, weight: w.baseAddress!, rows: N, channels: C,
                                    accumulate: true, weightOffset: g.normWeightOffset)
        }
        // h = x + attn·W_oᵀ (sandwich: x + rmsnorm(attn·W_oᵀ))     dattn (N, nh·hd)
        var dO = UnsafePointer(dh)
        if g.normPlacement == .sandwich {
            p.attentionOutputNorm!.data.withUnsafeBufferPointer { w in
                backend.rmsNormBackward(dx: dxn, dy: dh, inp: attentionProjection, rstd: rstdA, weight: w.baseAddress!, rows: N,
                                        channels: C, accumulate: false, weightOffset: g.normWeightOffset)
            }
            dO = UnsafePointer(dxn)
        }
        withWeight(p, .o) { w, _ in
            withGradient(&gradients, .o, wants(.o)) { dw, db in
                backend.linearBackward(dx: dattn, dWeight: dw, dBias: db, dy: dO, inp: attn, weight: w,
                                            rows: N, inFeatures: qw, outFeatures: C, accumulateDx: false)
            }
        }
        if adapted(.o) { adapter!.backward(.o, dy: dO, inp: attn, dx: dattn, rows: N) }
        // attn = attention(q, k, v), per sequence               dq (N, nh·hd), dk, dv (N, nkv·hd)
        for b in 0..<B {
            let rq = b * T * qw, rk = b * T * kw
            backend.attentionBackward(dq: dq + rq, dk: dk + rk, dv: dv + rk, dout: dattn + rq, out: attn + rq,
                                      logSumExp: lse + b * g.heads * T, q: q + rq, k: k + rk, v: v + rk,
                                      length: T, heads: g.heads, kvHeads: g.kvHeads, headDim: g.headDim,
                                      window: g.attentionWindow, scale: g.attentionScale, softcap: g.attentionSoftcap,
                                      workspace: attentionWorkspace!)
        }
        // q, k = RoPE(·): a rotation, whose backward is the rotation by the opposite angle.
        backend.rope(dq, table: rope, batch: B, length: T, heads: g.heads, sign: -1, offsets: nil)
        backend.rope(dk, table: rope, batch: B, length: T, heads: g.kvHeads, sign: -1, offsets: nil)
        if g.qkNorm {
            // q, k = rmsnorm(·) per head: dq, dk in place become the gradients of the projections' outputs
            // (each row's sum is taken before any of its elements is overwritten).
            p.queryNorm!.data.withUnsafeBufferPointer { w in
                backend.rmsNormBackward(dx: dq, dy: dq, inp: qRaw, rstd: rstdQ, weight: w.baseAddress!, rows: N * g.heads,
                                        channels: g.headDim, accumulate: false, weightOffset: g.normWeightOffset)
            }
            p.keyNorm!.data.withUnsafeBufferPointer { w in
                backend.rmsNormBackward(dx: dk, dy: dk, inp: kRaw, rstd: rstdK, weight: w.baseAddress!, rows: N * g.kvHeads,
                                        channels: g.headDim, accumulate: false, weightOffset: g.normWeightOffset)
            }
        }
        // q, k, v = xn1·Wᵀ                                       dxn1 (N, C), only when the caller wants dL/dx
        let wantDx = dx != nil
        for (m, d, width) in [(LinearKind.q, dq, qw), (.k, dk, kw), (.v, dv, kw)] {
            if wantDx || wants(m) {
                withWeight(p, m) { w, _ in
                    withGradient(&gradients, m, wants(m)) { dw, db in
                        backend.linearBackward(dx: wantDx ? dxn : nil, dWeight: dw, dBias: db, dy: d, inp: xn1, weight: w,
                                                    rows: N, inFeatures: C, outFeatures: width, accumulateDx: m != .q)
                    }
                }
            }
            if adapted(m) { adapter!.backward(m, dy: d, inp: xn1, dx: wantDx ? dxn : nil, rows: N) }
        }
        // xn1 = rmsnorm(x); x also feeds the residual (dh)       dx (N, C)
        if let dx {
            dx.update(from: dh, count: N * C)
            p.inputNorm.data.withUnsafeBufferPointer { w in
                backend.rmsNormBackward(dx: dx, dy: dxn, inp: x, rstd: rstd1, weight: w.baseAddress!, rows: N, channels: C,
                                        accumulate: true, weightOffset: g.normWeightOffset)
            }
        }
    }

    /// Tensor form of `backward`: dy has the shape of the last forward input; returns dL/dx of that shape.
    @discardableResult
    public func backward(
        _ outputGradient: Tensor, parameters: DecoderBlockWeights, rope: RoPE, gradients: inout BlockGradients
    ) throws -> Tensor {
        guard completed == .output, !resumed, !continued, hasBackward else {
            throw BlockBackwardError.shapeMismatch("backward called without a complete forward pass")
        }
        guard outputGradient.count == rows * geometry.hidden, outputGradient.shape.last == geometry.hidden else {
            throw BlockBackwardError.shapeMismatch(
                "output gradient is \(outputGradient.shape), the forward batch was \(batch)×\(length)×\(geometry.hidden)")
        }
        try checkGradients(gradients, parameters: parameters)
        var dx = Tensor.zeros(outputGradient.shape)
        outputGradient.data.withUnsafeBufferPointer { dy in
            dx.data.withUnsafeMutableBufferPointer { d in
                backward(outputGradient: dy.baseAddress!, parameters: parameters, rope: rope,
                         gradients: &gradients, inputGradient: d.baseAddress!)
            }
        }
        return dx
    }

    // MARK: Checks for the Tensor API

    /// Validates a (T, C) or (B, T, C) batch, the parameters and the RoPE table; returns (B, T).
    public func checkSample(_ input: Tensor, name: String, parameters: DecoderBlockWeights, rope: RoPE) throws -> (Int, Int) {
        try parameters.validate(against: geometry)
        guard input.rank == 2 || input.rank == 3, input.shape.last == geometry.hidden else {
            throw BlockBackwardError.shapeMismatch("\(name) is \(input.shape), expected [T, \(geometry.hidden)] or [B, T, \(geometry.hidden)]")
        }
        let B = input.rank == 3 ? input.shape[0] : 1, T = input.shape[input.rank - 2]
        guard B > 0, T > 0, B * T <= capacity, T <= maxLength else {
            throw BlockBackwardError.shapeMismatch("\(name) has \(B)×\(T) tokens; the block holds 1...\(capacity) rows, T ≤ \(maxLength)")
        }
        guard rope.positions >= T, rope.headDim == geometry.headDim else {
            throw BlockBackwardError.shapeMismatch(
                "RoPE table is \(rope.positions)×\(rope.headDim / 2), need \(T) positions × \(geometry.headDim / 2)")
        }
        return (B, T)
    }

    /// Validates that `gradients` has the parameters' shapes, biases included.
    public func checkGradients(_ gradients: BlockGradients, parameters: DecoderBlockWeights) throws {
        guard gradients.weights.count == 7, gradients.biases.count == 7 else {
            throw BlockBackwardError.shapeMismatch("gradients need 7 weights and 7 bias slots")
        }
        for m in LinearKind.allCases {
            if gradients.weights[m.index].shape != parameters.weights[m.index].shape {
                throw BlockBackwardError.shapeMismatch(
                    "gradient of \(m.projectionName) is \(gradients.weights[m.index].shape), weight is \(parameters.weights[m.index].shape)")
            }
            if (gradients.biases[m.index]?.count) != (parameters.biases[m.index]?.count) {
                throw BlockBackwardError.shapeMismatch("gradient of \(m.projectionName).bias does not match the bias")
            }
        }
    }

    // MARK: Helpers

    /// Below this many multiply-adds per projection GEMM, the block runs BLAS single-threaded: such GEMMs
    /// take well under a millisecond, and OpenBLAS's worker threads, spinning between the many small
    /// calls, compete with the kernels' own threads for the cores (measured on stories260K: ~1.7× less
    /// CPU time per sample).
    public static let singleThreadedBLASBelow = 1 << 24

    /// Opens a single-threaded BLAS scope when the pass is small (see above); true when it did. A pass of
    /// one row (a decode step) stays open: its products are matrix-vector ones, split across the cores
    /// (`BLAS.matrixVector`) because they are bound by reading the weights.
    private func enterBLASPolicy(_ N: Int) -> Bool {
        let g = geometry
        let work = N * g.hidden * max(g.intermediate, g.qWidth)
        guard work < Self.singleThreadedBLASBelow, N > 1 else { return false }
        BLAS.enterSingleThreaded()
        return true
    }
}

@inline(__always)
private func withWeight<R>(_ p: DecoderBlockWeights, _ m: LinearKind,
                           _ body: (UnsafePointer<Float>, UnsafePointer<Float>?) -> R) -> R {
    p.weights[m.index].data.withUnsafeBufferPointer { w in
        if let b = p.biases[m.index] {
            return b.data.withUnsafeBufferPointer { bb in body(w.baseAddress!, bb.baseAddress!) }
        }
        return body(w.baseAddress!, nil)
    }
}

@inline(__always)
private func withGradient<R>(_ g: inout BlockGradients, _ m: LinearKind, _ wanted: Bool,
                             _ body: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> R) -> R {
    guard wanted else { return body(nil, nil) }
    let i = m.index
    return g.weights[i].data.withUnsafeMutableBufferPointer { w in
        if g.biases[i] != nil {
            return g.biases[i]!.data.withUnsafeMutableBufferPointer { bb in body(w.baseAddress!, bb.baseAddress!) }
        }
        return body(w.baseAddress!, nil)
    }
}

/// Forward-only blocks kept for reuse by successive `DecoderBlock.forward(_:weights:...)` calls (the layers
/// of one evaluation batch, the calibration passes of a pruning run): a block's buffers are tens of
/// megabytes at real shapes, and allocating and zeroing them per call cost 14 % of a Wanda run on SmolLM2.
/// One block is kept per geometry (layers differ only by a sliding window); a call with more rows or a
/// longer sequence than the kept block replaces it. Not thread-safe: one pool per caller.
public final class DecoderBlockPool {
    private var blocks: [DecoderBlock] = []
    /// The backend of the blocks the pool makes.
    public let backend: any ComputeBackend

    public init(backend: any ComputeBackend = CPUBackend()) {
        self.backend = backend
    }

    /// A forward-only block of `geometry` with room for `rows` rows of sequences of `length` tokens.
    public func block(geometry: BlockGeometry, rows: Int, length: Int) throws -> DecoderBlock {
        if let i = blocks.firstIndex(where: { $0.geometry == geometry }) {
            let b = blocks[i]
            if b.capacity >= rows && b.maxLength >= length { return b }
            blocks.remove(at: i)
        }
        let b = try DecoderBlock(geometry: geometry, capacity: rows, maxLength: length, backward: false, backend: backend)
        blocks.append(b)
        return b
    }
}
