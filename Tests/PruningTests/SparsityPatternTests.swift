import Pruning
import Tensor
import Testing

/// The reference selection: a stable ascending sort of (score, index), prune the first k.
private func referencePruneLowest(_ scores: [Float], _ k: Int) -> [Bool] {
    let order = scores.indices.sorted { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
    var pruned = [Bool](repeating: false, count: scores.count)
    for i in order.prefix(max(0, k)) { pruned[i] = true }
    return pruned
}

/// The reference mask of a whole matrix, written from the definitions in SparsityPattern's doc comment.
private func referenceMask(_ s: [Float], rows: Int, cols: Int, _ p: SparsityPattern, perMatrix: Bool) -> [Bool] {
    switch p {
    case .unstructured(let r):
        if perMatrix { return referencePruneLowest(s, Int(Double(rows * cols) * r)) }
        var out: [Bool] = []
        for i in 0..<rows { out += referencePruneLowest(Array(s[(i * cols)..<((i + 1) * cols)]), Int(Double(cols) * r)) }
        return out
    case .nm(let n, let m):
        var out = [Bool](repeating: false, count: rows * cols)
        for i in 0..<rows {
            for c0 in stride(from: 0, to: cols, by: m) {
                let w = min(m, cols - c0)
                let g = referencePruneLowest(Array(s[(i * cols + c0)..<(i * cols + c0 + w)]), max(0, w - n))
                for t in 0..<w { out[i * cols + c0 + t] = g[t] }
            }
        }
        return out
    }
}

@Suite struct SparsityPatternParsingTests {
    @Test func parsesRatiosAndNM() throws {
        #expect(try SparsityPattern(parsing: "0.5") == .unstructured(0.5))
        #expect(try SparsityPattern(parsing: "0") == .unstructured(0))
        #expect(try SparsityPattern(parsing: "0.999") == .unstructured(0.999))
        #expect(try SparsityPattern(parsing: "2:4") == .nm(n: 2, m: 4))
        #expect(try SparsityPattern(parsing: "4:8") == .nm(n: 4, m: 8))
        #expect(try SparsityPattern(parsing: "1:3") == .nm(n: 1, m: 3))
        #expect(try SparsityPattern(parsing: "-0") == .unstructured(0))
        #expect(try SparsityPattern(parsing: "2:4").description == "2:4")
        #expect(try SparsityPattern(parsing: "0.5").description == "0.5")
    }

    @Test(arguments: [
        ("2:2", "invalid sparsity '2:2': N:M needs 0 < N < M, such as 2:4 or 4:8"),
        ("0:4", "invalid sparsity '0:4': N:M needs 0 < N < M, such as 2:4 or 4:8"),
        ("4:2", "invalid sparsity '4:2': N:M needs 0 < N < M, such as 2:4 or 4:8"),
        ("2:x", "invalid sparsity '2:x': N:M needs two integers, such as 2:4"),
        ("abc", "invalid sparsity 'abc': expected a ratio such as 0.5 or N:M such as 2:4"),
        ("", "invalid sparsity '': expected a ratio such as 0.5 or N:M such as 2:4"),
        ("nan", "invalid sparsity 'nan': expected a ratio such as 0.5 or N:M such as 2:4"),
        ("inf", "invalid sparsity 'inf': expected a ratio such as 0.5 or N:M such as 2:4"),
        ("1.5", "invalid sparsity '1.5': a ratio must be in [0, 1)"),
        ("1", "invalid sparsity '1': a ratio must be in [0, 1)"),
        ("-0.1", "invalid sparsity '-0.1': a ratio must be in [0, 1)"),
    ])
    func rejectsMalformedSpecsWithOneLine(spec: String, message: String) {
        do {
            _ = try SparsityPattern(parsing: spec)
            Issue.record("'\(spec)' was accepted")
        } catch {
            #expect("\(error)" == message)
            #expect(!"\(error)".contains("\n"))
        }
    }

    @Test func prunedFractionCountsThePartialGroup() {
        #expect(SparsityPattern.nm(n: 2, m: 4).prunedFraction(inFeatures: 172) == 0.5)
        // 172 = 21·8 + 4: the partial group of 4 keeps all 4 under 4:8 and prunes 2 under 2:8.
        #expect(SparsityPattern.nm(n: 4, m: 8).prunedFraction(inFeatures: 172) == Double(21 * 4) / 172)
        #expect(SparsityPattern.nm(n: 2, m: 8).prunedFraction(inFeatures: 172) == Double(21 * 6 + 2) / 172)
        #expect(SparsityPattern.unstructured(0.5).prunedFraction(inFeatures: 171) == 85.0 / 171)
    }
}

@Suite struct SelectionTests {
    /// Scores drawn from a few values so that most comparison groups hold ties, including -0.0 vs +0.0.
    private func tiedScores(_ count: Int, seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        let values: [Float] = [-0.0, 0, 0.25, 0.5, 0.5, 1, 2]
        return (0..<count).map { _ in values[g.nextInt(below: values.count)] }
    }

    @Test(arguments: [SparsityPattern.unstructured(0.5), .unstructured(0.3), .unstructured(0.9),
                      .nm(n: 2, m: 4), .nm(n: 4, m: 8), .nm(n: 2, m: 8), .nm(n: 5, m: 7), .nm(n: 3, m: 20)])
    func masksEqualStableSortSelectionEvenWithTies(pattern: SparsityPattern) {
        for (rows, cols, seed) in [(5, 172, 1), (9, 64, 2), (3, 37, 3), (1, 5, 4), (300, 300, 5)] as [(Int, Int, UInt64)] {
            let s = tiedScores(rows * cols, seed: seed)
            for perMatrix in [false, true] {
                let mask = Selection.prunedMask(scores: s, rows: rows, cols: cols, pattern: pattern, perMatrix: perMatrix)
                #expect(mask == referenceMask(s, rows: rows, cols: cols, pattern, perMatrix: perMatrix),
                        "\(pattern) \(rows)x\(cols) perMatrix \(perMatrix)")
            }
        }
    }

    @Test func continuousScoresMatchReference() {
        var g = SeededGenerator(seed: 11)
        let rows = 40, cols = 1000
        let s = (0..<(rows * cols)).map { _ in Float(g.nextGaussian()) }
        for p in [SparsityPattern.unstructured(0.5), .unstructured(0.77)] {
            for perMatrix in [false, true] {
                let mask = Selection.prunedMask(scores: s, rows: rows, cols: cols, pattern: p, perMatrix: perMatrix)
                #expect(mask == referenceMask(s, rows: rows, cols: cols, p, perMatrix: perMatrix))
            }
        }
    }

    @Test func lowerIndexIsPrunedFirstAmongTies() {
        // Row [1, 1, 1, 1] at 0.5: columns 0 and 1. Row [2, -0.0, 0, 0] at 0.5: columns 1 and 2.
        let s: [Float] = [1, 1, 1, 1, 2, -0.0, 0, 0]
        let mask = Selection.prunedMask(scores: s, rows: 2, cols: 4, pattern: .unstructured(0.5))
        #expect(mask == [true, true, false, false, false, true, true, false])
    }

    @Test func partialGroupPrunesOnlyTheExcessOverN() {
        // 6 columns, 4:8 → one partial group of 6 prunes 2; 2:4 → a full group prunes 2, the partial
        // group of 2 prunes 0.
        let s: [Float] = [6, 5, 4, 3, 2, 1]
        #expect(Selection.prunedMask(scores: s, rows: 1, cols: 6, pattern: .nm(n: 4, m: 8))
                == [false, false, false, false, true, true])
        #expect(Selection.prunedMask(scores: s, rows: 1, cols: 6, pattern: .nm(n: 2, m: 4))
                == [false, false, true, true, false, false])
    }
}

