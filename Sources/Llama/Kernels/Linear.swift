import Tensor

/// A dense layer as checkpoints store it: out = inp · Wᵀ + bias, with W of shape (out, in).
/// The product goes through one BLAS sgemm with W transposed in place (no copy of the weight), or, with
/// `precision: .bfloat16`, through a bf16 GEMM on rounded copies of both operands (`ComputePrecision`).
public enum Linear {
    /// Pointer form. inp: (N, in), weight: (out, in), bias: (out) or nil, out: (N, out); out must not alias inp.
    /// With `accumulate`, out += inp · Wᵀ + bias (a residual branch added in place, no temporary).
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        rows n: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false, precision: ComputePrecision = .float32
    ) {
        if let bias {
            for r in 0..<n {
                let row = out + r * outFeatures
                if accumulate {
                    for o in 0..<outFeatures { row[o] += bias[o] }
                } else {
                    row.update(from: bias, count: outFeatures)
                }
            }
        }
        let beta: Float = bias == nil && !accumulate ? 0 : 1
        // One row (a decode step) is a matrix-vector product, which reads W once.
        if n == 1 && precision == .float32 {
            BLAS.matrixVector(m: outFeatures, n: inFeatures, a: weight, x: inp, beta: beta, y: out)
            return
        }
        BLAS.gemm(transB: true, m: n, n: outFeatures, k: inFeatures, a: inp, b: weight, beta: beta, c: out, precision: precision)
    }

    /// x: (..., in), weight: (out, in), bias: (out) → (..., out).
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, precision: ComputePrecision = .float32) -> Tensor {
        let inFeatures = x.shape.last ?? 0
        precondition(weight.rank == 2 && weight.shape[1] == inFeatures, "Linear: input \(x.shape), weight \(weight.shape)")
        let outFeatures = weight.shape[0]
        precondition(bias == nil || bias!.count == outFeatures, "Linear: bias \(bias!.shape) for \(outFeatures) outputs")
        let n = inFeatures == 0 ? 0 : x.count / inFeatures
        var out = Tensor.uninitialized(Array(x.shape.dropLast()) + [outFeatures])
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                out.data.withUnsafeMutableBufferPointer { op in
                    if let bias {
                        bias.data.withUnsafeBufferPointer { bp in
                            forward(out: op.baseAddress!, inp: xp.baseAddress!, weight: wp.baseAddress!,
                                    bias: bp.baseAddress!, rows: n, inFeatures: inFeatures, outFeatures: outFeatures,
                                    precision: precision)
                        }
                    } else {
                        forward(out: op.baseAddress!, inp: xp.baseAddress!, weight: wp.baseAddress!,
                                bias: nil, rows: n, inFeatures: inFeatures, outFeatures: outFeatures, precision: precision)
                    }
                }
            }
        }
        return out
    }

    /// The three gradients of y = x·Wᵀ + b given dy (T, out):
    /// dx (+)= dy · W (T, in); dW = dyᵀ · x (out, in), overwritten; db = Σ_t dy_t, overwritten.
    /// Any of dx, dW, db may be nil when the caller does not need it.
    public static func backward(
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
}
