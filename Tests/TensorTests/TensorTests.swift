import Foundation
import Testing
import Tensor
import TestSupport

/// Reference matrix product in float64, the higher-precision check for the BLAS path.
private func referenceMatmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n {
        var s = 0.0
        for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
        c[i * n + j] = s
    } }
    return c
}

private func randomTensor(_ shape: [Int], _ rng: inout SeededGenerator) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, data: (0..<n).map { _ in Float(rng.nextGaussian()) })
}

@Suite struct BLASTests {
    @Test func matmulMatchesFloat64Reference() {
        var rng = SeededGenerator(seed: 1)
        let a = randomTensor([37, 53], &rng), b = randomTensor([53, 29], &rng)
        let c = a.matmul(b)
        let ref = referenceMatmul(a.data, b.data, m: 37, k: 53, n: 29)
        for i in 0..<ref.count { #expect(abs(Double(c.data[i]) - ref[i]) <= 1e-4 * max(1, abs(ref[i]))) }
    }

    @Test func transposedOperandsMatchExplicitTranspose() {
        var rng = SeededGenerator(seed: 2)
        let a = randomTensor([11, 7], &rng), b = randomTensor([5, 11], &rng)
        // aᵀ (7, 11) · bᵀ (11, 5)
        let c = a.matmul(b, transposeSelf: true, transposeOther: true)
        var at = [Float](repeating: 0, count: 77), bt = [Float](repeating: 0, count: 55)
        for i in 0..<11 { for j in 0..<7 { at[j * 11 + i] = a.data[i * 7 + j] } }
        for i in 0..<5 { for j in 0..<11 { bt[j * 5 + i] = b.data[i * 11 + j] } }
        let ref = referenceMatmul(at, bt, m: 7, k: 11, n: 5)
        #expect(c.shape == [7, 5])
        for i in 0..<ref.count { #expect(abs(Double(c.data[i]) - ref[i]) <= 1e-4 * max(1, abs(ref[i]))) }
    }

    @Test func linearIsInputTimesWeightTransposePlusBias() {
        var rng = SeededGenerator(seed: 3)
        let x = randomTensor([2, 3, 6], &rng), w = randomTensor([4, 6], &rng), bias = randomTensor([4], &rng)
        let y = x.linear(w, bias: bias)
        #expect(y.shape == [2, 3, 4])
        for r in 0..<6 { for o in 0..<4 {
            var s = Double(bias.data[o])
            for i in 0..<6 { s += Double(x.data[r * 6 + i]) * Double(w.data[o * 6 + i]) }
            #expect(abs(Double(y.data[r * 4 + o]) - s) <= 1e-5 * max(1, abs(s)))
        } }
    }
}

/// No process-wide BLAS setting changes at run time: OpenBLAS stays on one thread, `singleThreaded`
/// scopes are per thread, and a GEMM gives the same bits whatever runs beside it.
@Suite struct BLASThreadScopeTests {
    @Test func openBLASRunsOnOneThreadForGood() {
        #expect(BLAS.threads == 1)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            BLAS.singleThreaded { if i % 3 == 0 { BLAS.singleThreaded { usleep(100) } } }
        }
        #expect(BLAS.threads == 1)
    }

    @Test func scopesArePerThread() {
        #expect(!BLAS.isSingleThreadedHere)
        BLAS.enterSingleThreaded()
        BLAS.enterSingleThreaded()
        #expect(BLAS.isSingleThreadedHere)
        let otherThread = AtomicFlag()
        let done = DispatchSemaphore(value: 0)
        Thread { if BLAS.isSingleThreadedHere { otherThread.set() }; done.signal() }.start()
        done.wait()
        #expect(!otherThread.value)
        BLAS.leaveSingleThreaded()
        #expect(BLAS.isSingleThreadedHere)
        BLAS.leaveSingleThreaded()
        #expect(!BLAS.isSingleThreadedHere)
    }

    /// A product large enough to be split across the workers: the same bits split (on this thread),
    /// unsplit (inside a scope), and computed from many threads at once; and equal to a float64
    /// reference to float32 rounding.
    @Test(arguments: [(301, 257, 190, false, false), (37, 1001, 300, true, true), (515, 64, 129, false, true)])
    func splitProductsAreBitIdenticalUnderAnyConcurrency(m: Int, n: Int, k: Int, ta: Bool, tb: Bool) {
        var rng = SeededGenerator(seed: UInt64(m * 31 + n))
        let a = (0..<(m * k)).map { _ in Float(rng.nextGaussian()) }
        let b = (0..<(k * n)).map { _ in Float(rng.nextGaussian()) }
        func product() -> [Float] {
            var c = [Float](repeating: 0.5, count: m * n)
            BLAS.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1.5, a: a, b: b, beta: 0.25, c: &c)
            return c
        }
        let split = product()
        let unsplit = BLAS.singleThreaded { product() }
        let crowd = Array(repeating: [Float](), count: 8)
        let results = LockedArray(crowd)
        DispatchQueue.concurrentPerform(iterations: 8) { i in results.set(i, product()) }
        #expect(split == unsplit ? true : false, "the unsplit run differs")
        #expect(results.values.allSatisfy { $0 == split }, "a concurrent run differs")
        // Against float64, relative to Σ|terms| (the scale of float32's rounding in a sum).
        var worst = 0.0
        for i in 0..<m { for j in 0..<n {
            var s = 0.0, size = 0.0
            for p in 0..<k {
                let x = Double(ta ? a[p * m + i] : a[i * k + p]), y = Double(tb ? b[j * k + p] : b[p * n + j])
                s += x * y
                size += abs(x * y)
            }
            let d = abs(Double(split[i * n + j]) - (1.5 * s + 0.125)) / (1.5 * size + 0.125)
            worst = maxOrNaN(worst, d)
        } }
        #expect(worst < 1e-6)
    }
}

