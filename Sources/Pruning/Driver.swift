import Datasets
import Llama
import Tensor

/// The options of a pruning run besides the method.
public struct PruningOptions: Sendable {
    /// The sparsity of every linear; a planner given to `BlockwisePruning.run` may replace it.
    public var plan: SparsityPlan
    /// The plan's base pattern (every linear's, for a uniform plan).
    public var pattern: SparsityPattern { plan.base }
    /// Seeds the run's `SeededGenerator` (methods that draw samples, e.g. Wanda++'s RO rounds).
    public var seed: UInt64
    /// Calibration samples per forward call; nil: enough for about 2048 tokens (at least 1).
    public var samplesPerForward: Int?
    /// The number format of the calibration forward passes (statistics, next inputs) and of Wanda++'s
    /// gradient pass (`ComputePrecision`); regional optimization, scores and the weights stay float32.
    public var computePrecision: ComputePrecision
    /// Where the block's math runs: the calibration forwards, the statistics and every method's work.
    public var backend: any ComputeBackend = CPUBackend()

    public init(pattern: SparsityPattern, seed: UInt64 = 0, samplesPerForward: Int? = nil,
                computePrecision: ComputePrecision = .float32) {
        self.init(plan: SparsityPlan(pattern), seed: seed, samplesPerForward: samplesPerForward, computePrecision: computePrecision)
    }

    public init(plan: SparsityPlan, seed: UInt64 = 0, samplesPerForward: Int? = nil,
                computePrecision: ComputePrecision = .float32) {
        self.plan = plan
        self.seed = seed
        self.samplesPerForward = samplesPerForward
        self.computePrecision = computePrecision
    }

    /// `samplesPerForward`, or max(1, 2048 / seqlen) capped at nsamples.
    public func resolvedSamplesPerForward(sampleCount: Int, sequenceLength: Int) -> Int {
        max(1, min(sampleCount, samplesPerForward ?? (2048 / max(sequenceLength, 1))))
    }
}

/// What pruning did to one linear weight.
public struct LayerPruningReport: Codable, Sendable, Equatable {
    /// The checkpoint tensor name.
    public var name: String
    public var layer: Int
    public var kind: LinearKind
    /// (out, in)
    public var shape: [Int]
    /// Entries equal to zero after pruning (`-0.0` included).
    public var zeros: Int
    /// zeros / (out · in).
    public var sparsity: Double
    /// Seconds in the method's compress step, when the method reports it.
    public var seconds: Double?
}

/// One block's reports.
public struct BlockPruningReport: Codable, Sendable, Equatable {
    public var layer: Int
    /// Wall-clock seconds for the block: loading, statistics, pruning, and the next block's inputs.
    public var seconds: Double
    public var layers: [LayerPruningReport]

    public init(layer: Int, seconds: Double, layers: [LayerPruningReport]) {
        self.layer = layer; self.seconds = seconds; self.layers = layers
    }
}

/// The outcome of a pruning run (the library half of `pruning.json`).
public struct PruningSummary: Codable, Sendable, Equatable {
    public var method: String
    /// `SparsityPlan.description`: the pattern of a uniform plan.
    public var pattern: String
    /// The plan's exceptions ("layer.kind" → pattern) when it is not uniform.
    public var plan: [String: String]? = nil
    /// The planner that set the plan (`SparsityPlanner.name`).
    public var planner: String? = nil
    public var seed: UInt64
    public var sampleCount: Int
    public var sequenceLength: Int
    /// `CalibrationSet.source` and `.hash` (nil when neither the method nor the planner read calibration data).
    public var calibrationSource: String?
    public var calibrationHash: String?
    public var blocks: [BlockPruningReport]
    /// Entries of the pruned linears in all, and how many of them are zero.
    public var parameters: Int
    public var zeros: Int
    /// zeros / parameters.
    public var sparsity: Double
    public var seconds: Double
}

extension PruningSummary {
    /// The summary of an input that was never pruned (fine-tuning a dense checkpoint).
    public static func unpruned(parameters: Int, zeros: Int) -> PruningSummary {
        PruningSummary(method: "none", pattern: "dense", seed: 0, sampleCount: 0, sequenceLength: 0,
                       calibrationSource: nil, calibrationHash: nil, blocks: [], parameters: parameters, zeros: zeros,
                       sparsity: parameters > 0 ? Double(zeros) / Double(parameters) : 0, seconds: 0)
    }
}

