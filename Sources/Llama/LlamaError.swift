/// Everything the Llama module refuses: bad or unsupported configurations, checkpoints that do not match
/// their configuration, and invalid inputs. Each description is one line naming the problem.
public enum LlamaError: Error, CustomStringConvertible, Equatable {
    /// config.json could not be read or parsed (`file`: the path; `reason`: one line).
    case unreadableConfiguration(file: String, reason: String)
    /// `model_type` is not one of llama, mistral, qwen2.
    case unsupportedModelType(String)
    /// A configuration option this implementation does not compute (names the key and value).
    case unsupportedOption(String)
    /// A configuration value that cannot describe a model (zero sizes, heads not dividing, ...).
    case invalidConfiguration(String)
    /// An expected tensor is absent from the checkpoint.
    case missingTensor(String)
    /// Tensors in the checkpoint that the model does not use (sorted; the strict loader refuses them).
    case unusedTensors([String])
    /// A tensor whose shape differs from the one the configuration implies.
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    /// A checkpoint-level failure reported by the tensor source (unreadable file, unsupported dtype, ...).
    case checkpoint(String)
    /// Invalid arguments to a forward pass (token ids out of range, ragged batches, ...).
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .unreadableConfiguration(file, reason):
            return "cannot read configuration \(file): \(reason)"
        case let .unsupportedModelType(type):
            return "unsupported model_type '\(type)' (supported: llama, mistral, qwen2)"
        case let .unsupportedOption(message):
            return "unsupported configuration: \(message)"
        case let .invalidConfiguration(message):
            return "invalid configuration: \(message)"
        case let .missingTensor(name):
            return "checkpoint is missing tensor \(name)"
        case let .unusedTensors(names):
            let shown = names.prefix(5).joined(separator: ", ")
            let more = names.count > 5 ? " and \(names.count - 5) more" : ""
            return "checkpoint has \(names.count) tensor(s) the model does not use: \(shown)\(more)"
        case let .shapeMismatch(tensor, expected, found):
            return "tensor \(tensor) has shape \(found), expected \(expected)"
        case let .checkpoint(message):
            return "checkpoint: \(message)"
        case let .invalidInput(message):
            return "invalid input: \(message)"
        }
    }
}
