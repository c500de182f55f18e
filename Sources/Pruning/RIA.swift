import Foundation
import Llama
import Tensor

/// RIA, Relative Importance and Activations (Zhang et al., ICLR 2024), as its public code computes it
/// (`../shared/docs/field.md`). For a weight W (out, in) and s_j, the mean of x_j² over the calibration
/// tokens that reach the layer:
///
///     score_ij = (|W_ij| / colsum_j + |W_ij| / rowsum_i) · sqrt(s_j)^a
///
/// with colsum_j = Σ_i |W_ij| and rowsum_i = Σ_j |W_ij| (float64 sums rounded to float32; a term whose sum
/// is 0, a row or column of zeros, counts as 0), sqrt(s_j)^a in float64 rounded to float32, the rest one
/// float32 expression. Unstructured ratios compare the whole matrix at once (the `floor(out · in · s)`
/// lowest scores; the public code's `<= threshold` prunes one more), or each output row with `perRow`
/// (the code's `--per_outneuron`). N:M keeps the n highest of each group of m columns per row (for 2:4 and
/// 4:8 the code's "prune the n lowest" is the same; the partial last group follows `SparsityPattern`).
///
/// With `permutesDown` and an N:M pattern for down_proj, down's columns are reordered by RIA's heuristic
/// channel reallocation (`ChannelPermutation.interleaved` of the column sums of its scores) before its mask
/// is chosen, and the order is folded into the block (`permuteIntermediateChannels`): gate's and up's rows
/// move with down's columns, so the model computes the same function and down is N:M as stored. The other
/// six linears are pruned unpermuted (see `ChannelPermutation` for why). gate and up are pruned before down,
/// as in the shared block step; a row permutation keeps their masks valid, so the fold comes after.
public struct RIAPruning: LayerPruningMethod {
    /// The exponent a of the activation term.
    public var exponent: Double
    /// Unstructured ratios per output row instead of over the whole matrix.
    public var perRow: Bool
    /// RIA's channel reallocation on down_proj for N:M patterns.
    public var permutesDown: Bool

    public init(exponent: Double = 0.5, perRow: Bool = false, permutesDown: Bool = false) {
        self.exponent = exponent
        self.perRow = perRow
        self.permutesDown = permutesDown
    }

    public var name: String { "ria" }
    public var statistics: InputStatistics.Kind { .columnSquares }

    public var settings: [String: String] {
        ["ria_a": String(exponent), "ria_per_row": String(perRow), "ria_permute": String(permutesDown)]
    }

    public static let registration = MethodRegistration(
        name: "ria", summary: "(|W|/colsum + |W|/rowsum)·sqrt(mean x²)^a, one threshold per layer",
        options: [
            MethodOption("ria-a", valueName: "x", help: "RIA: exponent a of the activation term sqrt(mean x²)^a.", default: "0.5"),
            MethodOption(flag: "ria-per-row", help: "RIA: unstructured ratios per output row instead of one threshold over the whole matrix."),
            MethodOption(flag: "ria-permute", help: "RIA, N:M only: reorder down_proj's input channels by RIA's channel reallocation before choosing its mask, folded into gate_proj's and up_proj's rows so the model computes the same function and down_proj is N:M as stored. The other six linears are not permuted: their inputs are the residual stream or the attention heads, which no single fold can reorder."),
        ]) { a in
        let exponent = try a.double("ria-a", default: 0.5)
        guard exponent >= 0 else { throw MethodOptionError("option '--ria-a' needs a number >= 0, got '\(a.values["ria-a"] ?? "")'") }
        return RIAPruning(exponent: exponent, perRow: a.flag("ria-per-row"), permutesDown: a.flag("ria-permute"))
    }

