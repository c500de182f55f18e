import Dispatch
import Llama
import Tensor

/// Everything a pruning method sees while it prunes one decoder block, and the operations it needs:
/// forward passes of the block over the calibration inputs with a capture hook, statistics collection,
/// and per-layer compression.
///
/// The driver calls `PruningMethod.prune(context)` once per block l = 0..<L. On entry `weights` holds
/// the dense block l as loaded from the checkpoint and `inputs` holds X̂ₗ, the outputs of the already
/// pruned blocks 0..<l on the calibration samples (nsamples, seqlen, hidden). On return `weights` must hold
/// the pruned block (same shapes; only the seven linear matrices may change); the driver then checks the
/// pattern, records per-layer sparsity, computes X̂ₗ₊₁ = pruned blockₗ(X̂ₗ) (unless the method left them in
/// `outputs`) and hands the block to the export sink.
///
/// A per-layer method (`LayerPruningMethod`) gets the shared step, `defaultPruneBlock`. A method that
/// needs the whole block (Wanda++: a dense copy as the target, gradients of a regional loss, regional
/// optimization, stage-by-stage pruning) implements `prune` with the pieces below:
/// `DecoderBlockWeights` is a value, so `let dense = context.weights` is the dense copy; `inputs(samples:)`
/// gives the block inputs of chosen samples as (B, T, C) tensors for its own forward/backward passes;
/// `collectStatistics(_:samples:)` gathers ‖X‖ or XᵀX through the block as it currently stands;
/// `prune(_:scores:)` applies a score-based mask to one linear; `generator` is the run's seeded generator
/// (one for the whole run, so draws differ between blocks); `report(_:)` sends a progress line.
public final class BlockPruningContext {
    public let configuration: LlamaConfiguration
    /// The block's index l and the model's block count L.
    public let layer: Int
    public let layerCount: Int
    /// The block being pruned; methods modify its seven linear weights in place.
    public var weights: DecoderBlockWeights
    /// The run's sparsity plan; `pattern(for:)` is this block's part of it.
    public let plan: SparsityPlan
    /// RoPE tables for positions 0..<sequenceLength.
    public let rope: RoPE
    public let sampleCount: Int
    public let sequenceLength: Int
    /// How many samples one forward call processes (bounds the forward's temporaries).
    public let samplesPerForward: Int
    /// The run's seeded generator (`PruningOptions.seed`), shared by all blocks in order.
    public var generator: SeededGenerator
    /// X̂ₗ: the block's calibration inputs, (sampleCount, sequenceLength, hidden) row-major. Read-only:
    /// valid only during `prune`.
    public let inputs: UnsafeBufferPointer<Float>
    /// The driver's buffer for X̂ₗ₊₁ (sampleCount, sequenceLength, hidden), free while `prune` runs (the
    /// driver fills it afterwards with its own forward pass of the pruned block): a method may use it as
    /// scratch. Empty for methods without calibration inputs.
    public let scratch: UnsafeMutableBufferPointer<Float>
    /// Seconds spent in `compress` per linear (filled by `compress(_:with:statistics:)`; a method that
    /// prunes by itself may fill it too, for the run record).
    public private(set) var layerSeconds: [LinearKind: Double] = [:]
    /// The number format of `forward` (and so of `collectStatistics`): `PruningOptions.computePrecision`.
    public let computePrecision: ComputePrecision
    /// The forward blocks `forward` reuses: the driver's, one for the whole run.
    let blockPool: DecoderBlockPool
    /// Where the block's math runs: the driver's backend (that of its block pool).
    public var backend: any ComputeBackend { blockPool.backend }

    private let progress: (String) -> Void

    init(configuration: LlamaConfiguration, layer: Int, layerCount: Int, weights: DecoderBlockWeights,
         plan: SparsityPlan, rope: RoPE, sampleCount: Int, sequenceLength: Int, samplesPerForward: Int,
         generator: SeededGenerator, inputs: UnsafeBufferPointer<Float>,
         scratch: UnsafeMutableBufferPointer<Float> = UnsafeMutableBufferPointer(start: nil, count: 0),
         computePrecision: ComputePrecision = .float32,
         blockPool: DecoderBlockPool = DecoderBlockPool(), progress: @escaping (String) -> Void) {
        self.scratch = scratch
        self.computePrecision = computePrecision
        self.blockPool = blockPool
        self.configuration = configuration
        self.layer = layer
        self.layerCount = layerCount
        self.weights = weights
        self.plan = plan
        self.rope = rope
        self.sampleCount = sampleCount
        self.sequenceLength = sequenceLength
        self.samplesPerForward = samplesPerForward
        self.generator = generator
        self.inputs = inputs
        self.progress = progress
    }