@Suite struct SparsityCheckTests {
    @Test func countsNegativeZeroAsZero() {
        #expect(SparsityCheck.zeroCount([0, -0.0, 1, -2, .leastNonzeroMagnitude]) == 2)
        #expect(SparsityCheck.sparsity([0, -0.0, 1, 2]) == 0.5)
        #expect(SparsityCheck.sparsity([]) == 0)
        // Counted in chunks across the cores: every chunk's count is summed, once.
        var g = SeededGenerator(seed: 8)
        let big = (0..<3_000_001).map { _ in g.nextInt(below: 3) == 0 ? (g.nextInt(below: 2) == 0 ? Float(0) : -0.0) : 1.5 }
        #expect(SparsityCheck.zeroCount(big) == big.filter { $0 == 0 }.count)
    }

    @Test func zeroPrunedWritesPositiveZeroWhereTheMaskSays() {
        var g = SeededGenerator(seed: 9)
        let n = 1_000_003
        let original = (0..<n).map { _ in Float(g.nextGaussian()) }
        let mask = (0..<n).map { _ in g.nextInt(below: 2) == 0 }
        var w = original
        w.withUnsafeMutableBufferPointer { wp in mask.withUnsafeBufferPointer { Selection.zeroPruned(wp, mask: $0) } }
        for i in 0..<n {
            let expected = mask[i] ? Float(0).bitPattern : original[i].bitPattern
            if w[i].bitPattern != expected { Issue.record("entry \(i): \(w[i]) for \(original[i]), pruned \(mask[i])"); break }
        }
    }