    public func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        var scores = try scores(weight, statistics: statistics)
        try scores.withUnsafeMutableBufferPointer { s in
            try applyMask(weight, scores: s, pattern: pattern, perMatrix: !perRow)
        }
    }

    public func prune(_ context: BlockPruningContext) throws -> BlockMethodReport {
        guard permutesDown, case .nm(_, let m) = context.pattern(for: .down) else { return try context.defaultPruneBlock(self) }
        context.report("calibration")
        var stats = context.collectStatistics(statistics)
        for kind in LinearKind.allCases where kind != .down {
            try context.compress(kind, with: self, statistics: stats[kind])
            stats[kind] = nil
        }
        context.report(LinearKind.down.modulePath)
        let start = DispatchTimeClock.now()
        let order = try context.withWeight(.down) { w -> [Int] in
            let scores = try scores(w, statistics: stats[.down])
            if let i = scores.withUnsafeBufferPointer({ FloatScan.firstNaN($0) }) {
                throw PruningError("\(w.name): NaN score at row \(i / w.inFeatures), column \(i % w.inFeatures)")
            }
            let order = ChannelPermutation.interleaved(importance: Self.columnSums(scores, rows: w.outFeatures, cols: w.inFeatures),
                                                       groupSize: m)
            // The mask is chosen on the permuted scores and mapped back to the stored columns.
            let permuted = Self.permuteColumns(scores, rows: w.outFeatures, cols: w.inFeatures, order: order)
            let maskPermuted = Selection.prunedMask(scores: permuted, rows: w.outFeatures, cols: w.inFeatures,
                                                    pattern: context.pattern(for: .down))
            var mask = [Bool](repeating: false, count: maskPermuted.count)
            for r in 0..<w.outFeatures {
                for p in 0..<w.inFeatures { mask[r * w.inFeatures + order[p]] = maskPermuted[r * w.inFeatures + p] }
            }
            mask.withUnsafeBufferPointer { Selection.zeroPruned(w.values, mask: $0) }
            return order
        }
        context.weights.permuteIntermediateChannels(order)
        var seconds = context.layerSeconds
        seconds[.down, default: 0] += DispatchTimeClock.seconds(since: start)
        return BlockMethodReport(layerSeconds: seconds)
    }

    /// RIA's scores of `weight` (out · in, row-major) from its input statistics (column squares).
    public func scores(_ weight: LayerWeight, statistics: InputStatistics?) throws -> [Float] {
        guard let statistics, statistics.kind.contains(.columnSquares) else {
            throw PruningError("\(weight.name): no calibration statistics were collected")
        }
        try checkStatistics(weight, statistics)
        let n = Double(statistics.tokenCount)
        let activation = statistics.columnSquares.map { Float(pow(($0 / n).squareRoot(), exponent)) }
        return Self.scores(weight: UnsafeBufferPointer(weight.values), rows: weight.outFeatures, cols: weight.inFeatures,
                           activation: activation)
    }

    /// score_ij = (|W_ij| / colsum_j + |W_ij| / rowsum_i) · activation_j over a row-major (rows, cols) weight,
    /// with the sums as the type's documentation defines them.
    public static func scores(weight w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, activation: [Float]) -> [Float] {
        precondition(w.count == rows * cols && activation.count == cols, "RIA scores: shapes")
        var colSums = [Double](repeating: 0, count: cols)
        var rowSums = [Float](repeating: 0, count: rows)
        let perThread = max(1, (1 << 16) / max(1, cols))
        rowSums.withUnsafeMutableBufferPointer { rp in
            parallelChunks(rows, minimumPerThread: perThread) { range in
                for r in range {
                    var sum = 0.0
                    for j in 0..<cols { sum += Double(abs(w[r * cols + j])) }
                    rp[r] = Float(sum)
                }
            }
        }
        colSums.withUnsafeMutableBufferPointer { cp in
            parallelChunks(cols, minimumPerThread: max(1, (1 << 16) / max(1, rows))) { range in
                for r in 0..<rows { for j in range { cp[j] += Double(abs(w[r * cols + j])) } }
            }
        }
        let colSums32 = colSums.map { Float($0) }
        var scores = [Float](repeating: 0, count: rows * cols)
        scores.withUnsafeMutableBufferPointer { sp in
            colSums32.withUnsafeBufferPointer { cs in
                activation.withUnsafeBufferPointer { act in
                    parallelChunks(rows, minimumPerThread: perThread) { range in
                        for r in range {
                            let rs = rowSums[r]
                            for j in 0..<cols {
                                let a = abs(w[r * cols + j])
                                let relative = (cs[j] == 0 ? 0 : a / cs[j]) + (rs == 0 ? 0 : a / rs)
                                sp[r * cols + j] = relative * act[j]
                            }
                        }
                    }
                }
            }
        }
        return scores
    }

    /// Σ_i score_ij per column, in float64: the column importance of RIA's channel reallocation.
    static func columnSums(_ scores: [Float], rows: Int, cols: Int) -> [Double] {
        var sums = [Double](repeating: 0, count: cols)
        for r in 0..<rows { for j in 0..<cols { sums[j] += Double(scores[r * cols + j]) } }
        return sums
    }

    /// The row-major (rows, cols) matrix whose column p is `m`'s column `order[p]`.
    static func permuteColumns(_ m: [Float], rows: Int, cols: Int, order: [Int]) -> [Float] {
        var out = [Float](repeating: 0, count: m.count)
        for r in 0..<rows { for p in 0..<cols { out[r * cols + p] = m[r * cols + order[p]] } }
        return out
    }
}
