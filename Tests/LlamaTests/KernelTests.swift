import Foundation
import Llama
import Tensor
import Testing
import TestSupport

/// Double-precision references for the kernels.
enum Naive {
    static func rmsNorm(_ x: [Double], _ w: [Double], rows: Int, eps: Double) -> (out: [Double], rstd: [Double]) {
        let c = w.count
        var out = [Double](repeating: 0, count: x.count), rstd = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            let ms = (0..<c).map { x[r * c + $0] * x[r * c + $0] }.reduce(0, +) / Double(c)
            rstd[r] = 1 / (ms + eps).squareRoot()
            for i in 0..<c { out[r * c + i] = x[r * c + i] * rstd[r] * w[i] }
        }
        return (out, rstd)
    }

    /// x (N, in) · Wᵀ (out, in) + bias.
    static func linear(_ x: [Double], _ w: [Double], _ bias: [Double]?, rows: Int, inF: Int, outF: Int) -> [Double] {
        var y = [Double](repeating: 0, count: rows * outF)
        for r in 0..<rows {
            for o in 0..<outF {
                var s = bias?[o] ?? 0
                for i in 0..<inF { s += x[r * inF + i] * w[o * inF + i] }
                y[r * outF + o] = s
            }
        }
        return y
    }

    /// Rotate-half RoPE with double angles p · θᵢ, x (B, T, H, HD).
    /// RoPE's inverse frequencies θᵢ = theta^(−2i/HD) in float64, rescaled as transformers'
    /// `ROPE_INIT_FUNCTIONS` define it (linear: θᵢ/factor; llama3: by wavelength band), computed here from
    /// the configuration values alone (not from the `RoPE` under test).
    static func inverseFrequencies(headDim hd: Int, theta: Double, scaling: LlamaConfiguration.RopeScaling?) -> [Double] {
        let inv = (0..<(hd / 2)).map { Foundation.pow(theta, -Double(2 * $0) / Double(hd)) }
        switch scaling {
        case nil: return inv
        case let .linear(factor)?: return inv.map { $0 / factor }
        case let .llama3(factor, low, high, original)?:
            let old = Double(original)
            return inv.map { f -> Double in
                let wavelen = 2 * Double.pi / f
                if wavelen < old / high { return f }
                if wavelen > old / low { return f / factor }
                let s = (old / wavelen - low) / (high - low)
                return (1 - s) * f / factor + s * f
            }
        }
    }

    static func inverseFrequencies(_ c: LlamaConfiguration) -> [Double] {
        inverseFrequencies(headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling)
    }

    /// cos(p·θᵢ) and sin(p·θᵢ) in float64, each (positions, HD/2).
    static func ropeTables(_ inv: [Double], positions: Int) -> (cos: [Double], sin: [Double]) {
        let angles = (0..<positions).flatMap { p in inv.map { Double(p) * $0 } }
        return (angles.map { Foundation.cos($0) }, angles.map { Foundation.sin($0) })
    }

    static func rope(_ x: [Double], inv: [Double], b: Int, t: Int, h: Int, hd: Int) -> [Double] {
        var y = x
        let half = hd / 2
        for bi in 0..<b { for p in 0..<t { for head in 0..<h {
            let base = ((bi * t + p) * h + head) * hd
            for i in 0..<half {
                let a = Double(p) * inv[i], x1 = x[base + i], x2 = x[base + i + half]
                y[base + i] = x1 * cos(a) - x2 * sin(a)
                y[base + i + half] = x2 * cos(a) + x1 * sin(a)
            }
        } } }
        return y
    }

    /// Causal (optionally windowed) GQA attention: out (B, T, NH·HD), lse (B, NH, T), probs (B, NH, T, T).
    static func attention(q: [Double], k: [Double], v: [Double], b: Int, t: Int, nh: Int, nkv: Int, hd: Int, window: Int?)
        -> (out: [Double], lse: [Double], probs: [Double]) {
        var out = [Double](repeating: 0, count: b * t * nh * hd)
        var lse = [Double](repeating: 0, count: b * nh * t)
        var probs = [Double](repeating: 0, count: b * nh * t * t)
        let scale = 1 / Double(hd).squareRoot()
        for bi in 0..<b { for h in 0..<nh {
            let g = h / (nh / nkv)
            for i in 0..<t {
                let lo = window.map { max(0, i - $0 + 1) } ?? 0
                var s = [Double](repeating: 0, count: t)
                for j in lo...i {
                    var d = 0.0
                    for e in 0..<hd { d += q[((bi * t + i) * nh + h) * hd + e] * k[((bi * t + j) * nkv + g) * hd + e] }
                    s[j] = d * scale
                }
                let m = s[lo...i].maxOrNaN()!
                let sum = s[lo...i].map { exp($0 - m) }.reduce(0, +)
                lse[(bi * nh + h) * t + i] = m + log(sum)
                for j in lo...i {
                    let p = exp(s[j] - m) / sum
                    probs[((bi * nh + h) * t + i) * t + j] = p
                    for e in 0..<hd { out[((bi * t + i) * nh + h) * hd + e] += p * v[((bi * t + j) * nkv + g) * hd + e] }
                }
            }
        } }
        return (out, lse, probs)
    }

    static func silu(_ g: Double) -> Double { g / (1 + exp(-g)) }
}

