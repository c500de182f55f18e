import Foundation
import Llama
import Tensor

/// Chooses the entries of linear `kind`'s score matrix (rows, cols, row-major) to prune: sets `pruned[i]`
/// to true for those and false for the rest. The sparsity pattern (the plan's, per linear) and the
/// tie-breaking live in the selector, so Wanda++ shares them with every other method.
public typealias MaskSelector = (
    _ kind: LinearKind, _ scores: UnsafeBufferPointer<Float>, _ rows: Int, _ cols: Int,
    _ pruned: UnsafeMutableBufferPointer<Bool>
) -> Void

/// The pruning stages of a block in the order it consumes its inputs; the matrices of a stage share
/// one input, and each stage's input depends on the earlier stages.
public let wandaPlusPlusStages: [[LinearKind]] = [[.q, .k, .v], [.o], [.gate, .up], [.down]]

/// How a stage-by-stage prune weighs G against ‖X‖ in S = (α·G + ‖X_j‖₂)·|W|.
public enum ScoreRule: Sendable, Equatable, CustomStringConvertible {
    /// α as given (the paper's α = 100): its balance with ‖X‖ depends on the calibration size, since ‖X‖
    /// sums over all tokens while G is a mean over samples.
    case fixed(Float)
    /// α = β · mean_j(‖X_j‖) / mean_ij(G_ij) per matrix, i.e. S ∝ (β·G/mean(G) + ‖X‖/mean(‖X‖))·|W|:
    /// the same balance at any calibration size; β = 0 is Wanda's score.
    case relative(Float)

    /// The α this rule gives a matrix whose G has mean `meanG` and whose input norms have mean `meanNorm`.
    public func alpha(meanG: Double, meanNorm: Double) -> Float {
        switch self {
        case .fixed(let a): return a
        case .relative(let beta):
            return meanG > 0 && meanNorm.isFinite ? Float(Double(beta) * meanNorm / meanG) : 0
        }
    }

    public var description: String {
        switch self {
        case .fixed(let a): return "α=\(a)"
        case .relative(let b): return "β=\(b)"
        }
    }
}

/// One setting `--alpha auto` tried on a block: the weights it started from, its score rule, and the
/// output error on the held-out samples Σₙ‖f_dense(X̂ₙ) − f(X̂ₙ)‖² of the block it pruned.
public struct HeldOutCandidate: Sendable, Equatable {
    /// "dense" (the block as it came) or "optimized" (after the rounds of regional optimization).
    public var start: String
    public var rule: ScoreRule
    public var heldOutError: Double
}

/// What Wanda++ did to one block (for `pruning.json` and tests).
public struct WandaPlusPlusBlockRecord: Sendable {
    /// The calibration sample indices of each round, in draw order.
    public var roundSamples: [[Int]] = []
    /// The RO loss Σ(f_dense(X̂ₙ) − f(X̂ₙ))² of each step, before the step, per round.
    public var roLosses: [[Double]] = []
    /// G (out, in) per matrix as used by the final prune, when the caller asked to keep statistics.
    public var gradientScores: [Tensor]?
    /// ‖X_j‖₂ per matrix of the final prune, when the caller asked to keep statistics.
    public var columnNorms: [[Float]]?
    /// `--alpha auto`: every setting tried, in order, and the index of the one the final prune used.
    public var candidates: [HeldOutCandidate] = []
    public var chosen: Int?
    /// The α each matrix's final score used (in `LinearKind` order; 0 without G).
    public var alphas: [Float] = []
    /// Wall-clock seconds spent on gradients, on regional optimization steps, and on stage-by-stage pruning.
    public var gradientSeconds = 0.0
    public var optimizationSeconds = 0.0
    public var pruneSeconds = 0.0

    /// The mean RO loss of each round.
    public var meanRoundLosses: [Double] { roLosses.map { $0.isEmpty ? .nan : $0.reduce(0, +) / Double($0.count) } }

    /// The chosen candidate's held-out error over that of Wanda's score on the dense block (the candidate
    /// "dense β=0"); nil without `--alpha auto`.
    public var heldOutGainOverWanda: Double? {
        guard let c = chosen, let w = candidates.first(where: { $0.start == "dense" && $0.rule == .relative(0) }),
              w.heldOutError > 0 else { return nil }
        return candidates[c].heldOutError / w.heldOutError
    }
}

