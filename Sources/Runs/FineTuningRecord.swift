import Foundation
import Pruning

/// What `llm-prune finetune` did, kept in the output's `pruning.json` next to the input's pruning record.
public struct FineTuningRecord: Codable, Sendable, Equatable {
    /// The fine-tuning command line.
    public var arguments: [String]
    /// The fine-tuned input checkpoint folder.
    public var inputModel: String
    /// LoRA and optimizer settings ("lora_rank": "8", "lr": "0.0001", ...).
    public var settings: [String: String]
    /// The training loss of every optimizer step (mean over its micro-batches).
    public var losses: [Double]
    /// Held-out evaluations during training: step and perplexity.
    public var evaluations: [FineTuningEvaluation]
    /// Final numbers ("wikitext2_perplexity_merged", "train_tokens_per_second", ...).
    public var results: [String: Double]

    public init(arguments: [String], inputModel: String, settings: [String: String], losses: [Double],
                evaluations: [FineTuningEvaluation], results: [String: Double]) {
        self.arguments = arguments; self.inputModel = inputModel; self.settings = settings
        self.losses = losses; self.evaluations = evaluations; self.results = results
    }
}

public struct FineTuningEvaluation: Codable, Sendable, Equatable {
    public var step: Int
    public var perplexity: Double
    public init(step: Int, perplexity: Double) { self.step = step; self.perplexity = perplexity }
}