    /// Sends a progress detail for this block, e.g. "down" or "RO round 2/5"; the driver prefixes
    /// "block l+1/L".
    public func report(_ detail: String) { progress(detail) }

    /// The sparsity pattern of one of this block's linears.
    public func pattern(for kind: LinearKind) -> SparsityPattern { plan.pattern(layer: layer, kind: kind) }

    /// The checkpoint name of one of this block's linear weights.
    public func weightName(_ kind: LinearKind) -> String { LlamaTensorNames.weight(kind, layer: layer) }

    /// The inputs of the given samples stacked as (samples.count, T, C) (a copy).
    public func inputs(samples: [Int]) -> Tensor {
        let stride = sequenceLength * configuration.hiddenSize
        var x = Tensor(shape: [samples.count, sequenceLength, configuration.hiddenSize])
        x.data.withUnsafeMutableBufferPointer { xp in
            for (i, s) in samples.enumerated() {
                precondition(s >= 0 && s < sampleCount, "sample \(s) outside 0..<\(sampleCount)")
                (xp.baseAddress! + i * stride).update(from: inputs.baseAddress! + s * stride, count: stride)
            }
        }
        return x
    }

    /// Runs `weights` (default: the block as it currently stands) over `samples` (default all), in
    /// chunks of `samplesPerForward`, passing each chunk's sample indices and output (chunk · T · C floats,
    /// the forward block's own buffer, valid only during the call) to `output`. A chunk of consecutive
    /// samples (the whole-set pass) is read in place; nothing is copied but what `output` copies.
    public func forward(samples: [Int]? = nil, weights: DecoderBlockWeights? = nil,
                        output: ([Int], UnsafeBufferPointer<Float>) throws -> Void) rethrows {
        let w = weights ?? self.weights
        try forEachChunk(samples) { chunk in
            try Profile.phase("block forward") {
                try withInputs(of: chunk) { x in
                    try DecoderBlock.forward(x, batch: chunk.count, tokens: sequenceLength, weights: w, configuration: configuration,
                                             rope: rope, precision: computePrecision, pool: blockPool) { y in
                        try output(chunk, y)
                    }
                }
            }
        }
    }

    /// Statistics of every linear's input over `samples` (default all) through the block as it stands, in
    /// one forward pass that stops at the input of down. Linears that read the same tensor share one
    /// `InputStatistics`: q, k and v; gate and up.
    public func collectStatistics(_ kind: InputStatistics.Kind, samples: [Int]? = nil) -> [LinearKind: InputStatistics] {
        let c = configuration
        let attention = InputStatistics(inFeatures: c.hiddenSize, kind: kind, backend: backend)
        let output = InputStatistics(inFeatures: c.numAttentionHeads * c.headDim, kind: kind, backend: backend)
        let mlp = InputStatistics(inFeatures: c.hiddenSize, kind: kind, backend: backend)
        let down = InputStatistics(inFeatures: c.intermediateSize, kind: kind, backend: backend)
        let byKind: [LinearKind: InputStatistics] = [.q: attention, .k: attention, .v: attention, .o: output,
                                                     .gate: mlp, .up: mlp, .down: down]
        let capture: DecoderBlock.Capture = { linear, x in
            guard let stats = byKind[linear] else { return }
            Profile.phase("statistics") { stats.calibrate(x, rows: x.count / stats.inFeatures) }
        }
        forEachChunk(samples) { chunk in
            withInputs(of: chunk) { x in
                DecoderBlock.captureInputs(x, batch: chunk.count, tokens: sequenceLength, weights: weights, configuration: c,
                                           rope: rope, precision: computePrecision, pool: blockPool, capture: capture)
            }
        }
        return byKind
    }

