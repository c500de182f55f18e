import Foundation
import Llama
import Pruning
import Tensor
import TestSupport
import Testing

/// `--alpha auto`: each block chooses its score rule and starting weights on held-out calibration samples.
/// The tiny block's fixture holds 8 samples of 12 tokens; the last 2 are held out.
@Suite struct WandaPlusPlusHeldOutTests {
    typealias Loaded = WandaPlusPlusTinyBlockTests.Loaded

    static func auto(_ variant: WandaPlusPlusVariant, holdout: Int = 2) -> WandaPlusPlusOptions {
        WandaPlusPlusOptions(variant: variant, alpha: 100, roRounds: 2, roSamples: 3, roLearningRate: 1e-4,
                             selectsOnHeldOut: true, holdoutSamples: holdout)
    }

    static func prune(_ t: Loaded, _ options: WandaPlusPlusOptions, inputs: [Float]? = nil)
        throws -> (DecoderBlockWeights, WandaPlusPlusBlockRecord) {
        var block = t.block
        var rng = SeededGenerator(seed: 3)
        let pruner = try WandaPlusPlusBlock(geometry: t.g, options: options)
        let record = try (inputs ?? t.x).withUnsafeBufferPointer {
            try pruner.prune(&block, inputs: $0, samples: t.samples, tokens: t.tokens, rope: t.rope, generator: &rng,
                             select: referenceSelector(n: 2, m: 4), keepStatistics: true)
        }
        return (block, record)
    }

    /// Σ‖f_dense(x) − f(x)‖² over samples `range` of `x`, each block run through its own forward and the
    /// difference taken in float64.
    static func outputError(_ t: Loaded, dense: DecoderBlockWeights, pruned: DecoderBlockWeights, samples range: Range<Int>) throws -> Double {
        let tape = try DecoderBlock(geometry: t.g, capacity: t.tokens, backward: false)
        let n = t.tokens * t.g.hidden
        var error = 0.0
        for s in range {
            let x = Tensor(shape: [t.tokens, t.g.hidden], data: Array(t.x[(s * n)..<((s + 1) * n)]))
            let target = try tape.forward(x, parameters: dense, rope: t.rope)
            let y = try tape.forward(x, parameters: pruned, rope: t.rope)
            for i in 0..<n { error += (Double(y.data[i]) - Double(target.data[i])) * (Double(y.data[i]) - Double(target.data[i])) }
        }
        return error
    }

    /// Every start × rule is tried once, in order; the chosen one has the lowest held-out error.
    @Test(arguments: WandaPlusPlusVariant.allCases)
    func tiesEveryCandidateAndKeepsTheBest(_ variant: WandaPlusPlusVariant) throws {
        let t = try Loaded()
        let (_, record) = try Self.prune(t, Self.auto(variant))
        let rules: [ScoreRule] = variant.usesGradientScore
            ? WandaPlusPlusOptions.relativeAlphaGrid.map { .relative($0) } + [.fixed(100)] : [.relative(0)]
        let starts = variant.usesRegionalOptimization ? ["dense", "optimized"] : ["dense"]
        #expect(record.candidates.map(\.start) == starts.flatMap { s in rules.map { _ in s } })
        #expect(record.candidates.map(\.rule) == starts.flatMap { _ in rules })
        #expect(record.candidates.allSatisfy { $0.heldOutError.isFinite && $0.heldOutError > 0 })
        let chosen = try #require(record.chosen)
        let lowest = try #require(record.candidates.map(\.heldOutError).minOrNaN())
        #expect(record.candidates[chosen].heldOutError == lowest)
        #expect(record.alphas.count == 7)
        let gain = try #require(record.heldOutGainOverWanda)
        #expect(gain <= 1, "the chosen candidate's error over Wanda's: \(gain)")
    }

    /// The candidate "dense β=0" is Wanda's score pruned stage by stage on the 6 training samples: a
    /// separate run of the RO-only variant without rounds on those 6 samples prunes the same block, and its
    /// error on the 2 held-out samples, measured here with the block's own forward, is the recorded one.
    @Test func wandaCandidateErrorIsRecomputedIndependently() throws {
        let t = try Loaded()
        let (_, record) = try Self.prune(t, Self.auto(.full))
        let recorded = try #require(record.candidates.first { $0.start == "dense" && $0.rule == .relative(0) }).heldOutError

        var wanda = t.block
        var rng = SeededGenerator(seed: 0)
        let training = t.samples - 2
        let plain = try WandaPlusPlusBlock(geometry: t.g, options: WandaPlusPlusOptions(variant: .roOnly, roRounds: 0))
        _ = try t.x.withUnsafeBufferPointer {
            try plain.prune(&wanda, inputs: UnsafeBufferPointer(rebasing: $0[0..<(training * t.tokens * t.g.hidden)]),
                            samples: training, tokens: t.tokens, rope: t.rope, generator: &rng, select: referenceSelector(n: 2, m: 4))
        }
        let error = try Self.outputError(t, dense: t.block, pruned: wanda, samples: training..<t.samples)
        #expect(abs(error - recorded) <= 1e-6 * error, "recomputed \(error), recorded \(recorded)")
    }

