import COpenBLAS
import Foundation

/// Thin, checked wrappers over CBLAS. All matrices are row-major float32.
public enum BLAS {
    /// C(m, n) = alpha · op(A) · op(B) + beta · C, with op(X) = X or Xᵀ.
    /// `a` holds A as stored: (m, k) when not transposed, (k, m) when transposed; likewise `b`.
    @inlinable
    public static func gemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        if m == 0 || n == 0 { return }
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Sets how many threads OpenBLAS itself may use (a process-wide setting). Kernels that split work
    /// across the cores themselves should use `singleThreaded(_:)` instead of calling this.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Runs `body` with OpenBLAS single-threaded, for kernels that already occupy every core with their
    /// own workers (two levels of threads would oversubscribe the machine).
    ///
    /// OpenBLAS has one thread count per process, so a plain save/set/restore is wrong as soon as two
    /// threads do it at once: the second saves the first's 1 and restores it last, leaving the whole process
    /// single-threaded for good. Scopes are therefore counted: the first one to open saves the count and
    /// sets 1, the last one to close restores it, whichever threads they run on.
    ///
    /// Any other GEMM running in the process while a scope is open also runs single-threaded. OpenBLAS
    /// results of some shapes differ in the last bits with the thread count, so bit-for-bit reproducibility
    /// holds for one model pass at a time (as a CLI run does), not for two passes racing in one process.
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        enterSingleThreaded()
        defer { leaveSingleThreaded() }
        return try body()
    }

    /// Opens a `singleThreaded` scope for code whose scope is not one closure; pair with `leaveSingleThreaded()`.
    public static func enterSingleThreaded() {
        scopeLock.lock(); defer { scopeLock.unlock() }
        if openScopes == 0 {
            threadsOutsideScopes = threads
            if threadsOutsideScopes != 1 { setThreads(1) }
        }
        openScopes += 1
    }

    /// Closes a scope opened by `enterSingleThreaded()`.
    public static func leaveSingleThreaded() {
        scopeLock.lock(); defer { scopeLock.unlock() }
        precondition(openScopes > 0, "BLAS.leaveSingleThreaded without a matching enterSingleThreaded")
        openScopes -= 1
        if openScopes == 0 && threadsOutsideScopes != 1 { setThreads(threadsOutsideScopes) }
    }

    private static let scopeLock = NSLock()
    nonisolated(unsafe) private static var openScopes = 0
    nonisolated(unsafe) private static var threadsOutsideScopes = 1
}

extension Tensor {
    /// y = x · Wᵀ (+ bias): x is (N, in), W is (out, in) as stored in checkpoints, y is (N, out).
    /// Leading dimensions of x are flattened into N.
    public func linear(_ weight: Tensor, bias: Tensor? = nil) -> Tensor {
        let inFeatures = shape.last!
        precondition(weight.rank == 2 && weight.shape[1] == inFeatures,
                     "linear: input \(shape) does not match weight \(weight.shape)")
        let n = count / max(inFeatures, 1)
        let outFeatures = weight.shape[0]
        var out = Tensor.zeros(Array(shape.dropLast()) + [outFeatures])
        if let bias {
            precondition(bias.count == outFeatures, "linear: bias \(bias.shape) vs \(outFeatures) outputs")
            out.data.withUnsafeMutableBufferPointer { o in
                bias.data.withUnsafeBufferPointer { b in
                    for r in 0..<n { (o.baseAddress! + r * outFeatures).update(from: b.baseAddress!, count: outFeatures) }
                }
            }
        }
        data.withUnsafeBufferPointer { x in
            weight.data.withUnsafeBufferPointer { w in
                out.data.withUnsafeMutableBufferPointer { o in
                    BLAS.gemm(transB: true, m: n, n: outFeatures, k: inFeatures,
                              a: x.baseAddress!, b: w.baseAddress!, beta: bias == nil ? 0 : 1, c: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// The matrix product of two rank-2 tensors, (m, k) · (k, n) → (m, n), with optional transposes.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
        precondition(rank == 2 && other.rank == 2, "matmul needs rank-2 tensors, got \(shape) and \(other.shape)")
        let m = transposeSelf ? shape[1] : shape[0]
        let k = transposeSelf ? shape[0] : shape[1]
        let k2 = transposeOther ? other.shape[1] : other.shape[0]
        let n = transposeOther ? other.shape[0] : other.shape[1]
        precondition(k == k2, "matmul: inner dimensions \(k) and \(k2) differ")
        var out = Tensor.zeros([m, n])
        data.withUnsafeBufferPointer { a in
            other.data.withUnsafeBufferPointer { b in
                out.data.withUnsafeMutableBufferPointer { c in
                    BLAS.gemm(transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k,
                              a: a.baseAddress!, b: b.baseAddress!, c: c.baseAddress!)
                }
            }
        }
        return out
    }
}
