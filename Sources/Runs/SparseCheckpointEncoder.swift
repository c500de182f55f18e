import Pruning
import SafeTensors
import SparseWeights

/// The pruned linears of a checkpoint in compressed-tensors' form, for both checkpoint writers: which
/// format the folder takes, the tensors each linear becomes, and their data, packed one linear at a time
/// when the writer asks for it (so no more than one packed linear is held at once).
///
/// The format: `sparse-24-bitmask` when every linear holds 2:4 (and its width is a multiple of 4),
/// `sparse-bitmask` otherwise. A requested pattern is checked on every linear first (an N:M that a
/// linear breaks is an error naming it); without one the pattern is detected.
final class SparseCheckpointEncoder {
    let format: CompressedTensorsFormat
    let valueType: DType
    /// config.json's `quantization_config` for the folder.
    let sparsity: CompressedTensorsSparsity
    private let read: (String) throws -> [Float]
    private var geometry: [String: (rows: Int, columns: Int, kept: Int)] = [:]
    private var packed: (prefix: String, matrix: PackedSparseMatrix)?

    /// `linears`: the dense names and shapes of the matrices to compress; `read`: a matrix's values as
    /// the output stores them (already rounded to `valueType`); `pattern`: the pattern they must hold
    /// (nil: detect); `otherParameters`: the elements of every other tensor written (for the config's
    /// `global_sparsity`, over all parameters as llm-compressor counts it).
    init(linears: [(name: String, shape: [Int])], valueType: DType, pattern: SparseLayout?, otherParameters: Int,
         read: @escaping (String) throws -> [Float]) throws {
        guard valueType == .F32 || valueType == .BF16 else {
            throw PruningError("sparse checkpoints store their values as bf16 or f32, not \(valueType.rawValue): pass --dtype bf16 or --dtype f32")
        }
        self.valueType = valueType
        self.read = read
        var twoOfFour = true
        var zeros = 0, total = otherParameters
        var nonZeros: [String: Int] = [:]
        for (name, shape) in linears {
            guard shape.count == 2 else { throw PruningError("\(name): shape \(shape) is not a matrix") }
            let w = try read(name)
            try w.withUnsafeBufferPointer { buffer in
                if case let .nOfM(n, m) = pattern {
                    do {
                        try PackedSparseMatrix.checkPattern(buffer, rows: shape[0], columns: shape[1], n: n, m: m, name: name)
                    } catch {
                        throw PruningError("\(error)")
                    }
                }
                if twoOfFour { twoOfFour = PackedSparseMatrix.holdsTwoOfFour(buffer, rows: shape[0], columns: shape[1]) }
                nonZeros[name] = buffer.count - SparsityCheck.zeroCount(buffer)
            }
            zeros += w.count - nonZeros[name]!
            total += w.count
        }
        let structure: String
        switch pattern {
        case let .nOfM(n, m)?: structure = "\(n):\(m)"
        case .bitmask?: structure = "unstructured"
        case nil: structure = twoOfFour ? "2:4" : "unstructured"
        }
        format = twoOfFour && (pattern == nil || pattern == .nOfM(n: 2, m: 4)) ? .sparse24Bitmask : .sparseBitmask
        for (name, shape) in linears {
            let kept = format == .sparse24Bitmask ? shape[0] * shape[1] / 2 : nonZeros[name]!
            geometry[name] = (shape[0], shape[1], kept)
        }
        sparsity = CompressedTensorsSparsity(format: format, structure: structure,
                                             globalSparsity: total > 0 ? Double(zeros) / Double(total) : 0)
    }

    /// True when the dense weight `name` is written compressed.
    func compresses(_ name: String) -> Bool { geometry[name] != nil }

    /// The tensors the dense weight `name` becomes (`P.shape`, `P.compressed`, …).
    func specs(for name: String) -> [TensorSpec] {
        guard let g = geometry[name] else { return [] }
        return PackedSparseMatrix.compressedTensorsSpecs(prefix: CompressedTensorsFormat.prefix(ofWeight: name), format: format,
                                                         rows: g.rows, columns: g.columns, keptCount: g.kept, valueType: valueType)
    }

    /// The data of one of the specs `specs(for:)` returned; the linear is packed at its first tensor.
    func data(for spec: TensorSpec) throws -> TensorData {
        guard let dot = spec.name.lastIndex(of: ".") else { throw PruningError("\(spec.name) is not a compressed tensor") }
        let prefix = String(spec.name[..<dot]), key = String(spec.name[spec.name.index(after: dot)...])
        let name = prefix + ".weight"
        guard let g = geometry[name] else { throw PruningError("\(spec.name) is not a compressed tensor") }
        if packed?.prefix != prefix {
            packed = nil
            let w = try read(name)
            let matrix: PackedSparseMatrix
            do {
                matrix = try PackedSparseMatrix(packing: w, rows: g.rows, columns: g.columns,
                                                layout: format == .sparse24Bitmask ? .nOfM(n: 2, m: 4) : .bitmask,
                                                valueType: valueType, name: name)
            } catch {
                throw PruningError("\(error)")
            }
            // The header was written from the first reading; the second must agree with it.
            guard matrix.keptCount == g.kept else {
                throw PruningError("\(name) changed while it was written (\(matrix.keptCount) kept values, \(g.kept) expected)")
            }
            packed = (prefix, matrix)
        }
        do {
            return try packed!.matrix.compressedTensorsData(key: key)
        } catch {
            throw PruningError("\(error)")
        }
    }
}

extension SparsityPattern {
    /// The packed layout a linear pruned to this pattern is checked against: N:M, or a bitmask for a ratio.
    public var packedLayout: SparseLayout {
        switch self {
        case let .nm(n, m): return .nOfM(n: n, m: m)
        case .unstructured: return .bitmask
        }
    }
}
