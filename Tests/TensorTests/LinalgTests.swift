import Foundation
import Testing
import Tensor
import TestSupport

// Float64 textbook references, independent of LAPACK: Cholesky–Banachiewicz and Gauss–Jordan.

/// Lower L with A = L·Lᵀ, row-major, in float64.
private func referenceLowerCholesky(_ a: [Double], _ n: Int) -> [Double] {
    var l = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in 0...i {
            var s = a[i * n + j]
            for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
            l[i * n + j] = i == j ? s.squareRoot() : s / l[j * n + j]
        }
    }
    return l
}

private func transpose(_ a: [Double], _ n: Int) -> [Double] {
    var t = a
    for i in 0..<n { for j in 0..<n { t[j * n + i] = a[i * n + j] } }
    return t
}

/// A⁻¹ by Gauss–Jordan elimination with partial pivoting, in float64.
private func referenceInverse(_ a: [Double], _ n: Int) -> [Double] {
    var m = a, inv = [Double](repeating: 0, count: n * n)
    for i in 0..<n { inv[i * n + i] = 1 }
    for c in 0..<n {
        var p = c
        for r in c..<n where abs(m[r * n + c]) > abs(m[p * n + c]) { p = r }
        for k in 0..<n { m.swapAt(c * n + k, p * n + k); inv.swapAt(c * n + k, p * n + k) }
        let d = m[c * n + c]
        for k in 0..<n { m[c * n + k] /= d; inv[c * n + k] /= d }
        for r in 0..<n where r != c {
            let f = m[r * n + c]
            if f == 0 { continue }
            for k in 0..<n { m[r * n + k] -= f * m[c * n + k]; inv[r * n + k] -= f * inv[c * n + k] }
        }
    }
    return inv
}

/// A random symmetric positive definite matrix BᵀB/n + δI, with a condition number in the hundreds,
/// like a damped calibration Hessian. Returned in float64, exactly representable in float32.
private func randomSPD(_ n: Int, seed: UInt64, damping: Double = 0.05) -> [Double] {
    var rng = SeededGenerator(seed: seed)
    let rows = n + 3
    let b = (0..<(rows * n)).map { _ in Double(Float(rng.nextGaussian())) }
    var a = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n {
        var s = 0.0
        for r in 0..<rows { s += b[r * n + i] * b[r * n + j] }
        a[i * n + j] = s / Double(rows)
    } }
    for i in 0..<n { a[i * n + i] += damping }
    // Round to float32 symmetrically so both precisions factor the same matrix.
    return a.map { Double(Float($0)) }
}

private func maxRelativeError(_ x: [Double], _ ref: [Double]) -> Double {
    let scale = ref.reduce(0) { maxOrNaN($0, abs($1)) }
    var m = 0.0
    for i in 0..<ref.count { m = maxOrNaN(m, abs(x[i] - ref[i])) }
    return m / scale
}

/// Fills the triangle that the routine must not read with garbage, so that reading it would show.
private func poisonStrictTriangle<T: BinaryFloatingPoint>(_ a: inout [T], _ n: Int, upper: Bool) {
    for i in 0..<n { for j in 0..<n where upper ? j > i : j < i { a[i * n + j] = T(1e6 + Double(i - j)) } }
}

