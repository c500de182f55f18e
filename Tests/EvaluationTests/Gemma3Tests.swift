import Foundation
import Testing
import JSON
import Tokenizers
import Llama
import Datasets
import GGUF
import Evaluation
import Runs
import TestSupport

private let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()


/// The second real family, end to end: Gemma 3 270M from its llama.cpp GGUF (architecture gemma3: sandwich
/// norms stored as 1 + w, QK-norm, GELU-tanh, √hidden embeddings, five sliding layers of window 512 on
/// base 10,000 to each global one on 1,000,000, head_dim 256 with one KV head, a tied 262,144-token head)
/// against transformers 5.24 loading the same file in float32 (Fixtures/gemma3/reference.json, from
/// scripts/gemma3_reference.py).
@Suite struct Gemma3Tests {
    @Test func opensStrictlyWithTheGemma3Architecture() throws {
        let checkpoint = try LlamaCheckpoint(model: try gemma3GGUF())
        let c = checkpoint.configuration
        #expect(c.modelType == .gemma3Text && c.numHiddenLayers == 18 && c.hiddenSize == 640 && c.headDim == 256)
        #expect(c.numAttentionHeads == 4 && c.numKeyValueHeads == 1 && c.vocabSize == 262_144 && c.tieWordEmbeddings)
        let a = c.architecture
        #expect(a.layers.map(\.window) == (0..<18).map { ($0 + 1) % 6 == 0 ? nil : 512 })
        #expect(a.layers.map(\.ropeTheta) == (0..<18).map { ($0 + 1) % 6 == 0 ? 1e6 : 1e4 })
        #expect(a.attentionScale == 1 / 16 && a.embeddingScale == Float(Double(640).squareRoot()))
        // llama.cpp stored the norms as 1 + w; the loaded weights are w again (Gemma's are mostly near 0 or
        // above, never near −1).
        let block = try checkpoint.loadBlock(0)
        let stored = try GGUFFile(url: try gemma3GGUF()).floats("blk.0.post_ffw_norm.weight")
        #expect(block.mlpOutputNorm?.data == stored.map { $0 - 1 })
        #expect(block.queryNorm?.count == 256 && block.attentionOutputNorm?.count == 640)
    }

    @Test func wikiText2WindowsMatchTransformersLoadingTheSameGGUF() throws {
        let reference = try JSONValue.parse(try Data(contentsOf: packageRoot.appendingPathComponent("Fixtures/gemma3/reference.json")))
        let runs = try #require(reference["runs"]?.arrayValue)
        let run = try #require(runs.first { $0["seqlen"]?.intValue == 512 })
        let expected = try #require(run["window_mean_nll"]?.arrayValue).compactMap(\.doubleValue)
        #expect(expected.count == 2)
        let (checkpoint, tokenizer) = try ModelInput.open(try gemma3GGUF())
        let windows = try EvaluationWindows(
            dataset: .wikitext2, file: packageRoot.deletingLastPathComponent().appendingPathComponent("shared/text/wikitext-2-raw/wiki.test.raw"),
            seqlen: 512, encode: { tokenizer.encode($0) }, bosTokenID: nil)
        #expect(windows.tokens.count == reference["tokens"]?.intValue && windows.tokens.count == 292_283)
        let model = try checkpoint.loadModel()
        for (i, nll) in expected.enumerated() {
            let ours = try model.negativeLogLikelihood([Array(windows[i])]) / 511
            // transformers' float32 forward and ours sum in different orders: a few 1e-6 of a mean NLL near 3.
            #expect(abs(ours - nll) < 2e-4, "window \(i): \(ours) vs transformers \(nll)")
        }
    }
}
