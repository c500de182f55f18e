import COpenBLAS

/// A failed dense factorization: the one-line description names the operation, the matrix size and the
/// LAPACK status.
public struct LinalgError: Error, CustomStringConvertible, Equatable {
    /// The operation, e.g. "Cholesky".
    public var operation: String
    /// The matrix order n.
    public var order: Int
    /// LAPACK's `info`: > 0 is the order of the first leading minor that is not positive definite
    /// (or, for the inverse, the first zero diagonal entry of the factor); < 0 is a bad argument.
    public var info: Int

    public init(operation: String, order: Int, info: Int) {
        self.operation = operation
        self.order = order
        self.info = info
    }

    public var description: String {
        if info > 0 {
            return "\(operation) of a \(order)×\(order) matrix failed: the leading minor of order \(info) "
                + "is not positive definite"
        }
        return "\(operation) of a \(order)×\(order) matrix failed: LAPACK argument \(-info) is invalid"
    }
}

/// Which triangle of a row-major square matrix holds a factor.
public enum Triangle: Sendable {
    /// Entries (i, j) with j ≥ i.
    case upper
    /// Entries (i, j) with j ≤ i.
    case lower

    /// The LAPACK `uplo` character for the same entries of a row-major matrix.
    ///
    /// Fortran reads a row-major n×n array as its transpose, so the row-major upper triangle is the
    /// column-major lower one and vice versa. For a symmetric input the transpose is the matrix itself,
    /// which is why only the triangle letter has to be swapped.
    fileprivate var fortranUplo: CChar {
        switch self {
        case .upper: return CChar(UInt8(ascii: "L"))
        case .lower: return CChar(UInt8(ascii: "U"))
        }
    }
}

/// The element types with LAPACK's Cholesky routines: `Float` (spotrf/spotri) and `Double` (dpotrf/dpotri).
public protocol CholeskyScalar: BinaryFloatingPoint {
    static func _potrf(_ uplo: CChar, _ n: Int32, _ a: UnsafeMutablePointer<Self>) -> Int32
    static func _potri(_ uplo: CChar, _ n: Int32, _ a: UnsafeMutablePointer<Self>) -> Int32
}

extension Float: CholeskyScalar {
    public static func _potrf(_ uplo: CChar, _ n: Int32, _ a: UnsafeMutablePointer<Float>) -> Int32 {
        var uplo = uplo, n = n, lda = max(n, 1), info: Int32 = 0
        spotrf_(&uplo, &n, a, &lda, &info)
        return info
    }
    public static func _potri(_ uplo: CChar, _ n: Int32, _ a: UnsafeMutablePointer<Float>) -> Int32 {
        var uplo = uplo, n = n, lda = max(n, 1), info: Int32 = 0
        spotri_(&uplo, &n, a, &lda, &info)
        return info
    }
}

extension Double: CholeskyScalar {
    public static func _potrf(_ uplo: CChar, _ n: Int32, _ a: UnsafeMutablePointer<Double>) -> Int32 {
        var uplo = uplo, n = n, lda = max(n, 1), info: Int32 = 0
        dpotrf_(&uplo, &n, a, &lda, &info)
        return info
    }
    public static func _potri(_ uplo: CChar, _ n: Int32, _ a: UnsafeMutablePointer<Double>) -> Int32 {
        var uplo = uplo, n = n, lda = max(n, 1), info: Int32 = 0
        dpotri_(&uplo, &n, a, &lda, &info)
        return info
    }
}

/// Cholesky helpers on row-major, contiguous n×n matrices (the layout of every buffer in the project).
///
/// Each function reads only the triangle it needs of a symmetric input, and writes a full matrix: a factor
/// with exact zeros in its other triangle, or an inverse with both triangles filled.
public enum Linalg {
    /// The Cholesky factor of a symmetric positive definite A, in place: `.upper` gives U with A = UᵀU,
    /// `.lower` gives L with A = L·Lᵀ (U = Lᵀ). Reads the requested triangle of A.
    public static func cholesky<T: CholeskyScalar>(_ a: UnsafeMutablePointer<T>, n: Int, triangle: Triangle) throws {
        if n == 0 { return }
        let info = T._potrf(triangle.fortranUplo, Int32(n), a)
        if info != 0 { throw LinalgError(operation: "Cholesky", order: n, info: Int(info)) }
        zeroOtherTriangle(a, n: n, keep: triangle)
    }

    /// A⁻¹ of a symmetric positive definite A through its Cholesky factor, in place; both triangles of the
    /// result are filled. Reads the lower triangle of A.
    public static func choleskyInverse<T: CholeskyScalar>(_ a: UnsafeMutablePointer<T>, n: Int) throws {
        if n == 0 { return }
        let uplo = Triangle.lower.fortranUplo
        var info = T._potrf(uplo, Int32(n), a)
        if info != 0 { throw LinalgError(operation: "Cholesky", order: n, info: Int(info)) }
        info = T._potri(uplo, Int32(n), a)
        if info != 0 { throw LinalgError(operation: "Cholesky inverse", order: n, info: Int(info)) }
        // potri leaves the inverse in the factor's triangle (row-major lower here); mirror it.
        for i in 0..<n {
            for j in (i + 1)..<n { a[i * n + j] = a[j * n + i] }
        }
    }

