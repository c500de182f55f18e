import Foundation
import Tensor

/// What fraction of a weight matrix to prune and in which comparison groups.
///
/// - `unstructured(s)`: a ratio s in [0, 1). Score-based methods prune, in every output row of a
///   weight (out, in), the `floor(in · s)` lowest scores; magnitude pruning instead prunes the
///   `floor(out · in · s)` lowest of the whole matrix (one threshold per layer).
/// - `nm(n, m)`: in every row, within every group of m consecutive input columns (starting at column 0),
///   keep the n highest scores. A last, partial group of w < m columns prunes max(0, w − n), so it too has
///   at most n non-zeros (the public reference code prunes m − n there, which empties a group of
///   w ≤ m − n).
public enum SparsityPattern: Equatable, Hashable, Sendable, CustomStringConvertible {
    case unstructured(Double)
    case nm(n: Int, m: Int)

    /// The largest group size M accepted (patterns in use are 2:4 to 16:32; a group wider than a row is
    /// just the row, so larger M only invites overflow in the group arithmetic).
    public static let maxGroupSize = 1 << 16

    /// Parses `0.5` (any ratio in [0, 1)) or `N:M` with 0 < N < M ≤ `maxGroupSize` (e.g. `2:4`, `4:8`).
    public init(parsing text: String) throws {
        let s = text.trimmingCharacters(in: .whitespaces)
        if let colon = s.firstIndex(of: ":") {
            let nText = s[..<colon], mText = s[s.index(after: colon)...]
            guard let n = Int(nText), let m = Int(mText) else {
                throw PruningError("invalid sparsity '\(text)': N:M needs two integers, such as 2:4")
            }
            guard n > 0, n < m else {
                throw PruningError("invalid sparsity '\(text)': N:M needs 0 < N < M, such as 2:4 or 4:8")
            }
            guard m <= Self.maxGroupSize else {
                throw PruningError("invalid sparsity '\(text)': M must be at most \(Self.maxGroupSize)")
            }
            self = .nm(n: n, m: m)
            return
        }
        // Double("nan") and Double("inf") parse; the range check below rejects both.
        guard let r = Double(s), !s.isEmpty, s.allSatisfy({ $0.isNumber || $0 == "." || $0 == "e" || $0 == "E" || $0 == "-" || $0 == "+" }) else {
            throw PruningError("invalid sparsity '\(text)': expected a ratio such as 0.5 or N:M such as 2:4")
        }
        guard r >= 0, r < 1 else {
            throw PruningError("invalid sparsity '\(text)': a ratio must be in [0, 1)")
        }
        self = .unstructured(r == 0 ? 0 : r)   // "-0" reads as 0
    }

    /// `0.5` or `2:4`: the form `init(parsing:)` reads.
    public var description: String {
        switch self {
        case .unstructured(let r): return "\(r)"
        case .nm(let n, let m): return "\(n):\(m)"
        }
    }

    /// The fraction of a matrix of width `inFeatures` (and any number of rows) this pattern prunes.
    public func prunedFraction(inFeatures: Int) -> Double {
        guard inFeatures > 0 else { return 0 }
        switch self {
        case .unstructured(let r):
            return Double(Self.prunedCount(of: inFeatures, ratio: r)) / Double(inFeatures)
        case .nm(let n, let m):
            let full = inFeatures / m, w = inFeatures % m
            return Double(full * (m - n) + max(0, w - n)) / Double(inFeatures)
        }
    }

    /// `floor(count · ratio)` as the reference code's `int(count * ratio)` computes it (in float64).
    public static func prunedCount(of count: Int, ratio: Double) -> Int {
        Int((Double(count) * ratio).rounded(.down))
    }
}

// MARK: - Selection

/// Mask selection: which entries of a score matrix to prune.
///
/// Tie-breaking: within a comparison group, the selection equals a stable ascending sort of the scores
/// (`torch.sort(..., stable=True)`, as the project's PyTorch reference uses) followed by pruning the first
/// k: every score below the k-th smallest is pruned, and among the scores equal to it the ones with the
/// lower column index (row-major index for a whole matrix) are pruned first. `-0.0` and `+0.0` compare
/// equal. Scores must not be NaN (callers check with `FloatScan.firstNaN`).
public enum Selection {
    /// Marks `pruned[i] = true` for the `k` lowest of `scores` (ties: lower index first) and false for the rest.
    /// `scratch` needs `scores.count` elements; it is overwritten.
    public static func pruneLowest(_ scores: UnsafeBufferPointer<Float>, count k: Int,
                                   into pruned: UnsafeMutableBufferPointer<Bool>,
                                   scratch: UnsafeMutableBufferPointer<Float>) {
        let w = scores.count
        if k <= 0 { for i in 0..<w { pruned[i] = false }; return }
        if k >= w { for i in 0..<w { pruned[i] = true }; return }
        if w <= smallGroup {
            pruneLowest(ofSmallGroup: scores.baseAddress!, count: w, prune: k, into: pruned.baseAddress!)
            return
        }
        // The k-th smallest value t (index k − 1 of the sorted order).
        for i in 0..<w { scratch[i] = scores[i] }
        let t = kthSmallest(scratch.baseAddress!, count: w, k: k - 1)
        var below = 0
        for i in 0..<w where scores[i] < t { below += 1 }
        var equalToPrune = k - below
        for i in 0..<w {
            let v = scores[i]
            if v < t { pruned[i] = true }
            else if v == t && equalToPrune > 0 { pruned[i] = true; equalToPrune -= 1 }
            else { pruned[i] = false }
        }
    }