/// Wanda++ on one decoder block: regional gradient scores, regional optimization and the final
/// stage-by-stage prune (docs/algorithms.md, "Per block").
///
/// Calibration inputs X̂ (N, T, C) are read one sample at a time through a `DecoderBlock`; the
/// gradient, RMSprop and score buffers are allocated once per block.
public struct WandaPlusPlusBlock {
    public let geometry: BlockGeometry
    public let options: WandaPlusPlusOptions
    /// Where the gradient passes and regional optimization run.
    public let backend: any ComputeBackend

    public init(geometry: BlockGeometry, options: WandaPlusPlusOptions, backend: any ComputeBackend = CPUBackend()) throws {
        try geometry.validate()
        self.geometry = geometry
        self.options = options
        self.backend = backend
    }

    /// Prunes `block` in place to the pattern `select` implements.
    ///
    /// - inputs: X̂ of this block, N samples of T tokens, (N, T, C) row-major.
    /// - generator: the run's generator for the rounds' draws (advanced by K draws of `roSamples`; one
    ///   generator for the whole run, so blocks get different draws, as in the reference script).
    /// - keepStatistics: return G and ‖X‖ of the final prune in the record.
    /// - precision: the number format of the forward passes of G and of the ‖X‖ statistics; regional
    ///   optimization (target, forward and backward) stays float32.
    /// - label: names the block in errors and progress ("block 3").
    /// - scratch: N · T · C floats the stage-by-stage prune may use for the activations it resumes from
    ///   (the driver's buffer for the next block's inputs); nil: the pass allocates its own.
    /// - progress: receives one-line details ("regional gradients 17/128", "RO round 2/5 step 4/32, loss …").
    public func prune(
        _ block: inout DecoderBlockWeights, inputs: UnsafeBufferPointer<Float>, samples: Int, tokens: Int,
        rope: RoPE, generator: inout SeededGenerator, select: MaskSelector,
        keepStatistics: Bool = false, precision: ComputePrecision = .float32, label: String = "block",
        scratch: UnsafeMutableBufferPointer<Float>? = nil,
        progress: ((String) -> Void)? = nil
    ) throws -> WandaPlusPlusBlockRecord {
        let g = geometry, C = g.hidden
        try options.validate(samples: samples)
        try block.validate(against: g)
        guard tokens > 0, inputs.count == samples * tokens * C else {
            throw WandaPlusPlusError("\(label): calibration inputs hold \(inputs.count) values, expected \(samples) × \(tokens) × \(C)")
        }
        guard rope.positions >= tokens, rope.headDim == g.headDim else {
            throw WandaPlusPlusError("\(label): RoPE table of \(rope.positions) positions × \(rope.headDim / 2) for \(tokens) tokens, head size \(g.headDim)")
        }
        if let i = FloatScan.firstNonFinite(inputs) {
            throw WandaPlusPlusError("\(label): calibration input sample \(i / (tokens * C)) holds NaN or infinity")
        }
        if let scratch, scratch.count < samples * tokens * C {
            throw WandaPlusPlusError("\(label): scratch of \(scratch.count) values for \(samples) × \(tokens) × \(C)")
        }

        var record = WandaPlusPlusBlockRecord()
        let work = try Workspace(geometry: g, parameters: block, tokens: tokens, samples: samples, scratch: scratch, backend: backend)
        work.statisticsPrecision = precision
        let sample = { (n: Int) in inputs.baseAddress! + n * tokens * C }
        let gradientCount = options.gradientSampleCount(of: samples)
        let allSamples = Array(0..<samples)
        // `--alpha auto` holds out the last samples: G, the rounds and the candidates' prunes never see them.
        let training = options.trainingCount(of: samples)
        let heldOut = Array(training..<samples)
        let dense = block
        if !heldOut.isEmpty { work.keepHeldOutTargets(dense, samples: heldOut, sample: sample, rope: rope) }

        var G: [Tensor]? = nil
        /// G of the dense block, kept for the candidates that start from it.
        var denseG: [Tensor]? = nil
        var optimized = false
        if options.variant.usesRegionalOptimization && options.roRounds > 0 {
            // The rounds' draws come first (the generator serves nothing else), so the first G pass, a
            // float32 forward of the dense block, can keep the RO targets of the samples they draw.
            let draws = (0..<options.roRounds).map { _ in generator.sample(options.roSamples, from: training) }
            let drawn = Set(draws.joined())
            work.reserveDenseOutputs(samples: drawn.count)
            if options.variant.usesGradientScore {
                let t0 = Date()
                G = Profile.phase("G") {
                    work.regionalGradients(block, samples: gradientCount, sample: sample, rope: rope,
                                           keepingDenseOutputsOf: precision == .float32 ? drawn : []) { done in
                        progress?("regional gradients \(done)/\(gradientCount)")
                    }
                }
                record.gradientSeconds += Date().timeIntervalSince(t0)
                if !heldOut.isEmpty { denseG = G }
            }
            let optimizer = RMSprop(parameterCounts: block.weights.map(\.count), learningRate: options.roLearningRate)
            for (round, idx) in draws.enumerated() {
                record.roundSamples.append(idx)
                let t0 = Date()
                progress?("RO round \(round + 1)/\(options.roRounds) pruning")
                _ = try Profile.phase("staged re-prune") {
                    try work.stagedPrune(&block, samples: idx, sample: sample, rope: rope, G: G, rule: .fixed(options.alpha),
                                         select: select, label: label, keepNorms: false)
                }
                let t1 = Date()
                var losses: [Double] = []
                for (step, n) in idx.enumerated() {
                    losses.append(Profile.phase("RO steps") {
                        work.optimizationStep(&block, dense: dense, sample: n, input: sample(n), rope: rope, optimizer: optimizer)
                    })
                    progress?("RO round \(round + 1)/\(options.roRounds) step \(step + 1)/\(idx.count), loss \(formatLoss(losses[step]))")
                }
                guard losses.allSatisfy({ $0.isFinite }) else {
                    throw WandaPlusPlusError("\(label): regional optimization diverged in round \(round + 1) (loss \(losses.first { !$0.isFinite }!)); lower --ro-lr")
                }
                record.roLosses.append(losses)
                record.pruneSeconds += t1.timeIntervalSince(t0)
                record.optimizationSeconds += Date().timeIntervalSince(t1)
            }
            optimized = true
        }
        if options.variant.usesGradientScore {
            // Recomputed on the block as the rounds left it (the only G of the RGS-only variant).
            let t0 = Date()
            G = Profile.phase("G") {
                work.regionalGradients(block, samples: gradientCount, sample: sample, rope: rope,
                                       keepingDenseOutputsOf: []) { done in
                    progress?("regional gradients \(done)/\(gradientCount)")
                }
            }
            record.gradientSeconds += Date().timeIntervalSince(t0)
            if !optimized { denseG = G }
        }

        var rule = ScoreRule.fixed(options.alpha)
        if !heldOut.isEmpty {
            // Each start (the dense block, and the block as the rounds left it) × each score rule, pruned
            // stage by stage on the training samples and judged by its output error on the held-out ones.
            let t0 = Date()
            var starts: [(name: String, weights: DecoderBlockWeights, G: [Tensor]?)] = [("dense", dense, denseG)]
            if optimized { starts.append(("optimized", block, G)) }
            let rules: [ScoreRule] = options.variant.usesGradientScore
                ? WandaPlusPlusOptions.relativeAlphaGrid.map { .relative($0) } + [.fixed(options.alpha)]
                : [.relative(0)]
            let training = Array(0..<training)
            for start in starts {
                for candidateRule in rules {
                    progress?("held-out choice: \(start.name) \(candidateRule)")
                    var candidate = start.weights
                    _ = try Profile.phase("held-out choice") {
                        try work.stagedPrune(&candidate, samples: training, sample: sample, rope: rope, G: start.G,
                                             rule: candidateRule, select: select, label: label, keepNorms: false)
                    }
                    let error = work.heldOutError(candidate, samples: heldOut, sample: sample, rope: rope)
                    guard error.isFinite else {
                        throw WandaPlusPlusError("\(label): held-out output error of \(start.name) \(candidateRule) is not finite")
                    }
                    record.candidates.append(HeldOutCandidate(start: start.name, rule: candidateRule, heldOutError: error))
                }
            }
            // Strictly lower error wins, so a tie keeps the earlier (simpler) setting.
            let best = record.candidates.indices.min { record.candidates[$0].heldOutError < record.candidates[$1].heldOutError }!
            record.chosen = best
            rule = record.candidates[best].rule
            if record.candidates[best].start == "dense" {
                block = dense
                G = denseG
            }
            record.pruneSeconds += Date().timeIntervalSince(t0)
        }

        let t0 = Date()
        progress?("final prune")
        let final = try Profile.phase("staged re-prune") {
            try work.stagedPrune(&block, samples: allSamples, sample: sample, rope: rope, G: G,
                                 rule: rule, select: select, label: label, keepNorms: keepStatistics)
        }
        record.pruneSeconds += Date().timeIntervalSince(t0)
        record.alphas = final.alphas
        if keepStatistics {
            record.gradientScores = G
            record.columnNorms = final.norms
        }
        return record
    }

