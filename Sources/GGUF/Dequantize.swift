import Dispatch
import Foundation

/// Conversion of ggml tensor data to float32, block by block, with the arithmetic of the `gguf` Python
/// package's `gguf.quants.dequantize` (and so of ggml's reference `dequantize_row_*`): every product and
/// difference in float32, in the same order, so the results are bit-identical (the tests check this).
///
/// Block layouts (d, dmin, m: IEEE half; QK_K = 256):
/// - Q4_0 (32): d, 16 bytes of nibbles; x[j] = d·(lo(q[j]) − 8), x[j+16] = d·(hi(q[j]) − 8).
/// - Q4_1 (32): d, m, 16 bytes of nibbles; x = d·q + m.
/// - Q5_0 / Q5_1 (32): as Q4_0 / Q4_1 with a fifth bit per element in a u32 (bit j for element j);
///   Q5_0 subtracts 16.
/// - Q8_0 (32): d, 32 int8; x = q·d.
/// - Q2_K (256): 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit values, d, dmin;
///   x = (d·sc)·q − dmin·m per group of 16.
/// - Q3_K (256): 32 bytes of high-bit masks, 64 bytes of 2-bit values, 12 bytes of 6-bit scales, d;
///   q = low 2 bits − 4 where the mask bit is 0; x = (d·(sc − 32))·q per group of 16.
/// - Q4_K / Q5_K (256): d, dmin, 12 bytes of 6-bit scales and mins for 8 groups of 32, (Q5_K: 32 bytes of
///   fifth bits), 128 bytes of nibbles; x = (d·sc)·q − dmin·m.
/// - Q6_K (256): 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, d;
///   x = (d·sc)·(q − 32) per group of 16.
public enum GGUFDequantizer {
    /// Tensors with at least this many elements are converted on several threads.
    public static let parallelThreshold = 1 << 18