/// The shared block-by-block pipeline (algorithms.md, "Shared pipeline"), for every method.
public enum BlockwisePruning {
    /// Prunes every decoder block of `checkpoint` with `method`:
    ///
    /// 1. embeds the calibration tokens into X̂₀ (nsamples, seqlen, hidden);
    /// 2. for each block l: loads its weights (only this block is resident; the checkpoint stays
    ///    memory-mapped), calls `method.prune` (for a per-layer method: statistics of all seven linears from one
    ///    pass of the dense block, then compress each), checks the result (shapes; N:M groups), records the
    ///    per-layer sparsity, computes X̂ₗ₊₁ = pruned blockₗ(X̂ₗ) into the second activation buffer (the two
    ///    buffers swap every block; a method may have left them there, `BlockPruningContext.outputs`), and
    ///    hands the pruned block to `blockSink` (export, or an in-memory model for evaluation).
    ///
    /// Methods with `needsCalibrationInputs == false` (magnitude) skip steps that touch activations, and
    /// `calibration` may then be nil. Progress goes to `progress` once per layer step:
    /// stage "prune", completed = blocks finished, total = L, unit "blocks", detail
    /// "block l+1/L <step>, <elapsed> s".
    ///
    /// With `checkpoints`, the run starts where `checkpoints.resumePoint()` says (the next block, its
    /// inputs, the generator and the finished blocks' reports; the block sink already has those blocks),
    /// and after each block hands the state to `checkpoints.blockFinished`. Blocks depend on earlier ones
    /// only through these, so a resumed run's blocks are bit-identical to an uninterrupted run's.
    /// With `planner`, a pass over the dense model sets the plan before pruning (`SparsityPlanner`); a
    /// resumed run keeps the plan its state saved. `atPoint` is called at `calibrated` and `block-<l>`
    /// (`RunPointHook`).
    public static func run(checkpoint: LlamaCheckpoint, calibration: CalibrationSet?, method: PruningMethod,
                           options: PruningOptions, progress: ProgressHandler? = nil,
                           checkpoints: BlockCheckpointing? = nil, planner: SparsityPlanner? = nil,
                           atPoint: RunPointHook? = nil,
                           blockSink: (DecoderBlockWeights) throws -> Void) throws -> PruningSummary {
        let c = checkpoint.configuration
        let runStart = DispatchTimeClock.now()
        let blockCount = c.numHiddenLayers
        let usesInputs = method.needsCalibrationInputs
        // A planner may read the dense model's activations even when the method reads none (OWL with magnitude).
        let planUsesInputs = planner?.needsCalibrationInputs ?? false
        let readsCalibration = usesInputs || planUsesInputs
        var nsamples = 0, seqlen = 0
        if readsCalibration {
            guard let calibration else {
                throw PruningError("\(usesInputs ? method.name : planner!.name) needs calibration data, but none was given")
            }
            nsamples = calibration.nsamples
            seqlen = calibration.seqlen
            try checkCalibration(calibration, configuration: c)
        } else if let calibration {
            nsamples = calibration.nsamples
            seqlen = calibration.seqlen
        }
        let perForward = options.resolvedSamplesPerForward(sampleCount: max(nsamples, 1), sequenceLength: seqlen)
        let stride = seqlen * c.hiddenSize
        let activationCount = readsCalibration ? nsamples * stride : 0
        var current = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(activationCount, 1))
        var next = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(activationCount, 1))
        defer { current.deallocate(); next.deallocate() }
        let rope = RoPE(configuration: c, positions: max(seqlen, 1))
        var generator = SeededGenerator(seed: options.seed)
        var blocks: [BlockPruningReport] = []
        var parameters = 0, zeros = 0
        var startBlock = 0
        var plan = options.plan
        let blockPool = DecoderBlockPool(backend: options.backend)
        /// The context in which block l is pruned (or, in the planning pass, observed); `withInputs`: the
        /// calibration inputs are in `current`.
        func makeContext(_ l: Int, weights: DecoderBlockWeights, withInputs: Bool,
                         report: @escaping (String) -> Void) -> BlockPruningContext {
            BlockPruningContext(
                configuration: c, layer: l, layerCount: blockCount, weights: weights, plan: plan,
                rope: rope, sampleCount: withInputs ? nsamples : 0, sequenceLength: seqlen, samplesPerForward: perForward,
                generator: generator, inputs: UnsafeBufferPointer(current),
                scratch: withInputs ? next : UnsafeMutableBufferPointer(start: nil, count: 0),
                computePrecision: options.computePrecision,
                blockPool: blockPool, progress: report)
        }
        /// X̂ₗ₊₁ = weights(X̂ₗ) into `next`, then the buffers swap.
        func propagate(_ context: BlockPruningContext, weights: DecoderBlockWeights) {
            let out = next
            context.forward(weights: weights, output: { samples, y in
                Profile.phase("block copies") {
                    for (i, s) in samples.enumerated() {
                        (out.baseAddress! + s * stride).update(from: y.baseAddress! + i * stride, count: stride)
                    }
                }
            })
            swap(&current, &next)
        }
        if let point = try checkpoints?.resumePoint() {
            guard point.nextBlock <= blockCount, point.blocks.count == point.nextBlock else {
                throw PruningError("the resume state names block \(point.nextBlock) of a model with \(blockCount)")
            }
            startBlock = point.nextBlock
            generator = point.generator
            if let saved = point.plan { plan = saved }
            blocks = point.blocks
            for b in blocks { for layer in b.layers { parameters += layer.shape.reduce(1, *); zeros += layer.zeros } }
            if usesInputs && startBlock < blockCount { try point.loadInputs(current) }
            progress?(ProgressUpdate(stage: "prune", completed: startBlock, total: blockCount, unit: "blocks",
                                     detail: "resumed after block \(startBlock)/\(blockCount)"))
        } else {
            if let planner {
                // The dense model's own activations, block by block, for the planner.
                if planUsesInputs, let calibration {
                    try Profile.phase("embedding") { try embed(calibration, checkpoint: checkpoint, into: current) }
                }
                for l in 0..<blockCount {
                    progress?(ProgressUpdate(stage: "plan", completed: l, total: blockCount, unit: "blocks",
                                             detail: "\(planner.name): dense block \(l + 1)/\(blockCount)"))
                    let dense = try Profile.phase("loading") { try checkpoint.loadBlock(l) }
                    let observed = makeContext(l, weights: dense, withInputs: planUsesInputs, report: { _ in })
                    try planner.observe(observed)
                    if planUsesInputs && l + 1 < blockCount { propagate(observed, weights: dense) }
                }
                plan = try planner.plan(from: plan, layerCount: blockCount)
            }
            if usesInputs, let calibration {
                progress?(ProgressUpdate(stage: "prune", completed: 0, total: blockCount, unit: "blocks", detail: "embedding calibration tokens"))
                try Profile.phase("embedding") { try embed(calibration, checkpoint: checkpoint, into: current) }
            }
        }
        atPoint?("calibrated")

        for l in startBlock..<blockCount {
            let blockStart = DispatchTimeClock.now()
            func report(_ detail: String) {
                let elapsed = DispatchTimeClock.seconds(since: runStart)
                progress?(ProgressUpdate(stage: "prune", completed: l, total: blockCount, unit: "blocks",
                                         detail: "block \(l + 1)/\(blockCount) \(detail), \(formatSeconds(elapsed)) s"))
            }
            report("loading")
            let weights = try Profile.phase("loading") { try checkpoint.loadBlock(l) }
            let context = makeContext(l, weights: weights, withInputs: usesInputs, report: report)
            let methodReport = try method.prune(context)
            generator = context.generator
            let pruned = context.weights
            do {
                try pruned.validate(configuration: c)
            } catch {
                throw PruningError("\(method.name) left block \(l) malformed: \(error)")
            }
            guard pruned.layer == l else { throw PruningError("\(method.name) returned block \(pruned.layer) for block \(l)") }

            var layers: [LayerPruningReport] = []
            for kind in LinearKind.allCases {
                let w = pruned[kind]
                let name = LlamaTensorNames.weight(kind, layer: l)
                let z = try Profile.phase("checks") {
                    let nm = plan.nm(layer: l, kind: kind)
                    return try w.data.withUnsafeBufferPointer {
                        try SparsityCheck.zeroCount($0, rows: w.shape[0], cols: w.shape[1], checkingNM: nm, name: name)
                    }
                }
                layers.append(LayerPruningReport(name: name, layer: l, kind: kind, shape: w.shape, zeros: z,
                                                 sparsity: w.count == 0 ? 0 : Double(z) / Double(w.count),
                                                 seconds: methodReport.layerSeconds[kind]))
                parameters += w.count
                zeros += z
            }
            if usesInputs && l + 1 < blockCount {
                report("next inputs")
                propagate(context, weights: pruned)
            }
            report("saving")
            try Profile.phase("export") { try blockSink(pruned) }
            blocks.append(BlockPruningReport(layer: l, seconds: DispatchTimeClock.seconds(since: blockStart), layers: layers))
            try checkpoints?.blockFinished(layer: l, nextInputs: usesInputs && l + 1 < blockCount ? UnsafeBufferPointer(current) : nil,
                                           generator: generator, plan: plan, blocks: blocks)
            atPoint?("block-\(l)")
            progress?(ProgressUpdate(stage: "prune", completed: l + 1, total: blockCount, unit: "blocks",
                                     detail: "block \(l + 1)/\(blockCount) done, \(formatSeconds(DispatchTimeClock.seconds(since: runStart))) s"))
        }
        return PruningSummary(
            method: method.name, pattern: plan.description,
            plan: plan.isUniform ? nil : plan.exceptionsByKey, planner: planner?.name, seed: options.seed,
            sampleCount: nsamples, sequenceLength: seqlen,
            calibrationSource: readsCalibration ? calibration?.source : nil, calibrationHash: readsCalibration ? calibration?.hash : nil,
            blocks: blocks, parameters: parameters, zeros: zeros,
            sparsity: parameters == 0 ? 0 : Double(zeros) / Double(parameters),
            seconds: DispatchTimeClock.seconds(since: runStart))
    }

    /// Checks the calibration samples against the model: a rectangle of ids in 0..<vocab, no longer than
    /// the model's context.
    static func checkCalibration(_ calibration: CalibrationSet, configuration c: LlamaConfiguration) throws {
        guard calibration.nsamples > 0, calibration.seqlen > 0 else {
            throw PruningError("calibration set \(calibration.source) is empty")
        }
        for (i, row) in calibration.samples.enumerated() {
            guard row.count == calibration.seqlen else {
                throw PruningError("calibration sample \(i) has \(row.count) tokens, sample 0 has \(calibration.seqlen)")
            }
            if let bad = row.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
                throw PruningError("calibration sample \(i) holds token id \(bad), outside the vocabulary 0..<\(c.vocabSize)")
            }
        }
        guard calibration.seqlen <= c.maxPositionEmbeddings else {
            throw PruningError("calibration seqlen \(calibration.seqlen) exceeds the model's max_position_embeddings \(c.maxPositionEmbeddings)")
        }
    }

    /// X̂₀: the embedding rows of the calibration tokens, (nsamples, seqlen, hidden).
    static func embed(_ calibration: CalibrationSet, checkpoint: LlamaCheckpoint,
                      into out: UnsafeMutableBufferPointer<Float>) throws {
        let table = try checkpoint.loadEmbeddings()           // (V, C)
        let c = checkpoint.configuration.hiddenSize
        let scale = checkpoint.configuration.architecture.embeddingScale
        table.data.withUnsafeBufferPointer { tp in
            var r = 0
            for row in calibration.samples {
                for id in row {
                    (out.baseAddress! + r * c).update(from: tp.baseAddress! + id * c, count: c)
                    if let scale { for j in 0..<c { out[r * c + j] *= scale } }
                    r += 1
                }
            }
        }
    }

    static func formatSeconds(_ s: Double) -> String {
        let tenths = (s * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10)"
    }
}
