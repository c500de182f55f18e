import CBLASRuntime

/// The number format of a GEMM's inputs. Products always accumulate in float32 and write float32.
///
/// `bfloat16`: both operands are rounded to bfloat16 (round to nearest even) before the product, as
/// PyTorch's bf16 matmul on CPU does. On a CPU with AVX512-BF16 or AMX-BF16 and oneDNN installed, the
/// product runs in oneDNN's bf16 kernels (the speed-up); elsewhere it is emulated: the rounded operands go
/// through the float32 sgemm, which computes the same products exactly (a bf16 × bf16 product fits in
/// float32) and differs from the native kernel only in summation order, at no speed-up.
public enum ComputePrecision: String, Sendable, CaseIterable, Codable {
    case float32
    case bfloat16

    /// How this machine runs the mode: "float32", "bf16 (native: oneDNN 2.6.3, avx512_core_bf16)" (the
    /// instruction set oneDNN dispatches to; `avx512_core_amx` on an AMX CPU) or "bf16 (emulated: <why>)".
    public var backend: String {
        switch self {
        case .float32: return "float32"
        case .bfloat16:
            guard BFloat16GEMM.isNative else { return "bf16 (emulated: \(BFloat16GEMM.whyNotNative))" }
            let unusedAMX = BFloat16GEMM.cpuHasAMX && !BFloat16GEMM.usesAMX ? "; the CPU's AMX-BF16 is not used" : ""
            return "bf16 (native: \(BFloat16GEMM.kernel)\(unusedAMX))"
        }
    }
}

/// A matrix rounded to bfloat16 once, for many products with it (the language-model head, used by every
/// slab of rows): stored as bf16 bits for the native kernel, as the rounded float32 values otherwise.
public struct BFloat16Matrix {
    public let rows: Int
    public let columns: Int
    var bits: [UInt16]
    var rounded: [Float]

    /// `source` (rows, columns), row-major with leading dimension `ld` (default `columns`).
    public init(_ source: UnsafePointer<Float>, rows: Int, columns: Int, ld: Int? = nil) {
        self.rows = rows
        self.columns = columns
        let ld = ld ?? columns
        // Inside a single-threaded scope (a worker's own GEMM) the rounding stays on this thread too.
        let perThread = BLAS.isSingleThreadedHere ? Int.max : max(1, 65_536 / max(columns, 1))
        if BFloat16GEMM.isNative {
            bits = [UInt16](repeating: 0, count: rows * columns)
            rounded = []
            bits.withUnsafeMutableBufferPointer { d in
                parallelChunks(rows, minimumPerThread: perThread) { range in
                    for r in range { llmprune_to_bf16(source + r * ld, d.baseAddress! + r * columns, columns) }
                }
            }
        } else {
            bits = []
            rounded = [Float](repeating: 0, count: rows * columns)
            rounded.withUnsafeMutableBufferPointer { d in
                parallelChunks(rows, minimumPerThread: perThread) { range in
                    for r in range { llmprune_round_to_bf16(source + r * ld, d.baseAddress! + r * columns, columns) }
                }
            }
        }
    }
}

public enum BFloat16GEMM {
    /// Whether products run in oneDNN's native bf16 kernels (decided once, at the first bf16 product).
    public static var isNative: Bool { llmprune_bf16_native() != 0 }
    /// Why not, when not (e.g. "this CPU has no AVX512-BF16 or AMX-BF16 instructions").
    public static var whyNotNative: String { isNative ? "" : String(cString: llmprune_bf16_reason()) }
    /// Where native, oneDNN's version and the instruction set it dispatches to, e.g. "oneDNN 2.6.3,
    /// avx512_core_bf16" (with ", capped by ONEDNN_MAX_CPU_ISA=…" when the environment limits it); else "".
    public static var kernel: String { String(cString: llmprune_bf16_kernel()) }
    /// oneDNN's effective `dnnl_cpu_isa_t` where native (its values nest: each ISA's bits include its
    /// predecessors'), else nil.
    public static var instructionSet: Int? { let i = Int(llmprune_bf16_isa()); return i < 0 ? nil : i }
    /// `dnnl_cpu_isa_avx512_core_bf16` and `dnnl_cpu_isa_avx512_core_amx` of oneDNN 2.x.
    public static let avx512BF16InstructionSet = 0xe7, amxInstructionSet = 0x3e7
    /// Whether the products run on AMX tiles (oneDNN dispatches to `avx512_core_amx`).
    public static var usesAMX: Bool { instructionSet.map { $0 & amxInstructionSet == amxInstructionSet } ?? false }
    /// Whether the CPU and the kernel offer AMX-BF16 (cpuid, with the tile state enabled by the OS).
    public static var cpuHasAMX: Bool {
        let f = llmprune_blas_runtime().pointee.features
        let amx = UInt32(LLMPRUNE_AMXBF16.rawValue | LLMPRUNE_AMXTILE.rawValue)
        return f & amx == amx
    }

    /// dst[i] = the bfloat16 bits of src[i] (round to nearest even), for i < count.
    public static func convert(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<UInt16>, count: Int) {
        llmprune_to_bf16(src, dst, count)
    }

