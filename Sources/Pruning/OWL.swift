import Llama
import Tensor

/// OWL, outlier-weighted layerwise sparsity (Yin et al., ICML 2024), as its public code computes it
/// (`../shared/docs/field.md`): a per-block unstructured ratio from the dense model's outliers.
///
/// For each dense block l (the dense model's own activations), m = the Wanda scores |W_ij|·‖X_j‖ of all
/// seven linears, flattened together, and the layerwise outlier distribution
///
///     LOD[l] = 100 · count(m > M · mean(m)) / size(m)
///
/// (scores in float32 as `WandaPruning` computes them, their mean and the comparison in float64; ‖X_j‖ is
/// the plain L2 norm: a constant scale of ‖X‖ changes neither the count nor the plan). Then, in float64,
///
///     D = (LOD − min LOD) · (1 / (max LOD − min LOD) · 2λ)
///     D = D − mean(D) + (1 − s)          sparsity[l] = 1 − D[l]
///
/// so blocks with more outliers are pruned less, the ratios average the target s and span 2λ (all equal to
/// s when every block has the same LOD). Every linear of block l is then pruned at sparsity[l] by the run's
/// method. Only unstructured targets: the plain OWL code ignores its ratios for N:M.
public final class OWLPlanner: SparsityPlanner {
    /// λ: the ratios span target ± λ.
    public let lambda: Double
    /// M: a score is an outlier above M times the block's mean score.
    public let outlierMultiple: Double
    /// LOD[l] in percent, one per observed block.
    public private(set) var outlierRatios: [Double] = []

    public init(lambda: Double = 0.08, outlierMultiple: Double = 5) {
        self.lambda = lambda
        self.outlierMultiple = outlierMultiple
    }

    public var name: String { "owl" }
    public var settings: [String: String] { ["owl_lambda": String(lambda), "owl_m": String(outlierMultiple)] }

    public func observe(_ context: BlockPruningContext) throws {
        context.report("outliers")
        let stats = context.collectStatistics(.columnSquares)
        var all: [Float] = []
        var sum = 0.0
        for kind in LinearKind.allCases {
            try context.withWeight(kind) { w in
                let norms = try checkedNorms(w, stats[kind])
                var scores = [Float](repeating: 0, count: w.values.count)
                scores.withUnsafeMutableBufferPointer { sp in
                    norms.withUnsafeBufferPointer { np in
                        Scores.wanda(weight: w.values.baseAddress!, norms: np.baseAddress!, rows: w.outFeatures,
                                     cols: w.inFeatures, into: sp.baseAddress!)
                    }
                }
                for v in scores { sum += Double(v) }
                all += scores
            }
        }
        guard !all.isEmpty, sum.isFinite else {
            throw PruningError("owl: block \(context.layer) has no finite Wanda scores")
        }
        let threshold = outlierMultiple * (sum / Double(all.count))
        var outliers = 0
        for v in all where Double(v) > threshold { outliers += 1 }
        outlierRatios.append(100 * Double(outliers) / Double(all.count))
    }

    public func plan(from base: SparsityPlan, layerCount: Int) throws -> SparsityPlan {
        guard case .unstructured(let target) = base.base else {
            throw PruningError("owl sets unstructured ratios per block; the target \(base.base) is N:M")
        }
        guard outlierRatios.count == layerCount else {
            throw PruningError("owl observed \(outlierRatios.count) blocks of \(layerCount)")
        }
        let ratios = try Self.ratios(outlierRatios: outlierRatios, target: target, lambda: lambda)
        var plan = base
        for (l, r) in ratios.enumerated() { plan.set(.unstructured(r), layer: l) }
        return plan
    }

    /// The per-block sparsities from the LODs, as the type's documentation defines them; an error when one
    /// falls outside [0, 1) (a target near 0 or 1 with a large λ).
    public static func ratios(outlierRatios lod: [Double], target: Double, lambda: Double) throws -> [Double] {
        guard let lo = lod.min(), let hi = lod.max() else { return [] }
        var d = lod.map { hi > lo ? ($0 - lo) * (1 / (hi - lo) * (lambda * 2)) : 0 }
        let mean = d.reduce(0, +) / Double(d.count)
        d = d.map { $0 - mean + (1 - target) }
        let ratios = d.map { 1 - $0 }
        if let (l, r) = ratios.enumerated().first(where: { !($0.element >= 0 && $0.element < 1) }) {
            throw PruningError("owl: block \(l) would be pruned at \(r), outside [0, 1); lower --owl-lambda or move --sparsity away from 0 and 1")
        }
        return ratios
    }
}