    /// Converts `raw`, the bytes of `out.count` elements of `type` (whole blocks, as a tensor stores
    /// them), to float32 in `out`. Rows never share a block, so the tensor is a plain run of blocks.
    /// Large tensors are split into runs of blocks converted in parallel.
    public static func dequantize(_ raw: UnsafeRawBufferPointer, type: GGMLType, rowLength: Int,
                                  into out: UnsafeMutableBufferPointer<Float>) {
        let n = out.count
        guard n > 0, let dst = out.baseAddress, let src = raw.baseAddress else { return }
        let blocks = n / type.blockSize
        precondition(blocks * type.typeSize <= raw.count, "caller passed fewer bytes than the elements need")
        let threads = n >= parallelThreshold ? max(1, min(ProcessInfo.processInfo.activeProcessorCount, 16)) : 1
        let per = (blocks + threads - 1) / threads
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let first = t * per, last = min(blocks, first + per)
            if first < last {
                dequantizeBlocks(src + first * type.typeSize, type: type, count: last - first,
                                 into: dst + first * type.blockSize)
            }
        }
    }

    /// Converts `count` consecutive blocks of `type` at `src` into `count × blockSize` floats at `dst`.
    public static func dequantizeBlocks(_ src: UnsafeRawPointer, type: GGMLType, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch type {
        case .F32:
            for i in 0..<count { dst[i] = Float(bitPattern: u32(src, 4 * i)) }
        case .F16:
            halfTable.withUnsafeBufferPointer { table in
                for i in 0..<count { dst[i] = table[Int(u16(src, 2 * i))] }
            }
        case .BF16:
            for i in 0..<count { dst[i] = Float(bitPattern: UInt32(u16(src, 2 * i)) << 16) }
        case .F64:
            for i in 0..<count { dst[i] = Float(Double(bitPattern: u64(src, 8 * i))) }
        case .Q4_0: for b in 0..<count { q4_0(src + 18 * b, dst + 32 * b) }
        case .Q4_1: for b in 0..<count { q4_1(src + 20 * b, dst + 32 * b) }
        case .Q5_0: for b in 0..<count { q5_0(src + 22 * b, dst + 32 * b) }
        case .Q5_1: for b in 0..<count { q5_1(src + 24 * b, dst + 32 * b) }
        case .Q8_0: for b in 0..<count { q8_0(src + 34 * b, dst + 32 * b) }
        case .Q2_K: for b in 0..<count { q2_K(src + 84 * b, dst + 256 * b) }
        case .Q3_K: for b in 0..<count { q3_K(src + 110 * b, dst + 256 * b) }
        case .Q4_K: for b in 0..<count { q4_K(src + 144 * b, dst + 256 * b) }
        case .Q5_K: for b in 0..<count { q5_K(src + 176 * b, dst + 256 * b) }
        case .Q6_K: for b in 0..<count { q6_K(src + 210 * b, dst + 256 * b) }
        default:
            // Callers check `isDequantizable` first.
            dst.update(repeating: .nan, count: count * type.blockSize)
        }
    }

    // MARK: - Element access

    @inline(__always) static func u16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    @inline(__always) static func u32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    @inline(__always) static func u64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }
    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ o: Int) -> UInt8 { p.load(fromByteOffset: o, as: UInt8.self) }
    @inline(__always) static func half(_ p: UnsafeRawPointer, _ o: Int) -> Float { halfTable[Int(u16(p, o))] }

    /// float32 values of all 65,536 binary16 patterns (exact): a lookup beats the software conversion
    /// Swift emits for `Float16` → `Float` on x86-64 without F16C.
    static let halfTable: [Float] = (0...UInt16.max).map { Float(Float16(bitPattern: $0)) }

    // MARK: - 32-element blocks

    @inline(__always) static func q4_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(s, 0)
        for j in 0..<16 {
            let q = byte(s, 2 + j)
            y[j] = d * Float(Int(q & 0x0F) - 8)
            y[j + 16] = d * Float(Int(q >> 4) - 8)
        }
    }

    @inline(__always) static func q4_1(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(s, 0), m = half(s, 2)
        for j in 0..<16 {
            let q = byte(s, 4 + j)
            y[j] = d * Float(q & 0x0F) + m
            y[j + 16] = d * Float(q >> 4) + m
        }
    }

    @inline(__always) static func q5_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(s, 0)
        let qh = u32(s, 2)
        for j in 0..<16 {
            let q = byte(s, 6 + j)
            let lo = Int(q & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
            let hi = Int(q >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo - 16)
            y[j + 16] = d * Float(hi - 16)
        }
    }

    @inline(__always) static func q5_1(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(s, 0), m = half(s, 2)
        let qh = u32(s, 4)
        for j in 0..<16 {
            let q = byte(s, 8 + j)
            let lo = Int(q & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
            let hi = Int(q >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo) + m
            y[j + 16] = d * Float(hi) + m
        }
    }

    @inline(__always) static func q8_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(s, 0)
        for j in 0..<32 { y[j] = Float(s.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
    }

    // MARK: - 256-element super-blocks

    static func q2_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        // scales[16] at 0, qs[64] at 16, d at 80, dmin at 82; 16 groups of 16 elements.
        let d = half(s, 80), dmin = half(s, 82)
        for g in 0..<16 {
            let sc = byte(s, g)
            let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
            for i in 0..<16 {
                let e = g * 16 + i
                let h = e >> 7, shift = UInt8(2 * ((e >> 5) & 3)), l = e & 31
                let q = (byte(s, 16 + h * 32 + l) >> shift) & 3
                y[e] = dl * Float(q) - ml
            }
        }
    }

    static func q3_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        // hmask[32] at 0, qs[64] at 32, scales[12] at 96, d at 108; 16 groups of 16 elements.
        let d = half(s, 108)
        for g in 0..<16 {
            let low = (byte(s, 96 + (g & 7)) >> UInt8(4 * (g >> 3))) & 0x0F
            let high = (byte(s, 104 + (g & 3)) >> UInt8(2 * (g >> 2))) & 0x03
            let dl = d * Float(Int(low | high << 4) - 32)
            for i in 0..<16 {
                let e = g * 16 + i
                let h = e >> 7, shift = UInt8(2 * ((e >> 5) & 3)), l = e & 31
                let lo = Int((byte(s, 32 + h * 32 + l) >> shift) & 3)
                let maskBit = Int((byte(s, l) >> UInt8(e >> 5)) & 1)
                // The high bit subtracts 4 where the mask bit is clear.
                y[e] = dl * Float(lo - ((maskBit ^ 1) << 2))
            }
        }
    }

    /// The 6-bit scale and min of group `j` (0..<8) of Q4_K/Q5_K, packed in the 12 bytes at `p`.
    @inline(__always) static func scaleMin(_ p: UnsafeRawPointer, _ j: Int) -> (UInt8, UInt8) {
        if j < 4 {
            return (byte(p, j) & 0x3F, byte(p, 4 + j) & 0x3F)
        }
        let md = byte(p, 8 + j - 4)
        let sc = (md & 0x0F) | ((byte(p, j - 4) >> 2) & 0x30)
        let mn = (md >> 4) | ((byte(p, j) >> 2) & 0x30)
        return (sc, mn)
    }

    static func q4_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        // d at 0, dmin at 2, scales[12] at 4, qs[128] at 16.
        let d = half(s, 0), dmin = half(s, 2)
        for j in 0..<8 {
            let (sc, mn) = scaleMin(s + 4, j)
            let dl = d * Float(sc), ml = dmin * Float(mn)
            let chunk = j >> 1, shift = UInt8(4 * (j & 1))
            for l in 0..<32 {
                let q = (byte(s, 16 + chunk * 32 + l) >> shift) & 0x0F
                y[j * 32 + l] = dl * Float(q) - ml
            }
        }
    }

    static func q5_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        // d at 0, dmin at 2, scales[12] at 4, qh[32] at 16, qs[128] at 48.
        let d = half(s, 0), dmin = half(s, 2)
        for j in 0..<8 {
            let (sc, mn) = scaleMin(s + 4, j)
            let dl = d * Float(sc), ml = dmin * Float(mn)
            let chunk = j >> 1, shift = UInt8(4 * (j & 1))
            for l in 0..<32 {
                let lo = (byte(s, 48 + chunk * 32 + l) >> shift) & 0x0F
                let hi = (byte(s, 16 + l) >> UInt8(j)) & 1
                y[j * 32 + l] = dl * Float(lo | hi << 4) - ml
            }
        }
    }

    static func q6_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        // ql[128] at 0, qh[64] at 128, scales[16] (int8) at 192, d at 208; 16 groups of 16 elements.
        let d = half(s, 208)
        for g in 0..<16 {
            let dl = d * Float(s.load(fromByteOffset: 192 + g, as: Int8.self))
            for i in 0..<16 {
                let e = g * 16 + i
                let h = e >> 7
                let lo = (byte(s, h * 64 + (e & 63)) >> UInt8(4 * ((e >> 6) & 1))) & 0x0F
                let hi = (byte(s, 128 + h * 32 + (e & 31)) >> UInt8(2 * ((e >> 5) & 3))) & 0x03
                y[e] = dl * Float(Int(lo | hi << 4) - 32)
            }
        }
    }
}
