import Tensor

/// The math that evaluation, the pruning methods and fine-tuning run, behind one interface (as ggml's
/// backends are): dense products in float32 or bfloat16, the Gram matrix and Cholesky factorizations of
/// SparseGPT, and the decoder block's ops, each forward beside its backward. Callers hold an
/// `any ComputeBackend` (a block, a method's context, a LoRA adapter) and never name a library.
///
/// Every buffer is row-major float32 on the host, as the callers already hold them. `CPUBackend` is today's
/// implementation: OpenBLAS for the products, LAPACK for Cholesky, and the project's own C and Swift
/// kernels; another backend implements the same requirements (and may keep its own copies of weights).
public protocol ComputeBackend: Sendable {
    /// A short name for records and errors (`cpu`).
    var name: String { get }

    // MARK: Dense linear algebra

    /// C (m, n) = α · op(A) · op(B) + β · C, op(X) = X or Xᵀ, with both operands rounded to bfloat16 first
    /// when `precision` says so (float32 accumulation).
    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int?,
              b: UnsafePointer<Float>, ldb: Int?, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int?,
              precision: ComputePrecision)
    /// C (n, n) = α · AᵀA + β · C for A (k, n) with row stride lda, in float64; only `triangle` is written.
    func gramMatrix(n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int?, beta: Double,
                    c: UnsafeMutablePointer<Double>, triangle: Triangle)
    /// In place: the upper Cholesky factor U of A⁻¹ (A⁻¹ = UᵀU) of a symmetric positive definite A (n, n).
    func upperCholeskyOfInverse(_ a: UnsafeMutablePointer<Float>, n: Int) throws
    func upperCholeskyOfInverse(_ a: UnsafeMutablePointer<Double>, n: Int) throws

    // MARK: Decoder-block ops (each forward, then its backward)

    /// out (N, C) = x̂ · (w + weightOffset) with x̂ = x / rms(x); rstd (N) kept for the backward.
    func rmsNorm(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, inp: UnsafePointer<Float>,
                 weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float, weightOffset: Float)
    /// dx (+)= the input gradient of `rmsNorm` given dy.
    func rmsNormBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                         rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, channels: Int,
                         accumulate: Bool, weightOffset: Float)

    /// out (N, out) (+)= inp (N, in) · Wᵀ + bias.
    func linear(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                bias: UnsafePointer<Float>?, rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool,
                precision: ComputePrecision)
    /// dx (+)= dy · W; dW = dyᵀ · x; db = Σ dy (each only when given).
    func linearBackward(dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
                        dy: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int,
                        inFeatures: Int, outFeatures: Int, accumulateDx: Bool)

    /// Rotates x (B, T, H, HD) in place by RoPE at positions offsets[b] + 0..<T (0..<T without offsets);
    /// `sign` −1 is the backward.
    func rope(_ x: UnsafeMutablePointer<Float>, table: RoPE, batch: Int, length: Int, heads: Int, sign: Float, offsets: [Int]?)

    /// Causal grouped-query attention (`Attention.forward`); logSumExp (B, NH, T) kept when given.
    func attention(out: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>?, q: UnsafePointer<Float>,
                   k: UnsafePointer<Float>, v: UnsafePointer<Float>, batch: Int, length: Int, heads: Int, kvHeads: Int,
                   headDim: Int, window: Int?, scale: Float, softcap: Float?, precision: ComputePrecision)
    /// The same over cached prefixes (`BlockContinuation`); no backward.
    func attention(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                   continuing: BlockContinuation, batch: Int, length: Int, heads: Int, kvHeads: Int, headDim: Int,
                   window: Int?, scale: Float, softcap: Float?, precision: ComputePrecision)
    /// Work memory of `attentionBackward` for sequences of up to `capacity` tokens.
    func attentionWorkspace(capacity: Int, kvWidth: Int) -> any AttentionWorkspace
    /// dq, dk, dv of one sequence (T tokens) from dout, the forward's out, log-sum-exp and rotated q, k.
    func attentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                           dout: UnsafePointer<Float>, out: UnsafePointer<Float>, logSumExp: UnsafePointer<Float>,
                           q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, length: Int,
                           heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float, softcap: Float?,
                           workspace: any AttentionWorkspace)

    /// out = g(gate) ⊙ up over n elements.
    func gatedActivation(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                         count: Int, activation: Architecture.Activation)
    /// dgate, dup of `gatedActivation` given dact (dgate may alias dact).
    func gatedActivationBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dact: UnsafePointer<Float>,
                                 gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                                 activation: Architecture.Activation)
}

/// A backend's work memory for the attention backward, allocated once per block.
public protocol AttentionWorkspace: AnyObject {
    /// Bytes it holds.
    var bytes: Int { get }
}

extension ComputeBackend {
    /// `gemm` with BLAS's defaults: no transposes, α 1, β 0, packed strides, float32.
    @inline(__always)
    public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>, lda: Int? = nil, b: UnsafePointer<Float>, ldb: Int? = nil, beta: Float = 0,
                     c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
             c: c, ldc: ldc, precision: .float32)
    }
}

