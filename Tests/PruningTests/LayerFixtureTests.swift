import Foundation
import Pruning
import SafeTensors
import Tensor
import Testing
import TestSupport

/// One per-layer fixture made by scripts/make_pruning_layer_fixtures.py from the PyTorch reference.
private struct LayerCase {
    let file: SafeTensorsFile
    let rows: Int, cols: Int, tokens: Int
    let weight: [Float]
    let inputs: [Float]
    let blockSize: Int
    let percentDamping: Double

    init(_ name: String) throws {
        file = try pruningFixture("layer-\(name).safetensors")
        let ws = try shape(file, "W"), xs = try shape(file, "X")
        rows = ws[0]; cols = ws[1]; tokens = xs[0]
        weight = try file.floats("W")
        inputs = try file.floats("X")
        guard let b = file.metadata["blocksize"].flatMap({ Int($0) }),
              let d = file.metadata["percdamp"].flatMap({ Double($0) }) else {
            throw FixtureError("layer-\(name): metadata lacks blocksize or percdamp")
        }
        blockSize = b; percentDamping = d
    }

    func patterns(_ key: String) throws -> [SparsityPattern] {
        guard let json = file.metadata[key], let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String] else {
            throw FixtureError("metadata lacks \(key)")
        }
        return try list.map { try SparsityPattern(parsing: $0) }
    }

    static func tag(_ p: SparsityPattern) -> String { p.description.replacingOccurrences(of: ":", with: "of") }

    /// Statistics of X fed in uneven chunks, as the driver's capture hook would.
    func statistics(_ kind: InputStatistics.Kind) -> InputStatistics {
        let stats = InputStatistics(inFeatures: cols, kind: kind)
        inputs.withUnsafeBufferPointer { x in
            var start = 0
            for chunk in [1, 100, 7, tokens] {
                let n = min(chunk, tokens - start)
                if n <= 0 { break }
                stats.calibrate(UnsafeBufferPointer(rebasing: x[(start * cols)..<((start + n) * cols)]), rows: n)
                start += n
            }
        }
        return stats
    }

    /// Runs `method` on a copy of W.
    func pruned(_ method: LayerPruningMethod, _ pattern: SparsityPattern, _ stats: InputStatistics?) throws -> [Float] {
        var w = weight
        try w.withUnsafeMutableBufferPointer { wp in
            try method.compress(LayerWeight(name: "fixture", values: wp, outFeatures: rows, inFeatures: cols),
                                statistics: stats, pattern: pattern)
        }
        return w
    }
}

/// The fraction of entries on which two keep-masks agree.
private func agreement(_ a: [Bool], _ b: [Bool]) -> Double {
    Double(zip(a, b).filter { $0 == $1 }.count) / Double(a.count)
}

