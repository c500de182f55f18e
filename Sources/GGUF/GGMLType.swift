/// A tensor element type of GGUF (ggml's `ggml_type`), with its block layout.
///
/// Quantized types store blocks of `blockSize` consecutive elements of a row in `typeSize` bytes; the
/// row length (the innermost dimension) must be a multiple of `blockSize`. Every type ggml defines is
/// known here so that any file's layout can be validated; `isDequantizable` says which ones this module
/// converts to float32.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9
    case Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15
    case IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23
    case I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30
    case TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41

    /// The name ggml and the gguf package use (`Q4_K`, `BF16`, ...).
    public var description: String { "\(Self.names[self]!)" }

    /// The type named `name` (case-insensitive), e.g. for `--output-format gguf --dtype q8_0`.
    public init?(name: String) {
        guard let t = Self.allCases.first(where: { $0.description.lowercased() == name.lowercased() }) else { return nil }
        self = t
    }

    /// Elements per block (1 for the plain types).
    public var blockSize: Int { Self.layout[self]!.0 }
    /// Bytes per block.
    public var typeSize: Int { Self.layout[self]!.1 }

    /// Whether `GGUFFile.floats` converts this type.
    public var isDequantizable: Bool {
        switch self {
        case .F32, .F16, .BF16, .F64, .Q4_0, .Q4_1, .Q5_0, .Q5_1, .Q8_0, .Q2_K, .Q3_K, .Q4_K, .Q5_K, .Q6_K: return true
        default: return false
        }
    }

    /// The bytes of a row of `n` elements, or nil when `n` is not a multiple of the block size.
    public func rowBytes(_ n: Int) -> Int? {
        guard n >= 0, n % blockSize == 0 else { return nil }
        let (b, overflow) = (n / blockSize).multipliedReportingOverflow(by: typeSize)
        return overflow ? nil : b
    }

    private static let names: [GGMLType: String] = [
        .F32: "F32", .F16: "F16", .Q4_0: "Q4_0", .Q4_1: "Q4_1", .Q5_0: "Q5_0", .Q5_1: "Q5_1", .Q8_0: "Q8_0",
        .Q8_1: "Q8_1", .Q2_K: "Q2_K", .Q3_K: "Q3_K", .Q4_K: "Q4_K", .Q5_K: "Q5_K", .Q6_K: "Q6_K", .Q8_K: "Q8_K",
        .IQ2_XXS: "IQ2_XXS", .IQ2_XS: "IQ2_XS", .IQ3_XXS: "IQ3_XXS", .IQ1_S: "IQ1_S", .IQ4_NL: "IQ4_NL",
        .IQ3_S: "IQ3_S", .IQ2_S: "IQ2_S", .IQ4_XS: "IQ4_XS", .I8: "I8", .I16: "I16", .I32: "I32", .I64: "I64",
        .F64: "F64", .IQ1_M: "IQ1_M", .BF16: "BF16", .TQ1_0: "TQ1_0", .TQ2_0: "TQ2_0", .MXFP4: "MXFP4",
        .NVFP4: "NVFP4", .Q1_0: "Q1_0",
    ]

    /// (block size, type size), as ggml's type traits (QK_K = 256).
    private static let layout: [GGMLType: (Int, Int)] = [
        .F32: (1, 4), .F16: (1, 2), .Q4_0: (32, 18), .Q4_1: (32, 20), .Q5_0: (32, 22), .Q5_1: (32, 24),
        .Q8_0: (32, 34), .Q8_1: (32, 40), .Q2_K: (256, 84), .Q3_K: (256, 110), .Q4_K: (256, 144),
        .Q5_K: (256, 176), .Q6_K: (256, 210), .Q8_K: (256, 292), .IQ2_XXS: (256, 66), .IQ2_XS: (256, 74),
        .IQ3_XXS: (256, 98), .IQ1_S: (256, 50), .IQ4_NL: (32, 18), .IQ3_S: (256, 110), .IQ2_S: (256, 82),
        .IQ4_XS: (256, 136), .I8: (1, 1), .I16: (1, 2), .I32: (1, 4), .I64: (1, 8), .F64: (1, 8),
        .IQ1_M: (256, 56), .BF16: (1, 2), .TQ1_0: (256, 54), .TQ2_0: (256, 66), .MXFP4: (32, 17),
        .NVFP4: (64, 36), .Q1_0: (128, 18),
    ]
}
