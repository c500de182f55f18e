import CBLASRuntime
import Foundation
import Tensor
import Testing
import TestSupport

/// Both copies of the elementwise kernels (baseline SSE2 and, where the CPU has it, AVX2 with FMA), each
/// against double-precision references, on lengths that leave every possible tail.
@Suite struct VectorMathTests {
    /// The copies this CPU can run, with their names.
    static var copies: [(String, llmprune_vector_kernels)] {
        var all = [("baseline", llmprune_vector_kernels_baseline().pointee)]
        if let avx2 = llmprune_vector_kernels_avx2() { all.append(("avx2", avx2.pointee)) }
        return all
    }

    static func values(_ n: Int, seed: UInt64, scale: Double) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { _ in Float((rng.nextDouble() * 2 - 1) * scale) }
    }

    /// Largest |got − want| / |want|; NaN when any value is NaN (so a comparison with it fails).
    static func worstRelative(_ got: [Float], _ want: [Double]) -> Double {
        zip(got, want).reduce(0) { worst, pair in maxOrNaN(worst, abs(Double(pair.0) - pair.1) / maxOrNaN(abs(pair.1), 1e-30)) }
    }

    @Test func theCopyInUseIsTheWidestTheCPUHas() {
        let avx2 = llmprune_vector_kernels_avx2() != nil
        #expect(VectorMath.instructionSet == (avx2 ? "avx2+fma" : "sse2"))
        let f = BLASRuntime.current.cpuFeatures
        #expect(avx2 == (f.contains("avx2") && f.contains("fma")))
    }

    @Test func expOfEachCopyMatchesDoubleExpAndItsLimits() {
        for (name, k) in Self.copies {
            var worst = 0.0
            var x: Float = -87
            while x < 88.37 {
                let got = Double(k.exp1(x)), want = Foundation.exp(Double(x))
                let e = abs(got - want) / want
                worst = maxOrNaN(worst, e)
                x += 0.0137
            }
            #expect(worst < 3e-7, "\(name): worst relative error \(worst)")
            #expect(k.exp1(-100) == 0 && k.exp1(-.infinity) == 0 && k.exp1(0) == 1, "\(name)")
            #expect(k.exp1(100) == .infinity && k.exp1(88.5) == .infinity && k.exp1(.infinity) == .infinity, "\(name)")
            #expect(k.exp1(.nan).isNaN, "\(name): NaN in must give NaN out")
        }
    }

    @Test func expShiftedAndItsSumOnEveryTail() {
        for (name, k) in Self.copies {
            for n in [1, 7, 8, 9, 15, 16, 17, 100] {
                let x = Self.values(n, seed: UInt64(n), scale: 6)
                // The kernel subtracts in float32 (as the callers define it); the reference exponentiates that difference.
                let want = x.map { Foundation.exp(Double($0 - Float(1.5))) }
                var y = x
                let sum = y.withUnsafeMutableBufferPointer { k.exp_shifted($0.baseAddress!, n, 1.5) }
                let wantSum = want.reduce(0, +)
                #expect(Self.worstRelative(y, want) < 3e-7, "\(name) n=\(n)")
                #expect(abs(Double(sum) - wantSum) / wantSum < 1e-6, "\(name) n=\(n): sum \(sum) vs \(wantSum)")
                let doubleSum = x.withUnsafeBufferPointer { k.exp_shifted_sum($0.baseAddress!, n, 1.5) }
                #expect(abs(doubleSum - wantSum) / wantSum < 3e-7, "\(name) n=\(n): double sum \(doubleSum) vs \(wantSum)")
            }
            var withNaN: [Float] = [0, 1, .nan, 2, 0, 0, 0, 0, 3]
            let sum = withNaN.withUnsafeMutableBufferPointer { k.exp_shifted($0.baseAddress!, 9, 0) }
            #expect(sum.isNaN && withNaN[2].isNaN && withNaN[1] == k.exp1(1), "\(name): a NaN score must reach the sum")
        }
    }

    @Test func maximumOnEveryTail() {
        for (name, k) in Self.copies {
            for n in [1, 5, 8, 9, 23, 64] {
                for at in [0, n / 2, n - 1] {
                    var x = Self.values(n, seed: UInt64(100 + n), scale: 3)
                    x[at] = 7
                    #expect(x.withUnsafeBufferPointer { k.maximum($0.baseAddress!, n) } == 7, "\(name) n=\(n) at \(at)")
                }
            }
        }
    }

    @Test func siluMultiplyAndItsGradientsMatchDouble() {
        func sigmoid(_ g: Double) -> Double { 1 / (1 + Foundation.exp(-g)) }
        for (name, k) in Self.copies {
            for n in [3, 8, 13, 101] {
                let g = Self.values(n, seed: UInt64(200 + n), scale: 8), u = Self.values(n, seed: UInt64(300 + n), scale: 2)
                let d = Self.values(n, seed: UInt64(400 + n), scale: 1)
                var out = [Float](repeating: 0, count: n)
                k.silu_mul(&out, g, u, n)
                let want = (0..<n).map { Double(g[$0]) * sigmoid(Double(g[$0])) * Double(u[$0]) }
                #expect(Self.worstRelative(out, want) < 1e-6, "\(name) n=\(n)")
                var dgate = [Float](repeating: 0, count: n), dup = [Float](repeating: 0, count: n)
                k.silu_mul_backward(&dgate, &dup, d, g, u, n)
                let s = g.map { sigmoid(Double($0)) }
                let wantUp = (0..<n).map { Double(d[$0]) * Double(g[$0]) * s[$0] }
                let wantGate = (0..<n).map { i -> Double in
                    let gi = Double(g[i]), product = Double(d[i]) * Double(u[i]) * s[i]
                    return product * (1 + gi * (1 - s[i]))
                }
                #expect(Self.worstRelative(dup, wantUp) < 1e-6, "\(name) n=\(n): dup")
                #expect(Self.worstRelative(dgate, wantGate) < 1e-5, "\(name) n=\(n): dgate")
            }
            // dgate may alias dact.
            let g = Self.values(11, seed: 5, scale: 4), u = Self.values(11, seed: 6, scale: 1)
            var d = Self.values(11, seed: 7, scale: 1)
            var separate = [Float](repeating: 0, count: 11), dup = [Float](repeating: 0, count: 11)
            k.silu_mul_backward(&separate, &dup, d, g, u, 11)
            d.withUnsafeMutableBufferPointer { dp in k.silu_mul_backward(dp.baseAddress!, &dup, dp.baseAddress!, g, u, 11) }
            #expect(d == separate, "\(name): in place")
        }
    }

    /// The k lowest of each group of four, ties to the earlier entry: against a stable sort of each group.
    @Test func pruneLowestOfFourAgreesWithAStableSort() {
        for (name, kernels) in Self.copies {
            for groups in [1, 7, 8, 9, 33] {
                // Few distinct values, so ties are common.
                var rng = SeededGenerator(seed: UInt64(groups))
                let scores = (0..<(4 * groups)).map { _ in Float(Int(rng.nextDouble() * 3)) }
                for k in 0...4 {
                    var got = [UInt8](repeating: 7, count: 4 * groups)
                    kernels.prune_lowest_of_4(scores, groups, Int32(k), &got)
                    var want = [UInt8](repeating: 0, count: 4 * groups)
                    for g in 0..<groups {
                        let order = (0..<4).sorted { (scores[4 * g + $0], $0) < (scores[4 * g + $1], $1) }
                        for i in order.prefix(k) { want[4 * g + i] = 1 }
                    }
                    #expect(got == want, "\(name): \(groups) groups, k = \(k)")
                }
            }
        }
    }

    @Test func sumsOfSquaresInDoubleOnEveryTail() {
        for (name, k) in Self.copies {
            for n in [1, 7, 8, 9, 31, 576] {
                let x = Self.values(n, seed: UInt64(500 + n), scale: 50)
                let want = x.reduce(0.0) { $0 + Double($1) * Double($1) }
                let got = x.withUnsafeBufferPointer { k.sum_squares($0.baseAddress!, n) }
                #expect(abs(got - want) / want < 1e-14, "\(name) n=\(n): \(got) vs \(want)")
                var acc = (0..<n).map { Double($0) }
                acc.withUnsafeMutableBufferPointer { ap in x.withUnsafeBufferPointer { k.add_squares(ap.baseAddress!, $0.baseAddress!, n) } }
                let wantAcc = (0..<n).map { Double($0) + Double(x[$0]) * Double(x[$0]) }
                let worst = zip(acc, wantAcc).map { abs($0 - $1) / maxOrNaN($1, 1e-300) }.maxOrNaN()!
                #expect(worst < 1e-15, "\(name) n=\(n): worst \(worst)")
            }
            let nan: [Float] = [1, 2, .nan, 3, 4, 5, 6, 7, 8]
            #expect(nan.withUnsafeBufferPointer { k.sum_squares($0.baseAddress!, 9) }.isNaN, "\(name)")
        }
    }

    @Test func rmspropStepOfEachCopyMatchesDouble() {
        for (name, k) in Self.copies {
            for n in [1, 8, 13, 40] {
                let p0 = Self.values(n, seed: UInt64(600 + n), scale: 1), v0 = Self.values(n, seed: UInt64(700 + n), scale: 1).map { $0 * $0 }
                // Gradients from 1e-9 to 10, so ε matters for the small ones.
                let g = (0..<n).map { i in Float(pow(10.0, Double(i % 11) - 9)) * (i % 2 == 0 ? 1 : -1) }
                var p = p0, v = v0
                k.rmsprop_update(&p, &v, g, n, 0.99, 3e-3, 1e-8)
                for i in 0..<n {
                    let wantV = 0.99 * Double(v0[i]) + 0.01 * Double(g[i]) * Double(g[i])
                    let wantP = Double(p0[i]) - 3e-3 * Double(g[i]) / (wantV.squareRoot() + 1e-8)
                    #expect(abs(Double(v[i]) - wantV) <= 1e-6 * wantV, "\(name) n=\(n) i=\(i): v \(v[i]) vs \(wantV)")
                    #expect(abs(Double(p[i]) - wantP) <= 1e-6 * maxOrNaN(abs(wantP), 1e-3), "\(name) n=\(n) i=\(i): θ \(p[i]) vs \(wantP)")
                }
            }
        }
    }
}
