import Tensor

/// Root-mean-square layer normalization (LLaMA's `LlamaRMSNorm`), per row of width C:
///
///     rstd = 1 / sqrt(mean(x²) + eps),   out = (x · rstd) · weight
///
/// The forward pass keeps `rstd` (one value per row): with the input and the weight it is all a backward
/// pass needs.
public enum RMSNorm {
    /// Pointer form. inp, out: (N, C); weight: (C); rstd: (N), written when non-nil. out may alias inp.
    public static func forward(
        out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows n: Int, channels c: Int, eps: Float
    ) {
        parallelChunks(n, minimumPerThread: max(1, 16_384 / max(c, 1))) { rows in
            for r in rows {
                let x = inp + r * c
                let y = out + r * c
                // Sum of squares in double: the mean must not lose digits for wide rows.
                let ss = VectorMath.sumOfSquares(x, count: c)
                let s = Float(1 / (Float(ss / Double(c)) + eps).squareRoot())
                rstd?[r] = s
                for i in 0..<c { y[i] = (x[i] * s) * weight[i] }
            }
        }
    }

    /// x: (..., C), weight: (C) → (out: same shape as x, rstd: (rows)).
    public static func forward(_ x: Tensor, weight: Tensor, eps: Float) -> (out: Tensor, rstd: Tensor) {
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
                                weight: wp.baseAddress!, rows: n, channels: c, eps: eps)
                    }
                }
            }
        }
        return (out, rstd)
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