@Suite struct LinalgTests {
    @Test(arguments: [1, 7, 64, 130])
    func upperAndLowerFactorsMatchFloat64Reference(n: Int) throws {
        let a = randomSPD(n, seed: UInt64(n))
        let lRef = referenceLowerCholesky(a, n)
        let uRef = transpose(lRef, n)

        var lower = a.map { Float($0) }
        poisonStrictTriangle(&lower, n, upper: true)
        try lower.withUnsafeMutableBufferPointer { try Linalg.cholesky($0.baseAddress!, n: n, triangle: .lower) }
        #expect(maxRelativeError(lower.map(Double.init), lRef) < 1e-5)

        var upper = a.map { Float($0) }
        poisonStrictTriangle(&upper, n, upper: false)
        try upper.withUnsafeMutableBufferPointer { try Linalg.cholesky($0.baseAddress!, n: n, triangle: .upper) }
        #expect(maxRelativeError(upper.map(Double.init), uRef) < 1e-5)
        // The other triangle is exactly zero, not left over from the input.
        for i in 0..<n { for j in 0..<i {
            #expect(upper[i * n + j] == 0)
            #expect(lower[j * n + i] == 0)
        } }

        var upper64 = a
        poisonStrictTriangle(&upper64, n, upper: false)
        try upper64.withUnsafeMutableBufferPointer { try Linalg.cholesky($0.baseAddress!, n: n, triangle: .upper) }
        #expect(maxRelativeError(upper64, uRef) < 1e-12)
    }

