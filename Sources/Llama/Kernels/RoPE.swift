import Foundation
import Tensor

/// Rotary position embeddings in the rotate-half layout that Hugging Face LLaMA checkpoints assume:
/// a head vector x of width HD is split into halves (x₁, x₂) = (x[0..<HD/2], x[HD/2..<HD]) and, at position p,
///
///     out₁ = x₁ · cos(p·θᵢ) − x₂ · sin(p·θᵢ),   out₂ = x₂ · cos(p·θᵢ) + x₁ · sin(p·θᵢ),   i = 0..<HD/2
///
/// with inverse frequencies θᵢ = theta^(−2i/HD), rescaled by the configuration's RoPE scaling exactly as
/// transformers' `ROPE_INIT_FUNCTIONS` do (in float32). (llama2.c's interleaved pairs are a different
/// layout and wrong on HF checkpoints.) The rotation is orthogonal: its backward is the rotation by −p·θᵢ.
public struct RoPE: Sendable {
    public let headDim: Int
    /// The base θ of these tables.
    public let theta: Double
    /// Tables of the other bases some layers use (Gemma 3's sliding layers), unscaled, by base; a block
    /// picks its own with `table(theta:)`.
    public private(set) var alternates: [Double: RoPE] = [:]
    /// How many positions the tables cover (0..<positions).
    public let positions: Int
    /// θᵢ, i = 0..<HD/2, after scaling.
    public let inverseFrequencies: [Float]
    /// cos(p·θᵢ) and sin(p·θᵢ), each (positions, HD/2).
    public let cosTable: [Float]
    public let sinTable: [Float]

    /// Tables for the configuration's head width, theta and scaling, covering `positions` positions, and
    /// for every other base its layers use (`Architecture.LayerAttention.ropeTheta`, without scaling).
    public init(configuration: LlamaConfiguration, positions: Int) {
        self.init(headDim: configuration.headDim, theta: configuration.ropeTheta,
                  scaling: configuration.ropeScaling, positions: positions)
        for base in Set(configuration.architecture.layers.map(\.ropeTheta)) where base != theta {
            alternates[base] = RoPE(headDim: headDim, theta: base, scaling: nil, positions: positions)
        }
    }

    /// Tables of base `theta` (with `scaling`) and unscaled ones of each of `alternateBases`.
    public init(headDim: Int, theta: Double, scaling: LlamaConfiguration.RopeScaling?, positions: Int, alternateBases: [Double]) {
        self.init(headDim: headDim, theta: theta, scaling: scaling, positions: positions)
        for base in alternateBases where base != theta {
            alternates[base] = RoPE(headDim: headDim, theta: base, scaling: nil, positions: positions)
        }
    }

    /// The tables of base `theta` (these when nil or equal to `self.theta`). A base the tables were not built
    /// for is a programming error: the model builds every base its layers name.
    public func table(theta base: Double?) -> RoPE {
        guard let base, base != theta else { return self }
        guard let other = alternates[base] else {
            preconditionFailure("RoPE: no tables for base \(base) (built for \(theta) and \(alternates.keys.sorted()))")
        }
        return other
    }

