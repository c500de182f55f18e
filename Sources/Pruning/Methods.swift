import Llama
import Tensor

/// One linear weight to prune: a row-major (outFeatures, inFeatures) float32 buffer, pruned in place.
public struct LayerWeight {
    /// A name for messages and reports, e.g. "model.layers.3.mlp.down_proj.weight".
    public var name: String
    public var values: UnsafeMutableBufferPointer<Float>
    public var outFeatures: Int
    public var inFeatures: Int

    public init(name: String, values: UnsafeMutableBufferPointer<Float>, outFeatures: Int, inFeatures: Int) {
        precondition(values.count == outFeatures * inFeatures,
                     "\(name): \(values.count) values for shape (\(outFeatures), \(inFeatures))")
        self.name = name
        self.values = values
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
    }
}

/// A pruning method: it prunes one decoder block at a time through a `BlockPruningContext` and says what
/// it did. The shared block-by-block driver (`BlockwisePruning`) calls `prune` for blocks 0..<L in order;
/// everything a method needs (the block, its calibration inputs, forward passes, statistics, the sparsity
/// plan, the run's generator) comes through the context.
///
/// Adding a method is one file (a type conforming to this protocol, or to `LayerPruningMethod` for a
/// per-layer score) and one line in `PruningMethods.registered`.
public protocol PruningMethod {
    /// The method's name as the command line and `pruning.json` spell it ("magnitude", "wanda", ...).
    var name: String { get }
    /// Whether the method reads the calibration inputs at all; when false (magnitude) the driver neither
    /// embeds the calibration tokens nor runs any forward pass.
    var needsCalibrationInputs: Bool { get }
    /// What the method holds while it prunes one block of a model of this shape, beyond the driver's own
    /// block and activation buffers: for the memory estimate.
    func memory(configuration: LlamaConfiguration, sampleCount: Int, sequenceLength: Int) -> MethodMemory
    /// Prunes `context.weights` in place to `context`'s part of the sparsity plan; see
    /// `BlockPruningContext` for what it receives and must leave.
    func prune(_ context: BlockPruningContext) throws -> BlockMethodReport
    /// The settings that decide the method's result, for the run record and the resume identity
    /// (e.g. SparseGPT's damping). Default: none.
    var settings: [String: String] { get }
    /// Notes about the finished run for `pruning.json` (e.g. Wanda++'s RO losses per block and round as
    /// JSON strings); read once after the driver returns. Default: none.
    var runNotes: [String: String] { get }
}

extension PruningMethod {
    public var settings: [String: String] { [:] }
    public var runNotes: [String: String] { [:] }
}

/// What a method holds while pruning one block, by part, in bytes (float32 unless the method says).
public struct MethodMemory: Sendable, Equatable {
    /// Input statistics of the block's four distinct linear inputs, alive from the calibration pass to the
    /// last compressed linear.
    public var statisticsBytes: Int
    /// The largest per-linear compression scratch (scores, mask, SparseGPT's H⁻¹ factor).
    public var compressionBytes: Int
    /// Everything else the method keeps for the block, e.g. Wanda++'s working copy, gradients and tape.
    public var extraBlockBytes: Int

    public init(statisticsBytes: Int = 0, compressionBytes: Int = 0, extraBlockBytes: Int = 0) {
        self.statisticsBytes = statisticsBytes
        self.compressionBytes = compressionBytes
        self.extraBlockBytes = extraBlockBytes
    }
}

/// What a method did to one block, beyond the weights it left in the context.
public struct BlockMethodReport: Sendable, Equatable {
    /// Seconds spent pruning each linear, where the method measures them (for the run record).
    public var layerSeconds: [LinearKind: Double]

    public init(layerSeconds: [LinearKind: Double] = [:]) { self.layerSeconds = layerSeconds }
}

/// A per-layer pruning method in the llm-compressor shape: `statistics` says what to accumulate from each
/// linear's inputs (the calibrate half, done by `InputStatistics.calibrate`), and `compress` scores the
/// weight, chooses the mask and updates the weight in place. Its block step is the shared one
/// (`BlockPruningContext.defaultPruneBlock`): statistics of all seven linears from one pass of the dense
/// block, then compress each to its pattern.
public protocol LayerPruningMethod: PruningMethod {
    /// The statistics `compress` reads; empty when it needs no calibration data (magnitude).
    var statistics: InputStatistics.Kind { get }
    /// Prunes `weight` in place to `pattern`, given the statistics of its input (nil when `statistics` is
    /// empty). Throws a one-line `PruningError` naming the layer on bad input (NaN, wrong shape).
    func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws
    /// Bytes the method holds while compressing one layer of this shape, beyond the weight and statistics
    /// (score and mask buffers, SparseGPT's H⁻¹ factor). Default: a float32 score and a Bool mask.
    func compressionScratchBytes(outFeatures: Int, inFeatures: Int) -> Int
}

extension LayerPruningMethod {
    public func compressionScratchBytes(outFeatures: Int, inFeatures: Int) -> Int {
        // Scores (float32) and mask (Bool) of the whole weight.
        5 * outFeatures * inFeatures
    }

