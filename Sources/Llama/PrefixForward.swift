import Foundation
import Tensor

/// The keys and values that a batch of token sequences ("prefixes") leaves at every layer (a KV cache),
/// so that continuations of them can be run without recomputing the prefixes.
///
/// Sequences of different lengths are right-padded to `paddedLength`; a causal model's states at the real
/// positions do not depend on the padding after them, and continuations read only the first `lengths[i]`
/// positions of prefix i.
public struct KeyValuePrefix: Sendable {
    /// Per layer: (B, P, NKV·HD) keys after RoPE, and values; P = `paddedLength`.
    public var keys: [Tensor]
    public var values: [Tensor]
    /// The real length of each prefix (≤ P).
    public var lengths: [Int]
    public var paddedLength: Int

    public var count: Int { lengths.count }
    /// Bytes this cache holds.
    public var bytes: Int { (keys + values).reduce(0) { $0 + $1.count * 4 } }
}

extension LlamaModel {
    /// Runs `prefixes` (each non-empty; right-padded internally) and keeps their keys and values at every
    /// layer. `rope` must cover the longest prefix.
    public func keyValuePrefix(_ prefixes: [[Int]], rope: RoPE) throws -> KeyValuePrefix {
        guard !prefixes.isEmpty, prefixes.allSatisfy({ !$0.isEmpty }) else {
            throw LlamaError.invalidInput("a key/value prefix needs at least one non-empty sequence")
        }
        let padded = prefixes.map(\.count).max()!
        let tokens = prefixes.map { $0 + Array(repeating: 0, count: padded - $0.count) }
        var keys: [Tensor] = [], values: [Tensor] = []
        _ = try forwardContinuing(tokens, prefixRows: nil, prefix: nil, rope: rope) { k, v in
            keys.append(k); values.append(v)
        }
        return KeyValuePrefix(keys: keys, values: values, lengths: prefixes.map(\.count), paddedLength: padded)
    }

    /// (R, S, C): the hidden states after the final RMSNorm of `rows`, right-padded to S = the longest row
    /// (padding positions hold states of no meaning). Row r continues prefix `prefixRows[r]` of `prefix`
    /// (its positions then start at that prefix's length and it attends to the prefix's keys), or starts
    /// at position 0 when that entry is nil. The result equals `hiddenStates(prefix + row)` at the row's
    /// positions, up to float32 rounding. `rope` must cover the longest prefix plus S.
    public func hiddenStates(continuing rows: [[Int]], prefixRows: [Int?], prefix: KeyValuePrefix?,
                             rope: RoPE) throws -> Tensor {
        guard !rows.isEmpty, rows.allSatisfy({ !$0.isEmpty }), prefixRows.count == rows.count else {
            throw LlamaError.invalidInput("continuation rows must be non-empty and name one prefix (or none) each")
        }
        for p in prefixRows {
            if let p { guard let prefix, (0..<prefix.count).contains(p) else {
                throw LlamaError.invalidInput("continuation row refers to prefix \(p), which does not exist")
            } }
        }
        let s = rows.map(\.count).max()!
        let tokens = rows.map { $0 + Array(repeating: 0, count: s - $0.count) }
        return try forwardContinuing(tokens, prefixRows: prefixRows, prefix: prefix, rope: rope, keep: nil)
    }

    /// The shared layer loop. Without a prefix every row starts at position 0 (plain causal attention);
    /// `keep` receives each layer's keys (after RoPE) and values.
    private func forwardContinuing(
        _ tokens: [[Int]], prefixRows: [Int?]?, prefix: KeyValuePrefix?, rope: RoPE,
        keep: ((Tensor, Tensor) -> Void)?
    ) throws -> Tensor {
        let (b, t) = try checkTokens(tokens)
        let offsets = (0..<b).map { r in prefixRows?[r].map { prefix!.lengths[$0] } ?? 0 }
        guard rope.headDim == configuration.headDim, offsets.max()! + t <= rope.positions else {
            throw LlamaError.invalidInput("RoPE table of \(rope.positions) positions is too short for \(offsets.max()! + t)")
        }
        var x = Self.embed(tokens, table: embeddings, batch: b, length: t)
        for block in blocks {
            x = Self.continuingBlock(x, weights: block, configuration: configuration, rope: rope,
                                     offsets: offsets, prefixRows: prefixRows, prefix: prefix, keep: keep,
                                     precision: computePrecision)
        }
        return RMSNorm.forward(x, weight: finalNorm, eps: Float(configuration.rmsNormEps)).out
    }

