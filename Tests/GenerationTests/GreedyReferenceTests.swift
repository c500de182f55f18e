import Foundation
import Generation
import JSON
import Llama
import Runs
import Testing
import TestSupport

/// Greedy generation against transformers' `generate(do_sample=False)` (Fixtures/generate/reference.json):
/// the same 32 new tokens (or fewer, ending at the EOS transformers stops at) from the same prompt ids, on
/// stories260K, the tiny Gemma 3 (5-token sliding window, crossed many times) and Gemma 2 (soft-caps)
/// checkpoints and Gemma 3 270M's GGUF; for the real models also the streamed text against transformers'
/// decode.
@Suite struct GreedyReferenceTests {
    static func cases() throws -> [JSONValue] { try #require(try Paths.reference()["greedy"]?.arrayValue) }

    /// A case's model: a path from the repository root, Gemma 3 270M where `make setup` puts it.
    static func modelURL(_ c: JSONValue) throws -> URL {
        let path = try #require(c["model"]?.stringValue)
        return path.hasPrefix("models/gemma-3-270m/") ? try gemma3GGUF() : try Paths.repository(path)
    }

    @Test func greedyTokensEqualTransformers() throws {
        let cases = try Self.cases()
        #expect(cases.count == 6)
        for c in cases {
            let modelPath = try #require(c["model"]?.stringValue)
            let model = try LlamaCheckpoint(model: try Self.modelURL(c)).loadModel()
            let prompt = try #require(c["prompt"]).ints
            let expected = try #require(c["new_tokens"]).ints
            let stops = Set(try #require(c["stop_tokens"]).ints)
            let r = try TextGeneration.run(model: model, prompt: prompt,
                                           options: GenerationOptions(maxNewTokens: 32, stopTokens: stops))
            #expect(r.tokens == expected, "\(modelPath) from \(prompt)")
            let stoppedEarly = expected.count < 32
            #expect(r.stop == (stoppedEarly ? .stopToken(expected.last!) : .maxNewTokens), "\(modelPath)")
            #expect(r.promptTokens == prompt.count && r.decodePasses == expected.count - 1)
        }
    }

    /// A stop token ends generation right after it is chosen (transformers' outputs end with their EOS).
    @Test func stopTokenEndsGeneration() throws {
        let c = try #require(try Self.cases().first)
        let model = try LlamaCheckpoint(model: try Self.modelURL(c)).loadModel()
        let expected = try #require(c["new_tokens"]).ints
        let stop = expected[9]
        let end = expected.firstIndex(of: stop)! + 1
        let r = try TextGeneration.run(model: model, prompt: try #require(c["prompt"]).ints,
                                       options: GenerationOptions(maxNewTokens: 32, stopTokens: [stop, 511]))
        #expect(r.tokens == Array(expected[..<end]))
        #expect(r.stop == .stopToken(stop))
    }

    /// The streamed text of the real models' cases is what transformers' decode of prompt + new tokens adds
    /// to the prompt's decode.
    @Test func streamedTextEqualsTransformersDecode() throws {
        var checked = 0
        for c in try Self.cases() where c["text"] != nil {
            let (_, tokenizer) = try ModelInput.open(try Self.modelURL(c))
            var stream = TextStream(tokenizer: tokenizer, context: try #require(c["prompt"]).ints)
            var text = ""
            for t in try #require(c["new_tokens"]).ints { text += stream.append(t) }
            text += stream.finish()
            #expect(text == c["text"]?.stringValue, "\(c["prompt_text"]?.stringValue ?? "")")
            checked += 1
        }
        #expect(checked == 4)
    }

    /// Prompt + max new tokens past max_position_embeddings, an empty prompt: one-line errors.
    @Test func refusesWhatDoesNotFit() throws {
        let model = try LlamaCheckpoint(model: try Paths.repository("Fixtures/llama/gemma3-sandwich")).loadModel()
        #expect(throws: GenerationError("the prompt's 10 tokens + 55 new tokens exceed the model's max_position_embeddings 64")) {
            try TextGeneration.run(model: model, prompt: Array(repeating: 3, count: 10), options: GenerationOptions(maxNewTokens: 55))
        }
        #expect(throws: GenerationError("the prompt has no tokens")) {
            try TextGeneration.run(model: model, prompt: [], options: GenerationOptions(maxNewTokens: 5))
        }
        // Exactly at the limit is fine.
        let r = try TextGeneration.run(model: model, prompt: Array(repeating: 3, count: 10), options: GenerationOptions(maxNewTokens: 54))
        #expect(r.tokens.count == 54)
    }

    /// Seeded sampling through the whole loop: the same seed gives the same tokens, another seed others.
    @Test func seededGenerationIsReproducible() throws {
        let model = try LlamaCheckpoint(model: try Paths.repository("../shared/models/stories260K")).loadModel()
        let prompt = try #require(try Self.cases().first?["prompt"]).ints
        func run(_ seed: UInt64) throws -> [Int] {
            try TextGeneration.run(model: model, prompt: prompt,
                                   options: GenerationOptions(maxNewTokens: 40, sampling: SamplingOptions(
                                       temperature: 1, topK: 40, topP: 0.95, seed: seed))).tokens
        }
        let a = try run(7), b = try run(7), c = try run(8)
        #expect(a == b && a.count == 40)
        #expect(a != c)
    }
}