    /// x[i] = x[i] rounded to bfloat16, kept as float32, for i < count.
    public static func roundInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        llmprune_round_to_bf16(x, x, count)
    }

    /// C(m, n) = alpha · op(A) · op(B) + beta · C on bf16 bits, float32 accumulation, on the calling thread
    /// (a worker's own product, not split). Only where `isNative`.
    public static func gemmOnThisThread(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        // Timed only off the workers, as float32 products are (a worker's time is its phase's).
        let start = Profile.isEnabled ? Profile.now() : nil
        let status = llmprune_bf16_gemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        precondition(status == 0, "oneDNN bf16 GEMM failed (status \(status)) on \(m)×\(n)×\(k)")
        if let start {
            Profile.recordGEMM(Profile.GEMMShape(m: m, n: n, k: k, transA: transA, transB: transB, bfloat16: true),
                               flops: 2 * Double(m) * Double(n) * Double(k),
                               nanoseconds: llmprune_serial_depth() > 0 ? nil : Profile.now() &- start)
        }
    }

    /// The float32 value of x rounded to bfloat16 (round to nearest even; NaN stays NaN).
    public static func round(_ x: Float) -> Float {
        var s = x, d: Float = 0
        llmprune_round_to_bf16(&s, &d, 1)
        return d
    }
}

extension BLAS {
    /// C(m, n) = alpha · op(A) · op(B) + beta · C with both operands rounded to bfloat16 first (see
    /// `ComputePrecision.bfloat16`); the arguments are those of `gemm`.
    static func gemmBFloat16(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let bRows = transB ? n : k, bColumns = transB ? k : n
        let rb = BFloat16Matrix(b, rows: bRows, columns: bColumns, ld: ldb)
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: rb, beta: beta, c: c, ldc: ldc)
    }

    /// C(m, n) = alpha · op(A) · op(B) + beta · C with A rounded to bfloat16 here and B already rounded;
    /// B is (k, n), or (n, k) when `transB`. Split across the workers as `gemm` splits float32 products.
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int? = nil, b: BFloat16Matrix,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        if m == 0 || n == 0 { return }
        precondition(b.rows == (transB ? n : k) && b.columns == (transB ? k : n),
                     "bf16 gemm: B is \(b.rows)×\(b.columns) for m \(m), n \(n), k \(k)")
        let lda = lda ?? (transA ? m : k), ldc = ldc ?? n
        let ra = BFloat16Matrix(a, rows: transA ? k : m, columns: transA ? m : k, ld: lda)
        let start = Profile.isEnabled && llmprune_serial_depth() == 0 ? Profile.now() : nil
        defer {
            if let start {
                Profile.recordGEMM(Profile.GEMMShape(m: m, n: n, k: k, transA: transA, transB: transB, bfloat16: true),
                                   flops: 2 * Double(m) * Double(n) * Double(k), nanoseconds: Profile.now() &- start)
            }
        }
        if !ra.rounded.isEmpty || !b.rounded.isEmpty {
            // Emulated: the rounded values through the float32 path (same split, same bits as float32 on them).
            let ea = ra.rounded.isEmpty ? expand(ra) : ra.rounded
            let eb = b.rounded.isEmpty ? expand(b) : b.rounded
            ea.withUnsafeBufferPointer { ap in
                eb.withUnsafeBufferPointer { bp in
                    gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: ra.columns,
                         b: bp.baseAddress!, ldb: b.columns, beta: beta, c: c, ldc: ldc, profiled: false)
                }
            }
            return
        }
        ra.bits.withUnsafeBufferPointer { ap in
            b.bits.withUnsafeBufferPointer { bp in
                let a = ap.baseAddress!, b0 = bp.baseAddress!, lda = ra.columns, ldb = b.columns
                let parts = partCount(m * n * max(k, 1))
                func run(_ m: Int, _ n: Int, _ a: UnsafePointer<UInt16>, _ b: UnsafePointer<UInt16>, _ c: UnsafeMutablePointer<Float>) {
                    let status = llmprune_bf16_gemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                    precondition(status == 0, "oneDNN bf16 GEMM failed (status \(status)) on \(m)×\(n)×\(k)")
                }
                if parts == 1 {
                    run(m, n, a, b0, c)
                } else if m >= parts * rowGrain {
                    let chunk = roundUp((m + parts - 1) / parts, rowGrain), count = (m + chunk - 1) / chunk
                    inWorkers(count) { p in
                        let r0 = p * chunk, r1 = min(m, r0 + chunk)
                        run(r1 - r0, n, transA ? a + r0 : a + r0 * lda, b0, c + r0 * ldc)
                    }
                } else {
                    let chunk = roundUp((n + parts - 1) / parts, columnGrain), count = (n + chunk - 1) / chunk
                    inWorkers(count) { p in
                        let c0 = p * chunk, c1 = min(n, c0 + chunk)
                        run(m, c1 - c0, a, transB ? b0 + c0 * ldb : b0 + c0, c + c0)
                    }
                }
            }
        }
    }

    /// The float32 values of a bf16-bits matrix (only when the native kernel is loaded but the other
    /// operand is not in its format, which `BFloat16Matrix` never produces in one process).
    private static func expand(_ m: BFloat16Matrix) -> [Float] {
        m.bits.map { Float(bitPattern: UInt32($0) << 16) }
    }
}
