import Foundation
import Llama
import Tensor
import Testing
import TestSupport

/// A random block: weights N(0, σ²) with σ = 1/√in (so activations stay O(1) and the softmax is far
/// from uniform), norm weights around 1, biases N(0, 0.1²) where asked.
func randomBackwardBlock(_ g: BlockGeometry, bias: [Bool] = Array(repeating: false, count: 7), seed: UInt64) -> DecoderBlockWeights {
    var rng = SeededGenerator(seed: seed)
    func tensor(_ shape: [Int], _ sigma: Double, _ mean: Double = 0) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(mean + sigma * rng.nextGaussian()) })
    }
    let weights = LinearKind.allCases.map { m -> Tensor in
        let (o, i) = g.shape(of: m)
        // Larger q/k weights sharpen the attention so its gradient is exercised away from uniform.
        let gain: Double = (m == .q || m == .k) ? 2.5 : 1
        return tensor([o, i], gain / Double(i).squareRoot())
    }
    let biases = LinearKind.allCases.map { m in bias[m.index] ? tensor([g.shape(of: m).out], 0.1) : nil }
    // Norm weights near 1 as used: stored near 0 in the (1 + w) form.
    let normMean: Double = g.normForm == .offset ? 0 : 1
    let sandwich = g.normPlacement == .sandwich
    return DecoderBlockWeights(weights: weights, biases: biases,
                               inputNorm: tensor([g.hidden], 0.2, normMean), postAttentionNorm: tensor([g.hidden], 0.2, normMean),
                               queryNorm: g.qkNorm ? tensor([g.headDim], 0.2, normMean) : nil,
                               keyNorm: g.qkNorm ? tensor([g.headDim], 0.2, normMean) : nil,
                               attentionOutputNorm: sandwich ? tensor([g.hidden], 0.2, normMean) : nil,
                               mlpOutputNorm: sandwich ? tensor([g.hidden], 0.2, normMean) : nil)
}

func randomBackwardInput(T: Int, C: Int, seed: UInt64) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    return Tensor(shape: [T, C], data: (0..<(T * C)).map { _ in Float(rng.nextGaussian()) })
}

/// The three scalar losses Wanda++ and the tests differentiate, as functions of the block output y.
enum BlockLoss {
    /// ⟨R, y⟩ for a fixed random R: exercises every output element with an independent weight.
    case projection([Double])
    /// ‖y‖₂ (Frobenius): the RGS regional loss.
    case norm
    /// Σ (target − y)²: the RO loss with the dense block's output as target.
    case squaredError(target: [Double])

    func value(_ y: [Double]) -> Double {
        switch self {
        case .projection(let r): return zip(r, y).reduce(0) { $0 + $1.0 * $1.1 }
        case .norm: return y.reduce(0) { $0 + $1 * $1 }.squareRoot()
        case .squaredError(let t): return zip(t, y).reduce(0) { $0 + ($1.1 - $1.0) * ($1.1 - $1.0) }
        }
    }

    /// dL/dy at the float32 output y, in float32 (what a caller of the backward would feed it).
    func gradient(_ y: [Float]) -> [Float] {
        switch self {
        case .projection(let r): return r.map { Float($0) }
        case .norm:
            let n = Float(y.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot())
            return y.map { $0 / n }
        case .squaredError(let t): return zip(t, y).map { 2 * ($1 - Float($0)) }
        }
    }
}

/// Central differences in float64 of `loss(naive(x))` w.r.t. every element of the selected parameter.
private func centralDifferences(count: Int, step: Double, _ f: (Int, Double) -> Double) -> [Double] {
    (0..<count).map { i in (f(i, step) - f(i, -step)) / (2 * step) }
}

/// max|a − b| / max|b|: the error of a gradient tensor relative to its largest reference entry (NaN on a
/// NaN or a count mismatch).
private func gradientError(_ a: [Float], _ b: [Double]) -> Double { relativeError(a, b) }

