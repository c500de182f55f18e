import Pruning
import Tensor
import Testing

private func gaussians(_ n: Int, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<n).map { _ in Float(g.nextGaussian()) }
}

@Suite struct InputStatisticsTests {
    /// Column sums of squares and H = 2/n XᵀX against float64 sums, over many Gram chunks (`gramRows`),
    /// fed in uneven pieces. The Gram matrix is summed in float64, so H is its float64 value rounded once to
    /// float32 (a float32 Gram batch, as before, missed by ~1e-5 of the scale: SparseGPT's H⁻¹ amplified that).
    @Test func hessianAndNormsMatchFloat64Sums() {
        let cols = 9, tokens = InputStatistics.gramRows * 16 + 1_237
        var x = gaussians(tokens * cols, seed: 3)
        for t in 0..<tokens { x[t * cols + 4] = 0 }          // a dead feature
        let stats = InputStatistics(inFeatures: cols, kind: .gram)
        x.withUnsafeBufferPointer { xp in
            var start = 0
            for chunk in [3000, 1, 2000, tokens] where start < tokens {
                let n = min(chunk, tokens - start)
                stats.calibrate(UnsafeBufferPointer(rebasing: xp[(start * cols)..<((start + n) * cols)]), rows: n)
                start += n
            }
        }
        #expect(stats.tokenCount == tokens)
        let h = stats.hessian()
        for i in 0..<cols { for j in 0..<cols {
            var s = 0.0
            for t in 0..<tokens { s += Double(x[t * cols + i]) * Double(x[t * cols + j]) }
            let ref = 2 * s / Double(tokens)
            // One float32 rounding of the float64 sum (NaN fails the comparison).
            #expect(abs(Double(h[i * cols + j]) - ref) <= 1.2e-7 * abs(ref) + 1e-12, "H[\(i), \(j)]")
            #expect(h[i * cols + j] == h[j * cols + i])
        } }
        #expect(h[4 * cols + 4] == 0)
        let norms = stats.columnNorms
        for j in 0..<cols {
            var s = 0.0
            for t in 0..<tokens { s += Double(x[t * cols + j]) * Double(x[t * cols + j]) }
            #expect(norms[j] == Float(s.squareRoot()))
        }
    }
}

@Suite struct MethodErrorTests {
    private func run(_ method: LayerPruningMethod, _ w: inout [Float], rows: Int, cols: Int, _ pattern: SparsityPattern,
                     stats: InputStatistics?) throws {
        try w.withUnsafeMutableBufferPointer {
            try method.compress(LayerWeight(name: "blk.q", values: $0, outFeatures: rows, inFeatures: cols),
                                statistics: stats, pattern: pattern)
        }
    }