/// An array that many threads fill at distinct indices.
final class LockedArray<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [T]
    init(_ initial: [T]) { storage = initial }
    func set(_ i: Int, _ v: T) { lock.lock(); storage[i] = v; lock.unlock() }
    var values: [T] { lock.lock(); defer { lock.unlock() }; return storage }
}

/// A flag that any thread may raise.
final class AtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    func set() { lock.lock(); raised = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return raised }
}

@Suite struct RandomTests {
    @Test func sequenceIsFixedForASeed() {
        // xoshiro256** seeded by SplitMix64: the first outputs scripts/README.md publishes, printed by
        // scripts/seeded_rng.py (an independent Python port of the published algorithms).
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42), c = SeededGenerator(seed: 43)
        let xa = (0..<8).map { _ in a.next() }, xb = (0..<8).map { _ in b.next() }, xc = (0..<8).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
        #expect(Array(xa.prefix(5)) == [1546998764402558742, 6990951692964543102, 12544586762248559009,
                                        17057574109182124193, 18295552978065317476])
        var zero = SeededGenerator(seed: 0)
        #expect((0..<3).map { _ in zero.next() } == [11091344671253066420, 13793997310169335082, 1900383378846508768])
    }

    /// The bounded draws of scripts/README.md's table (seeded_rng.py): Lemire's method with its rejection
    /// (2^62 + 1 rejects one of the first six raw draws), doubles from the top 53 bits, partial Fisher–Yates.
    @Test func derivedDrawsAreThePublishedOnes() {
        func fresh() -> SeededGenerator { SeededGenerator(seed: 42) }
        var g = fresh()
        #expect((0..<10).map { _ in g.nextInt(below: 10) } == [0, 3, 6, 9, 9, 7, 7, 8, 7, 5])
        g = fresh()
        #expect((0..<3).map { _ in g.nextDouble() } == [0.08386297105988216, 0.3789802506626686, 0.6800434110281394])
        g = fresh()
        #expect(g.sample(5, from: 100) == [8, 38, 68, 92, 99])
        g = fresh()
        #expect(g.sample(32, from: 128) == [10, 49, 87, 118, 126, 99, 93, 109, 5, 78, 90, 45, 104, 1, 95, 114,
                                            85, 111, 14, 96, 30, 40, 68, 86, 56, 75, 66, 106, 91, 51, 70, 28])
        g = fresh()
        #expect((0..<5).map { _ in g.nextInt(below: (1 << 62) + 1) } == [386749691100639685, 1747737923241135775,
                                                                          3136146690562139752, 4573888244516329369, 3549796707516437646])
        var zero = SeededGenerator(seed: 0)
        #expect(zero.sample(32, from: 128) == [76, 95, 14, 55, 94, 127, 57, 71, 110, 118, 23, 18, 24, 88, 70, 48,
                                               4, 37, 78, 25, 53, 73, 56, 13, 126, 22, 91, 119, 12, 117, 43, 59])
    }

    @Test func boundedIntegersAreUniformEnough() {
        var g = SeededGenerator(seed: 7)
        var counts = [Int](repeating: 0, count: 10)
        for _ in 0..<100_000 { counts[g.nextInt(below: 10)] += 1 }
        for c in counts { #expect(abs(c - 10_000) < 500) }
    }

    @Test func sampleGivesDistinctIndices() {
        var g = SeededGenerator(seed: 9)
        let s = g.sample(50, from: 60)
        #expect(Set(s).count == 50)
        #expect(s.allSatisfy { $0 >= 0 && $0 < 60 })
    }
}

