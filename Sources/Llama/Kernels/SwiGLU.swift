import Tensor

/// LLaMA's gated MLP activation: out = silu(gate) · up, elementwise, with silu(g) = g · σ(g) = g / (1 + e^(−g)).
/// The forward pass keeps gate and up (the pre-activations); backward needs nothing else.
public enum SwiGLU {
    /// Pointer form over n elements. out may alias gate or up.
    public static func forward(
        out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
    ) {
        parallelChunks(n, minimumPerThread: 32_768) { range in
            VectorMath.siluMultiply(out: out + range.lowerBound, gate: gate + range.lowerBound, up: up + range.lowerBound,
                                    count: range.count)
        }
    }

    /// gate, up: same shape → silu(gate) · up.
    public static func forward(gate: Tensor, up: Tensor) -> Tensor {
        precondition(gate.shape == up.shape, "SwiGLU: gate \(gate.shape) vs up \(up.shape)")
        var out = Tensor.uninitialized(gate.shape)
        gate.data.withUnsafeBufferPointer { g in
            up.data.withUnsafeBufferPointer { u in
                out.data.withUnsafeMutableBufferPointer { o in
                    forward(out: o.baseAddress!, gate: g.baseAddress!, up: u.baseAddress!, count: gate.count)
                }
            }
        }
        return out
    }
}
