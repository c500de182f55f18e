import JSON
import SafeTensors

/// compressed-tensors' sparse storage formats (written and read by compressed-tensors 0.9.0 through
/// 0.14.0.1; `../shared/docs/field.md`). A compressed linear `P` (e.g. `model.layers.0.mlp.down_proj`)
/// is stored without its `.weight`, as `P.<key>`; every other tensor is stored unchanged. For W [R, C]:
///
/// - `sparse-24-bitmask`: `P.shape` int64 [2, 1] = [[R], [C]]; `P.compressed` [R, C/2], the two kept
///   values of every group of 4, row-major (a kept value may be zero); `P.bitmask` uint8 [R, ⌈C/8⌉].
///   C is a multiple of 4.
/// - `sparse-bitmask`: `P.shape` int64 [2] = [R, C]; `P.compressed` [nnz], the non-zeros row-major;
///   `P.bitmask` uint8 [R, ⌈C/8⌉]; `P.row_offsets` int64 [R], the exclusive prefix sum of the non-zeros
///   per row.
///
/// The bitmask is W ≠ 0 (the kept positions) packed little-endian: bit b of byte k of row r is column 8k + b.
public enum CompressedTensorsFormat: String, Sendable, CaseIterable {
    case sparse24Bitmask = "sparse-24-bitmask"
    case sparseBitmask = "sparse-bitmask"

    /// The keys of one compressed linear, stored as `P.<key>`.
    public var keys: [String] {
        switch self {
        case .sparse24Bitmask: return ["shape", "compressed", "bitmask"]
        case .sparseBitmask: return ["shape", "compressed", "bitmask", "row_offsets"]
        }
    }

    /// The module path `P` of a dense weight name `P.weight`.
    public static func prefix(ofWeight name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
    }
}

/// The `quantization_config` of a compressed-tensors checkpoint that is sparse only (no quantization):
/// its `sparsity_config`.
public struct CompressedTensorsSparsity: Sendable, Equatable {
    /// The format its compressed linears are stored in; nil for `dense` (nothing compressed).
    public var format: CompressedTensorsFormat?
    /// `2:4`, `4:8`, `unstructured`: what the weights hold (informational; the tensors say how they are stored).
    public var structure: String
    /// The fraction of zeros over all the model's parameters (llm-compressor's `global_sparsity`).
    public var globalSparsity: Double
    /// Module classes or names compressed, and names left out: `["Linear"]` and `["lm_head"]` as written.
    public var targets: [String]
    public var ignore: [String]

    /// The compressed-tensors release whose layout and config this is (the last with these formats).
    public static let version = "0.14.0.1"

    public init(format: CompressedTensorsFormat, structure: String, globalSparsity: Double,
                targets: [String] = ["Linear"], ignore: [String] = ["lm_head"]) {
        self.format = format
        self.structure = structure
        self.globalSparsity = globalSparsity
        self.targets = targets
        self.ignore = ignore
    }

