import Dispatch
import Foundation
import Tensor

/// Causal grouped-query scaled dot-product attention, per sequence b and query head h:
///
///     S = scale · Q_h K_gᵀ (scale 1/√HD unless given; with `softcap`, then cap · tanh(S / cap)),
///     S[i, j] = −∞ unless i − window < j ≤ i,
///     P = softmax(S) row-wise (float32),   O_h = P V_g,
///
/// where g = h / (NH / NKV) is the KV head that query head h shares (GQA; NKV = NH is plain multi-head
/// attention) and `window` is nil for full causal attention.
///
/// Layouts are the projections' outputs, so no transpose is ever copied: q and out are (B, T, NH, HD),
/// k and v are (B, T, NKV, HD). Each query row block of each (b, g) pair, for all the query heads that
/// share KV head g, is an independent task; the tasks are spread over the cores with BLAS single-threaded inside. Query rows go in blocks of `rowBlock`, each multiplied only against the
/// keys it can see, so the causal half of QKᵀ and PV is never computed.
///
/// The forward pass keeps, when asked, the log-sum-exp of every query row, L[b, h, i] = log Σⱼ exp(S[i, j]):
/// with q and k it recomputes P exactly (P = exp(S − L)) without storing (B, NH, T, T) probabilities —
/// see `probabilities(...)`.
public enum Attention {
    /// Query rows per block: big enough for BLAS to run at full speed, small enough that the wasted
    /// upper triangle of each diagonal block stays a few percent at long T.
    public static let rowBlock = 64

    /// Keys per tile. A row block's scores are formed and consumed one tile of keys at a time (an online
    /// softmax, as in FlashAttention-2), so at long T the scores of a KV head's query group stay in the
    /// core's L2 cache (192 rows × 512 keys = 384 KiB for SmolLM2) instead of streaming (192, T) through
    /// memory four times (written, scanned for the maximum, exponentiated, multiplied). At T ≤ keyTile,
    /// calibration's 512-token samples among them, there is one tile and the result is the same bits as
    /// the untiled softmax.
    public static let keyTile = 512

    /// Floats of scratch one worker of `forward` holds: the packed queries, outputs, one tile of scores and
    /// the running maximum and sum of each row, for one KV head's query group over one row block.
    public static func forwardScratchFloats(length t: Int, heads nh: Int, kvHeads nkv: Int, headDim hd: Int,
                                            keyTile tile: Int = keyTile) -> Int {
        let rows = (nh / max(nkv, 1)) * min(rowBlock, max(t, 1))
        return rows * (2 * hd + min(max(t, 1), tile) + 2)
    }

