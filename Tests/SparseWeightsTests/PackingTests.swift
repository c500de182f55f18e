import Testing
import SafeTensors
import Tensor
@testable import SparseWeights

/// Random matrices that hold a pattern: N:M with a random number (0…n) of non-zeros per group, zeros
/// drawn as +0.0 or −0.0, or any pattern at a given density. Values are bfloat16 numbers when asked, so
/// a bf16 round trip can be exact.
struct PatternedMatrix {
    var generator: SeededGenerator

    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    mutating func value(bf16: Bool) -> Float {
        let x = Float(generator.nextDouble() * 4 - 2) + (generator.nextDouble() < 0.5 ? 1e-3 : 0)
        let v = bf16 ? Float(bf16Bits: bf16Bits(from: x)) : x
        return v == 0 ? 0.5 : v
    }

    mutating func zero() -> Float { generator.nextDouble() < 0.3 ? -0.0 : 0.0 }

    mutating func nOfM(rows: Int, columns: Int, n: Int, m: Int, bf16: Bool = false) -> [Float] {
        var w = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            var g0 = 0
            while g0 < columns {
                let width = min(m, columns - g0)
                let nonZeros = Int(generator.next() % UInt64(min(n, width) + 1))
                var slots = Array(0..<width)
                for i in 0..<width { slots.swapAt(i, i + Int(generator.next() % UInt64(width - i))) }
                let chosen = Set(slots.prefix(nonZeros))
                for c in 0..<width { w[r * columns + g0 + c] = chosen.contains(c) ? value(bf16: bf16) : zero() }
                g0 += width
            }
        }
        return w
    }

    mutating func unstructured(rows: Int, columns: Int, density: Double, bf16: Bool = false) -> [Float] {
        (0..<(rows * columns)).map { _ in generator.nextDouble() < density ? value(bf16: bf16) : zero() }
    }
}

/// What a round trip must give back: every entry bit for bit, except that a zero may come back as +0.0
/// (a −0.0 that was not kept). Returns the first index where `out` breaks that, or nil.
func firstRoundTripMismatch(_ dense: [Float], _ out: [Float]) -> Int? {
    guard dense.count == out.count else { return -1 }
    for i in dense.indices {
        let same = dense[i].bitPattern == out[i].bitPattern
        let zeroToPlusZero = dense[i] == 0 && out[i].bitPattern == 0
        if !(same || zeroToPlusZero) { return i }
    }
    return nil
}

@Suite struct PackingTests {
    @Test(arguments: [(2, 4), (4, 8), (1, 4), (3, 7), (16, 32)])
    func nOfMRoundTripIsExact(n: Int, m: Int) throws {
        var g = PatternedMatrix(seed: UInt64(100 * n + m))
        // 70 columns: a partial last group for every m here except 7 (70 = 10 · 7).
        for (rows, columns) in [(13, 70), (1, m), (5, 3), (40, 256)] {
            for bf16 in [false, true] {
                let dense = g.nOfM(rows: rows, columns: columns, n: n, m: m, bf16: bf16)
                let p = try PackedSparseMatrix(packing: dense, rows: rows, columns: columns, layout: .nOfM(n: n, m: m),
                                               valueType: bf16 ? .BF16 : .F32, name: "w")
                #expect(p.keptCount == rows * PackedSparseMatrix.keptPerRow(columns: columns, n: n, m: m))
                #expect(p.values.dtype == (bf16 ? .BF16 : .F32))
                #expect(p.indices.count == rows * p.indexRowStride)
                let out = p.dense()
                #expect(firstRoundTripMismatch(dense, out) == nil, "\(n):\(m) [\(rows), \(columns)] bf16 \(bf16)")
            }
        }
    }

