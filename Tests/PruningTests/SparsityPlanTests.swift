import Datasets
import Foundation
import Llama
import Pruning
import Tensor
import Testing
import TestSupport

/// Sees each dense block, keeps the inputs of a few samples, and plans block 2 at 0.75 (the rest keeps
/// the base), as OWL-style planners set per-block ratios.
private final class RecordingPlanner: SparsityPlanner {
    var name: String { "recording" }
    let samples: [Int]
    var layers: [Int] = []
    var inputs: [Tensor] = []
    var weightsUnchanged = true
    init(samples: [Int]) { self.samples = samples }
    func observe(_ context: BlockPruningContext) throws {
        layers.append(context.layer)
        inputs.append(context.inputs(samples: samples))
        #expect(context.pattern(for: .q) == context.plan.base)
    }
    func plan(from base: SparsityPlan, layerCount: Int) throws -> SparsityPlan {
        var plan = base
        plan.set(.unstructured(0.75), layer: 2)
        return plan
    }
}

@Suite struct SparsityPlanTests {
    @Test func exceptionsEqualToTheBaseAreDroppedAndKeysRoundTrip() throws {
        var plan = SparsityPlan(.unstructured(0.5))
        #expect(plan.isUniform && plan.description == "0.5")
        plan.set(.nm(n: 2, m: 4), layer: 1, kinds: [.q, .down])
        plan.set(.unstructured(0.5), layer: 3)            // equal to the base: no exception
        #expect(plan.exceptions.count == 2)
        #expect(plan.pattern(layer: 1, kind: .down) == .nm(n: 2, m: 4) && plan.pattern(layer: 1, kind: .k) == .unstructured(0.5))
        #expect(plan.exceptionsByKey == ["1.q": "2:4", "1.down": "2:4"])
        #expect(plan.description == "0.5 (2 linears planned otherwise)")
        let back = try SparsityPlan(base: .unstructured(0.5), exceptionsByKey: plan.exceptionsByKey)
        #expect(back == plan)
        plan.set(.unstructured(0.5), layer: 1)
        #expect(plan.isUniform)
        #expect(throws: PruningError("invalid linear '1.qq' in a sparsity plan: expected <layer>.<q|k|v|o|gate|up|down>")) {
            _ = try SparsityPlan(base: .unstructured(0.5), exceptionsByKey: ["1.qq": "0.5"])
        }
        #expect(throws: PruningError.self) { _ = try SparsityPlan(base: .unstructured(0.5), exceptionsByKey: ["1.q": "1.5"]) }
    }

    /// Each linear gets its own pattern: the driver prunes and checks it, the summary records the plan, and
    /// the blocks the plan leaves at the base are pruned bit for bit as in a uniform run up to the first
    /// exception.
    @Test func eachLinearIsPrunedToItsOwnPattern() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 4)
        var plan = SparsityPlan(.unstructured(0.5))
        plan.set(.nm(n: 2, m: 4), layer: 1)
        plan.set(.unstructured(0.75), layer: 3, kinds: [.q, .gate])
        let (summary, blocks) = try pruneInMemory(checkpoint, calibration, WandaPruning(), PruningOptions(plan: plan))
        let (uniform, uniformBlocks) = try pruneInMemory(checkpoint, calibration, WandaPruning(), PruningOptions(pattern: .unstructured(0.5)))
        for l in 0..<5 {
            for kind in LinearKind.allCases {
                let w = blocks[l][kind]
                let pattern = plan.pattern(layer: l, kind: kind)
                let expected = Int((pattern.prunedFraction(inFeatures: w.shape[1]) * Double(w.count)).rounded())
                #expect(SparsityCheck.zeroCount(w.data) == expected, "block \(l) \(kind): \(pattern)")
                let report = try #require(summary.blocks[l].layers.first { $0.kind == kind })
                #expect(report.zeros == expected)
                if case .nm(let n, let m) = pattern {
                    try SparsityCheck.validateNM(w.data, rows: w.shape[0], cols: w.shape[1], n: n, m: m, name: "\(l).\(kind)")
                }
            }
        }
        for kind in LinearKind.allCases {
            #expect(blocks[0][kind].data.map(\.bitPattern) == uniformBlocks[0][kind].data.map(\.bitPattern), "block 0 \(kind)")
        }
        #expect(summary.pattern == "0.5 (9 linears planned otherwise)")
        #expect(summary.plan == plan.exceptionsByKey && summary.planner == nil)
        #expect(uniform.pattern == "0.5" && uniform.plan == nil)
    }

    /// The planner sees every dense block in order with the dense model's own activations (recomputed here
    /// with the Tensor forward of the checkpoint's blocks), and the run prunes with the plan it returns.
    @Test func plannerSeesTheDenseModelAndSetsThePlan() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 5)
        let planner = RecordingPlanner(samples: [0, 3, 4])
        let options = PruningOptions(pattern: .unstructured(0.5), samplesPerForward: 2)
        var blocks: [DecoderBlockWeights] = []
        var stages: Set<String> = []
        let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: WandaPruning(),
                                               options: options, progress: { stages.insert($0.stage) }, planner: planner) {
            blocks.append($0)
        }
        #expect(planner.layers == [0, 1, 2, 3, 4])
        #expect(stages == ["plan", "prune"])
        let c = checkpoint.configuration
        var x = try embeddedSamples(planner.samples, of: calibration, checkpoint: checkpoint)
        let rope = RoPE(configuration: c, positions: 512)
        for l in 0..<5 {
            let scale = x.data.reduce(Float(0)) { maxOrNaN($0, abs($1)) }
            #expect(planner.inputs[l].maxAbsDifference(x) <= 1e-5 * scale, "block \(l)")
            x = DecoderBlock.forward(x, weights: try checkpoint.loadBlock(l), configuration: c, rope: rope)
        }
        #expect(summary.planner == "recording" && summary.plan?.count == 7 && summary.plan?["2.down"] == "0.75")
        for kind in LinearKind.allCases {
            let w = blocks[2][kind]
            #expect(SparsityCheck.zeroCount(w.data) == w.shape[0] * Int((Double(w.shape[1]) * 0.75).rounded(.down)))
        }
        // The pruning itself starts again from the embeddings: block 0 as in a run without a planner.
        let (_, plain) = try pruneInMemory(checkpoint, calibration, WandaPruning(), options)
        for kind in LinearKind.allCases {
            #expect(blocks[0][kind].data.map(\.bitPattern) == plain[0][kind].data.map(\.bitPattern), "block 0 \(kind)")
        }
    }
}