    /// Pointer form. out: (B, T, NH, HD); logSumExp: (B, NH, T) or nil; q: (B, T, NH, HD); k, v: (B, T, NKV, HD).
    /// `keyTile` is the tile width (tests use small ones to cover many tiles on short sequences).
    /// `precision` is the format of the two products' inputs: with `.bfloat16`, Q, K, V and the unnormalized
    /// probabilities are rounded to bfloat16 before QKᵀ and PV, which accumulate in float32 (as PyTorch's
    /// bf16 attention on CPU does); the softmax, its running maximum and sum, and L stay float32.
    public static func forward(
        out: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        batch b: Int, length t: Int, heads nh: Int, kvHeads nkv: Int, headDim hd: Int, window: Int?,
        keyTile tile: Int = keyTile, precision: ComputePrecision = .float32, scale: Float? = nil, softcap: Float? = nil
    ) {
        precondition(nkv > 0 && nh % nkv == 0, "Attention: \(nh) heads, \(nkv) KV heads")
        precondition(tile > 0, "Attention: key tile \(tile)")
        let tasks = b * nkv
        if tasks == 0 || t == 0 { return }
        let scale = scale ?? Architecture.defaultAttentionScale(headDim: hd)
        let group = nh / nkv
        let ldq = nh * hd, ldk = nkv * hd
        let block = min(rowBlock, t)

        // bf16: K and V are rounded once for every row block that reads them. Natively they become bf16
        // bits for oneDNN's kernel; emulated, rounded float32 values for sgemm (the same products, exact in
        // float32, in another summation order).
        let bf16 = precision == .bfloat16, native = bf16 && BFloat16GEMM.isNative
        let kvCount = b * t * ldk
        let kBits = native ? UnsafeMutablePointer<UInt16>.allocate(capacity: 2 * kvCount) : nil
        let kRounded = bf16 && !native ? UnsafeMutablePointer<Float>.allocate(capacity: 2 * kvCount) : nil
        defer { kBits?.deallocate(); kRounded?.deallocate() }
        let vBits = kBits.map { $0 + kvCount }, vRounded = kRounded.map { $0 + kvCount }
        if bf16 {
            parallelChunks(kvCount, minimumPerThread: 1 << 16) { r in
                if let kBits, let vBits {
                    BFloat16GEMM.convert(k + r.lowerBound, to: kBits + r.lowerBound, count: r.count)
                    BFloat16GEMM.convert(v + r.lowerBound, to: vBits + r.lowerBound, count: r.count)
                } else if let kRounded, let vRounded {
                    (kRounded + r.lowerBound).update(from: k + r.lowerBound, count: r.count)
                    (vRounded + r.lowerBound).update(from: v + r.lowerBound, count: r.count)
                    BFloat16GEMM.roundInPlace(kRounded + r.lowerBound, count: r.count)
                    BFloat16GEMM.roundInPlace(vRounded + r.lowerBound, count: r.count)
                }
            }
        }
        let keys = UnsafePointer(kRounded) ?? k, values = UnsafePointer(vRounded) ?? v

        // One query row block [r0, r0 + block) of the `group` query heads that share KV head g of sequence
        // bi, against the keys it may see. The group's rows are packed head after head into one
        // (group · rows, HD) matrix, so the scores and the PV product are one GEMM each per KV head and key
        // tile rather than one per query head: a taller M at the same K and N, which BLAS runs nearer its
        // peak. Items are independent and their GEMM shapes do not depend on how work is spread, so the
        // output is the same bits however the items are spread over the workers.
        let rowBlocks = (t + block - 1) / block
        func attend(_ item: Int, scratch: UnsafeMutablePointer<Float>, bits: UnsafeMutablePointer<UInt16>?) {
            let task = item / rowBlocks, r0 = (item % rowBlocks) * block
            let bi = task / nkv, g = task % nkv
            let r1 = min(t, r0 + block), rows = r1 - r0, packed = group * rows
            let k0 = window.map { max(0, r0 - $0 + 1) } ?? 0
            let tileWidth = min(r1 - k0, tile)
            let queries = scratch, outputs = scratch + packed * hd
            let scores = outputs + packed * hd, rowMax = scores + packed * tileWidth, rowSum = rowMax + packed
            let head = bi * t * ldk + g * hd
            let kh = keys + head, vh = values + head
            // Native bf16: the packed queries' and one tile of probabilities' bits.
            let queryBits = bits, probabilityBits = bits.map { $0 + packed * hd }
            // queries (group · rows, HD): row j · rows + i is query head g · group + j at position r0 + i.
            for j in 0..<group {
                let qh = q + bi * t * ldq + (g * group + j) * hd
                for i in 0..<rows {
                    (queries + (j * rows + i) * hd).update(from: qh + (r0 + i) * ldq, count: hd)
                }
            }
            if let queryBits {
                BFloat16GEMM.convert(queries, to: queryBits, count: packed * hd)
            } else if bf16 {
                BFloat16GEMM.roundInPlace(queries, count: packed * hd)
            }
            outputs.update(repeating: 0, count: packed * hd)
            rowMax.update(repeating: -.infinity, count: packed)
            rowSum.update(repeating: 0, count: packed)
            var c0 = k0
            while c0 < r1 {
                let c1 = min(r1, c0 + tile), width = c1 - c0
                // scores (group · rows, width) = scale · queries · K[c0..<c1]ᵀ
                if let queryBits, let kBits {
                    BFloat16GEMM.gemmOnThisThread(transB: true, m: packed, n: width, k: hd, alpha: scale, a: queryBits, lda: hd,
                                                  b: kBits + head + c0 * ldk, ldb: ldk, c: scores, ldc: width)
                } else {
                    BLAS.gemm(transB: true, m: packed, n: width, k: hd, alpha: scale,
                              a: queries, lda: hd, b: kh + c0 * ldk, ldb: ldk, c: scores, ldc: width)
                }
                // Unnormalized probabilities exp(S − m) in place, m the row's maximum so far. When a tile
                // raises m, the row's output and sum so far are rescaled by exp(m_old − m_new); 1/Σ is
                // applied once to the (rows, HD) output at the end rather than to every probability.
                for j in 0..<group {
                    for i in r0..<r1 {
                        let r = j * rows + i - r0
                        let row = scores + r * width
                        let lo = max(window.map { max(0, i - $0 + 1) } ?? 0, c0)
                        let a = lo - c0, e = min(i + 1, c1) - c0
                        guard a < e else {
                            row.update(repeating: 0, count: width)
                            continue
                        }
                        if a > 0 { row.update(repeating: 0, count: a) }
                        if e < width { (row + e).update(repeating: 0, count: width - e) }
                        if let softcap { Self.capScores(row + a, count: e - a, cap: softcap) }
                        let old = rowMax[r]
                        let m = max(old, VectorMath.maximum(row + a, count: e - a))
                        let sum = VectorMath.expShifted(row + a, count: e - a, shift: m)
                        if old == -.infinity {
                            rowSum[r] = sum
                        } else if m != old {
                            let rescale = Foundation.exp(old - m)
                            rowSum[r] = rowSum[r] * rescale + sum
                            VectorMath.scale(out: outputs + r * hd, outputs + r * hd, count: hd, by: rescale)
                        } else {
                            rowSum[r] += sum
                        }
                        rowMax[r] = m
                    }
                }
                // outputs (group · rows, HD) += exp(S − m) · V[c0..<c1]
                if let probabilityBits, let vBits {
                    BFloat16GEMM.convert(scores, to: probabilityBits, count: packed * width)
                    BFloat16GEMM.gemmOnThisThread(m: packed, n: hd, k: width, a: probabilityBits, lda: width,
                                                  b: vBits + head + c0 * ldk, ldb: ldk, beta: 1, c: outputs, ldc: hd)
                } else {
                    if bf16 { BFloat16GEMM.roundInPlace(scores, count: packed * width) }
                    BLAS.gemm(m: packed, n: hd, k: width, a: scores, lda: width,
                              b: vh + c0 * ldk, ldb: ldk, beta: 1, c: outputs, ldc: hd)
                }
                c0 = c1
            }
            // out = diag(1/Σ) · outputs, scattered back head by head; L = m + log Σ.
            for j in 0..<group {
                let oh = out + bi * t * ldq + (g * group + j) * hd
                let lse = logSumExp.map { $0 + (bi * nh + g * group + j) * t }
                for i in 0..<rows {
                    let r = j * rows + i
                    VectorMath.scale(out: oh + (r0 + i) * ldq, outputs + r * hd, count: hd, by: 1 / rowSum[r])
                    lse?[r0 + i] = rowMax[r] + Foundation.log(rowSum[r])
                }
            }
        }

        // Worker w takes items w, w + n, w + 2n, …: causal row blocks grow in cost along the sequence, and
        // the interleaving spreads them evenly even when batch × KV heads is below the worker count.
        let items = tasks * rowBlocks
        let scratchCount = forwardScratchFloats(length: t, heads: nh, kvHeads: nkv, headDim: hd, keyTile: tile)
        func run(_ worker: Int, _ stride: Int) {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
            // Native bf16: the packed queries and one tile of probabilities, (group · rows) × (HD + tile).
            let bitsCount = (nh / nkv) * block * (hd + min(t, tile))
            let bits = native ? UnsafeMutablePointer<UInt16>.allocate(capacity: bitsCount) : nil
            defer { scratch.deallocate(); bits?.deallocate() }
            var item = worker
            while item < items {
                attend(item, scratch: scratch, bits: bits)
                item += stride
            }
        }
        let n = min(workerCount, items)
        if n > 1 {
            DispatchQueue.concurrentPerform(iterations: n) { w in BLAS.singleThreaded { run(w, n) } }
        } else {
            run(0, 1)
        }
    }