    public init(headDim: Int, theta: Double, scaling: LlamaConfiguration.RopeScaling?, positions: Int) {
        precondition(headDim > 0 && headDim % 2 == 0 && positions >= 0, "RoPE: head_dim \(headDim), positions \(positions)")
        self.headDim = headDim
        self.theta = theta
        self.positions = positions
        let half = headDim / 2
        // transformers: 1 / (base ** (arange(0, dim, 2).float() / dim)), all in float32.
        let base = Float(theta)
        var inv = (0..<half).map { i -> Float in 1 / Foundation.pow(base, Float(2 * i) / Float(headDim)) }
        switch scaling {
        case nil:
            break
        case let .linear(factor)?:
            inv = inv.map { $0 / Float(factor) }
        case let .llama3(factor, low, high, original)?:
            let f = Float(factor), lowF = Float(low), highF = Float(high), old = Float(original)
            let lowFreqWavelen = old / lowF
            let highFreqWavelen = old / highF
            inv = inv.map { freq in
                let wavelen = 2 * Float.pi / freq
                if wavelen < highFreqWavelen { return freq }
                if wavelen > lowFreqWavelen { return freq / f }
                let smooth = (old / wavelen - lowF) / (highF - lowF)
                return (1 - smooth) * freq / f + smooth * freq
            }
        }
        inverseFrequencies = inv
        var c = [Float](repeating: 0, count: positions * half)
        var s = [Float](repeating: 0, count: positions * half)
        for p in 0..<positions {
            for i in 0..<half {
                // The angle is rounded to float32 as torch computes it (position_ids.float() * inv_freq);
                // cos and sin of that float are then taken accurately.
                let angle = Double(Float(p) * inv[i])
                c[p * half + i] = Float(Foundation.cos(angle))
                s[p * half + i] = Float(Foundation.sin(angle))
            }
        }
        cosTable = c
        sinTable = s
    }

    /// Rotates x in place. x: (B, T, H, HD) — the (B·T, H·HD) output of a q or k projection — at positions
    /// 0..<T of every sequence, or offsets[b] + 0..<T of sequence b when `offsets` is given. `sign` −1
    /// rotates by −p·θ (the backward / inverse rotation).
    public func apply(
        _ x: UnsafeMutablePointer<Float>, batch b: Int, length t: Int, heads h: Int, sign: Float = 1, offsets: [Int]? = nil
    ) {
        precondition(t + (offsets?.max() ?? 0) <= positions, "RoPE: positions up to \(t + (offsets?.max() ?? 0)) exceed the table's \(positions)")
        cosTable.withUnsafeBufferPointer { cp in
            sinTable.withUnsafeBufferPointer { sp in
                guard let offsets else {
                    Self.rotate(x, batch: b, length: t, heads: h, headDim: headDim,
                                cos: cp.baseAddress!, sin: sp.baseAddress!, sign: sign)
                    return
                }
                let half = headDim / 2
                for r in 0..<b {
                    Self.rotate(x + r * t * h * headDim, batch: 1, length: t, heads: h, headDim: headDim,
                                cos: cp.baseAddress! + offsets[r] * half, sin: sp.baseAddress! + offsets[r] * half, sign: sign)
                }
            }
        }
    }

    /// `apply` with the tables given as pointers: cos and sin are (≥ T, HD/2). The decoder-block tape
    /// rotates with tables it holds itself; its backward is this with `sign` −1.
    public static func rotate(
        _ x: UnsafeMutablePointer<Float>, batch b: Int, length t: Int, heads h: Int, headDim hd: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, sign: Float = 1
    ) {
        let half = hd / 2
        parallelChunks(b * t, minimumPerThread: max(1, 8192 / max(h * hd, 1))) { rows in
            for row in rows {
                let p = row % t
                let cr = cos + p * half, sr = sin + p * half
                for head in 0..<h {
                    let v = x + (row * h + head) * hd
                    for i in 0..<half {
                        let x1 = v[i], x2 = v[i + half]
                        let cs = cr[i], sn = sign * sr[i]
                        v[i] = x1 * cs - x2 * sn
                        v[i + half] = x2 * cs + x1 * sn
                    }
                }
            }
        }
    }

    /// Tensor form: x (B, T, H·HD) → rotated copy.
    public func apply(_ x: Tensor, heads: Int, sign: Float = 1) -> Tensor {
        precondition(x.rank == 3 && x.shape[2] == heads * headDim, "RoPE: input \(x.shape) for \(heads) heads of \(headDim)")
        var out = x
        out.data.withUnsafeMutableBufferPointer { p in
            apply(p.baseAddress!, batch: x.shape[0], length: x.shape[1], heads: heads, sign: sign)
        }
        return out
    }
}
