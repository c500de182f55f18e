import Foundation
import JSON
import SafeTensors
import SparseWeights

/// A compressed-tensors checkpoint (config.json's `quantization_config` names `sparse-24-bitmask` or
/// `sparse-bitmask`) seen as the dense checkpoint it stores: each compressed linear `P` appears as
/// `P.weight` with its dense shape, and reading it decompresses it (`PackedSparseMatrix`); every other
/// tensor reads as stored. Every compressed linear's tensors are checked against each other when the
/// folder is opened (presence, dtypes, shapes) and its bitmask against its values when read; an
/// inconsistency is a `LlamaError.checkpoint` naming the tensor.
public final class CompressedTensorsWeights: WeightSource, @unchecked Sendable {
    /// The stored tensors.
    public let tensors: SafeTensorsCheckpoint
    public let sparsity: CompressedTensorsSparsity
    /// Dense names in the stored order (each compressed linear where its first tensor is).
    public let tensorNames: [String]

    /// A compressed linear: its module path, dense shape and the dtype of its values.
    struct Compressed {
        var prefix: String
        var shape: [Int]
        var valueType: DType
    }
    /// Dense name `P.weight` → its compressed linear.
    private let compressed: [String: Compressed]

    public init(tensors: SafeTensorsCheckpoint, sparsity: CompressedTensorsSparsity) throws {
        self.tensors = tensors
        self.sparsity = sparsity
        var compressed: [String: Compressed] = [:]
        var storedKeys = Set<String>()
        let prefixes = PackedSparseMatrix.compressedTensorsPrefixes(in: tensors)
        if !prefixes.isEmpty {
            guard let format = sparsity.format else {
                throw LlamaError.checkpoint("\(prefixes[0]).compressed: stored compressed, but config.json's sparsity_config says dense")
            }
            for prefix in prefixes {
                do {
                    let g = try PackedSparseMatrix.compressedTensorsGeometry(prefix: prefix, format: format, in: tensors)
                    compressed["\(prefix).weight"] = Compressed(prefix: prefix, shape: [g.rows, g.columns], valueType: g.valueType)
                } catch {
                    throw LlamaError.checkpoint(String(describing: error))
                }
                for key in format.keys { storedKeys.insert("\(prefix).\(key)") }
            }
        }
        self.compressed = compressed
        var names: [String] = []
        for name in tensors.tensorNames {
            if name.hasSuffix(".compressed"), compressed[String(name.dropLast(".compressed".count)) + ".weight"] != nil {
                names.append(String(name.dropLast(".compressed".count)) + ".weight")
            } else if !storedKeys.contains(name) {
                names.append(name)
            }
        }
        tensorNames = names
    }

    /// The format the compressed linears are stored in (nil when none is).
    public var format: CompressedTensorsFormat? { compressed.isEmpty ? nil : sparsity.format }

    /// True when `name` (a dense name) is stored compressed.
    public func isCompressed(_ name: String) -> Bool { compressed[name] != nil }

    /// The dense names stored compressed, in stored order.
    public var compressedNames: [String] { tensorNames.filter { compressed[$0] != nil } }

    /// The stored tensors behind the dense name `name`: `P.shape`, `P.compressed`, … for a compressed
    /// linear, else `name` itself.
    public func storedNames(of name: String) -> [String] {
        guard let c = compressed[name], let format = sparsity.format else { return [name] }
        return format.keys.map { "\(c.prefix).\($0)" }
    }

    /// The dtype `name` is stored in (a compressed linear: its values' dtype), or nil when absent.
    public func dtype(of name: String) -> DType? {
        compressed[name]?.valueType ?? tensors.info(name)?.dtype
    }

    public func shape(of name: String) throws -> [Int] {
        if let c = compressed[name] { return c.shape }
        guard let info = tensors.info(name) else { throw LlamaError.missingTensor(name) }
        return info.shape
    }

    /// The compressed linear `name` as stored, checked; nil when `name` is not stored compressed.
    public func packed(_ name: String) throws -> PackedSparseMatrix? {
        guard let c = compressed[name], let format = sparsity.format else { return nil }
        do {
            return try PackedSparseMatrix(compressedTensors: c.prefix, format: format, in: tensors)
        } catch {
            throw LlamaError.checkpoint(String(describing: error))
        }
    }

    public func floats(_ name: String) throws -> [Float] {
        if let matrix = try packed(name) { return matrix.dense() }
        return try tensors.floats(name)
    }

    /// The checkpoint of `directory` as a weight source: a `CompressedTensorsWeights` when its config.json
    /// holds a compressed-tensors `quantization_config`, else the safetensors as they are.
    public static func open(_ directory: URL) throws -> WeightSource {
        let sparsity = try Self.sparsity(ofFolder: directory)
        let tensors: SafeTensorsCheckpoint
        do {
            tensors = try SafeTensorsCheckpoint(directory: directory)
        } catch {
            throw LlamaError.checkpoint(String(describing: error))
        }
        guard let sparsity else { return tensors }
        return try CompressedTensorsWeights(tensors: tensors, sparsity: sparsity)
    }

    /// config.json's compressed-tensors sparsity config in `directory`, nil when it has none.
    public static func sparsity(ofFolder directory: URL) throws -> CompressedTensorsSparsity? {
        let file = directory.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: file.path), let root = try? JSONValue.parse(data) else {
            return nil   // LlamaConfiguration reports an unreadable config.json
        }
        do {
            return try CompressedTensorsSparsity.of(config: root)
        } catch {
            throw LlamaError.unsupportedOption(String(describing: error))
        }
    }
}

extension LlamaCheckpoint {
    /// The dtype a tensor is stored in (a compressed linear: its values' dtype); nil for a GGUF input or
    /// an absent tensor.
    public func storedDType(of name: String) -> DType? {
        if let packed = source as? CompressedTensorsWeights { return packed.dtype(of: name) }
        return (source as? SafeTensorsCheckpoint)?.info(name)?.dtype
    }
}