    /// Held-out samples reach neither G nor the rounds: replacing them changes no RO loss and no draw, and
    /// RGS-only's G is the G of the first 6 samples alone.
    @Test func heldOutSamplesStayOutOfGradientsAndRounds() throws {
        let t = try Loaded()
        let n = t.tokens * t.g.hidden
        var other = t.x
        for i in (6 * n)..<(8 * n) { other[i] = 3 * other[i] + 0.25 }
        let (_, a) = try Self.prune(t, Self.auto(.full))
        let (_, b) = try Self.prune(t, Self.auto(.full), inputs: other)
        #expect(a.roundSamples == b.roundSamples && a.roundSamples.flatMap { $0 }.allSatisfy { $0 < 6 })
        #expect(a.roLosses == b.roLosses)
        #expect(a.candidates.map(\.heldOutError) != b.candidates.map(\.heldOutError))

        let (_, rgs) = try Self.prune(t, Self.auto(.rgsOnly))
        let G = try #require(rgs.gradientScores)
        let pruner = try WandaPlusPlusBlock(geometry: t.g, options: WandaPlusPlusOptions(variant: .rgsOnly))
        let first6 = try t.x.withUnsafeBufferPointer {
            try pruner.regionalGradients(t.block, inputs: $0, samples: 6, tokens: t.tokens, rope: t.rope)
        }
        #expect(rgs.candidates.allSatisfy { $0.start == "dense" })
        for m in 0..<7 { #expect(G[m].data == first6[m].data, "G of \(LinearKind.allCases[m])") }
    }

    /// α of the relative rule: β · mean‖X‖ / mean G; the fixed rule ignores both means.
    @Test func scoreRuleAlpha() {
        #expect(ScoreRule.relative(2).alpha(meanG: 0.5, meanNorm: 3) == 12)
        #expect(ScoreRule.relative(0).alpha(meanG: 0.5, meanNorm: 3) == 0)
        #expect(ScoreRule.relative(1).alpha(meanG: 0, meanNorm: 3) == 0)
        #expect(ScoreRule.fixed(100).alpha(meanG: 0.5, meanNorm: 3) == 100)
        #expect("\(ScoreRule.relative(0.25))" == "β=0.25" && "\(ScoreRule.fixed(100))" == "α=100.0")
    }

    /// The registry reads `--alpha auto` and `--holdout`; RO draws default to the samples not held out.
    @Test func optionsFromTheCommandLine() throws {
        let made = try #require(try PruningMethods.make("wanda++", MethodArguments(values: ["alpha": "auto"], sampleCount: 32))
            as? WandaPlusPlusMethod)
        #expect(made.options.selectsOnHeldOut && made.options.alpha == 100 && made.options.roSamples == 28)
        #expect(made.options.holdoutCount(of: 32) == 4 && made.options.trainingCount(of: 32) == 28)
        #expect(made.settings["wanda++.alpha"] == "auto")
        let six = try #require(try PruningMethods.make("wanda++", MethodArguments(values: ["alpha": "auto", "holdout": "6"], sampleCount: 32))
            as? WandaPlusPlusMethod)
        #expect(six.options.roSamples == 26 && six.options.holdoutCount(of: 32) == 6)
        #expect(throws: MethodOptionError("--holdout applies only with --alpha auto")) {
            _ = try PruningMethods.make("wanda++", MethodArguments(values: ["holdout": "3"], sampleCount: 32))
        }
        #expect(throws: MethodOptionError("option '--alpha' needs a number, got 'automatic'")) {
            _ = try PruningMethods.make("wanda++", MethodArguments(values: ["alpha": "automatic"], sampleCount: 32))
        }
        do {
            try WandaPlusPlusOptions(selectsOnHeldOut: true, holdoutSamples: 8).validate(samples: 8)
            Issue.record("a holdout of every sample was accepted")
        } catch {
            #expect("\(error)".contains("--holdout 8 leaves no calibration sample"), "\(error)")
        }
    }
}