/// Today's math: OpenBLAS (one thread, products cut across the project's workers by shape), LAPACK's
/// Cholesky, the bf16 GEMM of `BFloat16GEMM` (oneDNN or the project's C kernels), and the kernels of this
/// module (`RMSNorm`, `Linear`, `RoPE`, `Attention`, `GatedActivation`).
public struct CPUBackend: ComputeBackend {
    public init() {}

    public var name: String { "cpu" }

    public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int?,
                     b: UnsafePointer<Float>, ldb: Int?, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int?,
                     precision: ComputePrecision) {
        BLAS.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c, ldc: ldc, precision: precision)
    }

    public func gramMatrix(n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int?, beta: Double,
                           c: UnsafeMutablePointer<Double>, triangle: Triangle) {
        BLAS.syrkTransposed(n: n, k: k, alpha: alpha, a: a, lda: lda, beta: beta, c: c, triangle: triangle)
    }

    public func upperCholeskyOfInverse(_ a: UnsafeMutablePointer<Float>, n: Int) throws {
        try Linalg.upperCholeskyOfInverse(a, n: n)
    }

    public func upperCholeskyOfInverse(_ a: UnsafeMutablePointer<Double>, n: Int) throws {
        try Linalg.upperCholeskyOfInverse(a, n: n)
    }

    public func rmsNorm(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, inp: UnsafePointer<Float>,
                        weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float, weightOffset: Float) {
        RMSNorm.forward(out: out, rstd: rstd, inp: inp, weight: weight, rows: rows, channels: channels, eps: eps,
                        weightOffset: weightOffset)
    }

    public func rmsNormBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                                rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, channels: Int,
                                accumulate: Bool, weightOffset: Float) {
        RMSNorm.backward(dx, dy, inp, rstd: rstd, weight: weight, T: rows, C: channels, accumulate: accumulate,
                         weightOffset: weightOffset)
    }

    public func linear(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                       bias: UnsafePointer<Float>?, rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool,
                       precision: ComputePrecision) {
        Linear.forward(out: out, inp: inp, weight: weight, bias: bias, rows: rows, inFeatures: inFeatures,
                       outFeatures: outFeatures, accumulate: accumulate, precision: precision)
    }

    public func linearBackward(dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
                               dBias: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int, accumulateDx: Bool) {
        Linear.backward(dx: dx, dWeight: dWeight, dBias: dBias, dy, inp, weight: weight, T: rows, inFeatures: inFeatures,
                        outFeatures: outFeatures, accumulateDx: accumulateDx)
    }

    public func rope(_ x: UnsafeMutablePointer<Float>, table: RoPE, batch: Int, length: Int, heads: Int, sign: Float,
                     offsets: [Int]?) {
        table.apply(x, batch: batch, length: length, heads: heads, sign: sign, offsets: offsets)
    }

    public func attention(out: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>?, q: UnsafePointer<Float>,
                          k: UnsafePointer<Float>, v: UnsafePointer<Float>, batch: Int, length: Int, heads: Int, kvHeads: Int,
                          headDim: Int, window: Int?, scale: Float, softcap: Float?, precision: ComputePrecision) {
        Attention.forward(out: out, logSumExp: logSumExp, q: q, k: k, v: v, batch: batch, length: length, heads: heads,
                          kvHeads: kvHeads, headDim: headDim, window: window, precision: precision, scale: scale, softcap: softcap)
    }

    public func attention(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                          v: UnsafePointer<Float>, continuing c: BlockContinuation, batch: Int, length: Int, heads: Int,
                          kvHeads: Int, headDim: Int, window: Int?, scale: Float, softcap: Float?, precision: ComputePrecision) {
        Attention.forward(out: out, q: q, k: k, v: v, prefixKeys: c.keys, prefixValues: c.values, prefixStride: c.stride,
                          prefixRows: c.prefixRows, prefixLengths: c.offsets, batch: batch, length: length, heads: heads,
                          kvHeads: kvHeads, headDim: headDim, window: window, precision: precision, scale: scale, softcap: softcap,
                          scratch: c.scratch)
    }

    public func attentionWorkspace(capacity: Int, kvWidth: Int) -> any AttentionWorkspace {
        Attention.BackwardScratch(capacity: capacity, kvWidth: kvWidth)
    }

    public func attentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                  dout: UnsafePointer<Float>, out: UnsafePointer<Float>, logSumExp: UnsafePointer<Float>,
                                  q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, length: Int,
                                  heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float, softcap: Float?,
                                  workspace: any AttentionWorkspace) {
        guard let scratch = workspace as? Attention.BackwardScratch else {
            preconditionFailure("CPUBackend: an attention workspace of another backend (\(type(of: workspace)))")
        }
        Attention.backward(dq: dq, dk: dk, dv: dv, dout: dout, out: out, lse: logSumExp, q: q, k: k, v: v, T: length,
                           heads: heads, kvHeads: kvHeads, headDim: headDim, window: window, scale: scale, softcap: softcap,
                           scratch: scratch)
    }

    public func gatedActivation(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                count: Int, activation: Architecture.Activation) {
        GatedActivation.forward(out: out, gate: gate, up: up, count: count, activation: activation)
    }

    public func gatedActivationBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
                                        dact: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                        count: Int, activation: Architecture.Activation) {
        GatedActivation.backward(dgate: dgate, dup: dup, dact, gate: gate, up: up, count: count, activation: activation)
    }
}
