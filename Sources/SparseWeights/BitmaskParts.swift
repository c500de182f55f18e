import SafeTensors
import Tensor

/// A packed matrix from a bitmask and its values, as files store it, and the bitmask of either layout:
/// the two directions between `PackedSparseMatrix` and compressed-tensors' tensors.
extension PackedSparseMatrix {
    /// N:M from a bitmask (`rows` × ⌈columns / 8⌉ bytes, bit b of byte k = column 8k + b; bits past the
    /// last column ignored) and the kept values in row-major order. Every group must keep exactly
    /// min(n, w) entries, and `values` hold rows · `keptPerRow` of them; otherwise the error names `name`.
    public init(name: String, rows: Int, columns: Int, n: Int, m: Int, values: PackedValues,
                bitmask: UnsafeRawBufferPointer) throws {
        try Self.checkGroupSize(n: n, m: m, name: name)
        let stride = (columns + 7) / 8
        guard bitmask.count == rows * stride else {
            throw SparseWeightsError("\(name): the bitmask holds \(bitmask.count) bytes, [\(rows), \(columns)] needs \(rows * stride)")
        }
        let kept = Self.keptPerRow(columns: columns, n: n, m: m)
        guard values.count == rows * kept else {
            throw SparseWeightsError("\(name): \(values.count) values stored, \(n):\(m) over [\(rows), \(columns)] keeps \(rows * kept)")
        }
        let bits = SparseLayout.indexBits(m)
        let indexStride = Self.indexRowStride(columns: columns, n: n, m: m)
        var indices = [UInt8](repeating: 0, count: rows * indexStride)
        if rows > 0 && columns > 0, let maskBase = bitmask.baseAddress?.assumingMemoryBound(to: UInt8.self) {
            let per = rowsPerTask(columns: columns)
            let tasks = (rows + per - 1) / per
            // The first group (per task) whose bitmask does not keep exactly its share.
            var firstBad = [(row: Int, group: Int, count: Int, wanted: Int)?](repeating: nil, count: tasks)
            indices.withUnsafeMutableBufferPointer { ix in
                firstBad.withUnsafeMutableBufferPointer { bad in
                    parallelFor(tasks) { t in
                        for r in (t * per)..<min(rows, (t + 1) * per) {
                            let rowBits = maskBase + r * stride
                            let out = ix.baseAddress! + r * indexStride
                            var j = 0
                            var g0 = 0
                            while g0 < columns {
                                let w = min(m, columns - g0)
                                var count = 0
                                for c in 0..<w where (rowBits[(g0 + c) >> 3] >> UInt8((g0 + c) & 7)) & 1 != 0 {
                                    if count < min(n, w) { Self.writeIndex(c, at: (j + count) * bits, into: out) }
                                    count += 1
                                }
                                if count != min(n, w) {
                                    bad[t] = (r, g0 / m, count, min(n, w))
                                    return
                                }
                                j += count
                                g0 += w
                            }
                        }
                    }
                }
            }
            if let b = firstBad.lazy.compactMap({ $0 }).first {
                throw SparseWeightsError("\(name): group \(b.group) of row \(b.row) keeps \(b.count) entries in the bitmask, \(n):\(m) keeps exactly \(b.wanted)")
            }
        }
        self.init(name: name, rows: rows, columns: columns, layout: .nOfM(n: n, m: m), values: values,
                  rowOffsets: (0...rows).map { $0 * kept }, indices: indices, bitmask: [])
    }

    /// The bitmask layout from its bitmask, the values in row-major order and the exclusive prefix sum of
    /// the kept entries per row (`rows` entries, compressed-tensors' `row_offsets`). Each row's set bits
    /// must match its offsets and the last row must end at the last value; otherwise the error names
    /// `name` and the row.
    public init(name: String, rows: Int, columns: Int, values: PackedValues, bitmask: UnsafeRawBufferPointer,
                rowOffsets: [Int64]) throws {
        let stride = (columns + 7) / 8
        guard bitmask.count == rows * stride else {
            throw SparseWeightsError("\(name): the bitmask holds \(bitmask.count) bytes, [\(rows), \(columns)] needs \(rows * stride)")
        }
        guard rowOffsets.count == rows else {
            throw SparseWeightsError("\(name): \(rowOffsets.count) row offsets for \(rows) rows")
        }
        var offsets = [Int](repeating: 0, count: rows + 1)
        for r in 0..<rows {
            guard rowOffsets[r] >= 0, rowOffsets[r] <= Int64(values.count) else {
                throw SparseWeightsError("\(name): row offset \(rowOffsets[r]) of row \(r) lies outside the \(values.count) values")
            }
            offsets[r] = Int(rowOffsets[r])
        }
        offsets[rows] = values.count
        if rows > 0 && offsets[0] != 0 {
            throw SparseWeightsError("\(name): the row offsets start at \(offsets[0]), not 0")
        }
        // Only the columns' bits count (compressed-tensors unpacks exactly `columns` bits a row); the mask
        // is kept with the padding cleared, as `init(packing:)` writes it.
        let lastByteMask: UInt8 = columns % 8 == 0 ? 0xFF : UInt8((1 << (columns % 8)) - 1)
        var mask = [UInt8](unsafeUninitializedCapacity: rows * stride) { out, c in
            if let src = bitmask.baseAddress { out.baseAddress!.initialize(from: src.assumingMemoryBound(to: UInt8.self), count: rows * stride) }
            c = rows * stride
        }
        if stride > 0 { for r in 0..<rows { mask[r * stride + stride - 1] &= lastByteMask } }
        for r in 0..<rows {
            var count = 0
            for k in 0..<stride { count += mask[r * stride + k].nonzeroBitCount }
            if count != offsets[r + 1] - offsets[r] {
                throw SparseWeightsError("\(name): row \(r) has \(count) bits set in the bitmask but \(offsets[r + 1] - offsets[r]) values by its row offsets")
            }
        }
        self.init(name: name, rows: rows, columns: columns, layout: .bitmask, values: values, rowOffsets: offsets,
                  indices: [], bitmask: mask)
    }

    /// The matrix's bitmask (`rows` × ⌈columns / 8⌉ bytes, bit b of byte k = column 8k + b): the stored
    /// one for the bitmask layout; for N:M, the kept positions, including kept zeros.
    public func keptBitmask() -> [UInt8] {
        guard case let .nOfM(n, m) = layout else { return bitmask }
        let stride = bitmaskRowStride, indexStride = indexRowStride, bits = SparseLayout.indexBits(m)
        let rows = rows, columns = columns
        var mask = [UInt8](repeating: 0, count: rows * stride)
        guard rows > 0, columns > 0 else { return mask }
        let per = rowsPerTask(columns: columns)
        mask.withUnsafeMutableBufferPointer { out in
            indices.withUnsafeBufferPointer { ix in
                parallelFor((rows + per - 1) / per) { t in
                    for r in (t * per)..<min(rows, (t + 1) * per) {
                        let rowIndices = ix.baseAddress! + r * indexStride
                        let rowBits = out.baseAddress! + r * stride
                        var j = 0
                        var g0 = 0
                        while g0 < columns {
                            for _ in 0..<min(n, columns - g0) {
                                let c = g0 + Self.readIndex(at: j * bits, bits: bits, from: rowIndices)
                                rowBits[c >> 3] |= 1 << UInt8(c & 7)
                                j += 1
                            }
                            g0 += m
                        }
                    }
                }
            }
        }
        return mask
    }
}