    /// One decoder block (the same computation as `DecoderBlock.forward`) whose rows may start at a
    /// position offset and attend to a cached prefix.
    private static func continuingBlock(
        _ x: Tensor, weights w: DecoderBlockWeights, configuration c: LlamaConfiguration, rope: RoPE,
        offsets: [Int], prefixRows: [Int?]?, prefix: KeyValuePrefix?, keep: ((Tensor, Tensor) -> Void)?,
        precision p: ComputePrecision
    ) -> Tensor {
        let b = x.shape[0], t = x.shape[1]
        let nh = c.numAttentionHeads, nkv = c.numKeyValueHeads, hd = c.headDim
        let eps = Float(c.rmsNormEps)
        let (xn, _) = RMSNorm.forward(x, weight: w.inputNorm, eps: eps)
        var q = Linear.forward(xn, weight: w.q, bias: w.qBias, precision: p)
        var k = Linear.forward(xn, weight: w.k, bias: w.kBias, precision: p)
        let v = Linear.forward(xn, weight: w.v, bias: w.vBias, precision: p)
        q.data.withUnsafeMutableBufferPointer { rotate($0.baseAddress!, rope: rope, batch: b, length: t, heads: nh, offsets: offsets) }
        k.data.withUnsafeMutableBufferPointer { rotate($0.baseAddress!, rope: rope, batch: b, length: t, heads: nkv, offsets: offsets) }
        keep?(k, v)
        let window = c.attentionWindow(layer: w.layer)
        var att = Tensor.uninitialized(q.shape)
        q.data.withUnsafeBufferPointer { qp in k.data.withUnsafeBufferPointer { kp in v.data.withUnsafeBufferPointer { vp in
            att.data.withUnsafeMutableBufferPointer { op in
                if let prefixRows, let prefix, prefixRows.contains(where: { $0 != nil }) {
                    prefix.keys[w.layer].data.withUnsafeBufferPointer { pk in
                        prefix.values[w.layer].data.withUnsafeBufferPointer { pv in
                            PrefixAttention.forward(
                                out: op.baseAddress!, q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!,
                                prefixKeys: pk.baseAddress!, prefixValues: pv.baseAddress!,
                                prefixStride: prefix.paddedLength, prefixRows: prefixRows.map { $0 ?? -1 },
                                prefixLengths: offsets, batch: b, length: t, heads: nh, kvHeads: nkv,
                                headDim: hd, window: window, precision: p)
                        }
                    }
                } else {
                    Attention.forward(out: op.baseAddress!, logSumExp: nil, q: qp.baseAddress!, k: kp.baseAddress!,
                                      v: vp.baseAddress!, batch: b, length: t, heads: nh, kvHeads: nkv,
                                      headDim: hd, window: window, precision: p)
                }
            }
        } } }
        var h = Linear.forward(att, weight: w.o, bias: w.oBias, precision: p)
        Self.addInPlace(&h, x)
        let (hn, _) = RMSNorm.forward(h, weight: w.postAttentionNorm, eps: eps)
        let act = SwiGLU.forward(gate: Linear.forward(hn, weight: w.gate, precision: p), up: Linear.forward(hn, weight: w.up, precision: p))
        var y = Linear.forward(act, weight: w.down, precision: p)
        Self.addInPlace(&y, h)
        return y
    }

    /// a += b elementwise (the residual connections).
    static func addInPlace(_ a: inout Tensor, _ b: Tensor) {
        precondition(a.count == b.count)
        a.data.withUnsafeMutableBufferPointer { ap in
            b.data.withUnsafeBufferPointer { bp in
                let a = ap.baseAddress!, b = bp.baseAddress!
                parallelChunks(ap.count, minimumPerThread: 65_536) { range in
                    for i in range { a[i] += b[i] }
                }
            }
        }
    }

    /// RoPE of x (B, T, H, HD) where row b's positions are offsets[b] + 0..<T.
    private static func rotate(_ x: UnsafeMutablePointer<Float>, rope: RoPE, batch b: Int, length t: Int,
                               heads h: Int, offsets: [Int]) {
        let hd = rope.headDim
        rope.cosTable.withUnsafeBufferPointer { cp in
            rope.sinTable.withUnsafeBufferPointer { sp in
                for r in 0..<b {
                    RoPE.rotate(x + r * t * h * hd, batch: 1, length: t, heads: h, headDim: hd,
                                cos: cp.baseAddress! + offsets[r] * (hd / 2), sin: sp.baseAddress! + offsets[r] * (hd / 2))
                }
            }
        }
    }
}