extension Tensor {
    var doubles: [Double] { data.map(Double.init) }
}

@Suite struct KernelTests {
    @Test func vectorExpMatchesDoubleExp() {
        var worst = 0.0
        var x: Float = -87
        while x < 88.37 {
            let got = Double(VectorMath.exp(x)), want = exp(Double(x))
            worst = maxOrNaN(worst, abs(got - want) / want)
            x += 0.0137
        }
        #expect(worst < 3e-7, "worst relative error \(worst)")
        #expect(VectorMath.exp(-100) == 0 && VectorMath.exp(-Float.infinity) == 0)
        #expect(VectorMath.exp(100) == .infinity && VectorMath.exp(88.5) == .infinity && VectorMath.exp(0) == 1)
        var buffer: [Float] = (0..<19).map { Float($0) * 0.5 - 4 }
        let sum = buffer.withUnsafeMutableBufferPointer { VectorMath.expShifted($0.baseAddress!, count: 19, shift: 1) }
        let want = (0..<19).map { exp(Double($0) * 0.5 - 5) }
        #expect(relativeError(buffer, want) < 3e-7)
        #expect(abs(Double(sum) - want.reduce(0, +)) / want.reduce(0, +) < 1e-6)
    }

    @Test func rmsNorm() {
        let x = randomTensor([3, 5, 40], seed: 1, scale: 3), w = randomTensor([40], seed: 2)
        let (out, rstd) = RMSNorm.forward(x, weight: w, eps: 1e-5)
        let ref = Naive.rmsNorm(x.doubles, w.doubles, rows: 15, eps: 1e-5)
        #expect(out.shape == [3, 5, 40] && rstd.shape == [15])
        #expect(relativeError(out.data, ref.out) < 1e-6)
        #expect(relativeError(rstd.data, ref.rstd) < 1e-6)
    }

    @Test func linearWithAndWithoutBias() {
        let x = randomTensor([2, 7, 12], seed: 3), w = randomTensor([9, 12], seed: 4), bias = randomTensor([9], seed: 5)
        let ref = Naive.linear(x.doubles, w.doubles, bias.doubles, rows: 14, inF: 12, outF: 9)
        let y = Linear.forward(x, weight: w, bias: bias)
        #expect(y.shape == [2, 7, 9] && relativeError(y.data, ref) < 1e-6)
        let noBias = Naive.linear(x.doubles, w.doubles, nil, rows: 14, inF: 12, outF: 9)
        #expect(relativeError(Linear.forward(x, weight: w).data, noBias) < 1e-6)
    }

