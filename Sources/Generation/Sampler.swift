import Foundation
import Tensor

/// How the next token is chosen from the logits z (V).
///
/// Greedy (temperature 0): the first index of the largest logit (`torch.argmax`). Sampling, with
/// transformers' warpers in transformers' order:
///
///     z' = z / temperature
///     top-k (k > 0): z'_i = −∞ unless z_i ≥ the k-th largest z (ties at the cut are kept)
///     top-p (p < 1): over the tokens left, sorted by ascending probability, a token is dropped when the
///                    cumulative probability up to and including it is ≤ 1 − p (the most likely one is
///                    always kept)
///     draw from softmax(z') over the tokens left
///
/// The draw is the seeded generator's (`SeededGenerator`): one uniform u per token, the kept tokens'
/// probabilities accumulated in descending order (index order for ties) until they pass u.
public struct SamplingOptions: Sendable, Equatable {
    /// 0: greedy.
    public var temperature: Double
    /// 0: no top-k cut.
    public var topK: Int
    /// 1: no nucleus cut.
    public var topP: Double
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public var isGreedy: Bool { temperature == 0 }

    /// Checks the ranges: temperature ≥ 0 and finite, top-k ≥ 0, 0 < top-p ≤ 1.
    public func validate() throws {
        guard temperature >= 0 && temperature.isFinite else {
            throw GenerationError("temperature \(temperature) is not a finite number ≥ 0")
        }
        guard topK >= 0 else { throw GenerationError("top-k \(topK) is negative") }
        guard topP > 0 && topP <= 1 else { throw GenerationError("top-p \(topP) is not in (0, 1]") }
    }
}

/// Chooses tokens from logits as `SamplingOptions` say. The work buffers (V indices and weights) are
/// allocated once, so a draw allocates nothing. Not thread-safe.
public struct TokenSampler {
    public let options: SamplingOptions
    public let vocabulary: Int
    private var generator: SeededGenerator
    /// The kept tokens (a prefix of `order`) and their unnormalized weights exp((z − max) / T).
    private var order: [Int32]
    private var weights: [Double]
    /// Scratch of the top-k selection.
    private var selection: [Float]

    public init(options: SamplingOptions, vocabulary: Int) throws {
        try options.validate()
        guard vocabulary > 0 && vocabulary <= Int(Int32.max) else {
            throw GenerationError("vocabulary of \(vocabulary) tokens")
        }
        self.options = options
        self.vocabulary = vocabulary
        generator = SeededGenerator(seed: options.seed)
        order = [Int32](repeating: 0, count: vocabulary)
        weights = [Double](repeating: 0, count: vocabulary)
        selection = options.topK > 0 && options.topK < vocabulary ? [Float](repeating: 0, count: vocabulary) : []
    }

    /// The next token for `logits` (V).
    public mutating func next(_ logits: UnsafeBufferPointer<Float>) throws -> Int {
        guard logits.count == vocabulary else {
            throw GenerationError("\(logits.count) logits for a vocabulary of \(vocabulary)")
        }
        if options.isGreedy { return try Self.argmax(logits) }
        let kept = try filter(logits)
        let u = generator.nextDouble() * weights[kept - 1]
        // weights now hold the cumulative sums of the kept tokens in `order`.
        for i in 0..<kept where u < weights[i] { return Int(order[i]) }
        return Int(order[kept - 1])
    }

    /// The distribution a draw is made from: each kept token with its probability, by token id.
    public mutating func distribution(_ logits: [Float]) throws -> [(token: Int, probability: Double)] {
        guard logits.count == vocabulary else {
            throw GenerationError("\(logits.count) logits for a vocabulary of \(vocabulary)")
        }
        if options.isGreedy { return [(try logits.withUnsafeBufferPointer(Self.argmax), 1)] }
        let kept = try logits.withUnsafeBufferPointer { try filter($0) }
        let total = weights[kept - 1]
        var previous = 0.0
        var out: [(token: Int, probability: Double)] = []
        for i in 0..<kept {
            out.append((Int(order[i]), (weights[i] - previous) / total))
            previous = weights[i]
        }
        return out.sorted { $0.token < $1.token }
    }