/// Causal grouped-query attention of continuation rows over a cached prefix plus themselves:
/// row b's query i sits at position L_b + i and sees the prefix's keys 0..<L_b and its own keys 0...i
/// (positions L_b + j), within the sliding window when there is one:
///
///     S = Q_h [K_prefix; K_own]ᵀ / sqrt(HD) (masked),   O_h = softmax(S) [V_prefix; V_own]
///
/// q and out are (B, T, NH, HD); k, v are (B, T, NKV, HD); the prefix keys and values are
/// (B_prefix, stride, NKV, HD), row b using prefix `prefixRows[b]` (−1: none, L_b must then be 0).
enum PrefixAttention {
    static func forward(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        prefixKeys: UnsafePointer<Float>, prefixValues: UnsafePointer<Float>, prefixStride: Int,
        prefixRows: [Int], prefixLengths: [Int], batch b: Int, length t: Int, heads nh: Int, kvHeads nkv: Int,
        headDim hd: Int, window: Int?, precision: ComputePrecision = .float32
    ) {
        // bf16 as `Attention.forward` computes it: q, k, v (own and prefix) and the probabilities rounded
        // before the products, float32 accumulation; here always emulated (sgemm on the rounded values):
        // zero-shot continuations are short, so this path's products are small.
        if precision == .bfloat16 {
            func rounded(_ x: UnsafePointer<Float>, _ count: Int) -> [Float] {
                var r = Array(UnsafeBufferPointer(start: x, count: count))
                r.withUnsafeMutableBufferPointer { BFloat16GEMM.roundInPlace($0.baseAddress!, count: count) }
                return r
            }
            let ldq = nh * hd, ldk = nkv * hd, prefixCount = ((prefixRows.max() ?? -1) + 1) * prefixStride * ldk
            let rq = rounded(q, b * t * ldq), rk = rounded(k, b * t * ldk), rv = rounded(v, b * t * ldk)
            let rpk = rounded(prefixKeys, prefixCount), rpv = rounded(prefixValues, prefixCount)
            rq.withUnsafeBufferPointer { qp in rk.withUnsafeBufferPointer { kp in rv.withUnsafeBufferPointer { vp in
                rpk.withUnsafeBufferPointer { pkp in rpv.withUnsafeBufferPointer { pvp in
                    attend(out: out, q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!, prefixKeys: pkp.baseAddress!,
                           prefixValues: pvp.baseAddress!, prefixStride: prefixStride, prefixRows: prefixRows,
                           prefixLengths: prefixLengths, batch: b, length: t, heads: nh, kvHeads: nkv, headDim: hd,
                           window: window, roundingProbabilities: true)
                } }
            } } }
        } else {
            attend(out: out, q: q, k: k, v: v, prefixKeys: prefixKeys, prefixValues: prefixValues, prefixStride: prefixStride,
                   prefixRows: prefixRows, prefixLengths: prefixLengths, batch: b, length: t, heads: nh, kvHeads: nkv,
                   headDim: hd, window: window, roundingProbabilities: false)
        }
    }

    private static func attend(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        prefixKeys: UnsafePointer<Float>, prefixValues: UnsafePointer<Float>, prefixStride: Int,
        prefixRows: [Int], prefixLengths: [Int], batch b: Int, length t: Int, heads nh: Int, kvHeads nkv: Int,
        headDim hd: Int, window: Int?, roundingProbabilities: Bool
    ) {
        let scale = 1 / Float(hd).squareRoot()
        let group = nh / nkv
        let ldq = nh * hd, ldk = nkv * hd
        let maxWidth = (prefixLengths.max() ?? 0) + t
        func head(_ task: Int, scores: UnsafeMutablePointer<Float>, inverse: UnsafeMutablePointer<Float>) {
            let bi = task / nh, h = task % nh, g = h / group
            let l = prefixRows[bi] >= 0 ? prefixLengths[bi] : 0
            let width = l + t
            let qh = q + bi * t * ldq + h * hd
            let kh = k + bi * t * ldk + g * hd, vh = v + bi * t * ldk + g * hd
            let oh = out + bi * t * ldq + h * hd
            if l > 0 {
                let pk = prefixKeys + prefixRows[bi] * prefixStride * ldk + g * hd
                BLAS.gemm(transB: true, m: t, n: l, k: hd, alpha: scale, a: qh, lda: ldq, b: pk, ldb: ldk,
                          c: scores, ldc: width)
            }
            BLAS.gemm(transB: true, m: t, n: t, k: hd, alpha: scale, a: qh, lda: ldq, b: kh, ldb: ldk,
                      c: scores + l, ldc: width)
            for i in 0..<t {
                let row = scores + i * width
                let position = l + i
                let lo = window.map { max(0, position - $0 + 1) } ?? 0
                if lo > 0 { row.update(repeating: 0, count: lo) }
                if position + 1 < width { (row + position + 1).update(repeating: 0, count: width - position - 1) }
                let m = VectorMath.maximum(row + lo, count: position + 1 - lo)
                inverse[i] = 1 / VectorMath.expShifted(row + lo, count: position + 1 - lo, shift: m)
            }
            if roundingProbabilities { BFloat16GEMM.roundInPlace(scores, count: t * width) }
            var beta: Float = 0
            if l > 0 {
                let pv = prefixValues + prefixRows[bi] * prefixStride * ldk + g * hd
                BLAS.gemm(m: t, n: hd, k: l, a: scores, lda: width, b: pv, ldb: ldk, c: oh, ldc: ldq)
                beta = 1
            }
            BLAS.gemm(m: t, n: hd, k: t, a: scores + l, lda: width, b: vh, ldb: ldk, beta: beta, c: oh, ldc: ldq)
            for i in 0..<t { VectorMath.scale(oh + i * ldq, count: hd, by: inverse[i]) }
        }
        let tasks = b * nh
        func run(_ range: Range<Int>) {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: t * maxWidth + t)
            defer { scratch.deallocate() }
            for task in range { head(task, scores: scratch, inverse: scratch + t * maxWidth) }
        }
        if tasks >= workerCount && workerCount > 1 {
            BLAS.singleThreaded { parallelChunks(tasks) { run($0) } }
        } else {
            run(0..<tasks)
        }
    }
}
