import Foundation
import SafeTensors

extension SafeTensorsCheckpoint: WeightSource {
    public func shape(of name: String) throws -> [Int] {
        guard let info = info(name) else { throw LlamaError.missingTensor(name) }
        return info.shape
    }
}

extension LlamaCheckpoint {
    /// Opens a Hugging Face checkpoint folder: config.json plus `model.safetensors` or its shards
    /// (memory-mapped; nothing is read until a block is loaded), then checks names and shapes strictly.
    /// A compressed-tensors folder is read through `CompressedTensorsWeights` (its linears decompressed
    /// when read).
    public init(directory: URL) throws {
        let configuration = try LlamaConfiguration(contentsOf: directory.appendingPathComponent("config.json"))
        try self.init(configuration: configuration, source: try CompressedTensorsWeights.open(directory))
    }
}
