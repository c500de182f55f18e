import Tensor

/// RMSprop as PyTorch's `torch.optim.RMSprop` with momentum 0, not centered, no weight decay:
///
///     v ← α·v + (1 − α)·g²,   θ ← θ − lr · g / (√v + ε)
///
/// over a fixed list of flat float32 parameter buffers. The running averages v are allocated once at
/// init (zero, as PyTorch's lazily created state) and persist across steps; `step` allocates nothing.
public final class RMSprop {
    public let learningRate: Float
    /// PyTorch's `alpha`, the smoothing constant of the running average of g².
    public let smoothing: Float
    public let epsilon: Float
    /// Steps taken so far.
    public private(set) var steps = 0
    private var squareAverages: [UnsafeMutableBufferPointer<Float>]

    /// State for parameters of the given element counts; defaults are PyTorch's (alpha 0.99, eps 1e-8).
    public init(parameterCounts: [Int], learningRate: Float, smoothing: Float = 0.99, epsilon: Float = 1e-8) {
        self.learningRate = learningRate
        self.smoothing = smoothing
        self.epsilon = epsilon
        squareAverages = parameterCounts.map { n in
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            b.initialize(repeating: 0)
            return b
        }
    }

    deinit { for b in squareAverages { b.deallocate() } }

    public var parameterCounts: [Int] { squareAverages.map(\.count) }

    /// Bytes of optimizer state.
    public var bytes: Int { squareAverages.reduce(0) { $0 + $1.count } * MemoryLayout<Float>.stride }

    /// The running average of g² of parameter `i` (for tests and diagnostics).
    public func squareAverage(_ i: Int) -> [Float] { Array(squareAverages[i]) }

    /// Updates parameter `index` (its buffer `parameter`) in place from its gradient. Call once per
    /// parameter per step, then `finishStep()`; the buffers must have the counts given at init.
    public func update(_ index: Int, parameter: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>) {
        let v = squareAverages[index]
        precondition(parameter.count == v.count && gradient.count == v.count,
                     "RMSprop: parameter \(index) has \(parameter.count) values, gradient \(gradient.count), state \(v.count)")
        let vp = v.baseAddress!, pp = parameter.baseAddress!, gp = gradient.baseAddress!
        parallelChunks(v.count, minimumPerThread: 1 << 16) { r in
            // PyTorch: square_avg.mul_(alpha).addcmul_(g, g, value=1 − alpha); param.addcdiv_(g, sqrt(v) + eps, value=−lr).
            VectorMath.rmspropStep(parameter: pp + r.lowerBound, squareAverage: vp + r.lowerBound, gradient: gp + r.lowerBound,
                                   count: r.count, smoothing: smoothing, learningRate: learningRate, epsilon: epsilon)
        }
    }

    /// Counts a finished step (after `update` of every parameter).
    public func finishStep() { steps += 1 }
}