    /// Recomputes the attention probabilities of one (b, h) pair from the forward cache:
    /// p (T, T) = exp(scale · Q_h K_gᵀ − L[b, h, :]) on the visible entries, 0 elsewhere.
    public static func probabilities(
        into p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
        logSumExp: UnsafePointer<Float>, sequence bi: Int, head h: Int,
        length t: Int, heads nh: Int, kvHeads nkv: Int, headDim hd: Int, window: Int?, scale: Float? = nil
    ) {
        let scale = scale ?? Architecture.defaultAttentionScale(headDim: hd)
        let g = h / (nh / nkv)
        let ldq = nh * hd, ldk = nkv * hd
        BLAS.gemm(transB: true, m: t, n: t, k: hd, alpha: scale,
                  a: q + bi * t * ldq + h * hd, lda: ldq, b: k + bi * t * ldk + g * hd, ldb: ldk, c: p, ldc: t)
        let lse = logSumExp + (bi * nh + h) * t
        for i in 0..<t {
            let row = p + i * t
            let lo = window.map { max(0, i - $0 + 1) } ?? 0
            if lo > 0 { row.update(repeating: 0, count: lo) }
            _ = VectorMath.expShifted(row + lo, count: i + 1 - lo, shift: lse[i])
            if i + 1 < t { (row + i + 1).update(repeating: 0, count: t - i - 1) }
        }
    }

