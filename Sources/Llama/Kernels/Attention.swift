import Dispatch
import Foundation
import Tensor

/// Causal grouped-query scaled dot-product attention, per sequence b and query head h:
///
///     S = (Q_h K_gᵀ) / sqrt(HD),   S[i, j] = −∞ unless i − window < j ≤ i,
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
        keyTile tile: Int = keyTile, precision: ComputePrecision = .float32
    ) {
        precondition(nkv > 0 && nh % nkv == 0, "Attention: \(nh) heads, \(nkv) KV heads")
        precondition(tile > 0, "Attention: key tile \(tile)")
        let tasks = b * nkv
        if tasks == 0 || t == 0 { return }
        let scale = 1 / Float(hd).squareRoot()
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
        length t: Int, heads nh: Int, kvHeads nkv: Int, headDim hd: Int, window: Int?
    ) {
        let scale = 1 / Float(hd).squareRoot()
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

    /// Tensor form. q: (B, T, NH·HD), k, v: (B, T, NKV·HD) → (out (B, T, NH·HD), logSumExp (B, NH, T)).
    public static func forward(
        q: Tensor, k: Tensor, v: Tensor, heads nh: Int, kvHeads nkv: Int, window: Int? = nil, keyTile tile: Int = keyTile,
        precision: ComputePrecision = .float32
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
                                    precision: precision)
                        }
                    }
                }
            }
        }
        return (out, lse)
    }
}
