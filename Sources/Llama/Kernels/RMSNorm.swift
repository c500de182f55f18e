import Tensor

/// Root-mean-square layer normalization (LLaMA's `LlamaRMSNorm`), per row of width C:
///
///     rstd = 1 / sqrt(mean(x²) + eps),   out = (x · rstd) · (weight + offset)
///
/// where `offset` is 0 for LLaMA's form w·x̂ and 1 for Gemma's (1 + w)·x̂ (`Architecture.NormForm`).
///
/// The forward pass keeps `rstd` (one value per row): with the input and the weight it is all a backward
/// pass needs.
public enum RMSNorm {
    /// Pointer form. inp, out: (N, C); weight: (C); rstd: (N), written when non-nil. out may alias inp.
    public static func forward(
        out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows n: Int, channels c: Int, eps: Float, weightOffset: Float = 0
    ) {
        parallelChunks(n, minimumPerThread: max(1, 16_384 / max(c, 1))) { rows in
            for r in rows {
                let x = inp + r * c
                let y = out + r * c
                // Sum of squares in double: the mean must not lose digits for wide rows.
                let ss = VectorMath.sumOfSquares(x, count: c)
                let s = Float(1 / (Float(ss / Double(c)) + eps).squareRoot())
                rstd?[r] = s
                if weightOffset == 0 {
                    for i in 0..<c { y[i] = (x[i] * s) * weight[i] }
                } else {
                    for i in 0..<c { y[i] = (x[i] * s) * (weight[i] + weightOffset) }
                }
            }
        }
    }

    /// x: (..., C), weight: (C) → (out: same shape as x, rstd: (rows)).
    public static func forward(_ x: Tensor, weight: Tensor, eps: Float, weightOffset: Float = 0) -> (out: Tensor, rstd: Tensor) {
        let c = x.shape.last ?? 0
        precondition(weight.count == c, "RMSNorm: weight \(weight.shape) for input \(x.shape)")
        let n = c == 0 ? 0 : x.count / c
        var out = Tensor.uninitialized(x.shape)
        var rstd = Tensor.uninitialized([n])
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                out.data.withUnsafeMutableBufferPointer { op in
                    rstd.data.withUnsafeMutableBufferPointer { rp in
                        forward(out: op.baseAddress!, rstd: rp.baseAddress, inp: xp.baseAddress!,
                                weight: wp.baseAddress!, rows: n, channels: c, eps: eps, weightOffset: weightOffset)
                    }
                }
            }
        }
        return (out, rstd)
    }

    /// dx (+)= ∂/∂x of rmsnorm given dy, with w the weight plus its offset:
    /// dx_c = r·w_c·dy_c − r³/C · x_c · Σ_k w_k·dy_k·x_k.
    public static func backward(
        _ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
        _ x: UnsafePointer<Float>, rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        T: Int, C: Int, accumulate: Bool, weightOffset: Float = 0
    ) {
        if weightOffset != 0 {
            // (1 + w)·x̂: the same backward with the effective weight, formed once.
            let effective = (0..<C).map { weight[$0] + weightOffset }
            effective.withUnsafeBufferPointer { e in
                backward(dx, dy, x, rstd: rstd, weight: e.baseAddress!, T: T, C: C, accumulate: accumulate)
            }
            return
        }
        parallelFor(T, minimumPerThread: max(1, 16_384 / max(C, 1))) { t in
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
}

extension Tensor {
    /// A tensor whose elements are left for the caller to write (no zero fill for large scratch buffers).
    @usableFromInline
    static func uninitialized(_ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        let data = [Float](unsafeUninitializedCapacity: n) { _, count in count = n }
        return Tensor(shape: shape, data: data)
    }
}
