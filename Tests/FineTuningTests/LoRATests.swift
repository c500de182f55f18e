import Foundation
import Datasets
import FineTuning
import Llama
import Pruning
import SafeTensors
import Tensor
import Testing
import TestSupport

struct FixtureMissing: Error, CustomStringConvertible { let description: String }

let packageRoot: URL = {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
    return url
}()

func sharedPath(_ relative: String) throws -> URL {
    let url = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/\(relative)")
    guard FileManager.default.fileExists(atPath: url.path) else { throw FixtureMissing(description: "missing shared data \(url.path)") }
    return url
}

// relativeError(_:_:) (max|a − b| / max|b|, NaN on a NaN on either side) comes from TestSupport.

/// stories260K (../shared) pruned to 2:4 by magnitude, in memory: the same weights as
/// `llm-prune prune --method magnitude --sparsity 2:4`, which scripts/lora_reference.py trains on.
func prunedStories() throws -> LlamaModel {
    let checkpoint = try LlamaCheckpoint(directory: try sharedPath("models/stories260K"))
    var blocks: [DecoderBlockWeights] = []
    _ = try BlockwisePruning.run(checkpoint: checkpoint, calibration: nil, method: try PruningMethods.make("magnitude"),
                                 options: PruningOptions(pattern: .nm(n: 2, m: 4))) { blocks.append($0) }
    let dense = try checkpoint.loadModel()
    return try LlamaModel(configuration: dense.configuration, embeddings: dense.embeddings, blocks: blocks,
                          finalNorm: dense.finalNorm, head: dense.head)
}

/// The calibration tokens file's rows concatenated, as `--train-format tokens` reads them.
func trainingBlocks(seqlen: Int, seed: UInt64 = 0) throws -> TrainingBlocks {
    guard case .tokens(let m) = try CalibrationSource.tokensFile(try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors")) else {
        throw FixtureMissing(description: "tokens file")
    }
    return try TrainingBlocks(stream: m.values, seqlen: seqlen, seed: seed, source: m.source)
}

func zeroPattern(_ blocks: [DecoderBlockWeights]) -> [[Bool]] {
    blocks.flatMap { $0.weights.map { $0.data.map { $0 == 0 } } }
}

@Suite struct LoRATests {
    /// The adapters' gradients against the chain rule through the full-model backward (itself checked
    /// against float64 finite differences and PyTorch): with dropout 0 the adapted model is the merged one,
    /// so dL/dA = s·Bᵀ·G and dL/dB = s·G·Aᵀ with G = dL/dW_merged (⊙ M in masked mode).
    @Test(arguments: [LoRAMode.masked, .plain])
    func adapterGradientsFollowTheChainRuleThroughTheMergedModel(_ mode: LoRAMode) throws {
        let model = try prunedStories()
        let c = model.configuration
        let targets: [LinearKind] = [.q, .k, .o, .up, .down]
        let lora = try LoRAAdapters(options: LoRAOptions(rank: 4, alpha: 8, dropout: 0, targets: targets, mode: mode, seed: 9),
                                    configuration: c, base: model.blocks)
        var rng = SeededGenerator(seed: 4)
        for l in lora.b.indices { for t in lora.b[l].indices {
            lora.b[l][t].data = lora.b[l][t].data.map { _ in Float(rng.nextGaussian() * 0.05) }
        } }
        lora.refresh()
        let data = try trainingBlocks(seqlen: 48)
        let tokens = [data.blocks[0], data.blocks[1]]
        let backward = try CausalLMBackward(configuration: c, batch: 2, length: 48)
        lora.zeroGradients()
        let adapted = try backward.run(model: model, tokens: tokens, adapter: { lora.adapter(layer: $0) })
        let dxAdapted = backward.inputGradient
        var g: [Int: BlockGradients] = [:]
        let merged = try backward.run(model: model, blocks: lora.mergedBlocks(), tokens: tokens, matrices: Set(targets)) { g[$0] = $1 }
        #expect(abs(adapted.loss - merged.loss) <= 1e-5 * merged.loss)
        #expect(relativeError(dxAdapted, backward.inputGradient) <= 1e-4)
        let s = Float(8.0 / 4.0)
        for l in 0..<c.numHiddenLayers {
            for (t, kind) in targets.enumerated() {
                var G = try #require(g[l])[kind]
                if mode == .masked {
                    let w = model.blocks[l][kind]
                    for i in 0..<G.count where w.data[i] == 0 { G.data[i] = 0 }
                }
                let dA = lora.b[l][t].matmul(G, transposeSelf: true).data.map { $0 * s }
                let dB = G.matmul(lora.a[l][t], transposeOther: true).data.map { $0 * s }
                let ea = relativeError(lora.gradA[l][t].data, dA), eb = relativeError(lora.gradB[l][t].data, dB)
                #expect(ea <= 1e-4 && eb <= 1e-4, "\(mode) layer \(l) \(kind): dA error \(ea), dB error \(eb)")
            }
        }
    }