    /// Gemma 2's soft-capping, in place: s = cap · tanh(s / cap) (attention scores here; the head's logits
    /// in `HeadSlabs` and `LlamaModel.logits`).
    @inline(__always)
    static func capScores(_ s: UnsafeMutablePointer<Float>, count n: Int, cap: Float) {
        for i in 0..<n { s[i] = cap * Foundation.tanh(s[i] / cap) }
    }

    /// Tensor form. q: (B, T, NH·HD), k, v: (B, T, NKV·HD) → (out (B, T, NH·HD), logSumExp (B, NH, T)).
    public static func forward(
        q: Tensor, k: Tensor, v: Tensor, heads nh: Int, kvHeads nkv: Int, window: Int? = nil, keyTile tile: Int = keyTile,
        precision: ComputePrecision = .float32, scale: Float? = nil
    ) -> (out: Tensor, logSumExp: Tensor) {
        precondition(q.rank == 3 && k.shape == v.shape && k.rank == 3 && q.shape[0...1] == k.shape[0...1],
                     "Attention: q \(q.shape), k \(k.shape), v \(v.shape)")
        let b = q.shape[0], t = q.shape[1], hd = q.shape[2] / nh
        precondition(q.shape[2] == nh * hd && k.shape[2] == nkv * hd, "Attention: widths \(q.shape[2]), \(k.shape[2])")
        var out = Tensor.uninitialized(q.shape)
        var lse = Tensor.uninitialized([b, nh, t])
        q.data.withUnsafeBufferPointer { qp in
            k.data.withUnsafeBufferPointer { kp in
                v.data.withUnsafeBufferPointer { vp in
                    out.data.withUnsafeMutableBufferPointer { op in
                        lse.data.withUnsafeMutableBufferPointer { lp in
                            forward(out: op.baseAddress!, logSumExp: lp.baseAddress!, q: qp.baseAddress!,
                                    k: kp.baseAddress!, v: vp.baseAddress!, batch: b, length: t,
                                    heads: nh, kvHeads: nkv, headDim: hd, window: window, keyTile: tile,
                                    precision: precision, scale: scale)
                        }
                    }
                }
            }
        }
        return (out, lse)
    }