    /// Groups up to this size are ranked by counting (w² comparisons, no scratch) rather than selected.
    static let smallGroup = 16

    /// `pruneLowest` for a group of at most `smallGroup` entries: the stable-sort position of entry i is
    /// the number of smaller entries plus the number of equal entries before it, counted without branches.
    @inline(__always)
    static func pruneLowest(ofSmallGroup s: UnsafePointer<Float>, count w: Int, prune k: Int,
                            into pruned: UnsafeMutablePointer<Bool>) {
        if w == 4 {
            // 2:4's groups, unrolled. Of each pair i < j exactly one counts toward the other's rank: j toward
            // i's when s_j < s_i, otherwise i toward j's (a tie ranks the earlier entry first).
            @inline(__always) func one(_ c: Bool) -> Int { c ? 1 : 0 }
            let a = s[0], b = s[1], c = s[2], d = s[3]
            let ba = one(b < a), ca = one(c < a), da = one(d < a), cb = one(c < b), db = one(d < b), dc = one(d < c)
            pruned[0] = ba + ca + da < k
            pruned[1] = (1 - ba) + cb + db < k
            pruned[2] = (1 - ca) + (1 - cb) + dc < k
            pruned[3] = (1 - da) + (1 - db) + (1 - dc) < k
            return
        }
        for i in 0..<w {
            let v = s[i]
            var rank = 0
            for j in 0..<w {
                let before = (s[j] < v) || (j < i && s[j] == v)
                rank &+= before ? 1 : 0
            }
            pruned[i] = rank < k
        }
    }