@Suite struct ParallelTests {
    @Test func parallelForVisitsEveryIndexOnce() {
        let n = 10_007
        let hits = UnsafeMutableBufferPointer<Int32>.allocate(capacity: n)
        hits.initialize(repeating: 0)
        defer { hits.deallocate() }
        parallelFor(n) { i in hits[i] += 1 }
        #expect(hits.allSatisfy { $0 == 1 })
    }
}

/// Every comparison the tests make must fail on a NaN output: an all-NaN result must not pass for
/// "close to the reference".
@Suite struct NaNAwareComparisonTests {
    @Test func maxAbsDifferenceIsNaNWhenEitherSideHoldsNaN() {
        let ref = Tensor(shape: [4], data: [1, 2, 3, 4])
        let allNaN = Tensor(shape: [4], data: [Float](repeating: .nan, count: 4))
        let oneNaN = Tensor(shape: [4], data: [1, .nan, 3, 4])
        #expect(allNaN.maxAbsDifference(ref).isNaN)
        #expect(oneNaN.maxAbsDifference(ref).isNaN)
        #expect(ref.maxAbsDifference(oneNaN).isNaN)
        #expect(!(oneNaN.maxAbsDifference(ref) <= 1e-3))
        // ∞ − ∞ is NaN too.
        let inf = Tensor(shape: [1], data: [.infinity])
        #expect(inf.maxAbsDifference(inf).isNaN)
        #expect(ref.maxAbsDifference(ref) == 0)
    }

    @Test func relativeErrorIsNaNWhenEitherSideHoldsNaN() {
        let ref = Tensor(shape: [3], data: [1, -2, 0.5])
        let bad = Tensor(shape: [3], data: [1, -2, .nan])
        #expect(bad.relativeError(to: ref).isNaN)
        #expect(ref.relativeError(to: bad).isNaN)
        #expect(!(bad.relativeError(to: ref) < 1e-6))
        #expect(Tensor(shape: [3], data: [1, -2, 0.25]).relativeError(to: ref) == 0.125)
    }

    @Test func maxPropagatingNaNPropagatesInBothArgumentOrders() {
        #expect(maxPropagatingNaN(Float(0), .nan).isNaN)
        #expect(maxPropagatingNaN(Float.nan, 0).isNaN)
        #expect(maxPropagatingNaN(2.0, 3.0) == 3.0)
        // The trap the helper avoids: Swift's max skips a NaN in the second position.
        #expect(!max(Float(0), .nan).isNaN || !max(Float.nan, 0).isNaN)
    }
}