    public var needsCalibrationInputs: Bool { !statistics.isEmpty }

    public func memory(configuration c: LlamaConfiguration, sampleCount: Int, sequenceLength: Int) -> MethodMemory {
        let qDim = c.numAttentionHeads * c.headDim
        let statisticsBytes = InputStatistics.bytes(inFeatures: c.hiddenSize, kind: statistics) * 2
            + InputStatistics.bytes(inFeatures: qDim, kind: statistics)
            + InputStatistics.bytes(inFeatures: c.intermediateSize, kind: statistics)
        let compression = LinearKind.allCases.map { kind -> Int in
            let s = kind.shape(c)
            return compressionScratchBytes(outFeatures: s[0], inFeatures: s[1])
        }.max() ?? 0
        return MethodMemory(statisticsBytes: statisticsBytes, compressionBytes: compression)
    }

    public func prune(_ context: BlockPruningContext) throws -> BlockMethodReport {
        try context.defaultPruneBlock(self)
    }
}

/// Zeroes the entries of `weight` the mask selects, after checking the scores for NaN.
func applyMask(_ weight: LayerWeight, scores: UnsafeMutableBufferPointer<Float>,
                       pattern: SparsityPattern, perMatrix: Bool) throws {
    if let i = FloatScan.firstNaN(UnsafeBufferPointer(scores)) {
        throw PruningError("\(weight.name): NaN score at row \(i / max(weight.inFeatures, 1)), column \(i % max(weight.inFeatures, 1)) (NaN in the weight or the calibration activations)")
    }
    let mask = UnsafeMutableBufferPointer<Bool>.allocate(capacity: scores.count)
    defer { mask.deallocate() }
    Selection.prunedMask(scores: UnsafeBufferPointer(scores), rows: weight.outFeatures, cols: weight.inFeatures,
                         pattern: pattern, perMatrix: perMatrix, into: mask)
    Selection.zeroPruned(weight.values, mask: UnsafeBufferPointer(mask))
}

/// Magnitude pruning: score |W_ij|. Unstructured ratios use one comparison group per layer (the
/// `floor(out · in · s)` smallest magnitudes of the whole matrix, as the reference code's single
/// threshold); N:M uses the usual groups of m columns per row.
///
/// The public reference code prunes `|W| <= threshold`, the value at sorted index floor(numel · s), which
/// removes one entry more than floor(numel · s) (plus ties); this implementation, like the project's
/// PyTorch reference, prunes exactly floor(numel · s) entries.
public struct MagnitudePruning: LayerPruningMethod {
    public init() {}
    public var name: String { "magnitude" }
    public var statistics: InputStatistics.Kind { [] }

    public static let registration = MethodRegistration(
        name: "magnitude", summary: "|W|, one threshold per layer") { _ in MagnitudePruning() }

    public func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: weight.values.count)
        defer { scores.deallocate() }
        if let w = weight.values.baseAddress, let sp = scores.baseAddress {
            parallelChunks(scores.count, minimumPerThread: 1 << 16) { r in
                for i in r { sp[i] = abs(w[i]) }
            }
        }
        try applyMask(weight, scores: scores, pattern: pattern, perMatrix: true)
    }
}

/// Wanda: score_ij = |W_ij| · ‖X_j‖₂ (float32 product of the weight and the float64 norm rounded to
/// float32), compared per output row (unstructured) or per group of m columns (N:M).
public struct WandaPruning: LayerPruningMethod {
    public init() {}
    public var name: String { "wanda" }
    public var statistics: InputStatistics.Kind { .columnSquares }

    public static let registration = MethodRegistration(
        name: "wanda", summary: "|W|·‖X‖ per output row") { _ in WandaPruning() }

    public func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        let norms = try checkedNorms(weight, statistics)
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: weight.values.count)
        defer { scores.deallocate() }
        let c = weight.inFeatures
        if let w = weight.values.baseAddress, let sp = scores.baseAddress {
            norms.withUnsafeBufferPointer { np in
                Scores.wanda(weight: w, norms: np.baseAddress!, rows: weight.outFeatures, cols: c, into: sp)
            }
        }
        try applyMask(weight, scores: scores, pattern: pattern, perMatrix: false)
    }
}

/// The per-feature input norms of a layer, after checking that they exist, fit the weight and are finite.
func checkedNorms(_ weight: LayerWeight, _ statistics: InputStatistics?) throws -> [Float] {
    guard let statistics, statistics.kind.contains(.columnSquares) else {
        throw PruningError("\(weight.name): no calibration statistics were collected")
    }
    try checkStatistics(weight, statistics)
    return statistics.columnNorms
}

func checkStatistics(_ weight: LayerWeight, _ statistics: InputStatistics) throws {
    guard statistics.inFeatures == weight.inFeatures else {
        throw PruningError("\(weight.name): statistics of \(statistics.inFeatures) input features for a weight of \(weight.inFeatures)")
    }
    guard statistics.tokenCount > 0 else {
        throw PruningError("\(weight.name): no calibration tokens reached this layer")
    }
    guard statistics.isFinite else {
        throw PruningError("\(weight.name): the calibration activations contain NaN or infinity")
    }
}
