import COpenBLAS
import CBLASRuntime
import Dispatch
import Foundation

/// Thin, checked wrappers over CBLAS. All matrices are row-major float32.
///
/// OpenBLAS runs on one thread, set once at process start (`CBLASRuntime`) and never changed; every
/// parallel GEMM is split here across the project's own workers into slices of C whose bounds depend only
/// on the shape and the worker count. So a result never depends on what else the process runs at the
/// same time, and no call changes a process-wide setting.
public enum BLAS {
    /// C(m, n) = alpha · op(A) · op(B) + beta · C, with op(X) = X or Xᵀ.
    /// `a` holds A as stored: (m, k) when not transposed, (k, m) when transposed; likewise `b`.
    /// With `precision: .bfloat16` both operands are first rounded to bfloat16 (`ComputePrecision`).
    ///
    /// Large products are split into row blocks of C (or column blocks, when C has too few rows), one
    /// single-threaded sgemm per block. OpenBLAS's bits depend on how C is cut (its micro-kernels of
    /// different widths sum in different orders), so the cut is a function of the shape and the machine's
    /// worker count only: inside a `singleThreaded` scope, or on a worker of `parallelFor`/`parallelChunks`,
    /// the same blocks run one after the other on the calling thread, and give the same bits.
    public static func gemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil, profiled: Bool = true,
        precision: ComputePrecision = .float32
    ) {
        if m == 0 || n == 0 { return }
        if precision == .bfloat16 {
            gemmBFloat16(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda ?? (transA ? m : k),
                         b: b, ldb: ldb ?? (transB ? k : n), beta: beta, c: c, ldc: ldc ?? n)
            return
        }
        if profiled && Profile.isEnabled {
            let onWorker = llmprune_serial_depth() > 0
            let start = Profile.now()
            gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                 beta: beta, c: c, ldc: ldc, profiled: false)
            Profile.recordGEMM(Profile.GEMMShape(m: m, n: n, k: k, transA: transA, transB: transB),
                               flops: 2 * Double(m) * Double(n) * Double(k),
                               nanoseconds: onWorker ? nil : Profile.now() &- start)
            return
        }
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        let parts = partCount(m * n * max(k, 1))
        if parts == 1 {
            sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        if m >= parts * rowGrain {
            // Row blocks: rows r0..<r1 of C need rows r0..<r1 of op(A) and all of B.
            let chunk = roundUp((m + parts - 1) / parts, rowGrain)
            let count = (m + chunk - 1) / chunk
            inWorkers(count) { p in
                let r0 = p * chunk, r1 = min(m, r0 + chunk)
                sgemm(transA, transB, r1 - r0, n, k, alpha, transA ? a + r0 : a + r0 * lda, lda,
                      b, ldb, beta, c + r0 * ldc, ldc)
            }
        } else {
            // Column blocks: columns c0..<c1 of C need all of A and columns c0..<c1 of op(B).
            let chunk = roundUp((n + parts - 1) / parts, columnGrain)
            let count = (n + chunk - 1) / chunk
            inWorkers(count) { p in
                let c0 = p * chunk, c1 = min(n, c0 + chunk)
                sgemm(transA, transB, m, c1 - c0, k, alpha, a, lda,
                      transB ? b + c0 * ldb : b + c0, ldb, beta, c + c0, ldc)
            }
        }
    }

    /// y (m) = alpha · A · x + beta · y for a row-major A (m, n) with row stride lda: sgemv, which streams
    /// A once (sgemm with one row of output packs all of B into its panel layout first, which cost 59 % of a
    /// SmolLM2 decode step). Rows of y are split across the workers (each reads its own rows of A, so the
    /// product is bandwidth-bound and both cores' bandwidth counts); each row's sum is one dot product, so
    /// the bits do not depend on the split. In a `singleThreaded` scope or on a worker the parts run in turn.
    public static func matrixVector(
        m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil, x: UnsafePointer<Float>,
        beta: Float = 0, y: UnsafeMutablePointer<Float>
    ) {
        if m == 0 { return }
        let lda = lda ?? n
        let parts = max(1, min(workerCount, m * n / multiplyAddsPerVectorPart))
        let chunk = roundUp((m + parts - 1) / parts, rowGrain)
        let count = (m + chunk - 1) / chunk
        inWorkers(count) { p in
            let r0 = p * chunk, r1 = min(m, r0 + chunk)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(r1 - r0), Int32(n), alpha, a + r0 * lda, Int32(lda), x, 1,
                        beta, y + r0, 1)
        }
    }

    /// Multiply-adds below which a matrix-vector product runs on the calling thread alone (a dispatch costs
    /// about what streaming 128K floats of A takes).
    public static let multiplyAddsPerVectorPart = 1 << 17

    /// Multiply-adds below which a GEMM runs on the calling thread alone: dispatching to a worker costs
    /// some microseconds, about what 4M multiply-adds take on one core.
    public static let multiplyAddsPerPart = 1 << 22

    /// Row blocks are multiples of this many rows, column blocks of `columnGrain` columns (multiples of
    /// the micro-kernels' tile sizes, so no slice boundary adds an edge tile).
    static let rowGrain = 16
    static let columnGrain = 32

    /// How many blocks a product of `work` multiply-adds is cut into (whatever thread calls).
    static func partCount(_ work: Int) -> Int {
        max(1, min(workerCount, work / multiplyAddsPerPart))
    }

    @inline(__always)
    static func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// OpenBLAS's own thread count: 1 for the whole process (set at start, see `CBLASRuntime`).
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Runs `body` with this thread's GEMMs on this thread alone, for kernels that already occupy every
    /// core with their own workers (two levels of threads would oversubscribe the machine). The scope is
    /// per thread: it changes nothing for other threads and no process-wide setting, and every GEMM gives
    /// the same bits inside and outside it (same blocks, run in turn).
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        llmprune_serial_enter()
        defer { llmprune_serial_leave() }
        return try body()
    }

    /// Opens a `singleThreaded` scope on this thread for code whose scope is not one closure; pair with
    /// `leaveSingleThreaded()` on the same thread.
    public static func enterSingleThreaded() { llmprune_serial_enter() }

    /// Closes a scope opened by `enterSingleThreaded()` on this thread.
    public static func leaveSingleThreaded() {
        precondition(llmprune_serial_depth() > 0, "BLAS.leaveSingleThreaded without a matching enterSingleThreaded")
        llmprune_serial_leave()
    }

    /// Whether GEMMs called on this thread now run unsplit.
    public static var isSingleThreadedHere: Bool { llmprune_serial_depth() > 0 }
}

@inline(__always) func roundUp(_ x: Int, _ multiple: Int) -> Int { (x + multiple - 1) / multiple * multiple }

/// Runs `body(p)` for p in 0..<count, one worker each, every worker marked single-threaded for BLAS;
/// in order on the calling thread when it is itself marked.
func inWorkers(_ count: Int, _ body: (Int) -> Void) {
    if count == 1 || llmprune_serial_depth() > 0 {
        for p in 0..<count { body(p) }
        return
    }
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: count) { p in
            llmprune_serial_enter()
            body(p)
            llmprune_serial_leave()
        }
    }
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
