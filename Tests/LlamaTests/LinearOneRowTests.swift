import Llama
import Testing
import Tensor
import TestSupport

/// `Linear.forward` on one row (a decode step's products, through `BLAS.matrixVector`) against float64:
/// plain, with a bias, and accumulating into a residual.
@Suite struct LinearOneRowTests {
    @Test func oneRowMatchesFloat64() {
        var g = SeededGenerator(seed: 31)
        let inFeatures = 576, outFeatures = 1_536
        let w = (0..<(outFeatures * inFeatures)).map { _ in Float(g.nextGaussian() * 0.05) }
        let x = (0..<inFeatures).map { _ in Float(g.nextGaussian()) }
        let bias = (0..<outFeatures).map { _ in Float(g.nextGaussian()) }
        let residual = (0..<outFeatures).map { _ in Float(g.nextGaussian()) }
        func product(_ o: Int) -> Double { (0..<inFeatures).reduce(0.0) { $0 + Double(w[o * inFeatures + $1]) * Double(x[$1]) } }
        for (withBias, accumulate) in [(false, false), (true, false), (true, true), (false, true)] {
            var out = accumulate ? residual : [Float](repeating: .nan, count: outFeatures)
            bias.withUnsafeBufferPointer { b in
                Linear.forward(out: &out, inp: x, weight: w, bias: withBias ? b.baseAddress! : nil, rows: 1,
                               inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate)
            }
            let reference = (0..<outFeatures).map { o in
                product(o) + (withBias ? Double(bias[o]) : 0) + (accumulate ? Double(residual[o]) : 0)
            }
            #expect(relativeError(out, reference) <= 1e-6, "bias \(withBias), accumulate \(accumulate)")
        }
    }
}
