import Foundation
import Llama
import Tensor
import TestSupport

/// An independent float64 forward of a LLaMA decoder block, written as plainly as possible (loops, no
/// BLAS, no saved state), used only as the reference for finite differences and forward checks. It reads
/// the geometry's architecture choices the way the papers and transformers write them: norms w·x̂ or
/// (1 + w)·x̂, the gate's SiLU or GELU-tanh, the attention scale.
struct NaiveBackwardBlock {
    let g: BlockGeometry
    /// The seven weights (out·in, row-major), their optional biases, the two norm weights, in float64.
    var w: [[Double]]
    var b: [[Double]?]
    var normIn: [Double]
    var normPost: [Double]
    /// QK-norm's and the sandwich norms' weights, when the geometry has them.
    var normQ: [Double]?, normK: [Double]?, normAttentionOutput: [Double]?, normMLPOutput: [Double]?
    let cos: [Double], sin: [Double]

    /// RoPE tables for positions 0..<`positions` in float64, from theta and the scaling alone (see
    /// `Naive.inverseFrequencies`), not from the `RoPE` under test.
    init(_ p: DecoderBlockWeights, geometry: BlockGeometry, theta: Double, scaling: LlamaConfiguration.RopeScaling? = nil, positions: Int) {
        g = geometry
        w = p.weights.map { $0.data.map(Double.init) }
        b = p.biases.map { $0?.data.map(Double.init) }
        normIn = p.inputNorm.data.map(Double.init)
        normPost = p.postAttentionNorm.data.map(Double.init)
        normQ = p.queryNorm?.data.map(Double.init)
        normK = p.keyNorm?.data.map(Double.init)
        normAttentionOutput = p.attentionOutputNorm?.data.map(Double.init)
        normMLPOutput = p.mlpOutputNorm?.data.map(Double.init)
        (cos, sin) = Naive.ropeTables(Naive.inverseFrequencies(headDim: geometry.headDim, theta: theta, scaling: scaling),
                                      positions: positions)
    }

    private func rmsnorm(_ x: [Double], _ weight: [Double], T: Int, C: Int) -> [Double] {
        var y = [Double](repeating: 0, count: T * C)
        for t in 0..<T {
            var ss = 0.0
            for c in 0..<C { ss += x[t * C + c] * x[t * C + c] }
            let r = 1 / (ss / Double(C) + Double(g.rmsNormEps)).squareRoot()
            let offset = g.normForm == .offset ? 1.0 : 0.0
            for c in 0..<C { y[t * C + c] = (offset + weight[c]) * x[t * C + c] * r }
        }
        return y
    }

    private func linear(_ x: [Double], _ m: LinearKind, T: Int) -> [Double] {
        let (o, i) = g.shape(of: m)
        let wm = w[m.index], bm = b[m.index]
        var y = [Double](repeating: 0, count: T * o)
        for t in 0..<T {
            for r in 0..<o {
                var s = bm?[r] ?? 0
                for c in 0..<i { s += x[t * i + c] * wm[r * i + c] }
                y[t * o + r] = s
            }
        }
        return y
    }

    /// x·cos + rotate_half(x)·sin per head, rotate_half(x) = [−x₂, x₁].
    private func rope(_ x: [Double], heads: Int, T: Int) -> [Double] {
        let hd = g.headDim, half = hd / 2, width = heads * hd
        var y = x
        for t in 0..<T {
            for h in 0..<heads {
                for d in 0..<hd {
                    let i = d % half
                    let rot = d < half ? -x[t * width + h * hd + d + half] : x[t * width + h * hd + d - half]
                    y[t * width + h * hd + d] = x[t * width + h * hd + d] * cos[t * half + i] + rot * sin[t * half + i]
                }
            }
        }
        return y
    }

    /// The block output (T, C) for x (T, C).
    func forward(_ x: [Double], T: Int) -> [Double] {
        let C = g.hidden, F = g.intermediate, hd = g.headDim
        let xn1 = rmsnorm(x, normIn, T: T, C: C)
        // QK-norm: each head's hd values of q and k normed on their own, before RoPE.
        func headNorm(_ x: [Double], _ w: [Double]?, heads: Int) -> [Double] {
            guard let w else { return x }
            return rmsnorm(x, w, T: T * heads, C: hd)
        }
        let q = rope(headNorm(linear(xn1, .q, T: T), normQ, heads: g.heads), heads: g.heads, T: T)
        let k = rope(headNorm(linear(xn1, .k, T: T), normK, heads: g.kvHeads), heads: g.kvHeads, T: T)
        let v = linear(xn1, .v, T: T)
        let qw = g.qWidth, kw = g.kvWidth
        var attn = [Double](repeating: 0, count: T * qw)
        let scale = Double(g.attentionScale)
        for h in 0..<g.heads {
            let kvh = h / (g.heads / g.kvHeads)
            for i in 0..<T {
                // Keys i − window < j ≤ i.
                let lo = g.attentionWindow.map { max(0, i - $0 + 1) } ?? 0
                var s = [Double](repeating: -.infinity, count: i + 1)
                for j in lo...i {
                    var dot = 0.0
                    for d in 0..<hd { dot += q[i * qw + h * hd + d] * k[j * kw + kvh * hd + d] }
                    s[j] = g.attentionSoftcap.map { Double($0) * Foundation.tanh(dot * scale / Double($0)) } ?? dot * scale
                }
                let m = s.maxOrNaN()!
                let e = s.map { Foundation.exp($0 - m) }
                let z = e.reduce(0, +)
                for d in 0..<hd {
                    var acc = 0.0
                    for j in lo...i { acc += e[j] / z * v[j * kw + kvh * hd + d] }
                    attn[i * qw + h * hd + d] = acc
                }
            }
        }
        let o = normAttentionOutput.map { rmsnorm(linear(attn, .o, T: T), $0, T: T, C: C) } ?? linear(attn, .o, T: T)
        let hres = zip(x, o).map { $0 + $1 }
        let xn2 = rmsnorm(hres, normPost, T: T, C: C)
        let gt = linear(xn2, .gate, T: T), up = linear(xn2, .up, T: T)
        var act = [Double](repeating: 0, count: T * F)
        for i in 0..<(T * F) {
            let x = gt[i]
            switch g.activation {
            case .silu: act[i] = x / (1 + Foundation.exp(-x)) * up[i]
            case .geluTanh: act[i] = 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) * up[i]
            }
        }
        let down = normMLPOutput.map { rmsnorm(linear(act, .down, T: T), $0, T: T, C: C) } ?? linear(act, .down, T: T)
        return zip(hres, down).map { $0 + $1 }
    }
}