    /// Reads config.json's `quantization_config`: nil when its `quant_method` is not
    /// `compressed-tensors`. A compressed-tensors config that quantizes (`config_groups`), or whose
    /// sparsity format this tool does not read, is an error naming the key.
    public init?(quantizationConfig q: JSONValue) throws {
        guard case .object = q, q["quant_method"]?.stringValue == "compressed-tensors" else { return nil }
        if let groups = q["config_groups"], !groups.isNull, groups.objectValue?.isEmpty != true {
            throw SparseWeightsError("quantization_config: config_groups quantize the weights (quantized checkpoints are not supported; only compressed-tensors' sparse formats are read)")
        }
        guard let s = q["sparsity_config"], !s.isNull else {
            throw SparseWeightsError("quantization_config: compressed-tensors without a sparsity_config (quantized checkpoints are not supported)")
        }
        guard case .object = s, let formatName = s["format"]?.stringValue else {
            throw SparseWeightsError("quantization_config.sparsity_config: no format string")
        }
        if formatName == "dense" {
            format = nil
        } else if let f = CompressedTensorsFormat(rawValue: formatName) {
            format = f
        } else {
            throw SparseWeightsError("quantization_config.sparsity_config.format '\(formatName)' is not supported (sparse-24-bitmask, sparse-bitmask, dense)")
        }
        structure = s["sparsity_structure"]?.stringValue ?? "unstructured"
        globalSparsity = s["global_sparsity"]?.doubleValue ?? 0
        targets = s["targets"]?.arrayValue?.compactMap(\.stringValue) ?? []
        ignore = s["ignore"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    /// The config of `root` (a parsed config.json), nil when it has no compressed-tensors
    /// `quantization_config`.
    public static func of(config root: JSONValue) throws -> CompressedTensorsSparsity? {
        guard let q = root["quantization_config"], !q.isNull else { return nil }
        return try CompressedTensorsSparsity(quantizationConfig: q)
    }

    /// config.json's `quantization_config` as compressed-tensors 0.14.0.1 writes it for a sparse model.
    public var quantizationConfig: JSONValue {
        let sparsity: JSONValue = .object([
            ("format", .string(format?.rawValue ?? "dense")),
            ("global_sparsity", JSONValue(globalSparsity) ?? .number("0")),
            ("ignore", .array(ignore.map { .string($0) })),
            ("registry_requires_subclass", .bool(false)),
            ("sparsity_structure", .string(structure)),
            ("targets", .array(targets.map { .string($0) })),
        ])
        return .object([
            ("quant_method", .string("compressed-tensors")),
            ("sparsity_config", sparsity),
            ("transform_config", .object([])),
            ("version", .string(Self.version)),
        ])
    }

    /// `root` (a config.json object) with its `quantization_config` replaced by `config`, or removed
    /// when `config` is nil.
    public static func config(_ root: JSONValue, setting config: CompressedTensorsSparsity?) -> JSONValue {
        guard case .object(var members) = root else { return root }
        members.removeAll { $0.key == "quantization_config" }
        if let config { members.append(("quantization_config", config.quantizationConfig)) }
        return .object(members)
    }
}

extension PackedSparseMatrix {
    /// The tensors of a compressed linear `prefix` [rows, columns] in `format`, holding `keptCount`
    /// values of `valueType`: what a header needs before the data exists.
    public static func compressedTensorsSpecs(prefix: String, format: CompressedTensorsFormat, rows: Int, columns: Int,
                                              keptCount: Int, valueType: DType) -> [TensorSpec] {
        var specs = [
            TensorSpec(name: "\(prefix).shape", dtype: .I64, shape: format == .sparse24Bitmask ? [2, 1] : [2]),
            TensorSpec(name: "\(prefix).compressed", dtype: valueType,
                       shape: format == .sparse24Bitmask ? [rows, columns / 2] : [keptCount]),
            TensorSpec(name: "\(prefix).bitmask", dtype: .U8, shape: [rows, (columns + 7) / 8]),
        ]
        if format == .sparseBitmask { specs.append(TensorSpec(name: "\(prefix).row_offsets", dtype: .I64, shape: [rows])) }
        return specs
    }

    /// The format that stores this matrix as it is packed: 2:4 → `sparse-24-bitmask` (columns a multiple
    /// of 4), the bitmask layout → `sparse-bitmask`; nil for any other N:M (pack it as a bitmask).
    public var compressedTensorsFormat: CompressedTensorsFormat? {
        switch layout {
        case .nOfM(2, 4) where columns % 4 == 0: return .sparse24Bitmask
        case .bitmask: return .sparseBitmask
        default: return nil
        }
    }

    /// The data of the tensor `P.<key>` of this matrix in its `compressedTensorsFormat`.
    public func compressedTensorsData(key: String) throws -> TensorData {
        switch key {
        case "shape": return .int64s([Int64(rows), Int64(columns)])
        case "compressed": return .bytes(values.littleEndianBytes)
        case "bitmask": return .bytes(keptBitmask())
        case "row_offsets" where layout == .bitmask: return .int64s(rowOffsets.dropLast().map { Int64($0) })
        default: throw SparseWeightsError("\(name): no compressed-tensors tensor '\(key)' for the \(layout) layout")
        }
    }

    /// Reads the compressed linear `prefix` of `checkpoint` in `format`, checking every tensor against
    /// the others (dtypes, shapes, the bitmask against the values and row offsets); errors name the
    /// tensor. F16 values are widened to float32 (exactly).
    public init(compressedTensors prefix: String, format: CompressedTensorsFormat, in checkpoint: SafeTensorsCheckpoint) throws {
        let geometry = try Self.compressedTensorsGeometry(prefix: prefix, format: format, in: checkpoint)
        let (rows, columns) = (geometry.rows, geometry.columns)
        let valuesName = "\(prefix).compressed"
        let values: PackedValues
        switch geometry.valueType {
        case .BF16:
            values = .bfloat16(try checkpoint.withRawBytes(valuesName) { raw in
                (0..<(raw.count / 2)).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
            })
        default:
            values = .float32(try checkpoint.floats(valuesName))
        }
        // Inconsistencies between the values and the bitmask are named after the bitmask; the matrix
        // then takes its dense name.
        let maskName = "\(prefix).bitmask"
        switch format {
        case .sparse24Bitmask:
            self = try checkpoint.withRawBytes(maskName) {
                try PackedSparseMatrix(name: maskName, rows: rows, columns: columns, n: 2, m: 4, values: values, bitmask: $0)
            }
        case .sparseBitmask:
            let offsets = try checkpoint.int64s("\(prefix).row_offsets")
            self = try checkpoint.withRawBytes(maskName) {
                try PackedSparseMatrix(name: maskName, rows: rows, columns: columns, values: values, bitmask: $0, rowOffsets: offsets)
            }
        }
        name = "\(prefix).weight"
    }

    /// The dense shape and value dtype of the compressed linear `prefix`, from its headers and its
    /// `shape` tensor, after checking that every tensor of `format` is present with a consistent dtype
    /// and shape (and no `P.weight` beside them). Reads only the two-element shape tensor.
    public static func compressedTensorsGeometry(prefix: String, format: CompressedTensorsFormat,
                                                 in checkpoint: SafeTensorsCheckpoint) throws -> (rows: Int, columns: Int, valueType: DType) {
        func info(_ key: String) throws -> TensorInfo {
            guard let i = checkpoint.info("\(prefix).\(key)") else {
                throw SparseWeightsError("\(prefix).\(key): missing (the \(format.rawValue) form of \(prefix) needs \(format.keys.map { "\(prefix).\($0)" }.joined(separator: ", ")))")
            }
            return i
        }
        if checkpoint.info("\(prefix).weight") != nil {
            throw SparseWeightsError("\(prefix).weight: stored beside \(prefix).compressed (a linear is stored dense or compressed, not both)")
        }
        for key in format.keys { _ = try info(key) }
        let shapeInfo = try info("shape")
        guard shapeInfo.dtype.integerRange != nil, shapeInfo.elementCount == 2 else {
            throw SparseWeightsError("\(prefix).shape: \(shapeInfo.dtype.rawValue) \(shapeInfo.shape), not two integers [rows, columns]")
        }
        let dims = try checkpoint.int64s("\(prefix).shape")
        // Bounded as config.json's sizes are, so that no allocation follows from a corrupt file.
        guard dims.allSatisfy({ 0...(1 << 24) ~= $0 }) else {
            throw SparseWeightsError("\(prefix).shape: \(dims) is not a matrix shape of at most 2^24 × 2^24")
        }
        let rows = Int(dims[0]), columns = Int(dims[1])
        let compressed = try info("compressed")
        guard [.F32, .BF16, .F16].contains(compressed.dtype) else {
            throw SparseWeightsError("\(prefix).compressed: dtype \(compressed.dtype.rawValue), not F32, BF16 or F16")
        }
        switch format {
        case .sparse24Bitmask:
            guard columns % 4 == 0 else {
                throw SparseWeightsError("\(prefix).shape: \(columns) columns, not a multiple of 4 as \(format.rawValue) needs")
            }
            guard compressed.shape == [rows, columns / 2] else {
                throw SparseWeightsError("\(prefix).compressed: shape \(compressed.shape), expected [\(rows), \(columns / 2)] for a [\(rows), \(columns)] weight")
            }
        case .sparseBitmask:
            guard compressed.shape.count == 1, compressed.elementCount <= rows * columns else {
                throw SparseWeightsError("\(prefix).compressed: shape \(compressed.shape), expected [n] with n ≤ \(rows * columns) for a [\(rows), \(columns)] weight")
            }
            let offsets = try info("row_offsets")
            guard offsets.dtype.integerRange != nil, offsets.shape == [rows] else {
                throw SparseWeightsError("\(prefix).row_offsets: \(offsets.dtype.rawValue) \(offsets.shape), expected integers [\(rows)]")
            }
        }
        let bitmask = try info("bitmask")
        guard bitmask.dtype == .U8 || bitmask.dtype == .I8, bitmask.shape == [rows, (columns + 7) / 8] else {
            throw SparseWeightsError("\(prefix).bitmask: \(bitmask.dtype.rawValue) \(bitmask.shape), expected U8 [\(rows), \((columns + 7) / 8)]")
        }
        return (rows, columns, compressed.dtype)
    }

    /// The module paths of the linears `checkpoint` stores compressed: every `P` with a `P.compressed`.
    public static func compressedTensorsPrefixes(in checkpoint: SafeTensorsCheckpoint) -> [String] {
        checkpoint.tensorNames.filter { $0.hasSuffix(".compressed") }.map { String($0.dropLast(".compressed".count)) }
    }
}
