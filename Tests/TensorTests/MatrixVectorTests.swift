import Testing
import Tensor
import TestSupport

/// `BLAS.matrixVector` (sgemv split by rows across the workers) against float64 dot products.
@Suite struct MatrixVectorTests {
    static func random(_ n: Int, _ g: inout SeededGenerator) -> [Float] { (0..<n).map { _ in Float(g.nextGaussian()) } }

    /// A product big enough to be split (1,000 × 600 = 600K multiply-adds), with a row stride wider than
    /// the row, α, and β = 1 accumulating into y; the same bits inside a single-threaded scope.
    @Test func matchesFloat64AndDoesNotDependOnTheSplit() {
        var g = SeededGenerator(seed: 21)
        let m = 1_000, n = 600, lda = 640
        let a = Self.random(m * lda, &g), x = Self.random(n, &g), y0 = Self.random(m, &g)
        var y = y0
        a.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            BLAS.matrixVector(m: m, n: n, alpha: 0.5, a: ap.baseAddress!, lda: lda, x: xp.baseAddress!, beta: 1, y: yp.baseAddress!)
        } } }
        var reference = [Double](repeating: 0, count: m)
        for r in 0..<m {
            var s = 0.0
            for c in 0..<n { s += Double(a[r * lda + c]) * Double(x[c]) }
            reference[r] = 0.5 * s + Double(y0[r])
        }
        #expect(relativeError(y, reference) <= 1e-6)
        var serial = y0
        BLAS.singleThreaded {
            a.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in serial.withUnsafeMutableBufferPointer { yp in
                BLAS.matrixVector(m: m, n: n, alpha: 0.5, a: ap.baseAddress!, lda: lda, x: xp.baseAddress!, beta: 1, y: yp.baseAddress!)
            } } }
        }
        #expect(serial == y)
    }

    /// A small product (one part), β = 0 overwriting y (even NaN there).
    @Test func smallProductOverwrites() {
        var g = SeededGenerator(seed: 22)
        let m = 7, n = 5
        let a = Self.random(m * n, &g), x = Self.random(n, &g)
        var y = [Float](repeating: .nan, count: m)
        BLAS.matrixVector(m: m, n: n, a: a, x: x, y: &y)
        let reference = (0..<m).map { r in (0..<n).reduce(0.0) { $0 + Double(a[r * n + $1]) * Double(x[$1]) } }
        #expect(relativeError(y, reference) <= 1e-6)
    }
}