    // MARK: Continuing a cached prefix

    /// Causal grouped-query attention of continuation rows over a cached prefix plus themselves:
    /// row b's query i sits at position L_b + i and sees the prefix's keys 0..<L_b and its own keys 0...i
    /// (positions L_b + j), within the sliding window when there is one:
    ///
    ///     S = Q_h [K_prefix; K_own]ᵀ / sqrt(HD) (masked),   O_h = softmax(S) [V_prefix; V_own]
    ///
    /// q and out are (B, T, NH, HD); k, v are (B, T, NKV, HD); the prefix keys and values are
    /// (B_prefix, stride, NKV, HD), row b using prefix `prefixRows[b]` (−1: none, L_b must then be 0).
    /// `scratch`, when it holds `continuationScratchFloats` for the call, replaces the kernel's own work
    /// memory (float32 only), so a decode step allocates nothing.
    public static func forward(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        prefixKeys: UnsafePointer<Float>, prefixValues: UnsafePointer<Float>, prefixStride: Int,
        prefixRows: [Int], prefixLengths: [Int], batch b: Int, length t: Int, heads nh: Int, kvHeads nkv: Int,
        headDim hd: Int, window: Int?, precision: ComputePrecision = .float32, scale: Float? = nil, softcap: Float? = nil,
        scratch: UnsafeMutableBufferPointer<Float>? = nil
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
                           window: window, roundingProbabilities: true, scale: scale, softcap: softcap)
                } }
            } } }
        } else {
            attend(out: out, q: q, k: k, v: v, prefixKeys: prefixKeys, prefixValues: prefixValues, prefixStride: prefixStride,
                   prefixRows: prefixRows, prefixLengths: prefixLengths, batch: b, length: t, heads: nh, kvHeads: nkv,
                   headDim: hd, window: window, roundingProbabilities: false, scale: scale, softcap: softcap, scratch: scratch)
        }
    }

    /// Multiply-adds of QKᵀ below which the cached-prefix attention runs its heads on the calling thread.
    static let continuationWorkPerDispatch = 1 << 18

    /// Floats of work memory the cached-prefix attention needs for a call: one (T, longest prefix + T) score
    /// block and T inverse sums per (sequence, query head).
    public static func continuationScratchFloats(batch b: Int, length t: Int, heads nh: Int, longestPrefix: Int) -> Int {
        b * nh * (t * (longestPrefix + t) + t)
    }

    private static func attend(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        prefixKeys: UnsafePointer<Float>, prefixValues: UnsafePointer<Float>, prefixStride: Int,
        prefixRows: [Int], prefixLengths: [Int], batch b: Int, length t: Int, heads nh: Int, kvHeads nkv: Int,
        headDim hd: Int, window: Int?, roundingProbabilities: Bool, scale: Float?, softcap: Float?,
        scratch given: UnsafeMutableBufferPointer<Float>? = nil
    ) {
        let scale = scale ?? Architecture.defaultAttentionScale(headDim: hd)
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
                if let softcap { Self.capScores(row + lo, count: position + 1 - lo, cap: softcap) }
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
        let perTask = t * maxWidth + t
        func run(_ range: Range<Int>) {
            if let given, given.count >= tasks * perTask {
                for task in range {
                    let scratch = given.baseAddress! + task * perTask
                    head(task, scores: scratch, inverse: scratch + t * maxWidth)
                }
                return
            }
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: perTask)
            defer { scratch.deallocate() }
            for task in range { head(task, scores: scratch, inverse: scratch + t * maxWidth) }
        }
        // A decode step's heads are a few thousand multiply-adds each: dispatching them to the workers
        // would cost more than it saves. Each head's arithmetic is the same on any thread.
        let work = tasks * t * maxWidth * hd
        if tasks >= workerCount && workerCount > 1 && work >= Self.continuationWorkPerDispatch {
            BLAS.singleThreaded { parallelChunks(tasks) { run($0) } }
        } else {
            run(0..<tasks)
        }
    }

    // MARK: Backward

    /// Per-worker scratch of the attention kernels, allocated once by the caller (the tape):
    /// for each worker two (rowBlock, T) score buffers and (T, nkv·hd) partial dk, dv sums.
    public final class BackwardScratch {
        public let workers: Int, capacity: Int, kvWidth: Int
        let scores, dscores, dk, dv: UnsafeMutablePointer<Float>
        var scoreStride: Int { rowBlock * capacity }
        var kvStride: Int { capacity * kvWidth }

        public init(capacity: Int, kvWidth: Int, workers: Int = workerCount) {
            self.workers = max(1, workers)
            self.capacity = capacity
            self.kvWidth = kvWidth
            let s = self.workers * rowBlock * capacity, k = self.workers * capacity * kvWidth
            scores = .allocate(capacity: s); scores.initialize(repeating: 0, count: s)
            dscores = .allocate(capacity: s); dscores.initialize(repeating: 0, count: s)
            dk = .allocate(capacity: k); dk.initialize(repeating: 0, count: k)
            dv = .allocate(capacity: k); dv.initialize(repeating: 0, count: k)
        }

        deinit {
            scores.deallocate(); dscores.deallocate(); dk.deallocate(); dv.deallocate()
        }

        public var bytes: Int { (2 * workers * scoreStride + 2 * workers * kvStride) * MemoryLayout<Float>.stride }
    }

    /// Runs `body(worker, heads)` over the query heads split into one contiguous range per worker,
    /// BLAS single-threaded inside (the heads already occupy the cores).
    static func overHeads(_ heads: Int, workers: Int, _ body: (Int, Range<Int>) -> Void) {
        let n = min(workers, heads)
        if n <= 1 { body(0, 0..<heads); return }
        let chunk = (heads + n - 1) / n
        BLAS.singleThreaded {
            withoutActuallyEscaping(body) { body in
                DispatchQueue.concurrentPerform(iterations: n) { w in
                    let lo = w * chunk, hi = min(heads, lo + chunk)
                    if lo < hi { body(w, lo..<hi) }
                }
            }
        }
    }

    /// The keys query row i may see: i − window < j ≤ i (all j ≤ i without a window).
    @inline(__always) static func firstKey(_ i: Int, _ window: Int?) -> Int {
        guard let window else { return 0 }
        return max(0, i - window + 1)
    }

    /// Gradients of the attention given dout (T, nh·hd): dq (T, nh·hd), dk, dv (T, nkv·hd), all overwritten.
    /// Rebuilds each head's probabilities as exp(S − lse) from the saved rotated q, k, one block of rows
    /// at a time. With D_i = Σ_j P_ij dP_ij = dout_i · out_i:  dS = P ⊙ (dP − D), dq = dS·k/√hd,
    /// dk = dSᵀ·q/√hd, dv = Pᵀ·dout, summed over the query heads that share a KV head (each worker sums
    /// its heads into its own partial dk, dv; the partials are added at the end, in worker order).
    public static func backward(
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, out: UnsafePointer<Float>, lse: UnsafePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        T: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float? = nil, softcap: Float? = nil,
        scratch: BackwardScratch
    ) {
        let qw = heads * headDim, kw = kvHeads * headDim, group = heads / kvHeads
        let scale = scale ?? Architecture.defaultAttentionScale(headDim: headDim)
        let rb = rowBlock
        let used = min(scratch.workers, heads)
        // Every partial that the reduction reads is zeroed, also those of workers left without heads.
        for w in 0..<used {
            (scratch.dk + w * scratch.kvStride).update(repeating: 0, count: T * kw)
            (scratch.dv + w * scratch.kvStride).update(repeating: 0, count: T * kw)
        }
        overHeads(heads, workers: scratch.workers) { worker, range in
            let p = scratch.scores + worker * scratch.scoreStride
            let dp = scratch.dscores + worker * scratch.scoreStride
            let dkw = scratch.dk + worker * scratch.kvStride, dvw = scratch.dv + worker * scratch.kvStride
            for h in range {
                let g = h / group
                let qh = q + h * headDim, kg = k + g * headDim, vg = v + g * headDim
                let doh = dout + h * headDim, oh = out + h * headDim
                var r0 = 0
                while r0 < T {
                    let r1 = min(T, r0 + rb), rows = r1 - r0, k0 = firstKey(r0, window), width = r1 - k0
                    BLAS.gemm(transB: true, m: rows, n: width, k: headDim, alpha: scale,
                              a: qh + r0 * qw, lda: qw, b: kg + k0 * kw, ldb: kw, c: p, ldc: width)
                    // dP = dout[r0..<r1] · V[k0..<r1]ᵀ
                    BLAS.gemm(transB: true, m: rows, n: width, k: headDim,
                              a: doh + r0 * qw, lda: qw, b: vg + k0 * kw, ldb: kw, c: dp, ldc: width)
                    for i in r0..<r1 {
                        let pr = p + (i - r0) * width, dpr = dp + (i - r0) * width
                        let a = firstKey(i, window) - k0, e = i - k0 + 1
                        let l = lse[h * T + i]
                        var d: Float = 0
                        let dor = doh + i * qw, orow = oh + i * qw
                        for c in 0..<headDim { d += dor[c] * orow[c] }
                        if let cap = softcap {
                            // S = cap·tanh(S₀/cap): P = exp(S − L), and dS₀ = dS · (1 − (S/cap)²).
                            for j in a..<e {
                                let s = cap * Foundation.tanh(pr[j] / cap)
                                let p = Foundation.exp(s - l)
                                pr[j] = p
                                dpr[j] = p * (dpr[j] - d) * (1 - (s / cap) * (s / cap))
                            }
                        } else {
                            _ = VectorMath.expShifted(pr + a, count: e - a, shift: l)
                            for j in a..<e { dpr[j] = pr[j] * (dpr[j] - d) }
                        }
                        if a > 0 {
                            pr.update(repeating: 0, count: a)
                            dpr.update(repeating: 0, count: a)
                        }
                        if e < width {
                            (pr + e).update(repeating: 0, count: width - e)
                            (dpr + e).update(repeating: 0, count: width - e)
                        }
                    }
                    // dv[k0..<r1] += Pᵀ · dout[r0..<r1]
                    BLAS.gemm(transA: true, m: width, n: headDim, k: rows, a: p, lda: width,
                              b: doh + r0 * qw, ldb: qw, beta: 1, c: dvw + k0 * kw + g * headDim, ldc: kw)
                    // dq[r0..<r1] = scale · dS · K[k0..<r1]
                    BLAS.gemm(m: rows, n: headDim, k: width, alpha: scale, a: dp, lda: width,
                              b: kg + k0 * kw, ldb: kw, c: dq + r0 * qw + h * headDim, ldc: qw)
                    // dk[k0..<r1] += scale · dSᵀ · Q[r0..<r1]
                    BLAS.gemm(transA: true, m: width, n: headDim, k: rows, alpha: scale, a: dp, lda: width,
                              b: qh + r0 * qw, ldb: qw, beta: 1, c: dkw + k0 * kw + g * headDim, ldc: kw)
                    r0 = r1
                }
            }
        }
        // Sum the workers' partials, in worker order (deterministic for a given worker count).
        let n = T * kw
        dk.update(from: scratch.dk, count: n)
        dv.update(from: scratch.dv, count: n)
        for w in 1..<max(1, used) {
            let pk = scratch.dk + w * scratch.kvStride, pv = scratch.dv + w * scratch.kvStride
            for i in 0..<n { dk[i] += pk[i]; dv[i] += pv[i] }
        }
    }
}

extension Attention.BackwardScratch: AttentionWorkspace {}
