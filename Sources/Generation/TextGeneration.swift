import Foundation
import Llama

/// What `TextGeneration.run` generates: up to `maxNewTokens` tokens, ending early at any of `stopTokens`.
public struct GenerationOptions: Sendable {
    public var maxNewTokens: Int
    public var sampling: SamplingOptions
    /// The tokens that end generation (EOS, a chat template's end of turn); the one met is the last token.
    public var stopTokens: Set<Int>

    public init(maxNewTokens: Int, sampling: SamplingOptions = SamplingOptions(), stopTokens: Set<Int> = []) {
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
    }
}

public struct GenerationResult: Sendable {
    public enum Stop: Sendable, Equatable {
        /// A stop token was generated (it is the last of `tokens`).
        case stopToken(Int)
        case maxNewTokens
    }

    /// The generated tokens (with the stop token when one ended generation), as transformers' `generate`
    /// returns them after the prompt.
    public var tokens: [Int]
    public var stop: Stop
    public var promptTokens: Int
    /// The prompt's pass, and the passes of the generated tokens (one each but the last).
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var decodePasses: Int
}

/// The generation loop: the prompt in one pass, then one pass per generated token, each choosing the next
/// token from the last position's logits.
public enum TextGeneration {
    /// Generates after `prompt` (at least one token) with a fresh decoder sized for prompt + maxNewTokens
    /// (refused beyond the model's max_position_embeddings). `onToken` sees each token as it is chosen,
    /// before the next pass runs.
    public static func run(model: LlamaModel, prompt: [Int], options: GenerationOptions,
                           onToken: (Int) throws -> Void = { _ in }) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError("the prompt has no tokens") }
        guard options.maxNewTokens > 0 else { throw GenerationError("max new tokens \(options.maxNewTokens) is not positive") }
        let positions = prompt.count + options.maxNewTokens
        let limit = model.configuration.maxPositionEmbeddings
        guard positions <= limit else {
            throw GenerationError("the prompt's \(prompt.count) tokens + \(options.maxNewTokens) new tokens exceed the model's "
                                  + "max_position_embeddings \(limit)")
        }
        // The last generated token is never run, so the cache needs one position less.
        let decoder = try IncrementalDecoder(model: model, capacity: positions - 1)
        var sampler = try TokenSampler(options: options.sampling, vocabulary: model.vocabularySize)

        let start = DispatchTime.now().uptimeNanoseconds
        var logits = try decoder.append(prompt)
        let prefilled = DispatchTime.now().uptimeNanoseconds
        var tokens: [Int] = []
        tokens.reserveCapacity(options.maxNewTokens)
        var stop = GenerationResult.Stop.maxNewTokens
        var passes = 0
        while true {
            let token = try sampler.next(logits)
            tokens.append(token)
            try onToken(token)
            if options.stopTokens.contains(token) { stop = .stopToken(token); break }
            if tokens.count == options.maxNewTokens { break }
            logits = try decoder.step(token)
            passes += 1
        }
        let end = DispatchTime.now().uptimeNanoseconds
        return GenerationResult(tokens: tokens, stop: stop, promptTokens: prompt.count,
                                prefillSeconds: Double(prefilled - start) / 1e9, decodeSeconds: Double(end - prefilled) / 1e9,
                                decodePasses: passes)
    }
}