    @Test func twoOfFourIndicesAreTwoBitsPerKeptValue() throws {
        // Row 0: groups [0, a, 0, b] and [c, 0, 0, 0]; the second keeps its first zero beside c.
        let dense: [Float] = [0, 1.5, 0, -2, 3, 0, -0.0, 0]
        let p = try PackedSparseMatrix(packing: dense, rows: 1, columns: 8, layout: .nOfM(n: 2, m: 4), name: "w")
        #expect(p.values == .float32([1.5, -2, 3, 0]))
        // Indices 1, 3 | 0, 1 at 2 bits each, low bits first: 0b01_00_11_01.
        #expect(p.indices == [0b0100_1101])
        #expect(p.indexRowStride == 1)
        #expect(p.keptBitmask() == [0b0011_1010])
        #expect(p.dense().map(\.bitPattern) == [0, 1.5, 0, -2, 3, 0, 0, 0].map { Float($0).bitPattern })
    }

    @Test func keptZerosKeepTheirSign() throws {
        // A group with no non-zero keeps its first two zeros as stored, −0.0 included.
        let dense: [Float] = [-0.0, 0, -0.0, 0]
        let p = try PackedSparseMatrix(packing: dense, rows: 1, columns: 4, layout: .nOfM(n: 2, m: 4), name: "w")
        #expect(p.dense().map(\.bitPattern) == [(-0.0 as Float).bitPattern, 0, 0, 0])
    }

    @Test func bitmaskRoundTripIsExact() throws {
        var g = PatternedMatrix(seed: 7)
        for (rows, columns, density) in [(17, 45, 0.5), (3, 8, 0.0), (4, 9, 1.0), (64, 300, 0.3), (0, 5, 0.5)] {
            for bf16 in [false, true] {
                let dense = g.unstructured(rows: rows, columns: columns, density: density, bf16: bf16)
                let p = try PackedSparseMatrix(packing: dense, rows: rows, columns: columns, layout: .bitmask,
                                               valueType: bf16 ? .BF16 : .F32, name: "w")
                let nonZeros = dense.filter { $0 != 0 }.count
                #expect(p.keptCount == nonZeros)
                #expect(p.rowOffsets.count == rows + 1 && p.rowOffsets.last == nonZeros)
                #expect(p.bitmask.count == rows * ((columns + 7) / 8))
                #expect(firstRoundTripMismatch(dense, p.dense()) == nil, "[\(rows), \(columns)] density \(density) bf16 \(bf16)")
            }
        }
    }

    @Test func bitmaskBitsAreLittleEndianPerRow() throws {
        // Columns 0, 3, 9 of row 0 and 8 of row 1 (10 columns: 2 bytes a row, 6 padding bits zero).
        var dense = [Float](repeating: 0, count: 20)
        dense[0] = 1; dense[3] = -0.0; dense[9] = 2; dense[10 + 8] = 3
        dense[3] = 4
        let p = try PackedSparseMatrix(packing: dense, rows: 2, columns: 10, layout: .bitmask, name: "w")
        #expect(p.bitmask == [0b0000_1001, 0b0000_0010, 0, 0b0000_0001])
        #expect(p.values == .float32([1, 4, 2, 3]))
        #expect(p.rowOffsets == [0, 3, 4])
    }

    @Test func bf16ValuesAreRoundedToNearestEven() throws {
        // 1 + 2^-8 is halfway between two bf16 numbers: it rounds to the even one, 1.
        let dense: [Float] = [1 + 0x1p-8, 0, 0, 1 + 3 * 0x1p-8]
        let p = try PackedSparseMatrix(packing: dense, rows: 1, columns: 4, layout: .nOfM(n: 2, m: 4), valueType: .BF16, name: "w")
        #expect(p.values == .bfloat16([0x3F80, 0x3F82]))
        #expect(p.dense() == [1, 0, 0, 1 + 4 * 0x1p-8])
    }

