import Llama
import Tensor

/// SparseGPT (Frantar & Alistarh, 2023): prune one layer column block by column block and compensate each
/// pruned weight with the optimal-brain-surgeon update of the not-yet-processed columns.
///
/// Per layer, with H = 2/n · XᵀX over the n calibration tokens (float32, from float64 sums, as the
/// project's PyTorch reference; the public code's running rescale `H *= k/(k+b); H += 2/(k+b) · XᵦᵀXᵦ`
/// in float32 is the same matrix up to rounding):
/// 1. dead features (H_jj = 0) get W[:, j] = 0 and H_jj = 1;
/// 2. damping: H_jj += percdamp · mean(diag H);
/// 3. U = the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), float32 LAPACK;
/// 4. for each block of `blockSize` columns [i1, i2): the unstructured mask prunes the
///    `floor(rows · width · s)` lowest of w² / U_jj² over the whole block; N:M chooses, at every m-th
///    column, the m − n lowest of the same score over the next m columns (a last partial group of w
///    columns prunes max(0, w − n)), from the weights as updated so far. Then for each column i of the
///    block: q = w masked, err = (w − q) / U_ii, and the block's later columns get w_j −= err · U_ij;
///    after the block, W[:, i2...] −= Err · U[i1..<i2, i2...] (one BLAS call).
///
/// Step 4 is independent across rows except for the unstructured block mask, so rows are split across
/// the cores.
public struct SparseGPTPruning: LayerPruningMethod {
    /// Columns per lazy-update block (the paper's B = 128). For N:M it must be a multiple of m.
    public var blockSize: Int
    /// The damping fraction of mean(diag H) added to the diagonal (0.01).
    public var percentDamping: Double

    public init(blockSize: Int = 128, percentDamping: Double = 0.01) {
        self.blockSize = blockSize
        self.percentDamping = percentDamping
    }

    public var name: String { "sparsegpt" }
    public var statistics: InputStatistics.Kind { .gram }
    public var settings: [String: String] { ["percdamp": String(percentDamping), "blocksize": String(blockSize)] }

    /// SparseGPT with its settings checked (one-line errors).
    public static func checked(blockSize: Int, percentDamping: Double) throws -> SparseGPTPruning {
        guard blockSize > 0 else {
            throw PruningError("invalid SparseGPT block size \(blockSize): it must be positive")
        }
        guard percentDamping.isFinite, percentDamping >= 0 else {
            throw PruningError("invalid SparseGPT damping \(percentDamping): it must be a non-negative number")
        }
        return SparseGPTPruning(blockSize: blockSize, percentDamping: percentDamping)
    }

    public static let registration = MethodRegistration(
        name: "sparsegpt", summary: "OBS updates with the calibration Hessian",
        options: [
            MethodOption("percdamp", valueName: "x", help: "SparseGPT: Hessian damping as a fraction of its mean diagonal.", default: "0.01"),
            MethodOption("blocksize", valueName: "n", help: "SparseGPT: columns per block of lazy updates.", default: "128"),
        ]) { a in
        try checked(blockSize: try a.int("blocksize", range: 1...1_000_000, default: 128)!,
                    percentDamping: try a.double("percdamp", default: 0.01))
    }

    public func compressionScratchBytes(outFeatures: Int, inFeatures: Int) -> Int {
        // U (in, in) float32, the error block (out, B) float32, the block's scores and mask.
        4 * inFeatures * inFeatures + 9 * outFeatures * blockSize
    }

