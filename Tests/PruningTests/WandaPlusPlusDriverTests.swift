import Datasets
import Foundation
import JSON
import Llama
import Pruning
import Tensor
import Testing

/// Wanda++ through the shared block-by-block driver (`BlockwisePruning.run`) on stories260K.
@Suite struct WandaPlusPlusDriverTests {
    static func calibration(samples: Int, tokens: Int) throws -> CalibrationSet {
        let ids = try WandaTensorFile(sharedData("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"))
            .int64("input_ids")
        let rows = (0..<samples).map { r in (0..<tokens).map { Int(ids.values[r * ids.shape[1] + $0]) } }
        return CalibrationSet(samples: rows, source: "stories260K-wikitext2valid-128x512-seed0 (\(samples) × \(tokens))")
    }

    /// RGS only on all five blocks (each block calibrated on the outputs of the pruned earlier blocks, as
    /// the driver computes them): the 2:4 masks of every layer agree with the reference's on ≥ 99%.
    @Test func rgsOnlyMatchesReferenceOnEveryBlock() throws {
        let reference = try WandaPlusPlusReferenceTests.reference("wanda++-rgs")
        let checkpoint = try LlamaCheckpoint(directory: sharedData("models/stories260K"))
        let method = try WandaPlusPlusMethod(name: "wanda++-rgs")
        var blocks: [DecoderBlockWeights] = []
        let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: try Self.calibration(samples: 128, tokens: 512),
                                               method: method, options: PruningOptions(pattern: .nm(n: 2, m: 4), seed: 0)) {
            blocks.append($0)
        }
        #expect(summary.method == "wanda++-rgs")
        #expect(summary.sparsity == 0.5)
        #expect(blocks.count == 5)
        for (l, block) in blocks.enumerated() {
            for kind in LinearKind.allCases {
                let name = LlamaTensorNames.weight(kind, layer: l)
                let fraction = try WandaPlusPlusReferenceTests.maskAgreement(block[kind], reference, name)
                #expect(fraction >= 0.99, "\(name): masks agree on \(fraction)")
            }
        }
        #expect(method.records.keys.sorted() == [0, 1, 2, 3, 4])
        #expect(method.records.values.allSatisfy { $0.roLosses.isEmpty })
    }

    /// Full Wanda++ on a small calibration set (8 samples of 64 tokens, 2 rounds of 3): the run's one
    /// generator is handed from block to block, so the draws are the consecutive `sample(3, from: 8)` of
    /// SeededGenerator(seed); every round records its losses; the run notes carry them as JSON.
    @Test func fullRunDrawsFromOneGeneratorAcrossBlocks() throws {
        let checkpoint = try LlamaCheckpoint(directory: sharedData("models/stories260K"))
        let options = WandaPlusPlusOptions(variant: .full, roRounds: 2, roSamples: 3)
        let method = WandaPlusPlusMethod(options: options)
        let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: try Self.calibration(samples: 8, tokens: 64),
                                               method: method, options: PruningOptions(pattern: .unstructured(0.5), seed: 11)) { _ in }
        #expect(summary.sparsity == 0.5)
        var rng = SeededGenerator(seed: 11)
        for l in 0..<5 {
            let r = try #require(method.records[l])
            #expect(r.roundSamples == (0..<2).map { _ in rng.sample(3, from: 8) }, "block \(l)")
            #expect(r.roLosses.count == 2 && r.roLosses.allSatisfy { $0.count == 3 && $0.allSatisfy { $0 > 0 && $0.isFinite } })
        }
        let notes = method.runNotes
        let lastJSON = try #require(notes["wanda++.ro_loss_last"])
        // Parsed with the project's JSON reader: Foundation's JSONSerialization on Linux may round the
        // last digit of a shortest-form double, and the notes are meant to carry the losses exactly.
        let rows = try #require(try JSONValue.parse(lastJSON).arrayValue)
        let last = rows.map { $0.arrayValue?.compactMap(\.doubleValue) ?? [] }
        #expect(last.count == 5 && last.allSatisfy { $0.count == 2 })
        #expect(last[3][1] == method.records[3]!.roLosses[1][2])
        #expect(notes["wanda++.ro_lr"] == "3e-07" && notes["wanda++.alpha"] == "100.0")
    }

    @Test func methodNamesAndRefusals() throws {
        for name in ["wanda++", "wanda++-rgs", "wanda++-ro"] {
            let m = try WandaPlusPlusMethod(name: name)
            #expect(m.name == name)
            #expect(m.needsCalibrationInputs)
        }
        #expect(throws: PruningError("unknown Wanda++ variant 'wanda+'; expected one of wanda++, wanda++-rgs, wanda++-ro")) {
            try WandaPlusPlusMethod(name: "wanda+")
        }
        // The registry makes each variant with the spec's defaults, RO samples capped by nsamples.
        let made = try #require(try PruningMethods.make("wanda++-ro", MethodArguments(sampleCount: 8)) as? WandaPlusPlusMethod)
        #expect(made.options == WandaPlusPlusOptions(variant: .roOnly, roSamples: 8))
        #expect(throws: MethodOptionError("option '--ro-rounds' needs an integer in 0...10000, got 'x'")) {
            _ = try PruningMethods.make("wanda++", MethodArguments(values: ["ro-rounds": "x"]))
        }
        // More than the 4 calibration samples per round: refused before any block is touched.
        let checkpoint = try LlamaCheckpoint(directory: sharedData("models/stories260K"))
        do {
            _ = try BlockwisePruning.run(checkpoint: checkpoint, calibration: try Self.calibration(samples: 4, tokens: 16),
                                         method: WandaPlusPlusMethod(), options: PruningOptions(pattern: .nm(n: 2, m: 4))) { _ in }
            Issue.record("32 RO samples from 4 calibration samples were accepted")
        } catch {
            #expect("\(error)".contains("--ro-samples 32") && !"\(error)".contains("\n"), "\(error)")
        }
    }
}