@Suite struct LayerFixtureTests {
    @Test(arguments: ["wide", "tall"])
    func wandaNormsMatchTheReference(name: String) throws {
        let c = try LayerCase(name)
        let ref = try c.file.floats("xnorm")
        let norms = c.statistics(.columnSquares).columnNorms
        // Both are float64 sums of squares rounded to float32 after the square root; only the summation
        // order differs, so they agree to float32 rounding.
        for j in 0..<c.cols { #expect(abs(norms[j] - ref[j]) <= 2e-7 * max(ref[j], 1e-30), "feature \(j)") }
    }

    @Test(arguments: ["wide", "tall"])
    func magnitudeAndWandaMasksMatchTheReference(name: String) throws {
        let c = try LayerCase(name)
        let stats = c.statistics(.columnSquares)
        for pattern in try c.patterns("mask_patterns") {
            for method in [MagnitudePruning() as LayerPruningMethod, WandaPruning()] {
                let w = try c.pruned(method, pattern, method.statistics.isEmpty ? nil : stats)
                let kept = w.map { $0 != 0 }
                let ref = try unpackKept(c.file, "\(method.name).\(LayerCase.tag(pattern))", count: c.rows * c.cols)
                // The fixture reports no ties at the keep/prune boundary, so the masks must agree exactly.
                #expect(kept == ref, "\(name) \(method.name) \(pattern): agreement \(agreement(kept, ref))")
                // Kept entries are unchanged.
                for i in 0..<w.count where kept[i] { #expect(w[i] == c.weight[i]) }
                if case .nm(let n, let m) = pattern {
                    try SparsityCheck.validateNM(w, rows: c.rows, cols: c.cols, n: n, m: m, name: "\(method.name) \(pattern)")
                }
            }
        }
    }

    /// SparseGPT against the PyTorch reference, both in float32.
    ///
    /// Tolerance: the two implementations factor the same damped H (equal up to float64 summation order
    /// before the rounding to float32) with different LAPACK/BLAS kernels. The worst-case relative error of
    /// H⁻¹'s Cholesky factor is about κ(H) · 2⁻²⁴; these fixtures' damped Hessians have κ ≈ 4e3–5e3 (a few
    /// outlier features, like real activations), i.e. a bound of ~3e-4, but rounding errors do not align
    /// with the worst direction: the measured difference is ≤ 5e-7 of max |W|, with 100% mask agreement.
    ///
    /// A near tie of w²/U_jj² may still flip on another BLAS; a flipped entry differs by the weight itself
    /// and its error moves into the later columns of its row. So we require ≥ 99.9% mask agreement, and
    /// bound the difference on the rows without a flip by 2e-5 of max |W| (40× the measured, under the
    /// worst case) with a median of 1e-6 so that a systematic difference cannot hide under the bound.
    /// Semantic slips are far outside: 20% more damping flips 0.2–1.1% of the entries and moves weights by
    /// 0.4–1.0 of max |W|; a doubled block size flips 4–6% of the unstructured masks.
    @Test(arguments: ["wide", "tall"])
    func sparseGPTMatchesTheReference(name: String) throws {
        let c = try LayerCase(name)
        let stats = c.statistics(.gram)
        let method = SparseGPTPruning(blockSize: c.blockSize, percentDamping: c.percentDamping)
        let scale = c.weight.reduce(Float(0)) { maxOrNaN($0, abs($1)) }
        for pattern in try c.patterns("sparsegpt_patterns") {
            let w = try c.pruned(method, pattern, stats)
            let ref = try c.file.floats("sparsegpt.\(LayerCase.tag(pattern))")
            let kept = w.map { $0 != 0 }, refKept = ref.map { $0 != 0 }
            let agree = agreement(kept, refKept)
            var errors: [Float] = []
            var flippedRows = 0
            for r in 0..<c.rows {
                let row = (r * c.cols)..<((r + 1) * c.cols)
                if kept[row] != refKept[row] { flippedRows += 1; continue }
                // Pruned entries are zero in both; the kept ones carry the updates.
                for i in row where refKept[i] { errors.append(abs(w[i] - ref[i]) / scale) }
            }
            // A NaN would sort anywhere and hide from maxErr.
            #expect(!errors.contains { $0.isNaN } && !w.contains { $0.isNaN }, "\(name) \(pattern): NaN in the pruned weight")
            errors.sort()
            let maxErr = errors.last ?? 0, median = errors.isEmpty ? 0 : errors[errors.count / 2]
            print("sparsegpt \(name) \(pattern): mask agreement \(agree) (\(flippedRows) rows with a flip), max rel error \(maxErr), median \(median)")
            #expect(agree >= 0.999, "\(name) \(pattern)")
            #expect(maxErr <= 2e-5, "\(name) \(pattern)")
            #expect(median <= 1e-6, "\(name) \(pattern)")
            // The achieved sparsity is the pattern's (dead columns are pruned anyway).
            let zeros = SparsityCheck.zeroCount(w)
            switch pattern {
            case .unstructured(let r):
                // Per block floor(rows · width · s); dead columns add zeros that also count as pruned.
                #expect(zeros >= Int(Double(c.rows * c.cols) * r) - c.rows)
            case .nm(let n, let m):
                try SparsityCheck.validateNM(w, rows: c.rows, cols: c.cols, n: n, m: m, name: "sparsegpt \(pattern)")
            }
            // Dead features (X's zero columns) end as zero columns.
            for j in [3, c.cols - 5] { for r in 0..<c.rows { #expect(w[r * c.cols + j] == 0) } }
        }
    }
}
