import Foundation
import JSON
import Llama
import Tensor

/// Wanda++ behind the driver's method protocol: `prune` takes over each decoder block (dense copy,
/// regional gradients, regional optimization, stage-by-stage pruning; see `WandaPlusPlusBlock`).
///
/// A class so the per-block records (RO losses per round, the rounds' draws, timings) stay readable after
/// the run for `pruning.json`: `records[l]` is block l's.
public final class WandaPlusPlusMethod: PruningMethod {
    public let options: WandaPlusPlusOptions
    /// Blocks whose G and ‖X‖ of the final prune are kept in their record (tests and diagnostics).
    public var keepStatisticsOfBlocks: Set<Int>
    /// What Wanda++ did to each block, by block index.
    public private(set) var records: [Int: WandaPlusPlusBlockRecord] = [:]

    public init(options: WandaPlusPlusOptions = WandaPlusPlusOptions(), keepStatisticsOfBlocks: Set<Int> = []) {
        self.options = options
        self.keepStatisticsOfBlocks = keepStatisticsOfBlocks
    }

    /// The command-line names of the three variants.
    public static let names = WandaPlusPlusVariant.allCases.map(\.rawValue)

    /// The options the three variants read.
    public static let options = [
        MethodOption("alpha", valueName: "x|auto", help: "Wanda++: weight α of the regional gradient G in the score (α·G + ‖X‖)·|W|, or auto: each block tries Wanda's score, relative weights β = 0.25…4 (α = β·mean‖X‖/mean G) and the fixed α 100, from the dense block and from the block after regional optimization, and keeps the one with the lowest output error on held-out calibration samples.", default: "100"),
        MethodOption("holdout", valueName: "n", help: "Wanda++ with --alpha auto: the last n calibration samples are held out (not used for G, regional optimization or the candidates' masks) to judge the candidates.", default: "max(1, nsamples/8)"),
        MethodOption("gradient-samples", valueName: "n", help: "Wanda++: G averages over the first n calibration samples.", default: "all"),
        MethodOption("ro-rounds", valueName: "n", help: "Wanda++: rounds of regional optimization per block.", default: "5"),
        MethodOption("ro-samples", valueName: "n", help: "Wanda++: calibration samples drawn per round (one RMSprop step each).", default: "min(32, nsamples − holdout)"),
        MethodOption("ro-lr", valueName: "x", help: "Wanda++: RMSprop learning rate of regional optimization.", default: "3e-7"),
    ]

    /// The registration of one variant.
    public static func registration(_ variant: WandaPlusPlusVariant) -> MethodRegistration {
        let summaries: [WandaPlusPlusVariant: String] = [
            .full: "regional gradient score (α·G + ‖X‖)·|W| and regional optimization with RMSprop, block by block",
            .rgsOnly: "gradient score only",
            .roOnly: "regional optimization with the Wanda score",
        ]
        return MethodRegistration(name: variant.rawValue, summary: summaries[variant] ?? variant.rawValue, options: options) { a in
            let auto = a.values["alpha"] == "auto"
            var plain = a
            if auto { plain.values["alpha"] = nil }
            if a.values["holdout"] != nil && !auto {
                throw MethodOptionError("--holdout applies only with --alpha auto")
            }
            let holdout = try a.int("holdout", range: 1...Int.max, default: nil)
            let heldOut = auto ? holdout ?? WandaPlusPlusOptions.defaultHoldout(of: a.sampleCount) : 0
            let o = WandaPlusPlusOptions(
                variant: variant,
                alpha: Float(try plain.double("alpha", default: 100)),
                roRounds: try a.int("ro-rounds", range: 0...10_000, default: 5)!,
                roSamples: try a.int("ro-samples", range: 1...Int.max, default: max(1, min(32, a.sampleCount - heldOut)))!,
                roLearningRate: Float(try a.double("ro-lr", default: 3e-7)),
                gradientSamples: try a.int("gradient-samples", range: 1...Int.max, default: nil),
                selectsOnHeldOut: auto,
                holdoutSamples: holdout)
            return WandaPlusPlusMethod(options: o)
        }
    }

