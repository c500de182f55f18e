import Foundation
import Llama
import Pruning
import SafeTensors
import Tensor
import Testing
import TestSupport

/// A committed fixture of scripts/ria_owl_reference.py (Fixtures/ria, Fixtures/owl); missing is a failure.
func riaOWLFixture(_ path: String) throws -> SafeTensorsFile {
    let url = try packageRoot().appendingPathComponent("Fixtures/\(path)")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw FixtureError("missing fixture \(url.path); run scripts/ria_owl_reference.py")
    }
    return try SafeTensorsFile(url: url)
}

/// RIA prunes like `RIAPruning` and, in block 0, keeps its scores of q_proj and down_proj (before any
/// permutation) for the kernel check.
private final class RIAScoreProbe: LayerPruningMethod {
    let ria: RIAPruning
    var scores: [String: [Float]] = [:]
    init(_ ria: RIAPruning) { self.ria = ria }
    var name: String { "ria-probe" }
    var statistics: InputStatistics.Kind { ria.statistics }
    func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        if weight.name.hasPrefix("model.layers.0.") { scores[weight.name] = try ria.scores(weight, statistics: statistics) }
        try ria.compress(weight, statistics: statistics, pattern: pattern)
    }
}

/// RIA against scripts/ria_owl_reference.py (a transcription of the RIA authors' `prune_ria`) on stories260K
/// with the first 16 calibration rows at seqlen 512: every mask of every block, the channel order and its fold.
@Suite struct RIATests {
    struct Case: CustomStringConvertible, Sendable {
        var tag: String, pattern: String, perRow: Bool, permute: Bool
        var description: String { tag }
    }

    static let cases = [
        Case(tag: "50", pattern: "0.5", perRow: false, permute: false),
        Case(tag: "50-per-row", pattern: "0.5", perRow: true, permute: false),
        Case(tag: "2of4", pattern: "2:4", perRow: false, permute: false),
        Case(tag: "2of4-permute", pattern: "2:4", perRow: false, permute: true),
        // 172 columns in groups of 8: the last group is partial.
        Case(tag: "4of8-permute", pattern: "4:8", perRow: false, permute: true),
    ]

    /// The reference reports no tie at any keep/prune boundary, so all 35 masks must agree on every weight,
    /// in blocks 0 to 4 (later blocks see the pruned earlier ones). The stored weights are the dense ones
    /// with the reference's channel order and mask applied: gate/up rows and down columns in that order.
    @Test(arguments: cases)
    func masksMatchTheReference(_ c: Case) throws {
        let ref = try riaOWLFixture("ria/stories260K-ria-\(c.tag).safetensors")
        #expect(ref.metadata["ties"] == "{\"exact_groups\": 0, \"exact_entries\": 0, \"near_groups\": 0}")
        let (checkpoint, calibration) = try stories260K(nsamples: 16)
        let pattern = try SparsityPattern(parsing: c.pattern)
        let (summary, blocks) = try pruneInMemory(checkpoint, calibration, RIAPruning(perRow: c.perRow, permutesDown: c.permute),
                                                  PruningOptions(pattern: pattern))
        #expect(blocks.count == 5)
        for block in blocks {
            let l = block.layer
            for kind in LinearKind.allCases {
                let w = block[kind]
                let name = LlamaTensorNames.weight(kind, layer: l)
                let kept = try unpackKept(ref, name, count: w.count)
                let mismatches = (0..<w.count).filter { (w.data[$0] != 0) != kept[$0] }.count
                #expect(mismatches == 0, "\(c) \(name): \(mismatches) of \(w.count) entries differ")
                if case .nm(let n, let m) = pattern {
                    try SparsityCheck.validateNM(w.data, rows: w.shape[0], cols: w.shape[1], n: n, m: m, name: name)
                }
            }
            guard c.permute else { continue }
            let order = try ref.int64s("order.model.layers.\(l)").map(Int.init)
            let dense = try checkpoint.loadBlock(l)
            #expect(order != Array(0..<order.count), "block \(l): the reference's order is the identity")
            // Each stored entry is zero or the dense weight it came from.
            func expectMoved(_ kind: LinearKind, _ source: (Int, Int) -> Float) {
                let w = block[kind]
                let cols = w.shape[1]
                let wrong = (0..<w.count).filter { i in w.data[i] != 0 && w.data[i] != source(i / cols, i % cols) }.count
                #expect(wrong == 0, "block \(l) \(kind): \(wrong) weights are not the dense ones in the reference's order")
            }
            let h = dense.gate.shape[1], f = dense.down.shape[1]
            expectMoved(.gate) { r, j in dense.gate.data[order[r] * h + j] }
            expectMoved(.up) { r, j in dense.up.data[order[r] * h + j] }
            expectMoved(.down) { r, p in dense.down.data[r * f + order[p]] }
        }
        #expect(summary.sparsity > 0.45)
    }