    public func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        guard blockSize > 0 else { throw PruningError("SparseGPT block size must be positive, got \(blockSize)") }
        guard percentDamping >= 0, percentDamping.isFinite else {
            throw PruningError("SparseGPT damping must be a non-negative number, got \(percentDamping)")
        }
        if case .nm(_, let m) = pattern, blockSize % m != 0 {
            throw PruningError("SparseGPT block size \(blockSize) is not a multiple of M = \(m) of the \(pattern) pattern")
        }
        guard let statistics, statistics.kind.contains(.gram) else {
            throw PruningError("\(weight.name): no calibration Hessian was collected")
        }
        try checkStatistics(weight, statistics)
        if let i = FloatScan.firstNaN(UnsafeBufferPointer(weight.values)) {
            throw PruningError("\(weight.name): NaN weight at row \(i / weight.inFeatures), column \(i % weight.inFeatures)")
        }
        let rows = weight.outFeatures, cols = weight.inFeatures
        let w = weight.values
        // Steps 1–3 depend on the statistics alone: the layers that share them (q, k, v; gate, up) share
        // one factorization.
        let f = try statistics.derived("sparsegpt-factor damping=\(percentDamping)") {
            try Profile.phase("SparseGPT factorization") { try factor(statistics, name: weight.name) }
        }
        for j in f.deadColumns { for r in 0..<rows { w[r * cols + j] = 0 } }
        try f.u.withUnsafeBufferPointer { u in
            try prune(w, rows: rows, cols: cols, u: u.baseAddress!, pattern: pattern, name: weight.name,
                      backend: statistics.backend)
        }
    }

    /// U of steps 1–3 and the dead features of step 1.
    struct Factor {
        var u: [Float]
        var deadColumns: [Int]
    }

    private func factor(_ statistics: InputStatistics, name: String) throws -> Factor {
        let cols = statistics.inFeatures
        var h = statistics.hessian()
        var dead = [Int]()
        try h.withUnsafeMutableBufferPointer { hp in
            let u = hp.baseAddress!
            var diagSum = 0.0
            for j in 0..<cols {
                if u[j * cols + j] == 0 {
                    u[j * cols + j] = 1
                    dead.append(j)
                }
                diagSum += Double(u[j * cols + j])
            }
            let damp = Float(percentDamping) * Float(diagSum / Double(cols))
            for j in 0..<cols { u[j * cols + j] += damp }
            do {
                try statistics.backend.upperCholeskyOfInverse(u, n: cols)
            } catch let e as LinalgError {
                throw PruningError("\(name): SparseGPT's damped Hessian is not positive definite (\(e)); try a larger damping")
            }
        }
        return Factor(u: h, deadColumns: dead)
    }

    /// Step 4 on W (rows, cols) with U (cols, cols) upper.
    private func prune(_ w: UnsafeMutableBufferPointer<Float>, rows: Int, cols: Int, u: UnsafePointer<Float>,
                       pattern: SparsityPattern, name: String, backend: any ComputeBackend) throws {
        let bs = min(blockSize, cols)
        let err = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * bs)
        let blockScores = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * bs)
        let blockMask = UnsafeMutableBufferPointer<Bool>.allocate(capacity: rows * bs)
        defer { err.deallocate(); blockScores.deallocate(); blockMask.deallocate() }
        let wp = w.baseAddress!
        var i1 = 0
        while i1 < cols {
            let i2 = min(i1 + bs, cols), width = i2 - i1
            if case .unstructured = pattern {
                for r in 0..<rows {
                    for i in 0..<width {
                        let x = wp[r * cols + i1 + i], d = u[(i1 + i) * cols + i1 + i]
                        blockScores[r * width + i] = (x * x) / (d * d)
                    }
                }
                let scores = UnsafeBufferPointer(rebasing: blockScores[0..<(rows * width)])
                if let i = FloatScan.firstNaN(scores) {
                    throw PruningError("\(name): SparseGPT produced a NaN score at row \(i / width), column \(i1 + i % width)")
                }
                Selection.prunedMask(scores: scores, rows: rows, cols: width, pattern: pattern, perMatrix: true,
                                     into: UnsafeMutableBufferPointer(rebasing: blockMask[0..<(rows * width)]))
            }
            let e = err.baseAddress!, mask = blockMask.baseAddress!
            parallelChunks(rows, minimumPerThread: max(1, 16_384 / max(width * width, 1))) { range in
                var groupScores = [Float](repeating: 0, count: max(1, width))
                var groupMask = [Bool](repeating: false, count: max(1, width))
                var groupScratch = [Float](repeating: 0, count: max(1, width))
                for r in range {
                    let row = wp + r * cols + i1
                    for i in 0..<width {
                        let d = u[(i1 + i) * cols + i1 + i]
                        let pruned: Bool
                        switch pattern {
                        case .unstructured:
                            pruned = mask[r * width + i]
                        case .nm(let n, let m):
                            if i % m == 0 {
                                let g = min(m, width - i)
                                for t in 0..<g {
                                    let x = row[i + t], dt = u[(i1 + i + t) * cols + i1 + i + t]
                                    groupScores[t] = (x * x) / (dt * dt)
                                }
                                groupScores.withUnsafeBufferPointer { s in
                                    groupMask.withUnsafeMutableBufferPointer { p in
                                        groupScratch.withUnsafeMutableBufferPointer { sc in
                                            Selection.pruneLowest(UnsafeBufferPointer(rebasing: s[0..<g]), count: max(0, g - n),
                                                                  into: UnsafeMutableBufferPointer(rebasing: p[0..<g]),
                                                                  scratch: sc)
                                        }
                                    }
                                }
                            }
                            pruned = groupMask[i % m]
                        }
                        let x = row[i]
                        let q: Float = pruned ? 0 : x
                        let er = (x - q) / d
                        row[i] = q
                        e[r * width + i] = er
                        // A kept weight has err = 0: its update would subtract exact zeros.
                        if er != 0 {
                            let urow = u + (i1 + i) * cols + i1
                            for j in (i + 1)..<width { row[j] -= er * urow[j] }
                        }
                    }
                }
            }
            if i2 < cols {
                // W[:, i2...] -= Err (rows, width) · U[i1..<i2, i2...]
                backend.gemm(m: rows, n: cols - i2, k: width, alpha: -1, a: e, lda: width,
                          b: u + i1 * cols + i2, ldb: cols, beta: 1, c: wp + i2, ldc: cols)
            }
            i1 = i2
        }
    }
}
