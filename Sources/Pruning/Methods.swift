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

/// A per-layer pruning method in the llm-compressor shape: `statistics` says what to accumulate from each
/// linear's inputs (the calibrate half, done by `InputStatistics.calibrate`), and `compress` scores the
/// weight, chooses the mask and updates the weight in place.
///
/// The block-level hook `pruneBlock(_:)` (see `BlockPruningContext`) lets a method that needs the whole
/// decoder block (a dense copy, gradients through the block, regional optimization) take over one block;
/// its default runs the calibrate/compress pair for the seven linears.
public protocol PruningMethod {
    /// The method's name as the command line and `pruning.json` spell it ("magnitude", "wanda", ...).
    var name: String { get }
    /// The statistics `compress` reads; empty when it needs no calibration data (magnitude).
    var statistics: InputStatistics.Kind { get }
    /// Prunes `weight` in place to `pattern`, given the statistics of its input (nil when `statistics` is
    /// empty). Throws a one-line `PruningError` naming the layer on bad input (NaN, wrong shape).
    func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws
    /// Bytes the method holds while compressing one layer of this shape, beyond the weight and statistics
    /// (score and mask buffers, SparseGPT's H⁻¹ factor): for the memory estimate.
    func compressionScratchBytes(outFeatures: Int, inFeatures: Int) -> Int
    /// Whether the method reads the calibration inputs at all; when false (magnitude) the driver neither
    /// embeds the calibration tokens nor runs any forward pass. Default: `statistics` is not empty.
    var needsCalibrationInputs: Bool { get }
    /// Bytes the method holds per block beyond the driver's own (one block's weights, the two activation
    /// buffers, the statistics and compression scratch), e.g. a dense copy of the block and gradient
    /// accumulators for Wanda++. Default 0.
    func extraBlockBytes(configuration: LlamaConfiguration, sampleCount: Int, sequenceLength: Int) -> Int
    /// Prunes one decoder block; see `BlockPruningContext` for what it receives and must leave. The default
    /// (`BlockPruningContext.defaultPruneBlock`) accumulates `statistics` for every distinct linear input in
    /// one pass of the dense block over all calibration samples, then compresses the seven linears in the
    /// order q, k, v, o, gate, up, down.
    func pruneBlock(_ context: BlockPruningContext) throws
    /// Notes about the finished run for `pruning.json` (e.g. Wanda++'s RO losses per block and round as
    /// JSON strings); read once after the driver returns. Default: none.
    var runNotes: [String: String] { get }
}

extension PruningMethod {
    public func compressionScratchBytes(outFeatures: Int, inFeatures: Int) -> Int {
        // Scores (float32) and mask (Bool) of the whole weight.
        5 * outFeatures * inFeatures
    }

    public var needsCalibrationInputs: Bool { !statistics.isEmpty }

    public func extraBlockBytes(configuration: LlamaConfiguration, sampleCount: Int, sequenceLength: Int) -> Int { 0 }

    public func pruneBlock(_ context: BlockPruningContext) throws { try context.defaultPruneBlock(self) }

    public var runNotes: [String: String] { [:] }
}

/// Zeroes the entries of `weight` the mask selects, after checking the scores for NaN.
private func applyMask(_ weight: LayerWeight, scores: UnsafeMutableBufferPointer<Float>,
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
public struct MagnitudePruning: PruningMethod {
    public init() {}
    public var name: String { "magnitude" }
    public var statistics: InputStatistics.Kind { [] }

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
public struct WandaPruning: PruningMethod {
    public init() {}
    public var name: String { "wanda" }
    public var statistics: InputStatistics.Kind { .columnSquares }

    public func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        let norms = try checkedNorms(weight, statistics)
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: weight.values.count)
        defer { scores.deallocate() }
        let c = weight.inFeatures
        if let w = weight.values.baseAddress, let sp = scores.baseAddress {
            norms.withUnsafeBufferPointer { np in
                let nb = np.baseAddress!
                parallelChunks(weight.outFeatures, minimumPerThread: max(1, (1 << 16) / max(1, c))) { rows in
                    for r in rows {
                        let row = r * c
                        for j in 0..<c { sp[row + j] = abs(w[row + j]) * nb[j] }
                    }
                }
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

/// The per-layer methods of this module by their command-line names.
public enum BaselineMethods {
    public static let names = ["magnitude", "wanda", "sparsegpt"]

    /// The method named `name`; SparseGPT's options are checked here (one-line errors).
    public static func make(_ name: String, sparseGPTBlockSize: Int = 128, percentDamping: Double = 0.01) throws -> PruningMethod {
        switch name {
        case "magnitude": return MagnitudePruning()
        case "wanda": return WandaPruning()
        case "sparsegpt":
            guard sparseGPTBlockSize > 0 else {
                throw PruningError("invalid SparseGPT block size \(sparseGPTBlockSize): it must be positive")
            }
            guard percentDamping.isFinite, percentDamping >= 0 else {
                throw PruningError("invalid SparseGPT damping \(percentDamping): it must be a non-negative number")
            }
            return SparseGPTPruning(blockSize: sparseGPTBlockSize, percentDamping: percentDamping)
        default:
            throw PruningError("unknown pruning method '\(name)'; expected one of \(names.joined(separator: ", "))")
        }
    }
}
