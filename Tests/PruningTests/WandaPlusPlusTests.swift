import Foundation
import Llama
import Pruning
import Tensor
import Testing

private func wandappFixture(_ name: String) throws -> WandaTensorFile {
    try WandaTensorFile(wandaPackageRoot().appendingPathComponent("Fixtures/wandapp/\(name).safetensors"))
}

private let hfNames: [LinearKind: String] = [
    .q: "q_proj", .k: "k_proj", .v: "v_proj", .o: "o_proj", .gate: "gate_proj", .up: "up_proj", .down: "down_proj",
]

@Suite struct RMSpropTests {
    /// Four steps against torch.optim.RMSprop (lr 3e-3, alpha 0.99, eps 1e-8) with gradients spanning
    /// 1e-9 ... 10, so the ε term matters for the small ones. Same float32 operations in the same order:
    /// agreement to a few ulps.
    @Test func stepsMatchTorch() throws {
        let f = try wandappFixture("rmsprop")
        var p = try f.float("p0").data
        let opt = RMSprop(parameterCounts: [p.count], learningRate: 3e-3)
        for step in 1...4 {
            let g = try f.float("g\(step)").data
            p.withUnsafeMutableBufferPointer { pp in g.withUnsafeBufferPointer { opt.update(0, parameter: pp, gradient: $0) } }
            opt.finishStep()
            let expected = try f.float("p\(step)")
            let err = Tensor(shape: expected.shape, data: p).maxAbsDifference(expected)
            #expect(err <= 1e-6, "step \(step): max |Δθ| \(err)")
        }
        let v = Tensor(shape: [p.count], data: opt.squareAverage(0))
        #expect(v.relativeError(to: try f.float("square_avg")) <= 1e-6)
        #expect(opt.steps == 4)
    }
}

@Suite struct WandaPlusPlusTinyBlockTests {
    struct Loaded {
        let f: WandaTensorFile
        let g: BlockGeometry
        let block: DecoderBlockWeights
        let x: [Float]
        let samples: Int, tokens: Int
        let rope: RoPE

        init() throws {
            let file = try wandappFixture("tiny-block")
            f = file
            g = BlockGeometry(hidden: 16, intermediate: 26, heads: 4, kvHeads: 2, rmsNormEps: 1e-5)
            block = DecoderBlockWeights(
                weights: try LinearKind.allCases.map { try file.float("\(hfNames[$0]!).weight") },
                inputNorm: try file.float("input_layernorm.weight"),
                postAttentionNorm: try file.float("post_attention_layernorm.weight"))
            let xt = try file.float("x")
            x = xt.data
            samples = xt.shape[0]
            tokens = xt.shape[1]
            rope = RoPE(headDim: 4, theta: 10000, scaling: nil, positions: tokens)
        }
    }

