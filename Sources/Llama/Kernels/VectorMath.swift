/// Vectorized float32 helpers for the kernels' elementwise loops (softmax, SiLU, log-softmax).
///
/// The package builds for baseline x86-64 (SSE2), where a scalar `exp` is a library call per element;
/// softmax over (T, T) scores at T = 2048 needs billions of them, so `exp` is evaluated here eight lanes
/// at a time with Cephes' `expf` polynomial (relative error ≤ 2 ulp on the range used) and rounding done
/// by the 1.5·2²³ trick, which needs no SSE4.1 instruction.
public enum VectorMath {
    public typealias V8 = SIMD8<Float>

    @usableFromInline static let log2e: Float = 1.44269504088896341
    @usableFromInline static let ln2Hi: Float = 0.693359375
    @usableFromInline static let ln2Lo: Float = -2.12194440e-4
    @usableFromInline static let roundMagic: Float = 12582912  // 1.5 · 2²³

    /// e^x for eight lanes; 0 below −87.34 (where float32 exp leaves the normal range), +∞ above 88.376
    /// (127.5·ln 2, where 2ⁿ would overflow; true float32 exp overflows at 88.72). The kernels only take
    /// exp of values ≤ 0 (shifted scores) or of −g in SiLU, where either limit gives the same result.
    @inlinable @inline(__always)
    public static func exp(_ x: V8) -> V8 {
        let hi = V8(repeating: 88.3762626647949)
        let lo = V8(repeating: -87.33654022216797)
        var xc = x.replacing(with: hi, where: x .> hi)
        xc = xc.replacing(with: lo, where: xc .< lo)
        // n = round(x · log2 e), computed by adding and subtracting 1.5·2²³; the integer sits in the low bits.
        let t = xc * log2e + roundMagic
        let n = t - roundMagic
        let r = xc - n * ln2Hi - n * ln2Lo
        let z = r * r
        var p = V8(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * z + r + 1
        // 2ⁿ from the integer in t's low mantissa bits: (n + 127) << 23.
        let nInt = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(V8(repeating: roundMagic), to: SIMD8<Int32>.self)
        let pow2 = unsafeBitCast((nInt &+ 127) &<< 23, to: V8.self)
        var result = p * pow2
        result = result.replacing(with: 0, where: x .< lo)
        result = result.replacing(with: .infinity, where: x .> hi)
        return result
    }

    /// e^x for one value, by the same polynomial as the vector form (so scalar tails match the lanes).
    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float { exp(V8(repeating: x))[0] }

    /// x[i] = e^(x[i] − shift) for i in 0..<n; returns the sum of the results (accumulated in float32 lanes).
    @inlinable
    public static func expShifted(_ x: UnsafeMutablePointer<Float>, count n: Int, shift: Float) -> Float {
        var acc = V8()
        var i = 0
        let s = V8(repeating: shift)
        while i + 8 <= n {
            let raw = UnsafeMutableRawPointer(x + i)
            let e = exp(raw.loadUnaligned(as: V8.self) - s)
            raw.storeBytes(of: e, as: V8.self)
            acc += e
            i += 8
        }
        var sum = acc.sum()
        while i < n {
            let e = exp(x[i] - shift)
            x[i] = e
            sum += e
            i += 1
        }
        return sum
    }

    /// The largest of x[0..<n] (n > 0).
    @inlinable
    public static func maximum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var i = 0
        var m = V8(repeating: -.infinity)
        while i + 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: V8.self)
            m = m.replacing(with: v, where: v .> m)
            i += 8
        }
        var best = m.max()
        while i < n {
            if x[i] > best { best = x[i] }
            i += 1
        }
        return best
    }

    /// out[i] = a · x[i] for i in 0..<n.
    @inlinable
    public static func scale(out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int, by a: Float) {
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: V8.self) * a
            UnsafeMutableRawPointer(out + i).storeBytes(of: v, as: V8.self)
            i += 8
        }
        while i < n { out[i] = x[i] * a; i += 1 }
    }

    /// x[i] *= a for i in 0..<n.
    @inlinable
    public static func scale(_ x: UnsafeMutablePointer<Float>, count n: Int, by a: Float) {
        scale(out: x, x, count: n, by: a)
    }
}
