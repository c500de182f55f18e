/// A seeded pseudo-random generator that gives the same sequence on every platform and Swift version
/// (xoshiro256**, seeded through SplitMix64). Swift's `SystemRandomNumberGenerator` is not seedable and
/// the standard library's algorithms that take a generator may change between releases, so every
/// seeded draw in the project goes through this type and the helpers below.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var sm = seed
        func splitMix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(&sm); s1 = splitMix(&sm); s2 = splitMix(&sm); s3 = splitMix(&sm)
    }

    /// The four state words, to save a run's generator and continue it later (`init(state:)`).
    public var state: [UInt64] { [s0, s1, s2, s3] }

    /// The generator whose state is `state` (four words, as `state` gave them); nil for any other count
    /// or for the all-zero state, which xoshiro cannot leave.
    public init?(state: [UInt64]) {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
        s0 = state[0]; s1 = state[1]; s2 = state[2]; s3 = state[3]
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A uniform integer in 0..<bound, without modulo bias (Lemire's method, deterministic).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// A uniform double in [0, 1) with 53 random bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// A standard normal draw (Box–Muller; one value per call, the second is discarded for simplicity).
    public mutating func nextGaussian() -> Double {
        var u = nextDouble()
        while u <= 0 { u = nextDouble() }
        let v = nextDouble()
        return (-2 * _log(u)).squareRoot() * _cos(2 * Double.pi * v)
    }

    /// A Fisher–Yates shuffle driven by this generator (stable across platforms, unlike `shuffled(using:)`).
    public mutating func shuffle<T>(_ a: inout [T]) {
        if a.count < 2 { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = nextInt(below: i + 1)
            a.swapAt(i, j)
        }
    }

    /// `k` distinct indices from 0..<n in draw order.
    public mutating func sample(_ k: Int, from n: Int) -> [Int] {
        precondition(k <= n, "cannot draw \(k) distinct values from \(n)")
        var pool = Array(0..<n)
        for i in 0..<k {
            let j = i + nextInt(below: n - i)
            pool.swapAt(i, j)
        }
        return Array(pool[0..<k])
    }
}

import Foundation
@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