    /// The variant named `name` ("wanda++", "wanda++-rgs", "wanda++-ro") with the other settings of
    /// `options`; throws a one-line error for an unknown name.
    public convenience init(name: String, options: WandaPlusPlusOptions = WandaPlusPlusOptions()) throws {
        guard let variant = WandaPlusPlusVariant(rawValue: name) else {
            throw PruningError("unknown Wanda++ variant '\(name)'; expected one of \(Self.names.joined(separator: ", "))")
        }
        var o = options
        o.variant = variant
        self.init(options: o)
    }

    /// The settings for the run record: variant, α, RO rounds, samples and learning rate, G's sample count.
    public var settings: [String: String] {
        var s = ["wanda++.variant": options.variant.rawValue,
                 "wanda++.gradient_samples": options.gradientSamples.map(String.init) ?? "all"]
        if options.variant.usesGradientScore { s["wanda++.alpha"] = options.selectsOnHeldOut ? "auto" : "\(options.alpha)" }
        if options.selectsOnHeldOut {
            s["wanda++.holdout"] = options.holdoutSamples.map(String.init) ?? "max(1, nsamples/8)"
            if options.variant.usesGradientScore { s["wanda++.fixed_alpha_candidate"] = "\(options.alpha)" }
        }
        if options.variant.usesRegionalOptimization {
            s["wanda++.ro_rounds"] = String(options.roRounds)
            s["wanda++.ro_samples"] = String(options.roSamples)
            s["wanda++.ro_lr"] = "\(options.roLearningRate)"
        }
        return s
    }

    /// What the run did, for `pruning.json`'s notes, each value a JSON array indexed by block:
    /// `wanda++.ro_loss_mean` / `wanda++.ro_loss_last` (per round: the mean and the last of the RO losses
    /// Σ(f_dense − f)², each taken before its step), `wanda++.ro_draws` (per round, the sample indices), and
    /// `wanda++.seconds` ([gradients, RO steps, stage-by-stage pruning] per block).
    public var runNotes: [String: String] {
        let blocks = records.keys.sorted()
        func json(_ value: some Encodable) -> String {
            (try? JSONValueEncoder().encode(value).text()) ?? "null"
        }
        // Non-finite losses never reach a record (a diverged round throws), so every value is valid JSON.
        var notes = settings
        if options.variant.usesRegionalOptimization {
            notes["wanda++.ro_loss_mean"] = json(blocks.map { records[$0]!.meanRoundLosses })
            notes["wanda++.ro_loss_last"] = json(blocks.map { records[$0]!.roLosses.map { $0.last ?? 0 } })
            notes["wanda++.ro_draws"] = json(blocks.map { records[$0]!.roundSamples })
        }
        if options.variant.usesGradientScore {
            notes["wanda++.alpha_used"] = json(blocks.map { records[$0]!.alphas })
        }
        if options.selectsOnHeldOut {
            // Per block: the chosen start and rule, its held-out error relative to Wanda's score on the
            // dense block, and every candidate's error.
            notes["wanda++.chosen"] = json(blocks.map { b -> String in
                let r = records[b]!
                return r.chosen.map { "\(r.candidates[$0].start) \(r.candidates[$0].rule)" } ?? ""
            })
            notes["wanda++.heldout_vs_wanda"] = json(blocks.map { records[$0]!.heldOutGainOverWanda ?? 1 })
            notes["wanda++.heldout_errors"] = json(blocks.map { b in
                records[b]!.candidates.map { ["\($0.start) \($0.rule)": $0.heldOutError] }
            })
        }
        notes["wanda++.seconds"] = json(blocks.map { b -> [Double] in
            let r = records[b]!
            return [r.gradientSeconds, r.optimizationSeconds, r.pruneSeconds].map { ($0 * 1000).rounded() / 1000 }
        })
        return notes
    }

    /// "wanda++", "wanda++-rgs" or "wanda++-ro".
    public var name: String { options.variant.rawValue }
    public var needsCalibrationInputs: Bool { true }

