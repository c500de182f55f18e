import Dispatch
import Foundation
import Tensor

/// The backward halves of the per-op pairs of a LLaMA decoder block, in the llm.c style. The forward
/// halves are the model's own kernels (`RMSNorm`, `Linear`, `RoPE`, `Attention`, `SwiGLU`), so the
/// block being differentiated is exactly the block that evaluation runs; each forward saves what the
/// backward here reads (rstd, the attention's log-sum-exp) and each backward takes the saved values
/// and the gradient of its output. RoPE's backward is `RoPE.rotate` with sign −1.
///
/// All buffers are contiguous row-major float32 for ONE sample of T tokens. Backward functions
/// either overwrite or accumulate into their input gradients as their `accumulate` flag says, so the
/// block backward can add the residual branches without extra copies.
public enum BlockKernels {
    // Rows per worker below which splitting across cores costs more than it saves.
    @usableFromInline static let minimumElementsPerThread = 1 << 14

    @inline(__always) static func rowsPerThread(_ width: Int) -> Int {
        max(1, minimumElementsPerThread / max(1, width))
    }

    // MARK: RMSNorm

    /// dx (+)= ∂/∂x of rmsnorm given dy:
    /// dx_c = r·w_c·dy_c − r³/C · x_c · Σ_k w_k·dy_k·x_k.
    public static func rmsnormBackward(
        _ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
        _ x: UnsafePointer<Float>, rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        T: Int, C: Int, accumulate: Bool
    ) {
        parallelFor(T, minimumPerThread: rowsPerThread(C)) { t in
            let xr = x + t * C, dyr = dy + t * C, dxr = dx + t * C
            let r = rstd[t]
            var dot: Float = 0
            for c in 0..<C { dot += weight[c] * dyr[c] * xr[c] }
            let k = r * r * r * dot / Float(C)
            if accumulate {
                for c in 0..<C { dxr[c] += r * weight[c] * dyr[c] - k * xr[c] }
            } else {
                for c in 0..<C { dxr[c] = r * weight[c] * dyr[c] - k * xr[c] }
            }
        }
    }

    // MARK: Linear

    /// The three gradients of y = x·Wᵀ + b given dy (T, out):
    /// dx (+)= dy · W (T, in); dW = dyᵀ · x (out, in), overwritten; db = Σ_t dy_t, overwritten.
    /// Any of dx, dW, db may be nil when the caller does not need it.
    public static func linearBackward(
        dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
        _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        T: Int, inFeatures: Int, outFeatures: Int, accumulateDx: Bool
    ) {
        if let dx {
            BLAS.gemm(m: T, n: inFeatures, k: outFeatures, a: dy, b: weight, beta: accumulateDx ? 1 : 0, c: dx)
        }
        if let dWeight {
            BLAS.gemm(transA: true, m: outFeatures, n: inFeatures, k: T, a: dy, b: x, c: dWeight)
        }
        if let dBias {
            dBias.initialize(repeating: 0, count: outFeatures)
            for t in 0..<T {
                let row = dy + t * outFeatures
                for o in 0..<outFeatures { dBias[o] += row[o] }
            }
        }
    }

    // MARK: Causal grouped-query attention

    /// Query rows per block, as in the forward (`Attention.rowBlock`): each block of rows is multiplied
    /// only against the keys it can see, so the masked half of QKᵀ is never computed.
    public static let attentionRowBlock = Attention.rowBlock

    /// Per-worker scratch of the attention kernels, allocated once by the caller (the tape):
    /// for each worker two (rowBlock, T) score buffers and (T, nkv·hd) partial dk, dv sums.
    public final class AttentionScratch {
        public let workers: Int, capacity: Int, kvWidth: Int
        let scores, dscores, dk, dv: UnsafeMutablePointer<Float>
        var scoreStride: Int { attentionRowBlock * capacity }
        var kvStride: Int { capacity * kvWidth }

        public init(capacity: Int, kvWidth: Int, workers: Int = workerCount) {
            self.workers = max(1, workers)
            self.capacity = capacity
            self.kvWidth = kvWidth
            let s = self.workers * attentionRowBlock * capacity, k = self.workers * capacity * kvWidth
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
    public static func attentionBackward(
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, out: UnsafePointer<Float>, lse: UnsafePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        T: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, scratch: AttentionScratch
    ) {
        let qw = heads * headDim, kw = kvHeads * headDim, group = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let rb = attentionRowBlock
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
                        _ = VectorMath.expShifted(pr + a, count: e - a, shift: l)
                        for j in a..<e { dpr[j] = pr[j] * (dpr[j] - d) }
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

    // MARK: SwiGLU

    /// dgate = dact ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))), dup = dact ⊙ silu(g); both overwritten.
    /// dgate may alias dact (each element is read before it is written).
    public static func swigluBackward(
        dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, _ dact: UnsafePointer<Float>,
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
    ) {
        parallelChunks(n, minimumPerThread: minimumElementsPerThread) { r in
            let i = r.lowerBound
            VectorMath.siluMultiplyBackward(dgate: dgate + i, dup: dup + i, dact: dact + i, gate: gate + i, up: up + i,
                                            count: r.count)
        }
    }
}