    /// Block 0's scores of q_proj (64 × 64) and down_proj (64 × 172) against the reference's float32 scores:
    /// the same float32 expression of float64 sums, so equal up to the sums' last bits.
    @Test func scoresMatchTheReference() throws {
        let ref = try riaOWLFixture("ria/stories260K-ria-2of4.safetensors")
        let (checkpoint, calibration) = try stories260K(nsamples: 16)
        let probe = RIAScoreProbe(RIAPruning())
        _ = try pruneInMemory(checkpoint, calibration, probe, PruningOptions(pattern: .nm(n: 2, m: 4)))
        for kind in [LinearKind.q, .down] {
            let name = LlamaTensorNames.weight(kind, layer: 0)
            let got = try #require(probe.scores[name])
            let expected = try ref.floats("score.model.layers.0.\(kind.modulePath)")
            let scale = try #require(expected.map(abs).maxOrNaN())
            #expect(scale > 0)
            #expect(maxAbsError(got, expected) <= 1e-6 * Double(scale), "\(name)")
        }
    }

    /// RIA's reallocation on a small case worked by hand: importance sorted ascending is columns
    /// 1, 3, 5, 2, 0, 7, 6, 4; chunks of two fill slots 0..3, the second and fourth reversed.
    @Test func interleavedOrderByHand() {
        let order = ChannelPermutation.interleaved(importance: [5, 1, 4, 2, 8, 3, 7, 6], groupSize: 4)
        #expect(order == [1, 2, 0, 4, 3, 5, 7, 6])
        // Ten columns in groups of four: slots 0 and 1 have three positions, slots 2 and 3 two.
        let partial = ChannelPermutation.interleaved(importance: (0..<10).map(Double.init), groupSize: 4)
        #expect(partial == [0, 5, 6, 9, 1, 4, 7, 8, 2, 3])
        #expect(ChannelPermutation.isPermutation(partial, count: 10) && !ChannelPermutation.isPermutation([0, 0, 1], count: 3))
    }

    /// Folding an order into gate/up rows and down columns leaves the block's function unchanged: the
    /// outputs of dense block 2 on two calibration samples agree up to float rounding, for RIA-style and
    /// random orders, while the weights did move.
    @Test func foldKeepsTheBlockFunction() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 2)
        let c = checkpoint.configuration
        let rope = RoPE(configuration: c, positions: 512)
        let dense = try checkpoint.loadBlock(2)
        let x = DecoderBlock.forward(try embeddedSamples([0, 1], of: calibration, checkpoint: checkpoint),
                                     weights: try checkpoint.loadBlock(0), configuration: c, rope: rope)
        let before = DecoderBlock.forward(x, weights: dense, configuration: c, rope: rope)
        let f = c.intermediateSize
        var generator = SeededGenerator(seed: 7)
        var shuffled = Array(0..<f)
        generator.shuffle(&shuffled)
        let interleaved = ChannelPermutation.interleaved(importance: (0..<f).map { Double(($0 * 37) % f) }, groupSize: 4)
        for order in [shuffled, interleaved] {
            var folded = dense
            folded.permuteIntermediateChannels(order)
            #expect(folded.gate.data != dense.gate.data && folded.down.data != dense.down.data)
            #expect(folded.q.data == dense.q.data && folded.o.data == dense.o.data)
            let after = DecoderBlock.forward(x, weights: folded, configuration: c, rope: rope)
            let scale = try #require(before.data.map(abs).maxOrNaN())
            #expect(maxAbsError(after.data, before.data) <= 1e-5 * Double(scale))
        }
    }

    /// The registry offers RIA with its options; bad values are option errors.
    @Test func registration() throws {
        let names = PruningMethods.options.map(\.name)
        #expect(["ria-a", "ria-per-row", "ria-permute"].allSatisfy(names.contains))
        let flagged = try PruningMethods.make("ria", MethodArguments(values: ["ria-a": "0.25", "ria-permute": ""]))
        #expect(flagged.settings == ["ria_a": "0.25", "ria_per_row": "false", "ria_permute": "true"])
        #expect(try PruningMethods.make("ria").settings == ["ria_a": "0.5", "ria_per_row": "false", "ria_permute": "false"])
        #expect(throws: MethodOptionError.self) { _ = try PruningMethods.make("ria", MethodArguments(values: ["ria-a": "-1"])) }
        #expect(throws: MethodOptionError.self) { _ = try PruningMethods.make("ria", MethodArguments(values: ["ria-a": "x"])) }
    }
}