    /// G alone, for the first `samples` inputs: RMS over samples of ∂‖f(X̂ₙ)‖₂/∂W per matrix.
    public func regionalGradients(
        _ block: DecoderBlockWeights, inputs: UnsafeBufferPointer<Float>, samples: Int, tokens: Int, rope: RoPE
    ) throws -> [Tensor] {
        try block.validate(against: geometry)
        guard samples > 0, tokens > 0, inputs.count >= samples * tokens * geometry.hidden else {
            throw WandaPlusPlusError("regional gradients: \(inputs.count) input values for \(samples) × \(tokens) × \(geometry.hidden)")
        }
        let work = try Workspace(geometry: geometry, parameters: block, tokens: tokens, samples: 0, scratch: nil, backend: backend)
        let C = geometry.hidden
        return work.regionalGradients(block, samples: samples, sample: { inputs.baseAddress! + $0 * tokens * C },
                                      rope: rope, keepingDenseOutputsOf: [], progress: { _ in })
    }
}

/// Buffers of one block's Wanda++ pass, allocated once.
private final class Workspace {
    let g: BlockGeometry
    let tokens: Int
    let tape: DecoderBlock
    var grads: BlockGradients
    /// dL/dy (T, C).
    var dy: [Float]
    /// f_dense(X̂ₙ) of every sample RO has drawn so far, (slots, T, C), and each sample's slot: the dense block
    /// does not change within a block, so a sample's target is computed once, not at every step that draws it.
    private var denseOutputs: [Float] = []
    private var denseSlot: [Int: Int] = [:]
    /// Score and mask of the largest matrix.
    var scores: [Float]
    var mask: [Bool]
    /// The number format of the forward passes of G and of the staged ‖X‖ (RO's stay float32).
    var statisticsPrecision: ComputePrecision = .float32
    /// Per sample of a stage-by-stage prune, (samples, T, stageWidth): the activation the next stage resumes
    /// from (attn after {q,k,v}, then h after o).
    private let stageActivations: UnsafeMutablePointer<Float>
    private let stageWidth: Int
    private var ownedStageActivations: UnsafeMutableBufferPointer<Float>?

