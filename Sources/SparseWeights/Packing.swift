import SafeTensors
import Tensor

/// A stored value type of `PackedValues`: float32 itself, or bfloat16 bits.
protocol PackedElement {
    /// The stored form of a float32 value (bfloat16: rounded to nearest even).
    static func stored(_ x: Float) -> Self
    /// The float32 value it stands for (exact).
    var widened: Float { get }
}

extension Float: PackedElement {
    @inline(__always) static func stored(_ x: Float) -> Float { x }
    @inline(__always) var widened: Float { self }
}

extension UInt16: PackedElement {
    @inline(__always) static func stored(_ x: Float) -> UInt16 { bf16Bits(from: x) }
    @inline(__always) var widened: Float { Float(bf16Bits: self) }
}

/// Rows per parallel task below which the work stays on one thread (a row of a small matrix is a few
/// hundred operations).
let minimumEntriesPerTask = 1 << 16

/// Row chunks for `parallelChunks`: whole rows, at least `minimumEntriesPerTask` entries each.
@inline(__always) func rowsPerTask(columns: Int) -> Int { max(1, minimumEntriesPerTask / max(1, columns)) }

extension PackedSparseMatrix {
    /// Packs the row-major dense matrix [rows, columns] in `layout`, values stored as `valueType` (F32,
    /// or BF16: rounded to nearest even). Under N:M a group with more non-zeros than it may keep is an
    /// error naming the matrix, its row and group (`name: group 17 of row 5 has 3 non-zeros, 2:4 allows
    /// 2`); a bitmask takes any matrix.
    public init(packing dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int, layout: SparseLayout,
                valueType: DType = .F32, name: String) throws {
        guard rows >= 0, columns >= 0, dense.count == rows * columns else {
            throw SparseWeightsError("\(name): \(dense.count) values for shape [\(rows), \(columns)]")
        }
        switch valueType {
        case .F32:
            self = try Self.pack(dense, rows: rows, columns: columns, layout: layout, name: name, as: Float.self)
        case .BF16:
            self = try Self.pack(dense, rows: rows, columns: columns, layout: layout, name: name, as: UInt16.self)
        default:
            throw SparseWeightsError("\(name): packed values are F32 or BF16, not \(valueType.rawValue)")
        }
    }

    /// `init(packing:…)` over an array.
    public init(packing dense: [Float], rows: Int, columns: Int, layout: SparseLayout, valueType: DType = .F32,
                name: String) throws {
        self = try dense.withUnsafeBufferPointer {
            try PackedSparseMatrix(packing: $0, rows: rows, columns: columns, layout: layout, valueType: valueType, name: name)
        }
    }

    /// Checks that N:M holds without packing: the same error as `init(packing:)` for the first group, in
    /// row order, with more non-zeros than it may keep.
    public static func checkPattern(_ dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int, n: Int, m: Int,
                                    name: String) throws {
        try checkGroupSize(n: n, m: m, name: name)
        guard let src = dense.baseAddress, rows > 0, columns > 0 else { return }
        let per = rowsPerTask(columns: columns)
        let tasks = (rows + per - 1) / per
        var firstBad = [Violation?](repeating: nil, count: tasks)
        firstBad.withUnsafeMutableBufferPointer { bad in
            parallelFor(tasks) { t in
                for r in (t * per)..<min(rows, (t + 1) * per) {
                    if let v = firstViolation(src + r * columns, row: r, columns: columns, n: n, m: m) { bad[t] = v; return }
                }
            }
        }
        if let v = firstBad.lazy.compactMap({ $0 }).first { throw v.error(name: name, n: n, m: m) }
    }

    /// True when every group of 4 columns of every row holds at most 2 non-zeros and the width is a
    /// multiple of 4: the matrices `sparse-24-bitmask` can store.
    public static func holdsTwoOfFour(_ dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int) -> Bool {
        guard columns % 4 == 0 else { return false }
        return (try? checkPattern(dense, rows: rows, columns: columns, n: 2, m: 4, name: "")) != nil
    }

