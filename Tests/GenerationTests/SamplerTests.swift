import Foundation
import Generation
import Testing
import TestSupport

/// Sampling against distributions worked out by hand: logits ln p of a known distribution p, so that each
/// filter's result is a fraction of the p's.
@Suite struct SamplerTests {
    /// p = (0.45, 0.25, 0.15, 0.1, 0.05) as logits, shifted by 3 (softmax ignores the shift).
    static let p: [Double] = [0.45, 0.25, 0.15, 0.1, 0.05]
    static let logits: [Float] = p.map { Float(log($0) + 3) }

    static func distribution(_ options: SamplingOptions, _ logits: [Float] = logits) throws -> [Int: Double] {
        var s = try TokenSampler(options: options, vocabulary: logits.count)
        var d: [Int: Double] = [:]
        for (t, q) in try s.distribution(logits) { d[t] = q }
        return d
    }

    static func expectClose(_ d: [Int: Double], _ expected: [Int: Double], _ comment: Comment) {
        #expect(Set(d.keys) == Set(expected.keys), comment)
        for (t, q) in expected {
            let e = abs((d[t] ?? .nan) - q)
            #expect(e <= 1e-6, "\(comment) token \(t): \(d[t] ?? .nan) vs \(q)")
        }
    }

    @Test func temperatureOneKeepsTheDistribution() throws {
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1)),
                         [0: 0.45, 1: 0.25, 2: 0.15, 3: 0.1, 4: 0.05], "T = 1")
    }

    /// T = 0.5 squares the probabilities: p² / Σp², Σp² = 0.2025 + 0.0625 + 0.0225 + 0.01 + 0.0025 = 0.3.
    @Test func temperatureSharpens() throws {
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 0.5)),
                         [0: 0.2025 / 0.3, 1: 0.0625 / 0.3, 2: 0.0225 / 0.3, 3: 0.01 / 0.3, 4: 0.0025 / 0.3], "T = 0.5")
    }

    /// Top-3 keeps 0.45, 0.25, 0.15 (sum 0.85).
    @Test func topKKeepsTheKLargest() throws {
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1, topK: 3)),
                         [0: 0.45 / 0.85, 1: 0.25 / 0.85, 2: 0.15 / 0.85], "top-k 3")
        // A tie at the cut is kept, as transformers keeps every score ≥ the k-th largest.
        let tied: [Float] = [2, 1, 1, 0]
        let d = try Self.distribution(SamplingOptions(temperature: 1, topK: 2), tied)
        #expect(Set(d.keys) == [0, 1, 2])
    }

    /// Top-p 0.75: ascending cumulative sums 0.05, 0.15, 0.30, 0.55, 1.0; those ≤ 0.25 go (0.05, 0.1),
    /// 0.15 stays (0.30 > 0.25): kept 0.45, 0.25, 0.15.
    @Test func topPKeepsTheNucleus() throws {
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1, topP: 0.75)),
                         [0: 0.45 / 0.85, 1: 0.25 / 0.85, 2: 0.15 / 0.85], "top-p 0.75")
        // Top-p 0.3: only 0.45's cumulative (1.0) passes 0.7 ... and 0.25's (0.55) does not: one token left.
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1, topP: 0.3)), [0: 1], "top-p 0.3")
    }

    /// Top-k before top-p: top-4 leaves 0.45, 0.25, 0.15, 0.1 (sum 0.95), whose renormalized ascending sums
    /// are 0.105, 0.263, 0.526, 1. With top-p 0.6 those ≤ 0.4 go: 0.45 and 0.25 stay. With top-p 0.88 those
    /// ≤ 0.12 go: 0.1 alone, and 0.45, 0.25, 0.15 stay; top-p first (sums 0.05, 0.15, 0.30, 0.55, 1: only
    /// 0.05 goes) then top-4 would keep 0.1 too. Top-p 0.69 alone drops the sums ≤ 0.31 (0.05, 0.15, 0.30).
    @Test func topKThenTopP() throws {
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1, topK: 4, topP: 0.6)),
                         [0: 0.45 / 0.7, 1: 0.25 / 0.7], "top-k 4, top-p 0.6")
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1, topK: 4, topP: 0.88)),
                         [0: 0.45 / 0.85, 1: 0.25 / 0.85, 2: 0.15 / 0.85], "top-k 4, top-p 0.88")
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 1, topP: 0.69)),
                         [0: 0.45 / 0.7, 1: 0.25 / 0.7], "top-p 0.69 alone")
    }

    /// Temperature before top-p: at T = 0.5 the probabilities are p²/0.3 = 0.675, 0.208, 0.075, 0.033,
    /// 0.008; top-p 0.8 drops the sums ≤ 0.2 (0.008, 0.042, 0.117) and keeps 0.675, 0.208.
    @Test func temperatureThenTopP() throws {
        Self.expectClose(try Self.distribution(SamplingOptions(temperature: 0.5, topP: 0.8)),
                         [0: 0.2025 / 0.265, 1: 0.0625 / 0.265], "T 0.5, top-p 0.8")
    }

    /// Draws follow the kept distribution (20,000 draws of top-k 3 within 4 standard errors), and the same
    /// seed draws the same tokens.
    @Test func seededDrawsFollowTheDistribution() throws {
        let options = SamplingOptions(temperature: 1, topK: 3, seed: 1234)
        var a = try TokenSampler(options: options, vocabulary: 5)
        var b = try TokenSampler(options: options, vocabulary: 5)
        var counts = [0, 0, 0, 0, 0]
        var drawsA: [Int] = [], drawsB: [Int] = []
        let n = 20_000
        try Self.logits.withUnsafeBufferPointer { z in
            for _ in 0..<n {
                let t = try a.next(z)
                counts[t] += 1
                drawsA.append(t)
                drawsB.append(try b.next(z))
            }
        }
        #expect(drawsA == drawsB)
        #expect(counts[3] == 0 && counts[4] == 0)
        for (t, q) in [(0, 0.45 / 0.85), (1, 0.25 / 0.85), (2, 0.15 / 0.85)] {
            let sd = (q * (1 - q) / Double(n)).squareRoot()
            let f = Double(counts[t]) / Double(n)
            #expect(abs(f - q) <= 4 * sd, "token \(t): frequency \(f), probability \(q)")
        }
        var c = try TokenSampler(options: SamplingOptions(temperature: 1, topK: 3, seed: 1235), vocabulary: 5)
        let drawsC = try Self.logits.withUnsafeBufferPointer { z in try (0..<200).map { _ in try c.next(z) } }
        #expect(drawsC != Array(drawsA.prefix(200)))
    }

    /// Greedy takes the first largest logit; NaN logits and bad options are errors.
    @Test func greedyAndErrors() throws {
        var s = try TokenSampler(options: SamplingOptions(), vocabulary: 4)
        #expect(try [Float(1), 3, 3, 2].withUnsafeBufferPointer { try s.next($0) } == 1)
        #expect(throws: GenerationError("the model produced a NaN logit (token 2)")) {
            try [Float(1), 3, .nan, 2].withUnsafeBufferPointer { try s.next($0) }
        }
        #expect(throws: GenerationError("top-p 1.5 is not in (0, 1]")) {
            try TokenSampler(options: SamplingOptions(temperature: 1, topP: 1.5), vocabulary: 4)
        }
        #expect(throws: GenerationError("temperature -1.0 is not a finite number ≥ 0")) {
            try TokenSampler(options: SamplingOptions(temperature: -1), vocabulary: 4)
        }
    }
}
