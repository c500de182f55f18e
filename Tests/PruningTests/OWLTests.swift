import Foundation
import JSON
import Llama
import Pruning
import SafeTensors
import Testing
import TestSupport

/// OWL against scripts/ria_owl_reference.py (a transcription of the OWL authors' `prune_wanda_outlier`) on
/// stories260K with the first 16 calibration rows at seqlen 512.
@Suite struct OWLTests {
    struct Setting: Sendable {
        var sparsity: Double, lambda: Double, m: Double, lod: [Double], ratios: [Double]
    }

    static func settings() throws -> (SafeTensorsFile, [Setting]) {
        let ref = try riaOWLFixture("owl/stories260K-owl.safetensors")
        let json = try JSONValue.parse(Data(try #require(ref.metadata["settings"]).utf8))
        let settings = try #require(json.arrayValue).map { s -> Setting in
            func number(_ key: String) throws -> Double { try #require(s[key]?.doubleValue, "\(key)") }
            func numbers(_ key: String) throws -> [Double] {
                let values = try #require(s[key]?.arrayValue).compactMap(\.doubleValue)
                try #require(values.count == 5, "\(key)")
                return values
            }
            return Setting(sparsity: try number("sparsity"), lambda: try number("lambda"), m: try number("m"),
                           lod: try numbers("lod"), ratios: try numbers("ratios"))
        }
        return (ref, settings)
    }

    /// The plan (per-block LOD and ratio) equals the reference's for both settings, the blocks are pruned at
    /// their planned ratio (Wanda: floor(in · r) per row), and at the default setting every Wanda mask equals
    /// the reference's Wanda at the reference's ratios.
    @Test func ratiosAndMasksMatchTheReference() throws {
        let (ref, settings) = try Self.settings()
        try #require(settings.count == 2)
        // Scores closer to an outlier threshold than this could be counted differently by float64 rounding.
        let gap = try #require(Double(ref.metadata["min_relative_gap_to_threshold"] ?? ""))
        #expect(gap > 1e-9)
        let (checkpoint, calibration) = try stories260K(nsamples: 16)
        for (i, s) in settings.enumerated() {
            let planner = OWLPlanner(lambda: s.lambda, outlierMultiple: s.m)
            var blocks: [DecoderBlockWeights] = []
            let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: WandaPruning(),
                                                   options: PruningOptions(pattern: .unstructured(s.sparsity)),
                                                   planner: planner) { blocks.append($0) }
            #expect(maxAbsError(planner.outlierRatios, s.lod) <= 1e-9, "LOD \(planner.outlierRatios) vs \(s.lod)")
            #expect(summary.planner == "owl")
            for l in 0..<5 {
                let planned = try #require(Double(summary.plan?["\(l).q"] ?? ""))
                #expect(abs(planned - s.ratios[l]) <= 1e-6, "block \(l): \(planned) vs \(s.ratios[l])")
                for kind in LinearKind.allCases {
                    #expect(summary.plan?["\(l).\(kind.rawValue)"] == summary.plan?["\(l).q"])
                    let w = blocks[l][kind]
                    let expected = w.shape[0] * SparsityPattern.prunedCount(of: w.shape[1], ratio: planned)
                    #expect(SparsityCheck.zeroCount(w.data) == expected, "block \(l) \(kind)")
                    guard i == 0 else { continue }
                    let name = LlamaTensorNames.weight(kind, layer: l)
                    let kept = try unpackKept(ref, name, count: w.count)
                    let mismatches = (0..<w.count).filter { (w.data[$0] != 0) != kept[$0] }.count
                    #expect(mismatches == 0, "\(name): \(mismatches) of \(w.count) entries differ")
                }
            }
            // Blocks with more outliers are pruned less, and the ratios average the target.
            let mean = s.ratios.reduce(0, +) / Double(s.ratios.count)
            #expect(abs(mean - s.sparsity) < 1e-12)
        }
    }

    /// Magnitude reads no calibration data itself, yet OWL plans it from the dense activations: the same
    /// ratios as with Wanda, each linear pruned at its block's ratio over the whole matrix.
    @Test func magnitudeGetsTheSamePlan() throws {
        let (_, settings) = try Self.settings()
        let s = settings[0]
        let (checkpoint, calibration) = try stories260K(nsamples: 16)
        let planner = OWLPlanner(lambda: s.lambda, outlierMultiple: s.m)
        var blocks: [DecoderBlockWeights] = []
        let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: MagnitudePruning(),
                                               options: PruningOptions(pattern: .unstructured(s.sparsity)),
                                               planner: planner) { blocks.append($0) }
        #expect(summary.calibrationHash == calibration.hash)
        for l in 0..<5 {
            let planned = try #require(Double(summary.plan?["\(l).down"] ?? ""))
            #expect(abs(planned - s.ratios[l]) <= 1e-6)
            for kind in LinearKind.allCases {
                let w = blocks[l][kind]
                #expect(SparsityCheck.zeroCount(w.data) == SparsityPattern.prunedCount(of: w.count, ratio: planned))
            }
        }
        // Without calibration data the planner cannot run.
        #expect(throws: PruningError("owl needs calibration data, but none was given")) {
            _ = try BlockwisePruning.run(checkpoint: checkpoint, calibration: nil, method: MagnitudePruning(),
                                         options: PruningOptions(pattern: .unstructured(0.5)), planner: OWLPlanner()) { _ in }
        }
    }

    /// Every method prunes each block at the ratio OWL planned for it, in its own comparison groups (RIA:
    /// the whole matrix; Wanda++: per row; SparseGPT: per block of 128 columns), and the plan does not
    /// depend on the method.
    @Test(arguments: ["ria", "wanda++", "sparsegpt"])
    func everyMethodFollowsThePlan(_ name: String) throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 4)
        let options = PruningOptions(pattern: .unstructured(0.6))
        let method: PruningMethod = name == "wanda++"
            ? WandaPlusPlusMethod(options: WandaPlusPlusOptions(roRounds: 1, roSamples: 2)) : try PruningMethods.make(name)
        var blocks: [DecoderBlockWeights] = []
        let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: method,
                                               options: options, planner: OWLPlanner()) { blocks.append($0) }
        let wanda = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: WandaPruning(),
                                             options: options, planner: OWLPlanner()) { _ in }
        #expect(summary.plan != nil && summary.plan == wanda.plan)
        for l in 0..<5 {
            let r = try #require(Double(summary.plan?["\(l).up"] ?? ""))
            #expect(abs(r - 0.6) > 1e-3, "block \(l) kept the base ratio")
            for kind in LinearKind.allCases {
                let w = blocks[l][kind]
                let (rows, cols) = (w.shape[0], w.shape[1])
                let expected: Int
                switch name {
                case "ria": expected = SparsityPattern.prunedCount(of: rows * cols, ratio: r)
                case "sparsegpt":
                    expected = stride(from: 0, to: cols, by: 128).reduce(0) {
                        $0 + SparsityPattern.prunedCount(of: rows * min(128, cols - $1), ratio: r)
                    }
                default: expected = rows * SparsityPattern.prunedCount(of: cols, ratio: r)
                }
                #expect(SparsityCheck.zeroCount(w.data) == expected, "\(name) block \(l) \(kind)")
            }
        }
    }

    /// The ratio formula on values worked by hand, and its refusals.
    @Test func ratioFormula() throws {
        // LOD 1, 2, 3, λ = 0.1: D = 0, 0.1, 0.2 → minus its mean 0.1, plus 0.5 → 0.4, 0.5, 0.6 → 0.6, 0.5, 0.4.
        let r = try OWLPlanner.ratios(outlierRatios: [1, 2, 3], target: 0.5, lambda: 0.1)
        #expect(maxAbsError(r, [0.6, 0.5, 0.4]) <= 1e-15)
        #expect(try OWLPlanner.ratios(outlierRatios: [2, 2], target: 0.7, lambda: 0.08) == [0.7, 0.7])
        #expect(throws: PruningError.self) { _ = try OWLPlanner.ratios(outlierRatios: [1, 2], target: 0.95, lambda: 0.08) }
        #expect(throws: PruningError("owl sets unstructured ratios per block; the target 2:4 is N:M")) {
            _ = try OWLPlanner().plan(from: SparsityPlan(.nm(n: 2, m: 4)), layerCount: 0)
        }
        #expect(OWLPlanner(lambda: 0.1, outlierMultiple: 3).settings == ["owl_lambda": "0.1", "owl_m": "3.0"])
    }
}
