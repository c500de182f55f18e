import Foundation
import Tensor

/// The per-op forward/backward pairs of a LLaMA decoder block, in the llm.c style: each forward
/// saves what its backward needs, each backward reads the saved values and the gradient of its output.
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

    /// y = w ⊙ x · rstd, rstd_t = 1/√(mean_c x_tc² + eps).  x, y: (T, C); rstd: (T); w: (C).
    public static func rmsnormForward(
        _ y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, T: Int, C: Int, eps: Float
    ) {
        parallelFor(T, minimumPerThread: rowsPerThread(C)) { t in
            let xr = x + t * C, yr = y + t * C
            var ss: Float = 0
            for c in 0..<C { ss += xr[c] * xr[c] }
            let r = 1 / (ss / Float(C) + eps).squareRoot()
            rstd[t] = r
            for c in 0..<C { yr[c] = weight[c] * (xr[c] * r) }
        }
    }

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

    /// y = x · Wᵀ (+ b).  x: (T, in); W: (out, in); b: (out); y: (T, out).
    public static func linearForward(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, T: Int, inFeatures: Int, outFeatures: Int
    ) {
        if let bias {
            for t in 0..<T { (y + t * outFeatures).update(from: bias, count: outFeatures) }
        }
        BLAS.gemm(transB: true, m: T, n: outFeatures, k: inFeatures,
                  a: x, b: weight, beta: bias == nil ? 0 : 1, c: y)
    }

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

    // MARK: Rotary embedding (rotate-half)

    /// In place on x (T, heads · hd): for each head, with x₁ = x[:hd/2], x₂ = x[hd/2:],
    /// x₁ ← x₁·cos − x₂·sin, x₂ ← x₂·cos + x₁·sin  (Hugging Face's `x·cos + rotate_half(x)·sin`).
    public static func ropeForward(
        _ x: UnsafeMutablePointer<Float>, T: Int, heads: Int, headDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = headDim / 2, width = heads * headDim
        parallelFor(T, minimumPerThread: rowsPerThread(width)) { t in
            let c = cos + t * half, s = sin + t * half
            for h in 0..<heads {
                let p = x + t * width + h * headDim
                for i in 0..<half {
                    let a = p[i], b = p[i + half]
                    p[i] = a * c[i] - b * s[i]
                    p[i + half] = b * c[i] + a * s[i]
                }
            }
        }
    }

    /// In place on dx (T, heads · hd): the transpose of the rotation, i.e. rotation by −angle:
    /// d₁ ← d₁·cos + d₂·sin, d₂ ← d₂·cos − d₁·sin.
    public static func ropeBackward(
        _ dx: UnsafeMutablePointer<Float>, T: Int, heads: Int, headDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = headDim / 2, width = heads * headDim
        parallelFor(T, minimumPerThread: rowsPerThread(width)) { t in
            let c = cos + t * half, s = sin + t * half
            for h in 0..<heads {
                let p = dx + t * width + h * headDim
                for i in 0..<half {
                    let a = p[i], b = p[i + half]
                    p[i] = a * c[i] + b * s[i]
                    p[i + half] = b * c[i] - a * s[i]
                }
            }
        }
    }

    // MARK: Causal grouped-query attention

    /// out_h = softmax(q_h k_gᵀ / √hd + causal mask) · v_g for every query head h, g = h / (nh / nkv).
    ///
    /// q: (T, nh·hd) and k, v: (T, nkv·hd), q and k already rotated; out: (T, nh·hd).
    /// Saves lse (nh, T), the log-sum-exp of each softmax row, so the backward can rebuild the
    /// probabilities from q and k instead of keeping (nh, T, T) of them.
    /// `scratch` holds T·T floats: one head's scores at a time.
    public static func attentionForward(
        _ out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        T: Int, heads: Int, kvHeads: Int, headDim: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        let qw = heads * headDim, kw = kvHeads * headDim, group = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        for h in 0..<heads {
            let g = h / group
            let qh = q + h * headDim, kg = k + g * headDim, vg = v + g * headDim
            // S = scale · q_h k_gᵀ (T, T)
            BLAS.gemm(transB: true, m: T, n: T, k: headDim, alpha: scale, a: qh, lda: qw, b: kg, ldb: kw, c: scratch)
            let lseh = lse + h * T
            parallelFor(T, minimumPerThread: rowsPerThread(T)) { i in
                let row = scratch + i * T
                var m = -Float.infinity
                for j in 0...i { m = max(m, row[j]) }
                var sum: Float = 0
                for j in 0...i {
                    let e = Foundation.exp(row[j] - m)
                    row[j] = e
                    sum += e
                }
                let inv = 1 / sum
                for j in 0...i { row[j] *= inv }
                if i + 1 < T { (row + i + 1).initialize(repeating: 0, count: T - i - 1) }
                lseh[i] = m + Foundation.log(sum)
            }
            BLAS.gemm(m: T, n: headDim, k: T, a: scratch, b: vg, ldb: kw, c: out + h * headDim, ldc: qw)
        }
    }

    /// Gradients of the attention given dout (T, nh·hd): dq (T, nh·hd), dk, dv (T, nkv·hd), all overwritten.
    /// Rebuilds each head's probabilities as exp(S − lse) from the saved rotated q, k.
    /// With D_i = Σ_j P_ij dP_ij = dout_i · out_i:  dS = P ⊙ (dP − D), dq = dS·k/√hd, dk = dSᵀ·q/√hd,
    /// dv = Pᵀ·dout, summed over the query heads that share a KV head.
    /// `scratchP`, `scratchDP` hold T·T floats each.
    public static func attentionBackward(
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, out: UnsafePointer<Float>, lse: UnsafePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        T: Int, heads: Int, kvHeads: Int, headDim: Int,
        scratchP: UnsafeMutablePointer<Float>, scratchDP: UnsafeMutablePointer<Float>
    ) {
        let qw = heads * headDim, kw = kvHeads * headDim, group = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        dk.initialize(repeating: 0, count: T * kw)
        dv.initialize(repeating: 0, count: T * kw)
        for h in 0..<heads {
            let g = h / group
            let qh = q + h * headDim, kg = k + g * headDim, vg = v + g * headDim
            let doh = dout + h * headDim, oh = out + h * headDim
            BLAS.gemm(transB: true, m: T, n: T, k: headDim, alpha: scale, a: qh, lda: qw, b: kg, ldb: kw, c: scratchP)
            // dP = dout_h · v_gᵀ (T, T)
            BLAS.gemm(transB: true, m: T, n: T, k: headDim, a: doh, lda: qw, b: vg, ldb: kw, c: scratchDP)
            let lseh = lse + h * T
            parallelFor(T, minimumPerThread: rowsPerThread(T)) { i in
                let p = scratchP + i * T, dp = scratchDP + i * T
                let l = lseh[i]
                var d: Float = 0
                let dor = doh + i * qw, orow = oh + i * qw
                for c in 0..<headDim { d += dor[c] * orow[c] }
                for j in 0...i {
                    let pij = Foundation.exp(p[j] - l)
                    p[j] = pij
                    dp[j] = pij * (dp[j] - d)
                }
                if i + 1 < T {
                    (p + i + 1).initialize(repeating: 0, count: T - i - 1)
                    (dp + i + 1).initialize(repeating: 0, count: T - i - 1)
                }
            }
            // dv_g += Pᵀ · dout_h
            BLAS.gemm(transA: true, m: T, n: headDim, k: T, a: scratchP, b: doh, ldb: qw, beta: 1, c: dv + g * headDim, ldc: kw)
            // dq_h = scale · dS · k_g
            BLAS.gemm(m: T, n: headDim, k: T, alpha: scale, a: scratchDP, b: kg, ldb: kw, c: dq + h * headDim, ldc: qw)
            // dk_g += scale · dSᵀ · q_h
            BLAS.gemm(transA: true, m: T, n: headDim, k: T, alpha: scale, a: scratchDP, b: qh, ldb: qw,
                      beta: 1, c: dk + g * headDim, ldc: kw)
        }
    }

    // MARK: SwiGLU

    /// act = silu(g) ⊙ u, silu(g) = g·σ(g).  g, u, act: n elements.
    public static func swigluForward(
        _ act: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
    ) {
        parallelChunks(n, minimumPerThread: minimumElementsPerThread) { r in
            for i in r {
                let g = gate[i]
                act[i] = g / (1 + Foundation.exp(-g)) * up[i]
            }
        }
    }

    /// dgate = dact ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))), dup = dact ⊙ silu(g); both overwritten.
    /// dgate may alias dact (each element is read before it is written).
    public static func swigluBackward(
        dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, _ dact: UnsafePointer<Float>,
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
    ) {
        parallelChunks(n, minimumPerThread: minimumElementsPerThread) { r in
            for i in r {
                let g = gate[i], d = dact[i]
                let s = 1 / (1 + Foundation.exp(-g))
                dup[i] = d * g * s
                dgate[i] = d * up[i] * s * (1 + g * (1 - s))
            }
        }
    }
}