    /// `samples`: the most samples a stage-by-stage prune sees; `scratch`: N · T · C floats to use for
    /// their saved activations where a slot of width C holds them (the attention output is nh·hd wide).
    init(geometry: BlockGeometry, parameters: DecoderBlockWeights, tokens: Int, samples: Int,
         scratch: UnsafeMutableBufferPointer<Float>?, backend: any ComputeBackend) throws {
        g = geometry
        self.tokens = tokens
        if let scratch, geometry.qWidth <= geometry.hidden, scratch.count >= samples * tokens * geometry.hidden {
            stageWidth = geometry.hidden
            stageActivations = scratch.baseAddress!
        } else {
            stageWidth = max(geometry.hidden, geometry.qWidth)
            let owned = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, samples * tokens * stageWidth))
            owned.initialize(repeating: 0)
            ownedStageActivations = owned
            stageActivations = owned.baseAddress!
        }
        tape = try DecoderBlock(geometry: geometry, capacity: tokens, backend: backend)
        grads = BlockGradients(like: parameters)
        dy = [Float](repeating: 0, count: tokens * geometry.hidden)
        let largest = parameters.weights.map(\.count).max() ?? 0
        scores = [Float](repeating: 0, count: largest)
        mask = [Bool](repeating: false, count: largest)
    }

    deinit { ownedStageActivations?.deallocate() }

    /// G_ij = sqrt((1/N) Σₙ (∂‖f(X̂ₙ)‖₂/∂W_ij)²) for samples 0..<N; squares summed in float32
    /// (N ≤ a few hundred terms of one sign: relative rounding below N·2⁻²⁴).
    /// The output of each forward is the dense block's f(X̂ₙ) when `p` is the dense block: it is kept as
    /// RO's target for the samples in `keepingDenseOutputsOf` (float32 passes only).
    func regionalGradients(_ p: DecoderBlockWeights, samples: Int, sample: (Int) -> UnsafePointer<Float>,
                           rope: RoPE, keepingDenseOutputsOf kept: Set<Int>, progress: (Int) -> Void) -> [Tensor] {
        var acc = p.weights.map { Tensor.zeros($0.shape) }
        let n = tokens * g.hidden
        tape.precision = statisticsPrecision
        defer { tape.precision = .float32 }
        for s in 0..<samples {
            tape.forward(sample(s), tokens: tokens, parameters: p, rope: rope)
            if kept.contains(s) { keepDenseOutput(of: s) }
            // d‖y‖₂/dy = y / ‖y‖₂ (‖y‖ summed in float64).
            let y = tape.output
            var ss = 0.0
            for i in 0..<n { ss += Double(y[i]) * Double(y[i]) }
            let inv = ss > 0 ? Float(1 / ss.squareRoot()) : 0
            for i in 0..<n { dy[i] = y[i] * inv }
            dy.withUnsafeBufferPointer { d in
                tape.backward(outputGradient: d.baseAddress!, parameters: p, rope: rope, gradients: &grads)
            }
            for m in 0..<7 {
                grads.weights[m].data.withUnsafeBufferPointer { gr in
                    acc[m].data.withUnsafeMutableBufferPointer { a in
                        let gp = gr.baseAddress!, ap = a.baseAddress!
                        parallelChunks(a.count, minimumPerThread: 1 << 16) { r in
                            for i in r { ap[i] += gp[i] * gp[i] }
                        }
                    }
                }
            }
            progress(s + 1)
        }
        let scale = 1 / Float(samples)
        for m in 0..<7 {
            acc[m].data.withUnsafeMutableBufferPointer { a in
                let ap = a.baseAddress!
                parallelChunks(a.count, minimumPerThread: 1 << 16) { r in
                    for i in r { ap[i] = (ap[i] * scale).squareRoot() }
                }
            }
        }
        return acc
    }

    /// Prunes the seven matrices stage by stage ({q,k,v} → o → {gate,up} → down). Each stage's
    /// ‖X_j‖₂ (plain L2 norm over all tokens of `samples`) is collected through the block as pruned in the
    /// earlier stages; score S = (α·G + ‖X_j‖₂)·|W| with G, or |W|·‖X_j‖₂ (Wanda) without.
    ///
    /// Each stage resumes from the activation the previous one saved per sample (attn for o, h for gate,
    /// up and down), so the block is run once in all rather than once per stage from its input.
    /// Returns the α each matrix used, and the norms of each matrix when `keepNorms`.
    func stagedPrune(_ p: inout DecoderBlockWeights, samples: [Int], sample: (Int) -> UnsafePointer<Float>,
                     rope: RoPE, G: [Tensor]?, rule: ScoreRule, select: MaskSelector, label: String,
                     keepNorms: Bool) throws -> (alphas: [Float], norms: [[Float]]?) {
        var kept: [[Float]] = Array(repeating: [], count: 7)
        var alphas = [Float](repeating: 0, count: 7)
        let C = g.hidden
        tape.precision = statisticsPrecision
        defer { tape.precision = .float32 }
        for (stageIndex, stage) in wandaPlusPlusStages.enumerated() {
            let inFeatures = g.shape(of: stage[0]).in
            let statistics = InputStatistics(inFeatures: inFeatures, kind: .columnSquares)
            for (i, s) in samples.enumerated() {
                let saved = stageActivations + i * tokens * stageWidth
                switch stageIndex {
                case 0:
                    tape.forward(sample(s), tokens: tokens, parameters: p, rope: rope, stop: .attentionInput)
                case 1:
                    tape.forward(sample(s), tokens: tokens, parameters: p, rope: rope, stop: .oInput)
                    saved.update(from: tape.attentionOutput.baseAddress!, count: tokens * g.qWidth)
                case 2:
                    tape.forward(resuming: .oProjection(input: sample(s), attention: saved), tokens: tokens,
                                 parameters: p, rope: rope, stop: .mlpInput)
                    saved.update(from: tape.residual.baseAddress!, count: tokens * C)
                default:
                    tape.forward(resuming: .postAttentionNorm(residual: saved), tokens: tokens, parameters: p,
                                 rope: rope, stop: .downInput)
                }
                statistics.calibrate(tape.input(of: stage[0]), rows: tokens)
            }
            // Rounded to float32 after the float64 square root, as the reference does.
            let norms = statistics.columnNorms
            if let j = norms.firstIndex(where: { !$0.isFinite }) {
                throw WandaPlusPlusError("\(label): input feature \(j) of \(stage[0].projectionName) is not finite (NaN or overflow in the pruned block)")
            }
            for m in stage {
                if let G { alphas[m.index] = rule.alpha(meanG: mean(G[m.index].data), meanNorm: mean(norms)) }
                try pruneMatrix(&p.weights[m.index], kind: m, G: G?[m.index], norms: norms, alpha: alphas[m.index], select: select,
                                name: "\(label) \(m.projectionName)")
                if keepNorms { kept[m.index] = norms }
            }
        }
        return (alphas, keepNorms ? kept : nil)
    }

    /// The dense block's outputs on the held-out samples, (h, T, C) in their order: what `heldOutError`
    /// measures candidates against.
    private var heldOutTargets: [Float] = []

    func keepHeldOutTargets(_ dense: DecoderBlockWeights, samples: [Int], sample: (Int) -> UnsafePointer<Float>, rope: RoPE) {
        let n = tokens * g.hidden
        heldOutTargets = [Float](repeating: 0, count: samples.count * n)
        for (i, s) in samples.enumerated() {
            tape.forward(sample(s), tokens: tokens, parameters: dense, rope: rope)
            heldOutTargets.withUnsafeMutableBufferPointer { t in
                _ = UnsafeMutableBufferPointer(rebasing: t[(i * n)..<((i + 1) * n)]).update(fromContentsOf: tape.output)
            }
        }
    }

    /// Σₙ ‖f_dense(X̂ₙ) − f(X̂ₙ)‖² over the held-out samples (the same list `keepHeldOutTargets` saw), in
    /// float64, through float32 forwards.
    func heldOutError(_ p: DecoderBlockWeights, samples: [Int], sample: (Int) -> UnsafePointer<Float>, rope: RoPE) -> Double {
        let n = tokens * g.hidden
        var error = 0.0
        for (i, s) in samples.enumerated() {
            tape.forward(sample(s), tokens: tokens, parameters: p, rope: rope)
            let y = tape.output
            heldOutTargets.withUnsafeBufferPointer { t in
                let target = t.baseAddress! + i * n
                for j in 0..<n {
                    let d = Double(y[j]) - Double(target[j])
                    error += d * d
                }
            }
        }
        return error
    }

    private func pruneMatrix(_ w: inout Tensor, kind: LinearKind, G: Tensor?, norms: [Float], alpha: Float, select: MaskSelector,
                             name: String) throws {
        let rows = w.shape[0], cols = w.shape[1], n = rows * cols
        var nanAt: Int? = nil
        w.data.withUnsafeMutableBufferPointer { wp in
            scores.withUnsafeMutableBufferPointer { sp in
                mask.withUnsafeMutableBufferPointer { mp in
                    norms.withUnsafeBufferPointer { xp in
                        let weight = UnsafePointer(wp.baseAddress!), norms = xp.baseAddress!, out = sp.baseAddress!
                        if let G {
                            G.data.withUnsafeBufferPointer { gp in
                                Scores.regionalGradient(weight: weight, gradient: gp.baseAddress!, alpha: alpha, norms: norms,
                                                        rows: rows, cols: cols, into: out)
                            }
                        } else {
                            Scores.wanda(weight: weight, norms: norms, rows: rows, cols: cols, into: out)
                        }
                        nanAt = FloatScan.firstNaN(UnsafeBufferPointer(rebasing: sp[0..<n]))
                        if nanAt != nil { return }
                        select(kind, UnsafeBufferPointer(rebasing: sp[0..<n]), rows, cols, UnsafeMutableBufferPointer(rebasing: mp[0..<n]))
                        Selection.zeroPruned(UnsafeMutableBufferPointer(rebasing: wp[0..<n]),
                                             mask: UnsafeBufferPointer(rebasing: mp[0..<n]))
                    }
                }
            }
        }
        if let i = nanAt {
            throw WandaPlusPlusError("\(name): NaN score at row \(i / cols), column \(i % cols) (NaN in the weight or its gradient)")
        }
    }

    /// Room for the dense outputs of `samples` distinct samples (the rounds' draws).
    func reserveDenseOutputs(samples: Int) {
        denseOutputs = [Float](repeating: 0, count: samples * tokens * g.hidden)
        denseSlot = [:]
    }

    /// Keeps the tape's output of the last forward pass, that of the dense block on `sample`, as its RO target.
    func keepDenseOutput(of sample: Int) {
        let n = tokens * g.hidden
        let slot = denseSlot[sample] ?? denseSlot.count
        precondition((slot + 1) * n <= denseOutputs.count, "reserveDenseOutputs holds too few samples")
        denseSlot[sample] = slot
        denseOutputs.withUnsafeMutableBufferPointer { t in
            _ = UnsafeMutableBufferPointer(rebasing: t[(slot * n)..<((slot + 1) * n)]).update(fromContentsOf: tape.output)
        }
    }

    /// One RMSprop step on Σ(f_dense(x) − f(x))² for calibration sample `sample` (whose block input is
    /// `input`); returns the loss before the step.
    func optimizationStep(_ p: inout DecoderBlockWeights, dense: DecoderBlockWeights, sample: Int,
                          input: UnsafePointer<Float>, rope: RoPE, optimizer: RMSprop) -> Double {
        let n = tokens * g.hidden
        if denseSlot[sample] == nil {
            tape.forward(input, tokens: tokens, parameters: dense, rope: rope)
            keepDenseOutput(of: sample)
        }
        let base = denseSlot[sample]! * n
        tape.forward(input, tokens: tokens, parameters: p, rope: rope)
        let y = tape.output
        var loss = 0.0
        denseOutputs.withUnsafeBufferPointer { t in
            let target = t.baseAddress! + base
            for i in 0..<n {
                let d = y[i] - target[i]
                loss += Double(d) * Double(d)
                dy[i] = 2 * d
            }
        }
        dy.withUnsafeBufferPointer { d in
            tape.backward(outputGradient: d.baseAddress!, parameters: p, rope: rope, gradients: &grads)
        }
        for m in 0..<7 {
            p.weights[m].data.withUnsafeMutableBufferPointer { w in
                grads.weights[m].data.withUnsafeBufferPointer { gr in
                    optimizer.update(m, parameter: w, gradient: gr)
                }
            }
        }
        optimizer.finishStep()
        return loss
    }
}

/// The mean of `x` in float64 (NaN stays NaN).
private func mean(_ x: [Float]) -> Double {
    x.isEmpty ? 0 : x.reduce(0.0) { $0 + Double($1) } / Double(x.count)
}

/// A loss with 6 significant digits, for progress lines.
private func formatLoss(_ x: Double) -> String {
    guard x.isFinite, x != 0 else { return "\(x)" }
    let digits = max(0, 5 - Int(Foundation.log10(abs(x)).rounded(.down)))
    return String(format: "%.\(min(digits, 12))f", x)
}