    /// Writes the dense matrix into `out` (rows · columns floats): the kept values, +0.0 elsewhere.
    public func unpack(into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count == rows * columns, "\(name): unpacking \(rows) × \(columns) into \(out.count) floats")
        guard let dst = out.baseAddress, rows > 0, columns > 0 else { return }
        switch values {
        case let .float32(v): v.withUnsafeBufferPointer { unpackRows(dst, $0.baseAddress!) }
        case let .bfloat16(v): v.withUnsafeBufferPointer { unpackRows(dst, $0.baseAddress!) }
        }
    }

    /// The dense matrix, row-major (rows · columns floats).
    public func dense() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * columns) { out, initialized in
            unpack(into: out)
            initialized = rows * columns
        }
    }

    // MARK: - Packing

    /// A group holding more non-zeros than its pattern keeps.
    struct Violation {
        var row: Int
        var group: Int
        var nonZeros: Int
        var allowed: Int
        func error(name: String, n: Int, m: Int) -> SparseWeightsError {
            SparseWeightsError("\(name): group \(group) of row \(row) has \(nonZeros) non-zeros, \(n):\(m) allows \(allowed)")
        }
    }

    static func checkGroupSize(n: Int, m: Int, name: String) throws {
        guard 0 < n, n <= m, m <= SparseLayout.maxGroupSize else {
            throw SparseWeightsError("\(name): \(n):\(m) is not a pattern N:M with 0 < N ≤ M ≤ \(SparseLayout.maxGroupSize)")
        }
    }

    @inline(__always)
    static func firstViolation(_ row: UnsafePointer<Float>, row r: Int, columns: Int, n: Int, m: Int) -> Violation? {
        var g0 = 0
        while g0 < columns {
            let w = min(m, columns - g0)
            var nz = 0
            for c in g0..<(g0 + w) { nz &+= row[c] != 0 ? 1 : 0 }
            if nz > min(n, w) { return Violation(row: r, group: g0 / m, nonZeros: nz, allowed: min(n, w)) }
            g0 += w
        }
        return nil
    }

    private static func pack<E: PackedElement>(_ dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                                               layout: SparseLayout, name: String, as _: E.Type) throws -> PackedSparseMatrix {
        let wrap: ([E]) -> PackedValues = { E.self == Float.self ? .float32($0 as! [Float]) : .bfloat16($0 as! [UInt16]) }
        switch layout {
        case let .nOfM(n, m):
            try checkGroupSize(n: n, m: m, name: name)
            let kept = keptPerRow(columns: columns, n: n, m: m)
            let stride = indexRowStride(columns: columns, n: n, m: m)
            var values = [E](unsafeUninitializedCapacity: rows * kept) { _, c in c = rows * kept }
            var indices = [UInt8](repeating: 0, count: rows * stride)
            if rows > 0 && columns > 0 {
                let per = rowsPerTask(columns: columns)
                let tasks = (rows + per - 1) / per
                var firstBad = [Violation?](repeating: nil, count: tasks)
                values.withUnsafeMutableBufferPointer { v in
                    indices.withUnsafeMutableBufferPointer { ix in
                        firstBad.withUnsafeMutableBufferPointer { bad in
                            parallelFor(tasks) { t in
                                for r in (t * per)..<min(rows, (t + 1) * per) {
                                    if let e = packRow(dense.baseAddress! + r * columns, row: r, columns: columns, n: n, m: m,
                                                       values: v.baseAddress! + r * kept,
                                                       indices: ix.baseAddress! + r * stride) {
                                        bad[t] = e
                                        return
                                    }
                                }
                            }
                        }
                    }
                }
                if let v = firstBad.lazy.compactMap({ $0 }).first { throw v.error(name: name, n: n, m: m) }
            }
            return PackedSparseMatrix(name: name, rows: rows, columns: columns, layout: layout, values: wrap(values),
                                      rowOffsets: (0...rows).map { $0 * kept }, indices: indices, bitmask: [])
        case .bitmask:
            let stride = (columns + 7) / 8
            var counts = [Int](repeating: 0, count: rows)
            let per = rowsPerTask(columns: columns)
            let tasks = (rows + per - 1) / per
            counts.withUnsafeMutableBufferPointer { cnt in
                parallelFor(tasks) { t in
                    for r in (t * per)..<min(rows, (t + 1) * per) {
                        let row = dense.baseAddress! + r * columns
                        var nz = 0
                        for c in 0..<columns { nz &+= row[c] != 0 ? 1 : 0 }
                        cnt[r] = nz
                    }
                }
            }
            var offsets = [Int](repeating: 0, count: rows + 1)
            for r in 0..<rows { offsets[r + 1] = offsets[r] + counts[r] }
            let total = offsets[rows]
            var values = [E](unsafeUninitializedCapacity: total) { _, c in c = total }
            var mask = [UInt8](repeating: 0, count: rows * stride)
            values.withUnsafeMutableBufferPointer { v in
                mask.withUnsafeMutableBufferPointer { bits in
                    offsets.withUnsafeBufferPointer { off in
                        parallelFor(tasks) { t in
                            for r in (t * per)..<min(rows, (t + 1) * per) {
                                let row = dense.baseAddress! + r * columns
                                let out = bits.baseAddress! + r * stride
                                var vo = off[r]
                                for k in 0..<stride {
                                    var byte: UInt8 = 0
                                    for b in 0..<min(8, columns - 8 * k) {
                                        let x = row[8 * k + b]
                                        if x != 0 {
                                            byte |= 1 << UInt8(b)
                                            v[vo] = E.stored(x)
                                            vo += 1
                                        }
                                    }
                                    out[k] = byte
                                }
                            }
                        }
                    }
                }
            }
            return PackedSparseMatrix(name: name, rows: rows, columns: columns, layout: .bitmask, values: wrap(values),
                                      rowOffsets: offsets, indices: [], bitmask: mask)
        }
    }

    /// Packs one N:M row: each group's non-zeros and, while it keeps fewer than min(n, w), its first zeros,
    /// in column order. Returns the first group with too many non-zeros (the row is then left unfinished).
    @inline(__always)
    private static func packRow<E: PackedElement>(_ row: UnsafePointer<Float>, row r: Int, columns: Int, n: Int, m: Int,
                                                  values: UnsafeMutablePointer<E>, indices: UnsafeMutablePointer<UInt8>) -> Violation? {
        let bits = SparseLayout.indexBits(m)
        var j = 0
        var g0 = 0
        while g0 < columns {
            let w = min(m, columns - g0)
            let keep = min(n, w)
            var nz = 0
            for c in g0..<(g0 + w) { nz &+= row[c] != 0 ? 1 : 0 }
            if nz > keep { return Violation(row: r, group: g0 / m, nonZeros: nz, allowed: keep) }
            var zerosToKeep = keep - nz
            for c in 0..<w {
                let x = row[g0 + c]
                guard x != 0 || zerosToKeep > 0 else { continue }
                if x == 0 { zerosToKeep -= 1 }
                values[j] = E.stored(x)
                writeIndex(c, at: j * bits, into: indices)
                j += 1
            }
            g0 += w
        }
        return nil
    }

    /// ORs the index `value` into the little-endian bit stream `bytes` at bit `position` (at most 16
    /// bits wide, so it spans at most three bytes).
    @inline(__always)
    static func writeIndex(_ value: Int, at position: Int, into bytes: UnsafeMutablePointer<UInt8>) {
        let shifted = UInt32(truncatingIfNeeded: value) << UInt32(position & 7)
        let p = bytes + (position >> 3)
        p[0] |= UInt8(truncatingIfNeeded: shifted)
        if shifted >> 8 != 0 { p[1] |= UInt8(truncatingIfNeeded: shifted >> 8) }
        if shifted >> 16 != 0 { p[2] |= UInt8(truncatingIfNeeded: shifted >> 16) }
    }

    /// The `bits`-wide index at bit `position` of a little-endian bit stream.
    @inline(__always)
    static func readIndex(at position: Int, bits: Int, from bytes: UnsafePointer<UInt8>) -> Int {
        let shift = position & 7
        let p = bytes + (position >> 3)
        var word = UInt32(p[0])
        if shift + bits > 8 { word |= UInt32(p[1]) << 8 }
        if shift + bits > 16 { word |= UInt32(p[2]) << 16 }
        return Int((word >> UInt32(shift)) & ((1 << UInt32(bits)) - 1))
    }

    // MARK: - Unpacking

    private func unpackRows<E: PackedElement>(_ dst: UnsafeMutablePointer<Float>, _ v: UnsafePointer<E>) {
        let rows = rows, columns = columns
        let per = rowsPerTask(columns: columns)
        let tasks = (rows + per - 1) / per
        switch layout {
        case let .nOfM(n, m):
            let bits = SparseLayout.indexBits(m)
            let stride = indexRowStride
            indices.withUnsafeBufferPointer { ix in
                parallelFor(tasks) { t in
                    for r in (t * per)..<min(rows, (t + 1) * per) {
                        let out = dst + r * columns
                        out.update(repeating: 0, count: columns)
                        let rowIndices = ix.baseAddress! + r * stride
                        var vo = rowOffsets[r]
                        var j = 0
                        var g0 = 0
                        while g0 < columns {
                            for _ in 0..<min(n, columns - g0) {
                                out[g0 + Self.readIndex(at: j * bits, bits: bits, from: rowIndices)] = v[vo].widened
                                vo += 1
                                j += 1
                            }
                            g0 += m
                        }
                    }
                }
            }
        case .bitmask:
            let stride = bitmaskRowStride
            bitmask.withUnsafeBufferPointer { mask in
                parallelFor(tasks) { t in
                    for r in (t * per)..<min(rows, (t + 1) * per) {
                        let out = dst + r * columns
                        out.update(repeating: 0, count: columns)
                        let rowBits = mask.baseAddress! + r * stride
                        var vo = rowOffsets[r]
                        for k in 0..<stride {
                            var byte = rowBits[k]
                            while byte != 0 {
                                out[8 * k + byte.trailingZeroBitCount] = v[vo].widened
                                vo += 1
                                byte &= byte &- 1
                            }
                        }
                    }
                }
            }
        }
    }
}
