import CBLASRuntime

/// Vectorized float32 helpers for the kernels' elementwise loops (softmax, SiLU, log-softmax).
///
/// `exp` is Cephes' `expf` polynomial (relative error ≤ 2 ulp on the range used) in eight lanes, with n =
/// round(x · log₂ e) by the 1.5·2²³ trick. The loops live in C (`vector_math.c`) in two copies, baseline
/// x86-64 (SSE2) and AVX2 with FMA, chosen once by the CPU: the package builds for SSE2, and a Swift function
/// cannot be compiled for a wider instruction set, while softmax over the attention scores and SiLU over
/// the MLP activations take billions of exponentials per run. The copies differ only in FMA rounding; every
/// element goes through the same lanes, the scalar `exp` and a row's tail included.
public enum VectorMath {
    /// The instruction set of the copy in use: "avx2+fma", or "sse2" where the CPU lacks either.
    public static var instructionSet: String { String(cString: llmprune_vector_kernels().pointee.isa) }

    /// e^x; 0 below −87.34 (where float32 exp leaves the normal range), +∞ above 88.376 (127.5·ln 2, where
    /// 2ⁿ would overflow; true float32 exp overflows at 88.72), NaN for NaN. The kernels only take exp of
    /// values ≤ 0 (shifted scores) or of −g in SiLU, where either limit gives the same result.
    @inline(__always)
    public static func exp(_ x: Float) -> Float { llmprune_exp(x) }

    /// x[i] = e^(x[i] − shift) for i in 0..<n; returns the sum of the results (accumulated in float32 lanes).
    @inline(__always)
    public static func expShifted(_ x: UnsafeMutablePointer<Float>, count n: Int, shift: Float) -> Float {
        llmprune_exp_shifted(x, n, shift)
    }

    /// Σ e^(x[i] − shift) over i in 0..<n, each eight-lane partial sum added in double.
    @inline(__always)
    public static func expShiftedSum(_ x: UnsafePointer<Float>, count n: Int, shift: Float) -> Double {
        llmprune_exp_shifted_sum(x, n, shift)
    }

    /// The largest of x[0..<n] (n > 0); NaN entries are passed over.
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Float>, count n: Int) -> Float { llmprune_maximum(x, n) }

    /// out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^(−gate[i])) · up[i]; out may alias gate or up.
    @inline(__always)
    public static func siluMultiply(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                    count n: Int) {
        llmprune_silu_mul(out, gate, up, n)
    }

    /// With s = σ(g): dup = d · g · s and dgate = d · u · s · (1 + g(1 − s)), the gradients of silu(g) · u
    /// for an output gradient d. dgate may alias dact.
    @inline(__always)
    public static func siluMultiplyBackward(
        dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dact: UnsafePointer<Float>,
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
    ) {
        llmprune_silu_mul_backward(dgate, dup, dact, gate, up, n)
    }

    /// For `groups` groups of four consecutive scores: pruned[i] = true for the k lowest of each group, ties
    /// going to the earlier entry (a stable sort's order), false for the others; eight groups per step.
    @inline(__always)
    public static func pruneLowestOfFour(_ scores: UnsafePointer<Float>, groups: Int, prune k: Int,
                                         into pruned: UnsafeMutablePointer<Bool>) {
        pruned.withMemoryRebound(to: UInt8.self, capacity: 4 * groups) {
            llmprune_prune_lowest_of_4(scores, groups, Int32(k), $0)
        }
    }

    /// Σ x[i]² over i in 0..<n, in double.
    @inline(__always)
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count n: Int) -> Double { llmprune_sum_squares(x, n) }

    /// acc[i] += x[i]² for i in 0..<n, in double.
    @inline(__always)
    public static func addSquares(into acc: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Float>, count n: Int) {
        llmprune_add_squares(acc, x, n)
    }

    /// One step of RMSprop (PyTorch's `torch.optim.RMSprop`, no momentum, not centered) over n parameters:
    /// v = a · v + (1 − a) · g², θ −= lr · g / (√v + ε).
    @inline(__always)
    public static func rmspropStep(parameter: UnsafeMutablePointer<Float>, squareAverage: UnsafeMutablePointer<Float>,
                                   gradient: UnsafePointer<Float>, count n: Int, smoothing a: Float, learningRate lr: Float,
                                   epsilon: Float) {
        llmprune_rmsprop_update(parameter, squareAverage, gradient, n, a, lr, epsilon)
    }

    /// out[i] = a · x[i] for i in 0..<n.
    @inlinable
    public static func scale(out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int, by a: Float) {
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) * a
            UnsafeMutableRawPointer(out + i).storeBytes(of: v, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { out[i] = x[i] * a; i += 1 }
    }

    /// x[i] *= a for i in 0..<n.
    @inlinable
    public static func scale(_ x: UnsafeMutablePointer<Float>, count n: Int, by a: Float) {
        scale(out: x, x, count: n, by: a)
    }
}