    /// Calls `body` with the chunk's inputs (chunk · T · C floats): in place for consecutive samples (the
    /// whole-set passes), else gathered into a copy.
    private func withInputs<R>(of chunk: [Int], _ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        if let first = chunk.first, chunk.last == first + chunk.count - 1 {
            return try body(inputs.baseAddress! + first * sequenceLength * configuration.hiddenSize)
        }
        return try inputs(samples: chunk).data.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// Calls `body` with `samples` (default all) in chunks of `samplesPerForward`.
    private func forEachChunk(_ samples: [Int]?, _ body: ([Int]) throws -> Void) rethrows {
        let all = samples ?? Array(0..<sampleCount)
        var start = 0
        while start < all.count {
            let chunk = Array(all[start..<min(all.count, start + samplesPerForward)])
            precondition(chunk.allSatisfy { $0 >= 0 && $0 < sampleCount }, "samples outside 0..<\(sampleCount)")
            try body(chunk)
            start += chunk.count
        }
    }

    /// Calls `body` with the row-major (out, in) buffer of one linear weight, mutated in place.
    public func withWeight<R>(_ kind: LinearKind, _ body: (LayerWeight) throws -> R) rethrows -> R {
        let path = Self.keyPath(kind)
        let shape = weights[keyPath: path].shape
        let name = weightName(kind)
        return try weights[keyPath: path].data.withUnsafeMutableBufferPointer { buffer in
            try body(LayerWeight(name: name, values: buffer, outFeatures: shape[0], inFeatures: shape[1]))
        }
    }

    /// Prunes one linear with `method.compress` and records its time.
    public func compress(_ kind: LinearKind, with method: LayerPruningMethod, statistics: InputStatistics?) throws {
        report(kind.modulePath)
        let start = DispatchTimeClock.now()
        try Profile.phase("compress") { try withWeight(kind) { try method.compress($0, statistics: statistics, pattern: pattern(for: kind)) } }
        layerSeconds[kind, default: 0] += DispatchTimeClock.seconds(since: start)
    }

    /// Zeroes the entries of one linear that its pattern selects from `scores` (out · in, row-major; per
    /// row for unstructured ratios, per m-group for N:M): for methods with their own score.
    public func prune(_ kind: LinearKind, scores: [Float]) throws {
        try withWeight(kind) { w in
            guard scores.count == w.values.count else {
                throw PruningError("\(w.name): \(scores.count) scores for \(w.values.count) weights")
            }
            if let i = scores.withUnsafeBufferPointer({ FloatScan.firstNaN($0) }) {
                throw PruningError("\(w.name): NaN score at row \(i / w.inFeatures), column \(i % w.inFeatures)")
            }
            let mask = Selection.prunedMask(scores: scores, rows: w.outFeatures, cols: w.inFeatures, pattern: pattern(for: kind))
            mask.withUnsafeBufferPointer { Selection.zeroPruned(w.values, mask: $0) }
        }
    }

    /// The default block step of every per-layer method: accumulate `method.statistics` for all seven
    /// linears in one pass of the dense block over all samples (the reference code's semantics: every
    /// layer's statistics come from the not-yet-pruned block), then compress q, k, v, o, gate, up, down.
    /// Methods without statistics (magnitude) skip the forward pass.
    @discardableResult
    public func defaultPruneBlock(_ method: LayerPruningMethod) throws -> BlockMethodReport {
        var stats: [LinearKind: InputStatistics] = [:]
        if !method.statistics.isEmpty {
            report("calibration")
            stats = collectStatistics(method.statistics)
        }
        for kind in LinearKind.allCases {
            try compress(kind, with: method, statistics: stats[kind])
            // A shared statistic is freed once its last reader is done (SparseGPT's XᵀX are large).
            stats[kind] = nil
        }
        return BlockMethodReport(layerSeconds: layerSeconds)
    }

    static func keyPath(_ kind: LinearKind) -> WritableKeyPath<DecoderBlockWeights, Tensor> {
        switch kind {
        case .q: return \.q
        case .k: return \.k
        case .v: return \.v
        case .o: return \.o
        case .gate: return \.gate
        case .up: return \.up
        case .down: return \.down
        }
    }
}

/// Monotonic wall-clock timing.
enum DispatchTimeClock {
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func seconds(since start: UInt64) -> Double { Double(now() &- start) / 1e9 }
}