    /// No per-layer statistics (Wanda++ collects its own column norms, stage by stage, inside the extra
    /// bytes); the scores and mask of the largest matrix; the extra bytes below.
    public func memory(configuration c: LlamaConfiguration, sampleCount: Int, sequenceLength: Int) -> MethodMemory {
        let largest = LinearKind.allCases.map { $0.shape(c) }.map { $0[0] * $0[1] }.max() ?? 0
        return MethodMemory(compressionBytes: 5 * largest,
                            extraBlockBytes: extraBlockBytes(configuration: c, sampleCount: sampleCount, sequenceLength: sequenceLength))
    }

    /// Beyond the driver's block: the working copy of the seven matrices, their gradients, G (and its
    /// accumulator, the same buffers), RMSprop's running averages, the scores and mask of the largest
    /// matrix, the one-sample tape (activations, backward buffers, attention scratch), dL/dy, RO's
    /// dense target of each sample the rounds draw, and the stage activations where they need a store.
    public func extraBlockBytes(configuration c: LlamaConfiguration, sampleCount: Int, sequenceLength: Int) -> Int {
        let shapes = LinearKind.allCases.map { $0.shape(c) }
        let p = shapes.reduce(0) { $0 + $1[0] * $1[1] }
        let largest = shapes.map { $0[0] * $0[1] }.max() ?? 0
        // The working copy and the gradients always; RMSprop's averages with RO; G with RGS. (The dense
        // target is the driver's own block, shared until the working copy is first written.)
        let copies = 2 + (options.variant.usesRegionalOptimization ? 1 : 0)
        // G; two of them while the full method recomputes G after the rounds (the rounds' G is freed only
        // when the new one is complete).
        let recomputes = options.variant.usesRegionalOptimization && options.roRounds > 0
        let g = options.variant.usesGradientScore ? (recomputes ? 2 : 1) : 0
        let tape = DecoderBlock.bytes(geometry: BlockGeometry(configuration: c, layer: 0), capacity: sequenceLength)
        // RO's dense targets: one (T, C) output per distinct sample the rounds draw.
        let targets = recomputes ? min(sampleCount, options.roRounds * options.roSamples) : 0
        // The stage-by-stage prune keeps one activation per sample in the driver's buffer of the next
        // inputs, or in a store of its own where the attention output is wider than the hidden size.
        let qWidth = c.numAttentionHeads * c.headDim
        let stageStore = qWidth > c.hiddenSize ? sampleCount * sequenceLength * qWidth : 0
        // --alpha auto: a candidate's working copy and the dense outputs of the held-out samples (the dense
        // block's G is the first of the two above, kept).
        let holdout = options.holdoutCount(of: sampleCount)
        let selection = holdout > 0 ? 4 * p + 4 * holdout * sequenceLength * c.hiddenSize : 0
        return 4 * p * (copies + g) + 5 * largest + tape + 4 * sequenceLength * c.hiddenSize * (1 + targets) + 4 * stageStore
            + selection
    }

    public func prune(_ context: BlockPruningContext) throws -> BlockMethodReport {
        if context.layer == 0 { records = [:] }   // a new run
        let geometry = BlockGeometry(configuration: context.configuration, layer: context.layer)
        var block = context.weights
        let select: MaskSelector = { kind, scores, rows, cols, pruned in
            Selection.prunedMask(scores: scores, rows: rows, cols: cols, pattern: context.pattern(for: kind), into: pruned)
        }
        var generator = context.generator
        let record: WandaPlusPlusBlockRecord
        do {
            record = try WandaPlusPlusBlock(geometry: geometry, options: options, backend: context.backend).prune(
                &block, inputs: context.inputs, samples: context.sampleCount, tokens: context.sequenceLength,
                rope: context.rope, generator: &generator, select: select,
                keepStatistics: keepStatisticsOfBlocks.contains(context.layer),
                precision: context.computePrecision, label: "block \(context.layer)",
                scratch: context.scratch, progress: { context.report($0) })
        } catch let e as WandaPlusPlusError {
            throw PruningError(e.description)
        } catch let e as BlockBackwardError {
            throw PruningError("block \(context.layer): \(e)")
        }
        context.generator = generator
        context.weights = block
        records[context.layer] = record
        return BlockMethodReport()
    }
}
