import Foundation
import Testing
import Tensor
import Datasets
import Evaluation

/// A model whose logits are fixed per position, so the expected NLL can be written down by hand.
private struct TableModel: CausalLanguageModel {
    var vocabularySize: Int
    var table: (Int, Int) -> [Float]   // (window-local position, token) → logits row
    func logits(_ tokens: [[Int]]) throws -> Tensor {
        let t = tokens[0].count
        var data = [Float]()
        for seq in tokens { for p in 0..<t { data += table(p, seq[p]) } }
        return Tensor(shape: [tokens.count, t, vocabularySize], data: data)
    }
}

@Suite struct PerplexityTests {
    @Test func uniformLogitsGiveVocabularySizePerplexity() throws {
        let model = TableModel(vocabularySize: 7) { _, _ in [Float](repeating: 0.25, count: 7) }
        let windows = try EvaluationWindows(tokens: Array(0..<50).map { $0 % 7 }, seqlen: 8, source: "toy")
        let r = try Perplexity.evaluate(model: model, windows: windows, batchSize: 2)
        #expect(r.windows == 6 && r.droppedTokens == 2 && r.predictedTokens == 42)
        #expect(abs(r.perplexity - 7) < 1e-9)
    }

    @Test func nllMatchesLogSoftmaxComputedInFloat64() throws {
        var rng = SeededGenerator(seed: 5)
        let v = 11, t = 6
        let rows = (0..<(2 * t)).map { _ in (0..<v).map { _ in Float(rng.nextGaussian() * 3) } }
        let tokens = [(0..<t).map { _ in rng.nextInt(below: v) }, (0..<t).map { _ in rng.nextInt(below: v) }]
        let logits = Tensor(shape: [2, t, v], data: rows.flatMap { $0 })
        var expected = 0.0
        for b in 0..<2 { for p in 0..<(t - 1) {
            let row = rows[b * t + p].map(Double.init)
            let lse = log(row.map { exp($0) }.reduce(0, +))
            expected += lse - row[tokens[b][p + 1]]
        } }
        let got = Perplexity.negativeLogLikelihood(logits: logits, tokens: tokens)
        #expect(abs(got - expected) < 1e-5 * abs(expected))
    }

    @Test func nonFiniteLogitsAreAnErrorNotANumber() throws {
        let model = TableModel(vocabularySize: 3) { _, _ in [Float.nan, 0, 0] }
        let windows = try EvaluationWindows(tokens: [0, 1, 2, 0, 1, 2], seqlen: 3, source: "toy")
        #expect(throws: PerplexityError.self) { try Perplexity.evaluate(model: model, windows: windows) }
    }
}