    /// A is PEFT's kaiming_uniform_(a=√5) range, B is zero, so the adapted model starts as the base.
    @Test func initializationIsPEFTsAndSeeded() throws {
        let model = try prunedStories()
        let o = LoRAOptions(rank: 8, alpha: 16, dropout: 0, targets: [.v, .q], seed: 3)
        let a = try LoRAAdapters(options: o, configuration: model.configuration, base: model.blocks)
        let b = try LoRAAdapters(options: o, configuration: model.configuration, base: model.blocks)
        #expect(a.options.targets == [.q, .v])
        #expect(a.a == b.a)
        let bound = Float(1 / Double(model.configuration.hiddenSize).squareRoot())
        for layer in a.a { for t in layer { #expect(t.shape == [8, 64] && t.data.allSatisfy { abs($0) <= bound } && t.data.contains { abs($0) > bound * 0.9 }) } }
        for layer in a.b { for t in layer { #expect(t.data.allSatisfy { $0 == 0 }) } }
        #expect(a.mergedBlocks() == model.blocks)
    }

    /// Masked mode keeps every zero of the pruned input; plain mode's merge destroys them (the trap) and
    /// the re-mask restores exactly the input's pattern.
    @Test func maskedMergeKeepsTheZerosAndPlainNeedsTheRemask() throws {
        let model = try prunedStories()
        let data = try trainingBlocks(seqlen: 64)
        let pattern = zeroPattern(model.blocks)
        for mode in LoRAMode.allCases {
            let trainer = try LoRATrainer(model: model, lora: LoRAOptions(targets: LinearKind.allCases, mode: mode),
                                          data: data, options: TrainingOptions(steps: 3, learningRate: 1e-2, warmup: 0))
            try trainer.train()
            #expect(trainer.losses.count == 3 && trainer.losses.allSatisfy(\.isFinite))
            let merged = trainer.adapters.mergedBlocks()
            if mode == .masked {
                #expect(zeroPattern(merged) == pattern)
                #expect(merged != model.blocks)
            } else {
                let zeros = zeroPattern(merged).joined().filter { $0 }.count
                #expect(zeros < pattern.joined().filter { $0 }.count / 100, "plain merge left \(zeros) zeros")
                #expect(zeroPattern(trainer.adapters.mergedBlocks(remask: true)) == pattern)
            }
        }
    }

    /// Stopping after a saved state and resuming it gives bit-identical adapters, moments and losses
    /// (dropout on, so its masks must be reproduced too).
    @Test func resumeIsBitIdentical() throws {
        let model = try prunedStories()
        let data = try trainingBlocks(seqlen: 32)
        let lora = LoRAOptions(rank: 4, alpha: 8, dropout: 0.1, targets: [.q, .v, .down], mode: .masked, seed: 1)
        let options = TrainingOptions(steps: 6, learningRate: 1e-3, warmup: 2, gradientAccumulation: 2)
        let straight = try LoRATrainer(model: model, lora: lora, data: data, options: options)
        try straight.train()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try LoRATrainer(model: model, lora: lora, data: data, options: options)
        try first.train(until: 3)
        let state = dir.appendingPathComponent("step-3.safetensors")
        try first.save(to: state, settings: ["run": "test"])
        let resumed = try LoRATrainer(model: model, lora: lora, data: data, options: options)
        #expect(throws: FineTuningError.self) { try resumed.resume(from: state, settings: ["run": "other"]) }
        try resumed.resume(from: state, settings: ["run": "test"])
        #expect(resumed.step == 3)
        try resumed.train()
        #expect(resumed.losses == straight.losses)
        #expect(resumed.adapters.a == straight.adapters.a && resumed.adapters.b == straight.adapters.b)
        #expect(resumed.optimizer.m == straight.optimizer.m && resumed.optimizer.v == straight.optimizer.v)
    }

    /// AdamW against torch.optim.AdamW's update written out in float64 for two steps, and the schedule
    /// against transformers' get_linear_schedule_with_warmup values.
    @Test func adamWAndScheduleFollowPyTorch() {
        #expect(linearScheduleFactor(step: 0, warmup: 5, total: 20) == 0)
        #expect(linearScheduleFactor(step: 2, warmup: 5, total: 20) == 0.4)
        #expect(linearScheduleFactor(step: 5, warmup: 5, total: 20) == 1)
        #expect(linearScheduleFactor(step: 14, warmup: 5, total: 20) == 0.4)
        #expect(linearScheduleFactor(step: 20, warmup: 5, total: 20) == 0)
        var opt = AdamW(parameterCounts: [2], weightDecay: 0.1)
        var p: [Float] = [0.5, -1]
        var ref: [Double] = [0.5, -1], m: [Double] = [0, 0], v: [Double] = [0, 0]
        for (t, g) in [[0.3, -0.2], [0.1, 0.4]].enumerated() {
            opt.beginStep()
            let gf = g.map(Float.init)
            p.withUnsafeMutableBufferPointer { pp in gf.withUnsafeBufferPointer { opt.update(0, parameter: pp, gradient: $0, lr: 0.01) } }
            for i in 0..<2 {
                ref[i] *= 1 - 0.01 * 0.1
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                let mh = m[i] / (1 - pow(0.9, Double(t + 1))), vh = v[i] / (1 - pow(0.999, Double(t + 1)))
                ref[i] -= 0.01 * mh / (vh.squareRoot() + 1e-8)
            }
        }
        for i in 0..<2 { #expect(abs(Double(p[i]) - ref[i]) <= 1e-6, "\(p[i]) vs \(ref[i])") }
    }
}
