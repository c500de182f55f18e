/// A dense, contiguous, row-major float32 array with a shape.
///
/// Storage is a Swift array, so copies are copy-on-write; kernels reach the buffer through
/// `withUnsafeBufferPointer` / `withUnsafeMutableBufferPointer` and never allocate inside loops.
/// Shape comments in this project follow llm.c: `(B, T, C)` means `shape == [B, T, C]`.
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var data: [Float]

    /// A tensor over `data`, which must hold exactly `shape.product` elements.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not match \(data.count) elements")
        self.shape = shape
        self.data = data
    }

    /// A tensor of the given shape filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }

    public var count: Int { data.count }
    public var rank: Int { shape.count }

    /// The same elements under a new shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, data: data)
    }

    /// Changes the shape in place; the element count must stay the same.
    public mutating func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == data.count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    /// Row `i` of a tensor viewed as (rows, lastDim).
    public func row(_ i: Int) -> ArraySlice<Float> {
        let c = shape.last ?? 1
        return data[(i * c)..<((i + 1) * c)]
    }

    /// Largest absolute difference between two tensors of the same shape; NaN when any difference is
    /// NaN (a NaN or an ∞ − ∞ on either side), so a `<= tolerance` check fails on a NaN output.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "shape \(shape) vs \(other.shape)")
        var m: Float = 0
        for i in 0..<data.count { m = maxPropagatingNaN(m, abs(data[i] - other.data[i])) }
        return m
    }

    /// ‖a − b‖∞ / max(‖b‖∞, tiny): the relative error used by the tests against reference fixtures.
    /// NaN when either tensor holds a NaN (see `maxAbsDifference`).
    public func relativeError(to reference: Tensor) -> Float {
        let scale = reference.data.reduce(Float(0)) { maxPropagatingNaN($0, abs($1)) }
        return maxAbsDifference(reference) / max(scale, 1e-30)
    }
}

/// `max(a, b)`, but NaN when either is NaN. Swift's `max` returns the other operand for a NaN in some
/// argument orders, so a max-fold over differences silently skips NaNs; error measures use this instead.
@inline(__always)
public func maxPropagatingNaN<T: FloatingPoint>(_ a: T, _ b: T) -> T {
    a.isNaN || b.isNaN ? .nan : max(a, b)
}