    /// The first index of the largest logit; a NaN logit is an error.
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) throws -> Int {
        var best = 0
        var value = -Float.infinity
        for (i, z) in logits.enumerated() {
            if z.isNaN { throw GenerationError("the model produced a NaN logit (token \(i))") }
            if z > value { value = z; best = i }
        }
        return best
    }

    /// Leaves the kept tokens in order[0..<kept] (descending probability when top-p sorted them) and
    /// their cumulative weights in weights[0..<kept]; returns kept.
    private mutating func filter(_ logits: UnsafeBufferPointer<Float>) throws -> Int {
        let v = vocabulary
        let maximum = try logits[Self.argmax(logits)]
        guard maximum.isFinite else { throw GenerationError("the model's largest logit is \(maximum)") }
        // Top-k: the k-th largest logit is the cut; every logit at or above it stays.
        var cut = -Float.infinity
        if options.topK > 0 && options.topK < v {
            selection.withUnsafeMutableBufferPointer { s in
                _ = s.initialize(from: logits)
                cut = Self.select(s, rank: options.topK - 1)
            }
        }
        let inverseTemperature = 1 / options.temperature
        var kept = 0, total = 0.0
        for i in 0..<v where logits[i] >= cut {
            let w = Foundation.exp(Double(logits[i] - maximum) * inverseTemperature)
            order[kept] = Int32(i)
            weights[kept] = w
            total += w
            kept += 1
        }
        if options.topP < 1 { kept = nucleus(kept, total: total) }
        var sum = 0.0
        for i in 0..<kept { sum += weights[i]; weights[i] = sum }
        return kept
    }

    /// Top-p over order/weights[0..<kept]: sorts the tokens that can survive by descending weight and
    /// returns how many stay.
    private mutating func nucleus(_ kept: Int, total: Double) -> Int {
        let dropMass = (1 - options.topP) * total
        // Tokens lighter than dropMass / kept together weigh less than dropMass: in ascending order they
        // come first and their cumulative sums stay ≤ dropMass, so they are dropped without sorting them.
        let light = dropMass / Double(kept)
        var heavy = 0, lightMass = 0.0
        for i in 0..<kept {
            if weights[i] < light {
                lightMass += weights[i]
            } else {
                order[heavy] = order[i]; weights[heavy] = weights[i]; heavy += 1
            }
        }
        order.withUnsafeMutableBufferPointer { o in
            weights.withUnsafeMutableBufferPointer { w in
                Self.sortDescending(order: o, weights: w, count: heavy)
            }
        }
        // Ascending walk from the lightest heavy token: drop while the cumulative sum stays ≤ dropMass.
        var cumulative = lightMass, stay = heavy
        while stay > 1 {
            cumulative += weights[stay - 1]
            if cumulative > dropMass { break }
            stay -= 1
        }
        return stay
    }

    /// Heap sort of order/weights[0..<n] by descending weight, ties by ascending token id.
    private static func sortDescending(order o: UnsafeMutableBufferPointer<Int32>, weights w: UnsafeMutableBufferPointer<Double>,
                                       count n: Int) {
        @inline(__always) func before(_ i: Int, _ j: Int) -> Bool {
            w[i] > w[j] || (w[i] == w[j] && o[i] < o[j])
        }
        @inline(__always) func swap(_ i: Int, _ j: Int) {
            let t = o[i]; o[i] = o[j]; o[j] = t
            let u = w[i]; w[i] = w[j]; w[j] = u
        }
        // A heap whose root comes last in the wanted order, so popping roots to the end sorts in place.
        func siftDown(_ start: Int, _ end: Int) {
            var root = start
            while 2 * root + 1 < end {
                var child = 2 * root + 1
                if child + 1 < end && before(child, child + 1) { child += 1 }
                if !before(root, child) { return }
                swap(root, child)
                root = child
            }
        }
        if n < 2 { return }
        for start in stride(from: n / 2 - 1, through: 0, by: -1) { siftDown(start, n) }
        for end in stride(from: n - 1, to: 0, by: -1) {
            swap(0, end)
            siftDown(0, end)
        }
    }

    /// The value of rank `rank` (0: the largest) among s, by quickselect (s is reordered).
    private static func select(_ s: UnsafeMutableBufferPointer<Float>, rank: Int) -> Float {
        var lo = 0, hi = s.count - 1
        let target = rank
        while lo < hi {
            let pivot = s[lo + (hi - lo) / 2]
            var i = lo, j = hi
            while i <= j {
                while s[i] > pivot { i += 1 }
                while s[j] < pivot { j -= 1 }
                if i <= j { s.swapAt(i, j); i += 1; j -= 1 }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { return s[target] }
        }
        return s[target]
    }
}

/// A generation failure: one line naming the problem.
public struct GenerationError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ message: String) { description = message }
}