    /// The pruned mask of a row-major score matrix (rows, cols) under `pattern`, with per-row comparison
    /// groups for unstructured ratios, or one group over the whole matrix when `perMatrix` is set
    /// (magnitude pruning, SparseGPT's per-block mask). N:M always uses groups of m columns per row.
    /// Rows are split across the cores.
    public static func prunedMask(scores: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                                  pattern: SparsityPattern, perMatrix: Bool = false,
                                  into pruned: UnsafeMutableBufferPointer<Bool>) {
        precondition(scores.count == rows * cols && pruned.count == rows * cols, "prunedMask: buffer sizes")
        if rows == 0 || cols == 0 { return }
        switch pattern {
        case .unstructured(let ratio):
            if perMatrix {
                let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * cols)
                defer { scratch.deallocate() }
                pruneLowest(scores, count: SparsityPattern.prunedCount(of: rows * cols, ratio: ratio),
                            into: pruned, scratch: scratch)
                return
            }
            let k = SparsityPattern.prunedCount(of: cols, ratio: ratio)
            parallelRows(rows, cols) { range in
                let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: cols)
                defer { scratch.deallocate() }
                for r in range {
                    pruneLowest(UnsafeBufferPointer(rebasing: scores[(r * cols)..<((r + 1) * cols)]), count: k,
                                into: UnsafeMutableBufferPointer(rebasing: pruned[(r * cols)..<((r + 1) * cols)]),
                                scratch: scratch)
                }
            }
        case .nm(let n, let m):
            if m == 4 && cols % 4 == 0 {
                // 2:4, 1:4, 3:4 on whole groups: the rows are one run of groups, ranked eight at a time.
                parallelRows(rows, cols) { range in
                    let start = range.lowerBound * cols
                    VectorMath.pruneLowestOfFour(scores.baseAddress! + start, groups: range.count * cols / 4,
                                                 prune: 4 - n, into: pruned.baseAddress! + start)
                }
                return
            }
            parallelRows(rows, cols) { range in
                let sp = scores.baseAddress!, pp = pruned.baseAddress!
                // A group never holds more than a row (M may exceed the width when built in code).
                let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: min(m, cols))
                defer { scratch.deallocate() }
                for r in range {
                    var c0 = 0
                    while c0 < cols {
                        let w = min(m, cols - c0)
                        let base = r * cols + c0
                        if w <= smallGroup {
                            // The usual 2:4 and 4:8: ranked in place, without the general path's setup.
                            pruneLowest(ofSmallGroup: sp + base, count: w, prune: max(0, w - n), into: pp + base)
                        } else {
                            pruneLowest(UnsafeBufferPointer(rebasing: scores[base..<(base + w)]), count: max(0, w - n),
                                        into: UnsafeMutableBufferPointer(rebasing: pruned[base..<(base + w)]),
                                        scratch: scratch)
                        }
                        c0 += w
                    }
                }
            }
        }
    }

    /// The pruned mask (rows · cols, row-major) of a score tensor (rows, cols).
    public static func prunedMask(scores: [Float], rows: Int, cols: Int, pattern: SparsityPattern,
                                  perMatrix: Bool = false) -> [Bool] {
        var mask = [Bool](repeating: false, count: rows * cols)
        scores.withUnsafeBufferPointer { s in
            mask.withUnsafeMutableBufferPointer { p in
                prunedMask(scores: s, rows: rows, cols: cols, pattern: pattern, perMatrix: perMatrix, into: p)
            }
        }
        return mask
    }

    /// Sets `weights[i] = 0` (+0.0) where `pruned[i]`, split across the cores: a bit mask from each flag, so
    /// the loop has no branch and vectorizes.
    public static func zeroPruned(_ weights: UnsafeMutableBufferPointer<Float>, mask pruned: UnsafeBufferPointer<Bool>) {
        precondition(weights.count == pruned.count, "zeroPruned: buffer sizes")
        guard let wb = weights.baseAddress, let mb = pruned.baseAddress else { return }
        let bits = UnsafeMutableRawPointer(wb).assumingMemoryBound(to: UInt32.self)
        let flags = UnsafeRawPointer(mb).assumingMemoryBound(to: UInt8.self)
        parallelChunks(weights.count, minimumPerThread: 1 << 18) { r in
            for i in r { bits[i] &= UInt32(truncatingIfNeeded: Int32(flags[i] & 1) &- 1) }
        }
    }

    private static func parallelRows(_ rows: Int, _ cols: Int, _ body: (Range<Int>) -> Void) {
        // Below ~64k entries the dispatch costs more than it saves.
        parallelChunks(rows, minimumPerThread: max(1, 65_536 / max(cols, 1)), body)
    }

    /// The k-th smallest (0-based) of `a[0..<count]`, reordering `a`: quickselect with a three-way
    /// partition, so runs of equal values (zeros of already-pruned weights) cost linear time, and a
    /// median-of-three pivot.
    static func kthSmallest(_ a: UnsafeMutablePointer<Float>, count: Int, k: Int) -> Float {
        var lo = 0, hi = count - 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            let x = a[lo], y = a[mid], z = a[hi]
            let pivot = max(min(x, y), min(max(x, y), z))
            // [lo, lt) < pivot, [lt, i) == pivot, (gt, hi] > pivot
            var lt = lo, i = lo, gt = hi
            while i <= gt {
                let v = a[i]
                if v < pivot { a.swapAt(lt, i, count: count); lt += 1; i += 1 }
                else if v > pivot { a.swapAt(i, gt, count: count); gt -= 1 }
                else { i += 1 }
            }
            if k < lt { hi = lt - 1 } else if k > gt { lo = gt + 1 } else { return pivot }
        }
        return a[k]
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    @inline(__always) fileprivate func swapAt(_ i: Int, _ j: Int, count: Int) {
        let t = self[i]; self[i] = self[j]; self[j] = t
    }
}

// MARK: - Checks on pruned weights

/// Counting and validating the zeros of pruned weights. A stored `-0.0` counts as zero.
public enum SparsityCheck {
    /// The number of entries equal to zero (`+0.0` or `-0.0`).
    public static func zeroCount(_ values: UnsafeBufferPointer<Float>) -> Int {
        guard let base = values.baseAddress else { return 0 }
        let chunks = max(1, min(workerCount, values.count >> 18))
        let per = (values.count + chunks - 1) / chunks
        var counts = [Int](repeating: 0, count: chunks)
        counts.withUnsafeMutableBufferPointer { cp in
            parallelChunks(chunks) { r in
                for c in r {
                    var z = 0
                    for i in (c * per)..<min(values.count, (c + 1) * per) { z &+= base[i] == 0 ? 1 : 0 }
                    cp[c] = z
                }
            }
        }
        return counts.reduce(0, +)
    }

    /// The number of entries equal to zero.
    public static func zeroCount(_ values: [Float]) -> Int { values.withUnsafeBufferPointer { zeroCount($0) } }

    /// The fraction of entries equal to zero (0 for an empty buffer).
    public static func sparsity(_ values: [Float]) -> Double {
        values.isEmpty ? 0 : Double(zeroCount(values)) / Double(values.count)
    }