    @Test func aWrongPatternIsAnErrorNamingTheMatrix() {
        var dense = [Float](repeating: 0, count: 6 * 72)
        // Row 5, group 17 (columns 68..<72) holds three non-zeros.
        dense[5 * 72 + 68] = 1; dense[5 * 72 + 69] = 2; dense[5 * 72 + 71] = -3
        let name = "model.layers.3.mlp.down_proj.weight"
        #expect(throws: SparseWeightsError("model.layers.3.mlp.down_proj.weight: group 17 of row 5 has 3 non-zeros, 2:4 allows 2")) {
            try PackedSparseMatrix(packing: dense, rows: 6, columns: 72, layout: .nOfM(n: 2, m: 4), name: name)
        }
        #expect(throws: SparseWeightsError("\(name): group 17 of row 5 has 3 non-zeros, 2:4 allows 2")) {
            try dense.withUnsafeBufferPointer { try PackedSparseMatrix.checkPattern($0, rows: 6, columns: 72, n: 2, m: 4, name: name) }
        }
        // −0.0 counts as zero: four signed zeros and two values satisfy 2:4.
        let signed: [Float] = [-0.0, 1, -0.0, 2]
        #expect(throws: Never.self) { try PackedSparseMatrix(packing: signed, rows: 1, columns: 4, layout: .nOfM(n: 2, m: 4), name: name) }
        #expect(throws: SparseWeightsError("w: 4 values for shape [2, 3]")) {
            try PackedSparseMatrix(packing: [1, 2, 3, 4], rows: 2, columns: 3, layout: .bitmask, name: "w")
        }
        #expect(throws: SparseWeightsError("w: packed values are F32 or BF16, not F16")) {
            try PackedSparseMatrix(packing: [1, 2, 3, 4], rows: 1, columns: 4, layout: .bitmask, valueType: .F16, name: "w")
        }
    }

    @Test func twoOfFourDetection() {
        var g = PatternedMatrix(seed: 3)
        let nm = g.nOfM(rows: 8, columns: 64, n: 2, m: 4)
        #expect(nm.withUnsafeBufferPointer { PackedSparseMatrix.holdsTwoOfFour($0, rows: 8, columns: 64) })
        var dense = nm
        dense[3 * 64 + 4] = 1; dense[3 * 64 + 5] = 1; dense[3 * 64 + 6] = 1
        #expect(!dense.withUnsafeBufferPointer { PackedSparseMatrix.holdsTwoOfFour($0, rows: 8, columns: 64) })
        let narrow = g.nOfM(rows: 2, columns: 6, n: 2, m: 4)
        #expect(!narrow.withUnsafeBufferPointer { PackedSparseMatrix.holdsTwoOfFour($0, rows: 2, columns: 6) })
    }

    @Test func fromBitmaskPartsEqualsPacking() throws {
        var g = PatternedMatrix(seed: 11)
        let dense = g.nOfM(rows: 9, columns: 40, n: 2, m: 4, bf16: true)
        let packed = try PackedSparseMatrix(packing: dense, rows: 9, columns: 40, layout: .nOfM(n: 2, m: 4), valueType: .BF16, name: "w")
        let mask = packed.keptBitmask()
        let rebuilt = try mask.withUnsafeBytes {
            try PackedSparseMatrix(name: "w", rows: 9, columns: 40, n: 2, m: 4, values: packed.values, bitmask: $0)
        }
        #expect(rebuilt == packed)
        // Three bits in group 2 of row 4: an error naming the tensor and the group.
        var bad = mask
        bad[4 * 5 + 1] |= 0b0000_1111
        #expect(throws: SparseWeightsError("w: group 2 of row 4 keeps 4 entries in the bitmask, 2:4 keeps exactly 2")) {
            try bad.withUnsafeBytes { try PackedSparseMatrix(name: "w", rows: 9, columns: 40, n: 2, m: 4, values: packed.values, bitmask: $0) }
        }

        let u = g.unstructured(rows: 6, columns: 21, density: 0.4)
        let p = try PackedSparseMatrix(packing: u, rows: 6, columns: 21, layout: .bitmask, name: "u")
        let offsets = p.rowOffsets.dropLast().map { Int64($0) }
        let again = try p.bitmask.withUnsafeBytes {
            try PackedSparseMatrix(name: "u", rows: 6, columns: 21, values: p.values, bitmask: $0, rowOffsets: offsets)
        }
        #expect(again == p)
        var shifted = offsets
        shifted[2] += 1
        #expect(throws: SparseWeightsError.self) {
            try p.bitmask.withUnsafeBytes { try PackedSparseMatrix(name: "u", rows: 6, columns: 21, values: p.values, bitmask: $0, rowOffsets: shifted) }
        }
    }
}
