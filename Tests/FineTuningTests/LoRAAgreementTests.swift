import Foundation
import Evaluation
import Datasets
import FineTuning
import Llama
import SafeTensors
import Tensor
import Testing
import TestSupport

/// The same fine-tuning as scripts/lora_reference.py (PyTorch; PEFT for plain mode) on stories260K
/// pruned 2:4 by magnitude: 20 steps of 2 accumulated 128-token blocks, rank 8, alpha 16, dropout 0,
/// lr 1e-3, warmup 2, clipping 1, weight decay 0.01, seed 0 — the fixtures hold PyTorch's losses, final
/// adapters and perplexity (and, for plain mode, PEFT's perplexity with our adapter loaded).
@Suite struct LoRAAgreementTests {
    static func run(mode: LoRAMode, targets: [LinearKind]) throws -> (LoRATrainer, Double) {
        let model = try prunedStories()
        let data = try trainingBlocks(seqlen: 128)
        let trainer = try LoRATrainer(
            model: model, lora: LoRAOptions(rank: 8, alpha: 16, dropout: 0, targets: targets, mode: mode, seed: 0), data: data,
            options: TrainingOptions(steps: 20, learningRate: 1e-3, warmup: 2, gradientAccumulation: 2, maxGradNorm: 1, weightDecay: 0.01))
        try trainer.train()
        trainer.adapters.training = false
        let merged = try LlamaModel(configuration: model.configuration, embeddings: model.embeddings,
                                    blocks: trainer.adapters.mergedBlocks(), finalNorm: model.finalNorm, head: model.head)
        let windows = try EvaluationWindows(tokens: Array(data.blocks[0..<4].joined()), seqlen: 128, source: "first 4 blocks")
        return (trainer, try Perplexity.evaluate(model: merged, windows: windows).perplexity)
    }

    static func check(_ fixture: String, mode: LoRAMode, targets: [LinearKind]) throws {
        let file = try SafeTensorsFile(url: packageRoot.appendingPathComponent("Fixtures/lora/\(fixture).safetensors"))
        let (trainer, perplexity) = try run(mode: mode, targets: targets)
        let reference = try file.floats("losses")
        #expect(reference.count == 20 && trainer.losses.count == 20)
        for (i, (mine, theirs)) in zip(trainer.losses, reference).enumerated() {
            let err = abs(mine - Double(theirs)) / abs(Double(theirs))
            #expect(err <= 1e-4, "\(fixture) step \(i + 1): loss \(mine) vs PyTorch \(theirs)")
        }
        for l in trainer.adapters.a.indices {
            for (t, kind) in targets.enumerated() {
                let key = "base_model.model.model.layers.\(l).\(kind.modulePath)"
                let ea = relativeError(trainer.adapters.a[l][t].data, try file.floats("\(key).lora_A.weight"))
                let eb = relativeError(trainer.adapters.b[l][t].data, try file.floats("\(key).lora_B.weight"))
                #expect(ea <= 1e-4 && eb <= 1e-4, "\(fixture) \(key): A error \(ea), B error \(eb)")
            }
        }
        let ppl = Double(try file.floats("eval_perplexity")[0])
        #expect(abs(perplexity - ppl) <= 1e-4 * ppl, "\(fixture): perplexity \(perplexity) vs PyTorch \(ppl)")
        if file.info("peft_loaded_perplexity") != nil {
            let peft = Double(try file.floats("peft_loaded_perplexity")[0])
            #expect(abs(perplexity - peft) <= 1e-4 * peft, "\(fixture): perplexity \(perplexity) vs PEFT with our adapter \(peft)")
        }
    }

    @Test func plainModeAgreesWithPEFT() throws {
        try Self.check("stories260K-plain", mode: .plain, targets: [.q, .v])
    }

    @Test func maskedModeOnEveryLinearAgreesWithPyTorch() throws {
        try Self.check("stories260K-masked-all", mode: .masked, targets: LinearKind.allCases)
    }
}
