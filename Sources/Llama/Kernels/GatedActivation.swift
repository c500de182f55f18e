import Foundation
import Tensor

/// The gated MLP's activation: out = g(gate) · up, elementwise, with g SiLU (LLaMA's SwiGLU:
/// silu(x) = x · σ(x) = x / (1 + e^(−x))) or GELU in its tanh form (Gemma's GeGLU:
/// gelu(x) = ½ · x · (1 + tanh(u)), u = √(2/π) · (x + 0.044715 · x³)).
/// The forward pass keeps gate and up (the pre-activations); backward needs nothing else.
public enum GatedActivation {
    /// Pointer form over n elements. out may alias gate or up.
    public static func forward(
        out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int,
        activation: Architecture.Activation = .silu
    ) {
        parallelChunks(n, minimumPerThread: 32_768) { range in
            let i = range.lowerBound
            switch activation {
            case .silu:
                VectorMath.siluMultiply(out: out + i, gate: gate + i, up: up + i, count: range.count)
            case .geluTanh:
                for j in range { out[j] = geluTanh(gate[j]).value * up[j] }
            }
        }
    }

    /// gate, up: same shape → g(gate) · up.
    public static func forward(gate: Tensor, up: Tensor, activation: Architecture.Activation = .silu) -> Tensor {
        precondition(gate.shape == up.shape, "GatedActivation: gate \(gate.shape) vs up \(up.shape)")
        var out = Tensor.uninitialized(gate.shape)
        gate.data.withUnsafeBufferPointer { g in
            up.data.withUnsafeBufferPointer { u in
                out.data.withUnsafeMutableBufferPointer { o in
                    forward(out: o.baseAddress!, gate: g.baseAddress!, up: u.baseAddress!, count: gate.count, activation: activation)
                }
            }
        }
        return out
    }

    /// dgate = dact ⊙ up ⊙ g′(gate), dup = dact ⊙ g(gate); both overwritten. dgate may alias dact (each
    /// element is read before it is written). SiLU: g′(x) = σ(x)(1 + x(1 − σ(x))); GELU-tanh:
    /// g′(x) = ½(1 + tanh u) + ½ · x · (1 − tanh² u) · √(2/π) · (1 + 3 · 0.044715 · x²).
    public static func backward(
        dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, _ dact: UnsafePointer<Float>,
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int, activation: Architecture.Activation = .silu
    ) {
        parallelChunks(n, minimumPerThread: 1 << 14) { r in
            let i = r.lowerBound
            switch activation {
            case .silu:
                VectorMath.siluMultiplyBackward(dgate: dgate + i, dup: dup + i, dact: dact + i, gate: gate + i, up: up + i,
                                                count: r.count)
            case .geluTanh:
                for j in r {
                    let (g, dg) = geluTanh(gate[j])
                    let d = dact[j]
                    dgate[j] = d * up[j] * dg
                    dup[j] = d * g
                }
            }
        }
    }

    /// GELU-tanh of x and its derivative, as PyTorch's `gelu(approximate="tanh")` computes them in float32.
    @inline(__always)
    static func geluTanh(_ x: Float) -> (value: Float, derivative: Float) {
        let k: Float = 0.7978845608028654   // √(2/π)
        let c: Float = 0.044715
        let u = k * (x + c * x * x * x)
        let t = Foundation.tanh(u)
        let value = 0.5 * x * (1 + t)
        let derivative = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)
        return (value, derivative)
    }
}
