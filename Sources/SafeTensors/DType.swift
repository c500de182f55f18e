/// An element type of the safetensors format, named as in the file header.
public enum DType: String, CaseIterable, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }

    /// True for F64, F32, F16 and BF16: the dtypes `floats(_:)` converts and `.floats` payloads write.
    public var isFloatingPoint: Bool {
        switch self {
        case .F64, .F32, .F16, .BF16: return true
        default: return false
        }
    }

    /// The values an integer dtype can hold (BOOL holds 0 and 1); nil for floating-point dtypes.
    public var integerRange: ClosedRange<Int64>? {
        switch self {
        case .I64: return Int64.min...Int64.max
        case .I32: return Int64(Int32.min)...Int64(Int32.max)
        case .I16: return Int64(Int16.min)...Int64(Int16.max)
        case .I8: return Int64(Int8.min)...Int64(Int8.max)
        case .U8: return 0...255
        case .BOOL: return 0...1
        case .F64, .F32, .F16, .BF16: return nil
        }
    }
}

// MARK: - Half-precision conversions

extension Float {
    /// The float32 value of a bfloat16 bit pattern: bfloat16 is the upper half of a float32, so the
    /// widening is exact.
    @inlinable
    public init(bf16Bits bits: UInt16) {
        self = Float(bitPattern: UInt32(bits) << 16)
    }

    /// The float32 value of an IEEE binary16 bit pattern (exact).
    @inlinable
    public init(f16Bits bits: UInt16) {
        self = Float(Float16(bitPattern: bits))
    }
}

/// The bfloat16 bit pattern nearest to `x`, ties to even (as PyTorch's `x.to(torch.bfloat16)`).
/// Every NaN becomes the canonical quiet NaN 0x7FC0 (as PyTorch's scalar `c10::BFloat16` does; its
/// vectorized CPU cast gives 0xFFFF, also a NaN); values beyond the largest bfloat16 round to ±infinity.
@inlinable
public func bf16Bits(from x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return 0x7FC0 }
    // Adding 0x7FFF plus the kept half's lowest bit rounds the dropped 16 bits to nearest, ties to
    // even; a carry out of the mantissa correctly bumps the exponent (up to infinity).
    let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
}

/// The IEEE binary16 bit pattern nearest to `x`, ties to even (the hardware conversion, as PyTorch's
/// `x.to(torch.float16)`). NaN stays NaN; values of 65520 and beyond round to infinity; tiny values
/// become binary16 subnormals or zero.
@inlinable
public func f16Bits(from x: Float) -> UInt16 {
    Float16(x).bitPattern
}