    @Test(arguments: [1, 5, 64, 129])
    func inverseMatchesGaussJordan(n: Int) throws {
        let a = randomSPD(n, seed: 100 + UInt64(n))
        let ref = referenceInverse(a, n)

        var inv32 = a.map { Float($0) }
        poisonStrictTriangle(&inv32, n, upper: true)   // only the lower triangle may be read
        try inv32.withUnsafeMutableBufferPointer { try Linalg.choleskyInverse($0.baseAddress!, n: n) }
        // float32: the inverse's error grows with the condition number (here ~1e2), so 1e-4 relative.
        #expect(maxRelativeError(inv32.map(Double.init), ref) < 1e-4)
        for i in 0..<n { for j in 0..<n { #expect(inv32[i * n + j] == inv32[j * n + i]) } }

        var inv64 = a
        poisonStrictTriangle(&inv64, n, upper: true)
        try inv64.withUnsafeMutableBufferPointer { try Linalg.choleskyInverse($0.baseAddress!, n: n) }
        #expect(maxRelativeError(inv64, ref) < 1e-11)
    }

    @Test func upperCholeskyOfInverseIsSparseGPTsFactor() throws {
        let n = 96
        let a = randomSPD(n, seed: 5)
        // U with A⁻¹ = UᵀU, from the float64 references.
        let uRef = transpose(referenceLowerCholesky(referenceInverse(a, n), n), n)
        var u = a.map { Float($0) }
        poisonStrictTriangle(&u, n, upper: true)
        try u.withUnsafeMutableBufferPointer { try Linalg.upperCholeskyOfInverse($0.baseAddress!, n: n) }
        #expect(maxRelativeError(u.map(Double.init), uRef) < 1e-4)
        for i in 0..<n { for j in 0..<i { #expect(u[i * n + j] == 0) } }

        var u64 = a
        try u64.withUnsafeMutableBufferPointer { try Linalg.upperCholeskyOfInverse($0.baseAddress!, n: n) }
        #expect(maxRelativeError(u64, uRef) < 1e-11)
    }

    @Test func indefiniteMatrixThrowsWithTheFailingMinor() {
        // Leading 2×2 minor: 1·1 − 2·2 < 0.
        var a: [Float] = [1, 2, 0,
                          2, 1, 0,
                          0, 0, 1]
        #expect(throws: LinalgError(operation: "Cholesky", order: 3, info: 2)) {
            try a.withUnsafeMutableBufferPointer { try Linalg.cholesky($0.baseAddress!, n: 3, triangle: .upper) }
        }
        let t = Tensor(shape: [3, 3], data: [1, 2, 0, 2, 1, 0, 0, 0, 1])
        do {
            _ = try t.choleskyInverse()
            Issue.record("an indefinite matrix was inverted")
        } catch {
            #expect("\(error)" == "Cholesky of a 3×3 matrix failed: the leading minor of order 2 is not positive definite")
        }
    }

    @Test func tensorWrappersCheckShapeAndAgreeWithPointerForm() throws {
        #expect(throws: TensorShapeError.self) { try Tensor(shape: [2, 3], repeating: 1).cholesky(.upper) }
        let n = 9
        let a = randomSPD(n, seed: 11)
        let t = Tensor(shape: [n, n], data: a.map { Float($0) })
        let l = try t.cholesky(.lower)
        // L·Lᵀ reproduces A.
        let llt = l.matmul(l, transposeOther: true)
        #expect(maxRelativeError(llt.data.map(Double.init), a) < 1e-5)
        let inv = try t.choleskyInverse()
        let eye = t.matmul(inv)
        for i in 0..<n { for j in 0..<n { #expect(abs(eye.data[i * n + j] - (i == j ? 1 : 0)) < 1e-4) } }
        #expect(try Tensor(shape: [0, 0], data: []).cholesky(.upper).shape == [0, 0])
    }
}

@Suite struct SyrkTests {
    @Test func gramOfColumnsMatchesFloat64() {
        var rng = SeededGenerator(seed: 21)
        let k = 57, n = 13
        let a = (0..<(k * n)).map { _ in Float(rng.nextGaussian()) }
        var c32 = [Float](repeating: -7, count: n * n)
        var c64 = [Double](repeating: -7, count: n * n)
        let a64 = a.map(Double.init)
        BLAS.syrkTransposed(n: n, k: k, a: a, c: &c32, triangle: .lower)
        BLAS.syrkTransposed(n: n, k: k, alpha: 2, a: a64, beta: 0, c: &c64, triangle: .upper)
        for i in 0..<n { for j in 0..<n {
            var s = 0.0
            for r in 0..<k { s += a64[r * n + i] * a64[r * n + j] }
            if j <= i { #expect(abs(Double(c32[i * n + j]) - s) <= 1e-4 * max(1, abs(s))) }
            else { #expect(c32[i * n + j] == -7) }                 // the other triangle is untouched
            if j >= i { #expect(abs(c64[i * n + j] - 2 * s) <= 1e-12 * max(1, abs(s))) }
            else { #expect(c64[i * n + j] == -7) }
        } }
    }
}

/// A Gram matrix large enough to be cut into bands across the workers: both triangles, with beta,
/// against float64; the other triangle untouched; the same bits inside a single-thread scope and from
/// many threads at once.
@Suite struct SplitSyrkTests {
    @Test(arguments: [Triangle.lower, Triangle.upper])
    func bandedGramMatchesFloat64(triangle: Triangle) {
        var rng = SeededGenerator(seed: 22)
        let k = 300, n = 203
        let a = (0..<(k * n)).map { _ in Float(rng.nextGaussian()) }
        let start = (0..<(n * n)).map { _ in Float(rng.nextGaussian()) }
        func gram() -> [Float] {
            var c = start
            BLAS.syrkTransposed(n: n, k: k, alpha: 0.5, a: a, beta: 2, c: &c, triangle: triangle)
            return c
        }
        let c = gram()
        let unsplit = BLAS.singleThreaded { gram() }
        #expect(unsplit == c ? true : false, "the single-thread run differs")
        let results = LockedArray(Array(repeating: [Float](), count: 4))
        DispatchQueue.concurrentPerform(iterations: 4) { results.set($0, gram()) }
        #expect(results.values.allSatisfy { $0 == c }, "a concurrent run differs")
        var worst = 0.0
        for i in 0..<n { for j in 0..<n {
            let inside = triangle == .lower ? j <= i : j >= i
            if !inside { #expect(c[i * n + j] == start[i * n + j]); continue }
            var s = 0.0, size = 0.0
            for r in 0..<k { let t = Double(a[r * n + i]) * Double(a[r * n + j]); s += t; size += abs(t) }
            let ref = 0.5 * s + 2 * Double(start[i * n + j])
            let d = abs(Double(c[i * n + j]) - ref) / (0.5 * size + 2 * abs(Double(start[i * n + j])))
            worst = maxOrNaN(worst, d)
        } }
        #expect(worst < 1e-6)
    }
}