    @Test func validatorAcceptsNMAndNamesTheFirstViolation() throws {
        // 2 rows × 6 columns under 2:4: groups [0..<4) and the partial [4..<6).
        let ok: [Float] = [1, 0, -0.0, 2, 3, 4,
                           0, 0, 0, 0, 0, 5]
        try SparsityCheck.validateNM(ok, rows: 2, cols: 6, n: 2, m: 4, name: "w")
        let bad: [Float] = [1, 0, -0.0, 2, 3, 4,
                            1, 1, 0, 1, 0, 0]
        #expect(throws: PruningError("w violates 2:4: row 1, columns 0..<4 hold 3 non-zeros")) {
            try SparsityCheck.validateNM(bad, rows: 2, cols: 6, n: 2, m: 4, name: "w")
        }
        // Rows split across the cores: with violations in the last rows of several chunks of rows, the error
        // still names the first row.
        let (rows, cols) = (2048, 512)
        var big = [Float](repeating: 0, count: rows * cols)
        for r in [1500, 700, 2047] { for c in 8..<11 { big[r * cols + c] = 1 } }
        #expect(throws: PruningError("big violates 2:4: row 700, columns 8..<12 hold 3 non-zeros")) {
            try SparsityCheck.validateNM(big, rows: rows, cols: cols, n: 2, m: 4, name: "big")
        }
        // The partial group is held to N as well.
        #expect(throws: PruningError("w violates 1:4: row 0, columns 4..<6 hold 2 non-zeros")) {
            try SparsityCheck.validateNM([1, 0, 0, 0, 3, 4], rows: 1, cols: 6, n: 1, m: 4, name: "w")
        }
    }

    /// The one-pass count with the N:M check gives zeroCount's count and validateNM's verdict and error, for
    /// 2:4 (its unrolled groups) and 4:8, whole and partial last groups, one chunk of rows and several,
    /// with NaN counted as a non-zero as in zeroCount.
    @Test func countWithNMCheckAgreesWithTheSeparateChecks() throws {
        var g = SeededGenerator(seed: 12)
        for (rows, cols, n, m) in [(3, 6, 2, 4), (2048, 512, 2, 4), (700, 1001, 2, 4), (1024, 1000, 4, 8), (5, 11, 4, 8)] {
            // Each group keeps at most n non-zeros: values, -0.0 and NaN among them.
            var w = [Float](repeating: 0, count: rows * cols)
            for r in 0..<rows {
                var c0 = 0
                while c0 < cols {
                    let end = min(cols, c0 + m)
                    for c in c0..<end where c - c0 < n && g.nextInt(below: 4) != 0 {
                        w[r * cols + c] = g.nextInt(below: 50) == 0 ? .nan : Float(g.nextGaussian())
                    }
                    if g.nextInt(below: 3) == 0 { w[r * cols + end - 1] = -0.0 }
                    c0 = end
                }
            }
            let label = "\(rows)x\(cols) \(n):\(m)"
            let zeros = w.filter { $0 == 0 }.count
            try SparsityCheck.validateNM(w, rows: rows, cols: cols, n: n, m: m, name: "w")
            let counted = try w.withUnsafeBufferPointer {
                try SparsityCheck.zeroCount($0, rows: rows, cols: cols, checkingNM: (n, m), name: "w")
            }
            #expect(counted == zeros, "\(label)")
            #expect(try w.withUnsafeBufferPointer {
                try SparsityCheck.zeroCount($0, rows: rows, cols: cols, checkingNM: nil, name: "w")
            } == zeros, "\(label)")
            // One group over n in a late row and one in an earlier row: both name the earlier one.
            var bad = w
            for r in [rows - 1, rows / 2] { for c in 0..<m { bad[r * cols + c] = 1 } }
            var expected = ""
            do { try SparsityCheck.validateNM(bad, rows: rows, cols: cols, n: n, m: m, name: "w") } catch { expected = "\(error)" }
            #expect(expected.contains("row \(rows / 2), columns 0..<\(m)"), "\(label): \(expected)")
            var got = ""
            do {
                _ = try bad.withUnsafeBufferPointer {
                    try SparsityCheck.zeroCount($0, rows: rows, cols: cols, checkingNM: (n, m), name: "w")
                }
            } catch { got = "\(error)" }
            #expect(got == expected, "\(label)")
        }
    }
}
