import Foundation
import Testing
import SafeTensors
import Tokenizers
import Llama
import Datasets
import Evaluation
import Pruning

/// Agreement of whole-model runs with the PyTorch reference (scripts/reference_prune.py; fixtures in
/// Fixtures/reference): stories260K, the shared calibration ids (128 × 512, seed 0), WikiText-2 test at
/// seqlen 512. Masks of every method and pattern; perplexity where `evaluate` is set, to keep the suite short
/// (each evaluation is 1,591 windows).
///
/// Magnitude and Wanda masks must agree on every weight: every fixture records zero exact ties (so the
/// selection is unique) and `DriverTests` demands zero mismatches on the same selection. SparseGPT's masks
/// depend on its float32 updates, so one weight in a thousand may flip. Perplexity: within 5e-5 relative,
/// the bound `ReferencePerplexityTests` holds on the same evaluator (measured here: wanda 4:8 2.6e-8,
/// sparsegpt 2:4 1.1e-7, wanda++ 2:4 1.5e-9, AMD EPYC, OpenBLAS Zen core); Wanda++ keeps its issue's 1 % target.
@Suite(.serialized) struct ReferenceAgreementTests {
    struct Case: CustomStringConvertible, Sendable {
        var method: String, pattern: String, evaluate: Bool, perplexityTolerance: Double, maskAgreement: Double
        var description: String { "\(method) \(pattern)" }
        var fixtureName: String {
            let p = pattern == "0.5" ? "50" : pattern.replacingOccurrences(of: ":", with: "of")
            return "stories260K-\(method)-\(p).safetensors"
        }
    }

    static let cases: [Case] = [
        Case(method: "magnitude", pattern: "0.5", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 1),
        Case(method: "magnitude", pattern: "2:4", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 1),
        Case(method: "magnitude", pattern: "4:8", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 1),
        Case(method: "wanda", pattern: "0.5", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 1),
        Case(method: "wanda", pattern: "2:4", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 1),
        Case(method: "wanda", pattern: "4:8", evaluate: true, perplexityTolerance: 5e-5, maskAgreement: 1),
        Case(method: "sparsegpt", pattern: "0.5", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 0.999),
        Case(method: "sparsegpt", pattern: "2:4", evaluate: true, perplexityTolerance: 5e-5, maskAgreement: 0.999),
        Case(method: "sparsegpt", pattern: "4:8", evaluate: false, perplexityTolerance: 5e-5, maskAgreement: 0.999),
        // The Wanda++ issue: full Wanda++ perplexity within 1%.
        Case(method: "wanda++", pattern: "2:4", evaluate: true, perplexityTolerance: 0.01, maskAgreement: 0.99),
    ]

    static func method(_ name: String) throws -> PruningMethod {
        if name == "wanda++" { return WandaPlusPlusMethod(options: WandaPlusPlusOptions(variant: .full)) }
        return try PruningMethods.make(name)
    }

    @Test(arguments: cases)
    func masksAndPerplexityMatchTheReference(_ c: Case) throws {
        let fixtureURL = try packageRoot().appendingPathComponent("Fixtures/reference/\(c.fixtureName)")
        try #require(FileManager.default.fileExists(atPath: fixtureURL.path), "missing \(fixtureURL.path): run scripts/reference_prune.py")
        let reference = try SafeTensorsFile(url: fixtureURL)
        let modelDir = try sharedPath("models/stories260K")
        let checkpoint = try LlamaCheckpoint(directory: modelDir)
        guard case .tokens(let matrix) = try CalibrationSource.tokensFile(
            try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors")) else {
            Issue.record("not a token matrix"); return
        }
        let calibration = try Calibration.takeRows(of: matrix, nsamples: 128, seqlen: 512)
        var blocks: [DecoderBlockWeights] = []
        _ = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: try Self.method(c.method),
                                     options: PruningOptions(pattern: try SparsityPattern(parsing: c.pattern))) { blocks.append($0) }

        var agree = 0, total = 0
        for block in blocks {
            for kind in LinearKind.allCases {
                let name = LlamaTensorNames.weight(kind, layer: block.layer)
                let w = block[kind]
                let kept = try unpackKept(reference, name, count: w.count)
                for i in 0..<w.count where kept[i] == (w.data[i] != 0) { agree += 1 }
                total += w.count
            }
        }
        let fraction = Double(agree) / Double(total)
        #expect(fraction >= c.maskAgreement, "\(c): masks agree on \(fraction) of \(total) weights")

        guard c.evaluate else { return }
        let expected = try #require(Double(reference.metadata["perplexity"] ?? ""), "fixture has no perplexity")
        let tokenizer = try Tokenizer(directory: modelDir)
        let windows = try EvaluationWindows(
            dataset: .wikitext2, file: try sharedPath("text/wikitext-2-raw/wiki.test.raw"), seqlen: 512,
            encode: { tokenizer.encode($0) }, bosTokenID: nil)
        let model = try LlamaModel(configuration: checkpoint.configuration, embeddings: try checkpoint.loadEmbeddings(),
                                   blocks: blocks, finalNorm: try checkpoint.loadFinalNorm(), head: try checkpoint.loadHead())
        let r = try Perplexity.evaluate(model: model, windows: windows)
        print("[reference] \(c): perplexity \(r.perplexity) vs \(expected), relative \(abs(r.perplexity - expected) / expected)")
        #expect(abs(r.perplexity - expected) / expected <= c.perplexityTolerance, "\(c): perplexity \(r.perplexity) vs reference \(expected)")
    }
}