    /// SparseGPT's factor: the upper Cholesky factor U of A⁻¹ (A⁻¹ = UᵀU), in place, for a symmetric
    /// positive definite A. Equals `torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(A)),
    /// upper=True)`. Reads the lower triangle of A.
    public static func upperCholeskyOfInverse<T: CholeskyScalar>(_ a: UnsafeMutablePointer<T>, n: Int) throws {
        try choleskyInverse(a, n: n)
        try cholesky(a, n: n, triangle: .upper)
    }

    private static func zeroOtherTriangle<T: CholeskyScalar>(_ a: UnsafeMutablePointer<T>, n: Int, keep: Triangle) {
        for i in 0..<n {
            switch keep {
            case .upper: for j in 0..<i { a[i * n + j] = 0 }
            case .lower: for j in (i + 1)..<n { a[i * n + j] = 0 }
            }
        }
    }
}

extension Tensor {
    /// The Cholesky factor of this symmetric positive definite (n, n) matrix (see `Linalg.cholesky`).
    public func cholesky(_ triangle: Triangle) throws -> Tensor {
        let n = try squareOrder("Cholesky")
        var out = self
        if n == 0 { return out }
        try out.data.withUnsafeMutableBufferPointer { try Linalg.cholesky($0.baseAddress!, n: n, triangle: triangle) }
        return out
    }

    /// The inverse of this symmetric positive definite (n, n) matrix through its Cholesky factor.
    public func choleskyInverse() throws -> Tensor {
        let n = try squareOrder("Cholesky inverse")
        var out = self
        if n == 0 { return out }
        try out.data.withUnsafeMutableBufferPointer { try Linalg.choleskyInverse($0.baseAddress!, n: n) }
        return out
    }

    private func squareOrder(_ op: String) throws -> Int {
        guard rank == 2, shape[0] == shape[1] else {
            throw TensorShapeError(description: "\(op) needs a square matrix, got shape \(shape)")
        }
        return shape[0]
    }
}

/// A tensor of the wrong shape for an operation; the description names the operation and the shape.
public struct TensorShapeError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(description: String) { self.description = description }
}

extension BLAS {
    /// C(n, n) = alpha · AᵀA + beta · C for a row-major A (k, n): the Gram matrix of A's columns
    /// (`cblas_ssyrk`). Only `triangle` of C is written; the other one is left as it was.
    ///
    /// Large products are split across the workers into bands of rows of C with about equal areas of the
    /// triangle (bounds from the shape alone): each band is one ssyrk for its diagonal block and one sgemm
    /// for the rest of its rows.
    public static func syrkTransposed(n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
                                      beta: Float = 0, c: UnsafeMutablePointer<Float>, triangle: Triangle) {
        if n == 0 { return }
        let lda = lda ?? n
        let parts = n < 2 * rowGrain ? 1 : partCount(n * n / 2 * max(k, 1))  // the same cut on any thread
        let uplo = triangle == .upper ? CblasUpper : CblasLower
        if parts == 1 {
            cblas_ssyrk(CblasRowMajor, uplo, CblasTrans, Int32(n), Int32(k), alpha, a, Int32(lda), beta, c, Int32(n))
            return
        }
        // Band p of the lower triangle holds rows up to n·sqrt((p+1)/parts): equal triangle areas.
        // The upper triangle's bands are the lower's mirrored (counted from the last row).
        var cuts = [0]
        for p in 1..<parts {
            let x = roundUp(Int((Double(n) * (Double(p) / Double(parts)).squareRoot()).rounded()), rowGrain)
            cuts.append(min(n, max(cuts.last!, x)))
        }
        cuts.append(n)
        if triangle == .upper { cuts = cuts.reversed().map { n - $0 } }
        inWorkers(parts) { p in
            let r0 = cuts[p], r1 = cuts[p + 1], rows = r1 - r0
            if rows == 0 { return }
            cblas_ssyrk(CblasRowMajor, uplo, CblasTrans, Int32(rows), Int32(k), alpha, a + r0, Int32(lda),
                        beta, c + r0 * n + r0, Int32(n))
            // The off-diagonal part of the band: columns 0..<r0 (lower) or r1..<n (upper).
            let (c0, c1) = triangle == .lower ? (0, r0) : (r1, n)
            if c1 > c0 {
                sgemm(true, false, rows, c1 - c0, k, alpha, a + r0, lda, a + c0, lda, beta, c + r0 * n + c0, n)
            }
        }
    }

    /// The float64 form of `syrkTransposed` (`cblas_dsyrk`).
    public static func syrkTransposed(n: Int, k: Int, alpha: Double = 1, a: UnsafePointer<Double>, lda: Int? = nil,
                                      beta: Double = 0, c: UnsafeMutablePointer<Double>, triangle: Triangle) {
        if n == 0 { return }
        cblas_dsyrk(CblasRowMajor, triangle == .upper ? CblasUpper : CblasLower, CblasTrans,
                    Int32(n), Int32(k), alpha, a, Int32(lda ?? n), beta, c, Int32(n))
    }
}
