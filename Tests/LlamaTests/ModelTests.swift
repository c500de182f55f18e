import Foundation
import Llama
import SafeTensors
import Tensor
import Testing

@Suite struct ModelTests {
    /// Every tiny fixture (GQA, MHA, head_dim ≠ C/NH, biases, llama3 and linear RoPE, Mistral and Qwen2
    /// sliding windows) against transformers' float32 eager logits.
    @Test(arguments: tinyFixtures)
    func tinyFixtureLogits(name: String) throws {
        let folder = Paths.fixtures.appendingPathComponent(name)
        let model = try LlamaCheckpoint(directory: folder).loadModel()
        let reference = try Reference(Paths.fixtures.appendingPathComponent("\(name)-reference.safetensors"))
        let logits = try model.logits(reference.ids)
        let want = try reference.tensor("logits")
        #expect(logits.shape == want.shape)
        let error = logits.relativeError(to: want)
        #expect(error <= 1e-4, "\(name): relative error \(error)")
    }

    @Test(arguments: ["stories260K", "llama2xs", "aidreams260K"])
    func sharedModelLogitsAndNLL(name: String) throws {
        let checkpoint = try LlamaCheckpoint(directory: try Paths.shared("models/\(name)"))
        let model = try checkpoint.loadModel()
        let reference = try Reference(Paths.fixtures.appendingPathComponent("shared-\(name)-reference.safetensors"))
        let logits = try model.logits(reference.ids)
        let error = logits.relativeError(to: try reference.tensor("logits"))
        #expect(error <= 1e-4, "\(name): relative error \(error)")
        // Memory-light NLL, with slabs smaller than a sequence so slab boundaries are crossed.
        let nll = try model.nextTokenNLL(reference.ids, rowsPerSlab: 29)
        let nllError = nll.relativeError(to: try reference.tensor("nll"))
        #expect(nll.shape == [2, 47] && nllError <= 1e-4, "\(name): NLL relative error \(nllError)")
    }

    /// Block-by-block loading (as pruning runs it) computes the same logits as the whole model.
    @Test func blockByBlockMatchesWholeModel() throws {
        let checkpoint = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent("qwen2-bias"))
        let c = checkpoint.configuration
        let tokens = [[1, 5, 9, 2, 77, 3, 3, 40, 41, 8], [0, 99, 98, 50, 7, 6, 5, 4, 3, 2]]
        let model = try checkpoint.loadModel()
        let rope = RoPE(configuration: c, positions: 10)
        var x = try model.embed(tokens)
        for layer in 0..<c.numHiddenLayers {
            x = DecoderBlock.forward(x, weights: try checkpoint.loadBlock(layer), configuration: c, rope: rope)
        }
        let h = RMSNorm.forward(x, weight: try checkpoint.loadFinalNorm(), eps: Float(c.rmsNormEps)).out
        let head = try checkpoint.loadHead() ?? checkpoint.loadEmbeddings()
        #expect(Linear.forward(h, weight: head) == (try model.logits(tokens)))
    }

    @Test func invalidTokensAreRefused() throws {
        let model = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent("llama-gqa")).loadModel()
        #expect(throws: LlamaError.invalidInput("token id 96 in sequence 1 is outside 0..<96")) {
            try model.logits([[1, 2], [3, 96]])
        }
        #expect(throws: LlamaError.invalidInput("sequence 1 has 1 tokens, sequence 0 has 2")) {
            try model.logits([[1, 2], [3]])
        }
        #expect(throws: LlamaError.invalidInput("empty token batch")) { try model.logits([]) }
        #expect(throws: LlamaError.invalidInput("token id -1 in sequence 0 is outside 0..<96")) {
            try model.nextTokenNLL([[-1]])
        }
    }
}
