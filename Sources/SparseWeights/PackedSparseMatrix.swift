import SafeTensors
import Tensor

/// How a packed matrix records which of its entries it keeps.
public enum SparseLayout: Sendable, Hashable, CustomStringConvertible {
    /// N:M: every group of m consecutive columns of a row, starting at column 0, keeps exactly n entries
    /// (a last, partial group of w < m columns keeps min(n, w)); a kept entry may be zero. Each kept
    /// entry's column within its group is an index of `indexBits(m)` bits.
    case nOfM(n: Int, m: Int)
    /// Any pattern: one bit per entry, set for the non-zeros, which are the kept entries.
    case bitmask

    /// `2:4`, `4:8` or `bitmask`.
    public var description: String {
        switch self {
        case let .nOfM(n, m): return "\(n):\(m)"
        case .bitmask: return "bitmask"
        }
    }

    /// Bits of one in-group index for groups of m columns: ⌈log₂ m⌉, at least 1 (2 for 2:4, 3 for 4:8).
    public static func indexBits(_ m: Int) -> Int { max(1, Int.bitWidth - (m - 1).leadingZeroBitCount) }

    /// The largest group size accepted (as `SparsityPattern.maxGroupSize`): indices then fit 16 bits.
    public static let maxGroupSize = 65536
}

/// The kept values of a packed matrix, row-major, in one contiguous array of their stored type.
public enum PackedValues: Sendable, Equatable {
    /// float32 values.
    case float32([Float])
    /// bfloat16 bit patterns (the upper half of a float32).
    case bfloat16([UInt16])

    /// The safetensors dtype they are stored as (F32 or BF16).
    public var dtype: DType {
        switch self {
        case .float32: return .F32
        case .bfloat16: return .BF16
        }
    }

    /// The number of values.
    public var count: Int {
        switch self {
        case let .float32(v): return v.count
        case let .bfloat16(v): return v.count
        }
    }

    /// The values as stored, little-endian: the bytes of a safetensors tensor of `dtype`.
    public var littleEndianBytes: [UInt8] {
        switch self {
        case let .float32(v): return v.withUnsafeBytes { Array($0) }
        case let .bfloat16(v): return v.withUnsafeBytes { Array($0) }
        }
    }
}

/// One weight matrix [rows, columns] stored packed: only the kept entries' values, and where they sit.
///
/// Layout (every array contiguous, row-major, rows independent so a kernel can split them across cores):
/// - `values`: the kept entries of row 0, then row 1, …, each row in ascending column order; row r's
///   values are `values[rowOffsets[r] ..< rowOffsets[r + 1]]`.
/// - `rowOffsets` (rows + 1 entries): the exclusive prefix sum of the kept entries per row. For N:M it is
///   r · `keptPerRow`.
/// - N:M (`indices`): the in-group column of each kept value, `indexBits` bits each, packed little-endian
///   (the j-th kept value of a row is bits j·b ..< (j + 1)·b of the row's bytes, bit 0 being the low bit
///   of byte 0); each row starts on a byte, `indexRowStride` bytes apart. For 2:4 a byte holds the two
///   indices of two groups: bits 0–1 and 2–3 the first group's, 4–5 and 6–7 the second's.
/// - bitmask (`bitmask`): bit b of byte k of row r (row stride `bitmaskRowStride` = ⌈columns / 8⌉) is
///   column 8k + b; the bits past the last column are zero.
///
/// Kept means: under N:M, the non-zeros of each group and, where a group has fewer than n, its first
/// zeros (so every group keeps exactly n); under a bitmask, the non-zeros. `-0.0` counts as zero, as the
/// pruning validator counts it. Unpacking writes the kept values and +0.0 elsewhere, so a round trip
/// gives back every entry bit for bit except a `-0.0` that was not kept, which comes back as `+0.0`
/// (bfloat16 values: exactly when the dense values are bfloat16 values, as read from a bf16 checkpoint).
public struct PackedSparseMatrix: Sendable, Equatable {
    /// The tensor's name, for errors (`model.layers.3.mlp.down_proj.weight`).
    public var name: String
    public let rows: Int
    public let columns: Int
    public let layout: SparseLayout
    public let values: PackedValues
    public let rowOffsets: [Int]
    /// N:M's packed in-group indices (empty for a bitmask).
    public let indices: [UInt8]
    /// The bitmask layout's bits (empty for N:M; `keptBitmask()` makes one for either layout).
    public let bitmask: [UInt8]

    /// Bytes between the starts of two rows of `indices` (N:M; 0 for a bitmask).
    public var indexRowStride: Int {
        guard case let .nOfM(n, m) = layout else { return 0 }
        return Self.indexRowStride(columns: columns, n: n, m: m)
    }

    /// Bytes per row of a bitmask: ⌈columns / 8⌉.
    public var bitmaskRowStride: Int { (columns + 7) / 8 }

    /// The number of kept entries (values stored).
    public var keptCount: Int { values.count }

    /// Bytes the packed form takes: values, positions and row offsets as int64 (as stored on disk).
    public var storedBytes: Int {
        values.count * values.dtype.byteSize + indices.count + bitmask.count + (layout == .bitmask ? 8 * rows : 0)
    }

    /// The values of row r: `values[valueRange(row: r)]`.
    public func valueRange(row r: Int) -> Range<Int> { rowOffsets[r]..<rowOffsets[r + 1] }

    /// Entries an N:M row keeps: n per full group, min(n, w) in a last group of w columns.
    public static func keptPerRow(columns: Int, n: Int, m: Int) -> Int {
        (columns / m) * n + min(n, columns % m)
    }

    static func indexRowStride(columns: Int, n: Int, m: Int) -> Int {
        (keptPerRow(columns: columns, n: n, m: m) * SparseLayout.indexBits(m) + 7) / 8
    }

    /// Assembles a matrix from parts already checked (the packers and the readers).
    init(name: String, rows: Int, columns: Int, layout: SparseLayout, values: PackedValues, rowOffsets: [Int],
         indices: [UInt8], bitmask: [UInt8]) {
        self.name = name
        self.rows = rows
        self.columns = columns
        self.layout = layout
        self.values = values
        self.rowOffsets = rowOffsets
        self.indices = indices
        self.bitmask = bitmask
    }
}

/// A packing or reading failure: one line naming the matrix (`description`).
public struct SparseWeightsError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