    /// The whole per-block algorithm (G, rounds of stage-by-stage prune + RMSprop steps, G again, final
    /// prune) against the fixture script's PyTorch transcription, for each variant, at 2:4 with lr 1e-4
    /// (large enough that RO moves weights by ~1e-3 per step, so a wrong gradient or optimizer shows).
    @Test(arguments: WandaPlusPlusVariant.allCases)
    func variantMatchesPyTorchTranscription(_ variant: WandaPlusPlusVariant) throws {
        let t = try Loaded()
        let options = WandaPlusPlusOptions(variant: variant, alpha: 100, roRounds: 2, roSamples: 4, roLearningRate: 1e-4)
        var block = t.block
        var rng = SeededGenerator(seed: 5)
        let pruner = try WandaPlusPlusBlock(geometry: t.g, options: options)
        let record = try t.x.withUnsafeBufferPointer {
            try pruner.prune(&block, inputs: $0, samples: t.samples, tokens: t.tokens, rope: t.rope, generator: &rng,
                             select: referenceSelector(n: 2, m: 4), keepStatistics: true)
        }
        let v = variant.rawValue
        for m in LinearKind.allCases {
            let expected = try t.f.float("\(v).\(hfNames[m]!).weight")
            let err = block[m].relativeError(to: expected)
            // Float32 roundoff through ≤ 8 optimizer steps of ~1e-3 each: ~1e-6 relative.
            #expect(err <= 1e-4, "\(v) \(m): final weight relative error \(err)")
            let zerosMine = block[m].data.map { $0 == 0 }, zerosRef = expected.data.map { $0 == 0 }
            #expect(zerosMine == zerosRef, "\(v) \(m): masks differ in \(zip(zerosMine, zerosRef).filter { $0 != $1 }.count) entries")
            if variant.usesGradientScore {
                let gerr = try #require(record.gradientScores)[m.index].relativeError(to: try t.f.float("\(v).G.\(hfNames[m]!).weight"))
                #expect(gerr <= 1e-4, "\(v) \(m): G relative error \(gerr)")
            }
        }
        if variant.usesRegionalOptimization {
            let draws = try t.f.float("\(v).ro_samples").data.map { Int($0) }
            #expect(record.roundSamples.flatMap { $0 } == draws)
            let losses = try t.f.float("\(v).ro_loss").data
            let mine = record.roLosses.flatMap { $0 }
            #expect(mine.count == losses.count)
            for (a, b) in zip(mine, losses) { #expect(abs(a - Double(b)) <= 1e-4 * Double(b), "RO loss \(a) vs \(b)") }
        } else {
            #expect(record.roLosses.isEmpty)
        }
    }

    /// Every variant ends at exactly 2:4 (the partial last group of down_proj's 26 columns keeps both).
    @Test(arguments: WandaPlusPlusVariant.allCases)
    func blockEndsAtTargetPattern(_ variant: WandaPlusPlusVariant) throws {
        let t = try Loaded()
        var block = t.block
        var rng = SeededGenerator(seed: 1)
        let pruner = try WandaPlusPlusBlock(geometry: t.g, options: WandaPlusPlusOptions(variant: variant, roRounds: 1, roSamples: 3))
        _ = try t.x.withUnsafeBufferPointer {
            try pruner.prune(&block, inputs: $0, samples: t.samples, tokens: t.tokens, rope: t.rope, generator: &rng,
                             select: referenceSelector(n: 2, m: 4))
        }
        for m in LinearKind.allCases {
            let (rows, cols) = (block[m].shape[0], block[m].shape[1])
            for r in 0..<rows {
                for c0 in stride(from: 0, to: cols, by: 4) {
                    let group = (c0..<min(cols, c0 + 4)).map { block[m].data[r * cols + $0] }
                    let zeros = group.filter { $0 == 0 }.count
                    #expect(zeros == max(0, group.count - 2), "\(m) row \(r) group \(c0): \(zeros) zeros")
                }
            }
        }
    }

    /// The stage-by-stage prune keeps the activations it resumes from in the caller's scratch (the driver's
    /// buffer for the next inputs) where they fit: the pruned block is the one a run without scratch gives,
    /// float for float. Both layouts: an attention output as wide as the hidden size (saved in the scratch
    /// itself) and one twice as wide (saved in a store of its own, the scratch untouched).
    @Test(arguments: [4, 8])
    func scratchLeavesThePrunedBlockUnchanged(headDim: Int) throws {
        let t = try Loaded()
        let C = 16, T = t.tokens
        let g = BlockGeometry(hidden: C, intermediate: 26, heads: 4, kvHeads: 2, headDim: headDim, rmsNormEps: 1e-5)
        var seed: UInt64 = 40
        func random(_ shape: [Int]) -> Tensor {
            seed += 1
            var rng = SeededGenerator(seed: seed)
            let scale = 1 / Double(shape[shape.count - 1]).squareRoot()
            return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextGaussian() * scale) })
        }
        let dense = headDim == 4 ? t.block : DecoderBlockWeights(
            weights: LinearKind.allCases.map { let s = g.shape(of: $0); return random([s.out, s.in]) },
            inputNorm: Tensor(shape: [C], data: random([C]).data.map { 1 + $0 }),
            postAttentionNorm: Tensor(shape: [C], data: random([C]).data.map { 1 + $0 }))
        let rope = RoPE(headDim: headDim, theta: 10000, scaling: nil, positions: T)
        let pruner = try WandaPlusPlusBlock(geometry: g, options: WandaPlusPlusOptions(roRounds: 2, roSamples: 3))
        var plain = dense, withScratch = dense
        var rng1 = SeededGenerator(seed: 3), rng2 = SeededGenerator(seed: 3)
        var scratch = [Float](repeating: .nan, count: t.samples * T * C)
        try t.x.withUnsafeBufferPointer { x in
            _ = try pruner.prune(&plain, inputs: x, samples: t.samples, tokens: T, rope: rope, generator: &rng1,
                                 select: referenceSelector(n: 2, m: 4))
            try scratch.withUnsafeMutableBufferPointer { out in
                _ = try pruner.prune(&withScratch, inputs: x, samples: t.samples, tokens: T, rope: rope, generator: &rng2,
                                     select: referenceSelector(n: 2, m: 4), scratch: out)
            }
        }
        #expect(withScratch == plain && withScratch != dense)
        // Where the attention output is wider than the hidden size the scratch is not used at all.
        #expect(headDim == 4 ? scratch.contains { !$0.isNaN } : scratch.allSatisfy { $0.isNaN })
    }

    @Test func badSettingsAndInputsThrowOneLineErrors() throws {
        let t = try Loaded()
        var rng = SeededGenerator(seed: 1)
        let cases: [(WandaPlusPlusOptions, String)] = [
            (WandaPlusPlusOptions(roSamples: 9), "--ro-samples"),
            (WandaPlusPlusOptions(alpha: -1), "--alpha"),
            (WandaPlusPlusOptions(roLearningRate: .nan), "--ro-lr"),
            (WandaPlusPlusOptions(gradientSamples: 0), "--gradient-samples"),
        ]
        for (options, flag) in cases {
            var block = t.block
            let pruner = try WandaPlusPlusBlock(geometry: t.g, options: options)
            do {
                _ = try t.x.withUnsafeBufferPointer {
                    try pruner.prune(&block, inputs: $0, samples: t.samples, tokens: t.tokens, rope: t.rope,
                                     generator: &rng, select: referenceSelector(n: 2, m: 4))
                }
                Issue.record("\(flag) was accepted")
            } catch {
                #expect("\(error)".contains(flag) && !"\(error)".contains("\n"), "\(error)")
            }
            #expect(block == t.block, "a rejected call changed the block")
        }
        var bad = t.x
        bad[5 * t.tokens * 16 + 3] = .nan
        var block = t.block
        let pruner = try WandaPlusPlusBlock(geometry: t.g, options: WandaPlusPlusOptions(variant: .rgsOnly))
        #expect(throws: WandaPlusPlusError("block: calibration input sample 5 holds NaN or infinity")) {
            _ = try bad.withUnsafeBufferPointer {
                try pruner.prune(&block, inputs: $0, samples: t.samples, tokens: t.tokens, rope: t.rope,
                                 generator: &rng, select: referenceSelector(n: 2, m: 4))
            }
        }
    }
}