    @Test func ropeFrequenciesAndRotation() {
        let hd = 16, theta = 10000.0
        let plain = RoPE(headDim: hd, theta: theta, scaling: nil, positions: 40)
        let inv = Naive.inverseFrequencies(headDim: hd, theta: theta, scaling: nil)
        #expect(relativeError(plain.inverseFrequencies, inv) < 1e-6)
        let linear = RoPE(headDim: hd, theta: theta, scaling: .linear(factor: 4), positions: 1)
        #expect(relativeError(linear.inverseFrequencies, inv.map { $0 / 4 }) < 1e-6)
        // LLaMA-3.1: wavelengths below old/high kept, above old/low divided by factor, blended in between.
        let (factor, low, high, old) = (8.0, 1.0, 4.0, 64.0)
        let l3 = RoPE(headDim: hd, theta: theta, scaling: .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high,
                                                                   originalMaxPositionEmbeddings: 64), positions: 1)
        let want = Naive.inverseFrequencies(headDim: hd, theta: theta, scaling: .llama3(
            factor: factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: Int(old)))
        #expect(relativeError(l3.inverseFrequencies, want) < 1e-6)
        #expect(Set(zip(want, inv).map { ($0.0 / $0.1 * 100).rounded() }).count >= 3, "test frequencies must span all three bands")