    @Test func nanWeightIsAOneLineError() {
        var w: [Float] = [1, .nan, 3, 4]
        #expect(throws: PruningError("blk.q: NaN score at row 0, column 1 (NaN in the weight or the calibration activations)")) {
            try run(MagnitudePruning(), &w, rows: 2, cols: 2, .unstructured(0.5), stats: nil)
        }
        let stats = InputStatistics(inFeatures: 2, kind: .gram)
        let x: [Float] = [1, 2, 3, 4.5]
        x.withUnsafeBufferPointer { stats.calibrate($0, rows: 2) }
        #expect(throws: PruningError("blk.q: NaN weight at row 0, column 1")) {
            try run(SparseGPTPruning(), &w, rows: 2, cols: 2, .unstructured(0.5), stats: stats)
        }
    }

    @Test func nanActivationsAndMissingStatisticsAreErrors() {
        var w: [Float] = [1, 2, 3, 4]
        #expect(throws: PruningError("blk.q: no calibration statistics were collected")) {
            try run(WandaPruning(), &w, rows: 2, cols: 2, .unstructured(0.5), stats: nil)
        }
        let empty = InputStatistics(inFeatures: 2, kind: .columnSquares)
        #expect(throws: PruningError("blk.q: no calibration tokens reached this layer")) {
            try run(WandaPruning(), &w, rows: 2, cols: 2, .unstructured(0.5), stats: empty)
        }
        let bad = InputStatistics(inFeatures: 2, kind: .gram)
        let x: [Float] = [1, .nan]
        x.withUnsafeBufferPointer { bad.calibrate($0, rows: 1) }
        #expect(throws: PruningError("blk.q: the calibration activations contain NaN or infinity")) {
            try run(SparseGPTPruning(), &w, rows: 2, cols: 2, .unstructured(0.5), stats: bad)
        }
        let wide = InputStatistics(inFeatures: 3, kind: .columnSquares)
        #expect(throws: PruningError("blk.q: statistics of 3 input features for a weight of 2")) {
            try run(WandaPruning(), &w, rows: 2, cols: 2, .unstructured(0.5), stats: wide)
        }
    }

    @Test func sparseGPTBlockSizeMustBeAMultipleOfM() {
        var w = [Float](repeating: 1, count: 16)
        let stats = InputStatistics(inFeatures: 8, kind: .gram)
        let x = gaussians(80, seed: 1)
        x.withUnsafeBufferPointer { stats.calibrate($0, rows: 10) }
        #expect(throws: PruningError("SparseGPT block size 100 is not a multiple of M = 8 of the 4:8 pattern")) {
            try run(SparseGPTPruning(blockSize: 100), &w, rows: 2, cols: 8, .nm(n: 4, m: 8), stats: stats)
        }
    }

    /// A zero ratio prunes nothing and SparseGPT then leaves the weight exactly as it was.
    @Test func zeroSparsityIsTheIdentity() throws {
        let rows = 5, cols = 12
        let w0 = gaussians(rows * cols, seed: 4)
        let stats = InputStatistics(inFeatures: cols, kind: .gram)
        let x = gaussians(30 * cols, seed: 5)
        x.withUnsafeBufferPointer { stats.calibrate($0, rows: 30) }
        for method in [MagnitudePruning() as LayerPruningMethod, WandaPruning(), SparseGPTPruning(blockSize: 4)] {
            var w = w0
            try run(method, &w, rows: rows, cols: cols, .unstructured(0), stats: stats)
            #expect(w == w0, "\(method.name)")
        }
    }
}

@Suite struct SparseGPTSettingsTests {
    @Test func checkedSettingsAndErrors() throws {
        let s = try SparseGPTPruning.checked(blockSize: 64, percentDamping: 0.1)
        #expect(s.blockSize == 64 && s.percentDamping == 0.1)
        #expect(throws: PruningError("invalid SparseGPT block size 0: it must be positive")) {
            _ = try SparseGPTPruning.checked(blockSize: 0, percentDamping: 0.01)
        }
        #expect(throws: PruningError("invalid SparseGPT damping -1.0: it must be a non-negative number")) {
            _ = try SparseGPTPruning.checked(blockSize: 128, percentDamping: -1)
        }
    }
}

@Suite struct MethodRegistryTests {
    /// Every registered method is made by its name, with its settings as the run record keeps them; a bad
    /// option value is a one-line error naming the option; an unknown name lists the methods.
    @Test func everyRegisteredMethodIsMadeByName() throws {
        #expect(PruningMethods.names == ["magnitude", "wanda", "sparsegpt", "wanda++", "wanda++-rgs", "wanda++-ro", "ria"])
        for name in PruningMethods.names { #expect(try PruningMethods.make(name).name == name) }
        let s = try PruningMethods.make("sparsegpt", MethodArguments(values: ["blocksize": "64", "percdamp": "0.1"]))
        #expect(s.settings == ["blocksize": "64", "percdamp": "0.1"])
        #expect(try PruningMethods.make("sparsegpt").settings == ["blocksize": "128", "percdamp": "0.01"])
        #expect(try PruningMethods.make("wanda").settings == [:])
        #expect(throws: MethodOptionError("option '--percdamp' needs a number, got 'nan'")) {
            _ = try PruningMethods.make("sparsegpt", MethodArguments(values: ["percdamp": "nan"]))
        }
        #expect(throws: PruningError("invalid SparseGPT damping -1.0: it must be a non-negative number")) {
            _ = try PruningMethods.make("sparsegpt", MethodArguments(values: ["percdamp": "-1"]))
        }
        #expect(throws: PruningError("unknown pruning method 'obs'; expected one of magnitude, wanda, sparsegpt, wanda++, wanda++-rgs, wanda++-ro, ria")) {
            _ = try PruningMethods.make("obs")
        }
        // Each option once, in registration order (the prune command's --help lists them so).
        #expect(PruningMethods.options.map(\.name) == ["percdamp", "blocksize", "alpha", "holdout", "gradient-samples", "ro-rounds", "ro-samples", "ro-lr",
                                                  "ria-a", "ria-per-row", "ria-permute"])
    }
}