    /// Checks that a row-major weight (rows, cols) satisfies N:M: every group of m consecutive columns
    /// from column 0 (the last possibly partial) has at most n non-zeros. Throws a one-line error naming
    /// `name`, the first offending row and group, and its count.
    public static func validateNM(_ values: UnsafeBufferPointer<Float>, rows: Int, cols: Int, n: Int, m: Int,
                                  name: String) throws {
        guard values.count == rows * cols else {
            throw PruningError("\(name): \(values.count) values for shape (\(rows), \(cols))")
        }
        guard rows > 0, cols > 0, let v = values.baseAddress else { return }
        // The first offending row of each chunk of rows (rows split across the cores); the error names
        // the first of all.
        let chunks = max(1, min(workerCount, rows * cols >> 18))
        let per = (rows + chunks - 1) / chunks
        var firstBad = [Int](repeating: Int.max, count: chunks)
        firstBad.withUnsafeMutableBufferPointer { bad in
            parallelChunks(chunks) { range in
                for chunk in range {
                    rowLoop: for r in (chunk * per)..<min(rows, (chunk + 1) * per) {
                        var c0 = 0
                        while c0 < cols {
                            let end = c0 + min(m, cols - c0)
                            var nz = 0
                            for c in c0..<end { nz &+= v[r * cols + c] != 0 ? 1 : 0 }
                            if nz > n { bad[chunk] = r; break rowLoop }
                            c0 = end
                        }
                    }
                }
            }
        }
        guard let r = firstBad.min(), r != Int.max else { return }
        var c0 = 0
        while c0 < cols {
            let end = c0 + min(m, cols - c0)
            let nz = (c0..<end).reduce(0) { $0 + (v[r * cols + $1] != 0 ? 1 : 0) }
            if nz > n {
                throw PruningError("\(name) violates \(n):\(m): row \(r), columns \(c0)..<\(end) hold \(nz) non-zeros")
            }
            c0 = end
        }
    }

    /// The number of zeros of a row-major weight (rows, cols), checking N:M on the way (`nm`; nil: no
    /// check): `zeroCount` and `validateNM` in one pass over the weight, with validateNM's error.
    public static func zeroCount(_ values: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                                 checkingNM nm: (n: Int, m: Int)?, name: String) throws -> Int {
        guard let nm else { return zeroCount(values) }
        guard values.count == rows * cols else {
            throw PruningError("\(name): \(values.count) values for shape (\(rows), \(cols))")
        }
        guard rows > 0, cols > 0, let v = values.baseAddress else { return 0 }
        let (n, m) = nm
        let chunks = max(1, min(workerCount, rows * cols >> 18))
        let per = (rows + chunks - 1) / chunks
        // Per chunk of rows: its non-zeros and its first row with a group above n.
        var nonZeros = [Int](repeating: 0, count: chunks)
        var firstBad = [Int](repeating: Int.max, count: chunks)
        nonZeros.withUnsafeMutableBufferPointer { nzp in
            firstBad.withUnsafeMutableBufferPointer { bad in
                parallelChunks(chunks) { range in
                    for chunk in range {
                        var total = 0
                        for r in (chunk * per)..<min(rows, (chunk + 1) * per) {
                            let row = v + r * cols
                            // Branch-free: the row's fullest group, compared once per row.
                            var worst = 0, c0 = 0
                            if m == 4 {
                                while c0 + 4 <= cols {
                                    let g = (row[c0] != 0 ? 1 : 0) &+ (row[c0 + 1] != 0 ? 1 : 0)
                                        &+ (row[c0 + 2] != 0 ? 1 : 0) &+ (row[c0 + 3] != 0 ? 1 : 0)
                                    total &+= g
                                    worst = max(worst, g)
                                    c0 += 4
                                }
                            }
                            while c0 < cols {
                                let end = min(cols, c0 + m)
                                var g = 0
                                for c in c0..<end { g &+= row[c] != 0 ? 1 : 0 }
                                total &+= g
                                worst = max(worst, g)
                                c0 = end
                            }
                            if worst > n && bad[chunk] == Int.max { bad[chunk] = r }
                        }
                        nzp[chunk] = total
                    }
                }
            }
        }
        if firstBad.contains(where: { $0 != Int.max }) {
            try validateNM(values, rows: rows, cols: cols, n: n, m: m, name: name)
        }
        return rows * cols - nonZeros.reduce(0, +)
    }

    /// `validateNM` over an array.
    public static func validateNM(_ values: [Float], rows: Int, cols: Int, n: Int, m: Int, name: String) throws {
        try values.withUnsafeBufferPointer { try validateNM($0, rows: rows, cols: cols, n: n, m: m, name: name) }
    }
}