        let x = randomTensor([2, 40, 3 * hd], seed: 6)
        let rotated = plain.apply(x, heads: 3)
        let ref = Naive.rope(x.doubles, inv: inv, b: 2, t: 40, h: 3, hd: hd)
        #expect(relativeError(rotated.data, ref) < 1e-6)
        // The rotation by −p·θ undoes it.
        #expect(plain.apply(rotated, heads: 3, sign: -1).relativeError(to: x) < 1e-6)
    }

    /// Attention.forward on seeded random q, k, v against the float64 reference: output and log-sum-exp.
    func checkAttentionAgainstNaive(b: Int, t: Int, nh: Int, nkv: Int, hd: Int, window: Int?, seed: UInt64,
                                    keyTile: Int = Attention.keyTile, scale: Double = 1)
        -> (q: Tensor, k: Tensor, lse: Tensor, ref: (out: [Double], lse: [Double], probs: [Double])) {
        let q = randomTensor([b, t, nh * hd], seed: seed, scale: scale), k = randomTensor([b, t, nkv * hd], seed: seed + 1, scale: scale)
        let v = randomTensor([b, t, nkv * hd], seed: seed + 2)
        let (out, lse) = Attention.forward(q: q, k: k, v: v, heads: nh, kvHeads: nkv, window: window, keyTile: keyTile)
        let ref = Naive.attention(q: q.doubles, k: k.doubles, v: v.doubles, b: b, t: t, nh: nh, nkv: nkv, hd: hd, window: window)
        #expect(relativeError(out.data, ref.out) < 1e-5)
        #expect(relativeError(lse.data, ref.lse) < 1e-5)
        return (q, k, lse, ref)
    }

    @Test(arguments: [nil, 20] as [Int?])
    func attentionMatchesNaive(window: Int?) {
        // T = 150 spans three row blocks; 4 query heads on 2 KV heads.
        let (b, t, nh, nkv, hd) = (2, 150, 4, 2, 8)
        let (q, k, lse, ref) = checkAttentionAgainstNaive(b: b, t: t, nh: nh, nkv: nkv, hd: hd, window: window, seed: 7)
        // Probabilities rebuilt from the cache (q, k, log-sum-exp).
        var p = [Float](repeating: -1, count: t * t)
        for (bi, h) in [(0, 0), (1, 3), (1, 2)] {
            q.data.withUnsafeBufferPointer { qp in k.data.withUnsafeBufferPointer { kp in lse.data.withUnsafeBufferPointer { lp in
                p.withUnsafeMutableBufferPointer { pp in
                    Attention.probabilities(into: pp.baseAddress!, q: qp.baseAddress!, k: kp.baseAddress!, logSumExp: lp.baseAddress!,
                                            sequence: bi, head: h, length: t, heads: nh, kvHeads: nkv, headDim: hd, window: window)
                }
            } } }
            let start = (bi * nh + h) * t * t
            #expect(relativeError(p, Array(ref.probs[start..<(start + t * t)])) < 1e-5)
        }
    }

    @Test(arguments: [nil, 33] as [Int?])
    func attentionPacksEachKVHeadsQueryGroup(window: Int?) {
        // Groups of 3 query heads per KV head (SmolLM2's 9 on 3), one sequence, a last row block of 2 rows:
        // every packed row must land back in its own head and position, with its own log-sum-exp.
        let (b, t, nh, nkv, hd) = (1, 130, 6, 2, 12)
        _ = checkAttentionAgainstNaive(b: b, t: t, nh: nh, nkv: nkv, hd: hd, window: window, seed: 31)
        #expect(Attention.forwardScratchFloats(length: t, heads: nh, kvHeads: nkv, headDim: hd) == 3 * 64 * (2 * hd + t + 2))
        #expect(Attention.forwardScratchFloats(length: 2048, heads: 9, kvHeads: 3, headDim: 64) == 3 * 64 * (2 * 64 + 512 + 2))
    }

    /// Key tiles narrower than the sequence (an online softmax across tiles): tiles that divide the row
    /// blocks and tiles that do not, tiles a windowed row sees nothing of, and scores large enough that a
    /// later tile's maximum rescales the earlier ones by factors far from 1.
    @Test(arguments: [(nil, 16), (nil, 50), (20, 16), (33, 7), (nil, 1)] as [(Int?, Int)])
    func attentionOverKeyTilesMatchesNaive(window: Int?, keyTile: Int) {
        _ = checkAttentionAgainstNaive(b: 2, t: 150, nh: 6, nkv: 2, hd: 8, window: window, seed: 41, keyTile: keyTile, scale: 3)
    }

    /// bf16 attention: QKᵀ and PV on bf16-rounded operands, float32 accumulation. Against the float64
    /// attention of the rounded q, k and v: L to float32 accuracy (the scores are exact products of the
    /// rounded values; an unrounded q or k would move L by ~1e-3), the output to the rounding of P (2⁻⁹
    /// relative per probability), over several key tiles and with a window.
    @Test(arguments: [(nil, 512), (nil, 50), (33, 16)] as [(Int?, Int)])
    func bfloat16AttentionMatchesFloat64OfRoundedOperands(window: Int?, keyTile: Int) {
        let (b, t, nh, nkv, hd) = (2, 150, 6, 2, 16)
        let q = randomTensor([b, t, nh * hd], seed: 51, scale: 2), k = randomTensor([b, t, nkv * hd], seed: 52, scale: 2)
        let v = randomTensor([b, t, nkv * hd], seed: 53)
        let (out, lse) = Attention.forward(q: q, k: k, v: v, heads: nh, kvHeads: nkv, window: window, keyTile: keyTile,
                                           precision: .bfloat16)
        let (out32, lse32) = Attention.forward(q: q, k: k, v: v, heads: nh, kvHeads: nkv, window: window, keyTile: keyTile)
        func rounded(_ x: Tensor) -> [Double] { x.data.map { Double(BFloat16GEMM.round($0)) } }
        let ref = Naive.attention(q: rounded(q), k: rounded(k), v: rounded(v), b: b, t: t, nh: nh, nkv: nkv, hd: hd, window: window)
        #expect(relativeError(lse.data, ref.lse) < 1e-6)
        #expect(relativeError(out.data, ref.out) < 4e-3)
        #expect(relativeError(lse32.data, ref.lse) > 1e-5, "the float32 L matches the rounded operands': the test cannot tell")
        #expect(out.data != out32.data)
    }

    @Test func attentionWithOneHead() {
        // Fewer (b, h) tasks than cores: the sequential path.
        let q = randomTensor([1, 70, 6], seed: 10), k = randomTensor([1, 70, 6], seed: 11), v = randomTensor([1, 70, 6], seed: 12)
        let (out, _) = Attention.forward(q: q, k: k, v: v, heads: 1, kvHeads: 1)
        let ref = Naive.attention(q: q.doubles, k: k.doubles, v: v.doubles, b: 1, t: 70, nh: 1, nkv: 1, hd: 6, window: nil)
        #expect(relativeError(out.data, ref.out) < 1e-5)
    }

    @Test func swiGLU() {
        let g = randomTensor([3, 101], seed: 13, scale: 4), u = randomTensor([3, 101], seed: 14)
        let out = GatedActivation.forward(gate: g, up: u)
        let ref = zip(g.doubles, u.doubles).map { Naive.silu($0) * $1 }
        #expect(relativeError(out.data, ref) < 1e-6)
        // Saturated gates: silu(−100) is −0-ish, silu(100) = 100.
        let edge = GatedActivation.forward(gate: Tensor(shape: [2], data: [-100, 100]), up: Tensor(shape: [2], data: [1, 1]))
        #expect(abs(edge.data[0]) < 1e-30 && edge.data[1] == 100)
    }

    /// GELU-tanh (Gemma's gate) and its gradients against float64, including saturated gates.
    @Test func geluTanhGateAndItsGradients() {
        let n = 303
        let g = randomTensor([3, 101], seed: 21, scale: 4), u = randomTensor([3, 101], seed: 22), d = randomTensor([3, 101], seed: 23)
        func gelu(_ x: Double) -> Double { 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) }
        func geluDerivative(_ x: Double) -> Double { let h = 1e-6; return (gelu(x + h) - gelu(x - h)) / (2 * h) }
        let out = GatedActivation.forward(gate: g, up: u, activation: .geluTanh)
        #expect(relativeError(out.data, zip(g.doubles, u.doubles).map { gelu($0) * $1 }) < 1e-6)
        var dgate = [Float](repeating: .nan, count: n), dup = [Float](repeating: .nan, count: n)
        g.data.withUnsafeBufferPointer { gp in u.data.withUnsafeBufferPointer { up in d.data.withUnsafeBufferPointer { dp in
            dgate.withUnsafeMutableBufferPointer { dg in dup.withUnsafeMutableBufferPointer { du in
                GatedActivation.backward(dgate: dg.baseAddress!, dup: du.baseAddress!, dp.baseAddress!, gate: gp.baseAddress!,
                                         up: up.baseAddress!, count: n, activation: .geluTanh)
            } }
        } } }
        let refGate = (0..<n).map { d.doubles[$0] * u.doubles[$0] * geluDerivative(g.doubles[$0]) }
        let refUp = (0..<n).map { d.doubles[$0] * gelu(g.doubles[$0]) }
        #expect(relativeError(dgate, refGate) < 1e-5)
        #expect(relativeError(dup, refUp) < 1e-6)
        let edge = GatedActivation.forward(gate: Tensor(shape: [2], data: [-100, 100]), up: Tensor(shape: [2], data: [1, 1]),
                                           activation: .geluTanh)
        #expect(abs(edge.data[0]) < 1e-30 && edge.data[1] == 100)
    }

    /// Gemma's (1 + w)·x̂ norm is LLaMA's norm with the weight 1 + w, to the bit, forward and backward
    /// (both form the effective weight as the float32 sum w + 1).
    @Test func offsetNormEqualsScaledNormWithOnePlusWeight() {
        let rows = 5, c = 37
        let x = randomTensor([rows, c], seed: 31, scale: 3), w = randomTensor([c], seed: 32, scale: 0.2)
        let onePlus = Tensor(shape: [c], data: w.data.map { $0 + 1 })
        let (a, ra) = RMSNorm.forward(x, weight: w, eps: 1e-6, weightOffset: 1)
        let (b, rb) = RMSNorm.forward(x, weight: onePlus, eps: 1e-6)
        #expect(a == b && ra == rb)
        let dy = randomTensor([rows, c], seed: 33)
        func backward(_ weight: Tensor, offset: Float) -> [Float] {
            var dx = [Float](repeating: .nan, count: rows * c)
            dx.withUnsafeMutableBufferPointer { d in dy.data.withUnsafeBufferPointer { g in x.data.withUnsafeBufferPointer { xp in
                ra.data.withUnsafeBufferPointer { r in weight.data.withUnsafeBufferPointer { wp in
                    RMSNorm.backward(d.baseAddress!, g.baseAddress!, xp.baseAddress!, rstd: r.baseAddress!, weight: wp.baseAddress!,
                                     T: rows, C: c, accumulate: false, weightOffset: offset)
                } }
            } } }
            return dx
        }
        let da = backward(w, offset: 1), db = backward(onePlus, offset: 0)
        #expect(da == db && !da.contains(where: \.isNaN))
    }

    @Test func crossEntropy() {
        let logits = randomTensor([5, 37], seed: 15, scale: 5)
        let targets = [0, 36, 5, 17, 17]
        let losses = CrossEntropy.forward(logits: logits, targets: targets)
        let ref = (0..<5).map { r -> Double in
            let row = (0..<37).map { Double(logits.data[r * 37 + $0]) }
            return log(row.map(exp).reduce(0, +)) - row[targets[r]]
        }
        #expect(relativeError(losses.data, ref) < 1e-6)
    }
}