@Suite struct BackwardFiniteDifferenceTests {
    // Float32 backward against float64 central differences. The FD gradient is exact to ~1e-10 here
    // (step 1e-5: truncation ~h² ≈ 1e-10, cancellation ~1e-16/h ≈ 1e-11), so the comparison measures the
    // float32 backward's own rounding: ~1e-6 relative for these sums of a few dozen terms. 1e-4 leaves
    // two orders of margin while any wrong or missing term (a sign, a transposed index, a lost residual
    // path) produces errors of order 1.
    static let tolerance = 1e-4
    static let step = 1e-5

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let g: BlockGeometry
        let bias: [Bool]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "GQA 4 heads / 2 KV", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 2, rmsNormEps: 1e-5),
             bias: Array(repeating: false, count: 7)),
        Case(name: "MHA, head size 6 ≠ C/nh", g: BlockGeometry(hidden: 8, intermediate: 10, heads: 2, kvHeads: 2, headDim: 6, rmsNormEps: 1e-6),
             bias: Array(repeating: false, count: 7)),
        Case(name: "MQA with every bias", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 1, rmsNormEps: 1e-5),
             bias: Array(repeating: true, count: 7)),
        Case(name: "GQA, sliding window 3", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 2, rmsNormEps: 1e-5,
                                                           attentionWindow: 3),
             bias: [true, true, true, false, false, false, false]),
        // Gemma's block recipe: norms (1 + w)·x̂ (with weights near 0, as Gemma stores them, the effective
        // weight is near 1), a GELU-tanh gate, attention scaled by 1/√query_pre_attn_scalar ≠ 1/√hd.
        Case(name: "(1+w) norms, GELU-tanh, scale 1/√10", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 1,
                                                                          headDim: 6, rmsNormEps: 1e-6, normForm: .offset,
                                                                          activation: .geluTanh, attentionScale: 1 / Float(10).squareRoot()),
             bias: Array(repeating: false, count: 7)),
        // Gemma 3's whole block: the above plus QK-norm and sandwich norms, with a sliding window.
        Case(name: "Gemma 3: sandwich norms, QK-norm, window 4", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 1,
                                                                                headDim: 6, rmsNormEps: 1e-6, attentionWindow: 4,
                                                                                normForm: .offset, activation: .geluTanh,
                                                                                attentionScale: 1 / Float(10).squareRoot(),
                                                                                normPlacement: .sandwich, qkNorm: true),
             bias: Array(repeating: false, count: 7)),
        // Gemma 2's: sandwich norms without QK-norm, attention scores soft-capped at 2 (active: the scores here
        // reach several units), a window.
        Case(name: "Gemma 2: soft-capped attention", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 2,
                                                                     rmsNormEps: 1e-6, attentionWindow: 5, normForm: .offset,
                                                                     activation: .geluTanh, attentionScale: 0.4,
                                                                     normPlacement: .sandwich, attentionSoftcap: 2),
             bias: Array(repeating: false, count: 7)),
        // Qwen3's: QK-norm in the w·x̂ form, no biases.
        Case(name: "Qwen3: QK-norm", g: BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 2, rmsNormEps: 1e-6, qkNorm: true),
             bias: Array(repeating: false, count: 7)),
    ]

    static func losses(_ p: DecoderBlockWeights, _ g: BlockGeometry, x: Tensor, rope: RoPE) -> [(String, BlockLoss, DecoderBlockWeights)] {
        let T = x.shape[0]
        var rng = SeededGenerator(seed: 99)
        let r = (0..<(T * g.hidden)).map { _ in rng.nextGaussian() }
        // The RO loss compares a perturbed ("sparse") copy against the dense block's output.
        let dense = NaiveBackwardBlock(p, geometry: g, theta: 10000, positions: rope.positions).forward(x.data.map(Double.init), T: T)
        var sparse = p
        for m in LinearKind.allCases {
            for i in stride(from: 0, to: sparse.weights[m.index].count, by: 2) { sparse.weights[m.index].data[i] = 0 }
        }
        return [("⟨R, y⟩", .projection(r), p), ("‖y‖₂", .norm, p), ("Σ(y_dense − y)²", .squaredError(target: dense), sparse)]
    }

    @Test(arguments: cases)
    func weightAndInputGradientsMatchFloat64FiniteDifferences(_ c: Case) throws {
        let g = c.g, T = 7
        let rope = RoPE(headDim: g.headDim, theta: 10000, scaling: nil, positions: T)
        let base = randomBackwardBlock(g, bias: c.bias, seed: 7)
        let x = randomBackwardInput(T: T, C: g.hidden, seed: 11)
        let tape = try DecoderBlock(geometry: g, capacity: T)

        for (lossName, loss, p) in Self.losses(base, g, x: x, rope: rope) {
            let y = try tape.forward(x, parameters: p, rope: rope)
            var grads = BlockGradients(like: p)
            let dx = try tape.backward(Tensor(shape: y.shape, data: loss.gradient(y.data)), parameters: p, rope: rope,
                                       gradients: &grads)

            let naive = NaiveBackwardBlock(p, geometry: g, theta: 10000, positions: rope.positions)
            let x64 = x.data.map(Double.init)
            for m in LinearKind.allCases {
                let fd = centralDifferences(count: p.weights[m.index].count, step: Self.step) { i, h in
                    var n = naive
                    n.w[m.index][i] += h
                    return loss.value(n.forward(x64, T: T))
                }
                let err = gradientError(grads.weights[m.index].data, fd)
                #expect(err <= Self.tolerance, "\(c.name), \(lossName): d/d\(m) relative error \(err)")
                if let db = grads.biases[m.index] {
                    let fdb = centralDifferences(count: db.count, step: Self.step) { i, h in
                        var n = naive
                        n.b[m.index]![i] += h
                        return loss.value(n.forward(x64, T: T))
                    }
                    let errb = gradientError(db.data, fdb)
                    #expect(errb <= Self.tolerance, "\(c.name), \(lossName): d/d\(m).bias relative error \(errb)")
                }
            }
            let fdx = centralDifferences(count: x64.count, step: Self.step) { i, h in
                var xp = x64
                xp[i] += h
                return loss.value(naive.forward(xp, T: T))
            }
            let errx = gradientError(dx.data, fdx)
            #expect(errx <= Self.tolerance, "\(c.name), \(lossName): d/dx relative error \(errx)")
        }
    }

    @Test(arguments: cases)
    func forwardMatchesFloat64Reference(_ c: Case) throws {
        let g = c.g, T = 9
        let rope = RoPE(headDim: g.headDim, theta: 10000, scaling: nil, positions: T)
        let p = randomBackwardBlock(g, bias: c.bias, seed: 3)
        let x = randomBackwardInput(T: T, C: g.hidden, seed: 4)
        let tape = try DecoderBlock(geometry: g, capacity: T)
        let y = try tape.forward(x, parameters: p, rope: rope)
        let ref = NaiveBackwardBlock(p, geometry: g, theta: 10000, positions: rope.positions).forward(x.data.map(Double.init), T: T)
        #expect(gradientError(y.data, ref) <= 1e-5)
    }

    /// A layer's RoPE base picks its tables from those it is given: a block of base 1e6 handed tables of base
    /// 1e4 with 1e6 among their alternates computes what a block handed 1e6's own tables computes, forward
    /// and backward, to the bit.
    @Test func layerRoPEBaseSelectsItsTables() throws {
        var g = Self.cases[1].g   // head size 6: three frequencies (at head size 2 the only one is θ⁰ = 1 for any base)
        let T = 7
        let p = randomBackwardBlock(g, seed: 51)
        let x = randomBackwardInput(T: T, C: g.hidden, seed: 52)
        let own = RoPE(headDim: g.headDim, theta: 1e6, scaling: nil, positions: T)
        let shared = RoPE(headDim: g.headDim, theta: 1e4, scaling: nil, positions: T, alternateBases: [1e6])
        let plain = try DecoderBlock(geometry: g, capacity: T)
        g.ropeTheta = 1e6
        let layered = try DecoderBlock(geometry: g, capacity: T)
        let y1 = try plain.forward(x, parameters: p, rope: own)
        let y2 = try layered.forward(x, parameters: p, rope: shared)
        #expect(y1 == y2 && !y1.data.contains(where: \.isNaN))
        var g1 = BlockGradients(like: p), g2 = BlockGradients(like: p)
        let dx1 = try plain.backward(y1, parameters: p, rope: own, gradients: &g1)
        let dx2 = try layered.backward(y2, parameters: p, rope: shared, gradients: &g2)
        #expect(dx1 == dx2)
        for m in LinearKind.allCases { #expect(g1[m] == g2[m], "\(m)") }
        // And the base matters: the 1e4 tables give another output.
        #expect(try plain.forward(x, parameters: p, rope: shared) != y1)
    }

    /// The tape is reused across samples of different lengths: a shorter sample after a longer one must
    /// give exactly what a fresh tape gives (no state leaks from the previous sample's buffers).
    @Test func reusedTapeMatchesFreshTapeOnShorterSample() throws {
        let g = Self.cases[0].g
        let rope = RoPE(headDim: g.headDim, theta: 10000, scaling: nil, positions: 12)
        let p = randomBackwardBlock(g, seed: 5)
        let long = randomBackwardInput(T: 12, C: g.hidden, seed: 6), short = randomBackwardInput(T: 5, C: g.hidden, seed: 8)
        let reused = try DecoderBlock(geometry: g, capacity: 12)
        var g1 = BlockGradients(like: p), g2 = BlockGradients(like: p)
        let yl = try reused.forward(long, parameters: p, rope: rope)
        try reused.backward(yl, parameters: p, rope: rope, gradients: &g1)
        let ys = try reused.forward(short, parameters: p, rope: rope)
        let dx1 = try reused.backward(ys, parameters: p, rope: rope, gradients: &g1)
        let fresh = try DecoderBlock(geometry: g, capacity: 5)
        let ys2 = try fresh.forward(short, parameters: p, rope: rope)
        let dx2 = try fresh.backward(ys2, parameters: p, rope: rope, gradients: &g2)
        #expect(ys == ys2)
        #expect(dx1 == dx2)
        for m in LinearKind.allCases { #expect(g1[m] == g2[m], "\(m)") }
    }

    /// The up-front estimate the pruning driver's memory check uses equals what a tape allocates.
    @Test func tapeSizeEstimateMatchesAllocation() throws {
        for c in Self.cases {
            for T in [1, 7, 130] {
                let tape = try DecoderBlock(geometry: c.g, capacity: T)
                #expect(DecoderBlock.bytes(geometry: c.g, capacity: T) == tape.bytes, "\(c.name), T \(T)")
            }
        }
    }

    @Test func badShapesThrowOneLineErrors() throws {
        let g = Self.cases[0].g
        let rope = RoPE(headDim: g.headDim, theta: 10000, scaling: nil, positions: 4)
        let p = randomBackwardBlock(g, seed: 1)
        let tape = try DecoderBlock(geometry: g, capacity: 4)
        #expect(throws: BlockBackwardError.self) { try tape.forward(randomBackwardInput(T: 5, C: g.hidden, seed: 1), parameters: p, rope: rope) }
        #expect(throws: BlockBackwardError.self) { try tape.forward(randomBackwardInput(T: 3, C: g.hidden + 1, seed: 1), parameters: p, rope: rope) }
        var bad = p
        bad.weights[LinearKind.down.index] = Tensor.zeros([3, 3])
        do {
            try tape.forward(randomBackwardInput(T: 3, C: g.hidden, seed: 1), parameters: bad, rope: rope)
            Issue.record("a wrong down_proj shape was accepted")
        } catch {
            #expect("\(error)".contains("down_proj"))
            #expect(!"\(error)".contains("\n"))
        }
        #expect(throws: BlockBackwardError.self) {
            try DecoderBlock(geometry: BlockGeometry(hidden: 8, intermediate: 8, heads: 3, kvHeads: 2, rmsNormEps: 1e-5), capacity: 4)
        }
        var grads = BlockGradients(like: p)
        #expect(throws: BlockBackwardError.self) {
            try tape.backward(Tensor.zeros([3, g.hidden]), parameters: p, rope: rope, gradients: &grads)
        }
    }
}
