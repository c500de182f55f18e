import Foundation
import Testing
import Tensor
import TestSupport

/// bfloat16 rounding by its definition, in float64 arithmetic (independent of the bit manipulation under
/// test): the nearest value with 8 significant bits, ties to even; NaN stays NaN; beyond the largest
/// bf16 (and its rounding boundary) infinity.
private func bf16Reference(_ x: Float) -> Float {
    if x.isNaN { return .nan }
    if x.isInfinite || x == 0 { return x }
    let d = Double(x)
    let e = max(Int(floor(log2(abs(d)))), -126)     // subnormals share the smallest normal's spacing
    let ulp = pow(2.0, Double(e - 7))
    let r = (d / ulp).rounded(.toNearestOrEven) * ulp
    let largest = Double(Float(bitPattern: 0x7F7F_0000))
    if abs(r) > largest { return d > 0 ? .infinity : -.infinity }
    return Float(r)
}

@Suite struct BFloat16GEMMTests {
    @Test func roundingIsNearestEvenToEightSignificantBits() {
        var rng = SeededGenerator(seed: 11)
        var values: [Float] = [1, -1, 0.1, 3.14159, 65504, 1e-30, -2.5e-39, 1e-44, .greatestFiniteMagnitude,
                               Float(bitPattern: 0x7F7F_7FFF), Float(bitPattern: 0x7F7F_8000), .infinity, -.infinity]
        // Exact ties (the dropped half is 0x8000): both the even-below and the odd-below cases.
        for hi in [0x3F80, 0x3F81, 0xBF80, 0xBF81, 0x0080, 0x0081] as [UInt32] { values.append(Float(bitPattern: hi << 16 | 0x8000)) }
        for _ in 0..<20_000 { values.append(Float(rng.nextGaussian()) * Float(pow(2.0, Double(Int(rng.next() % 60) - 30)))) }
        for v in values {
            let got = BFloat16GEMM.round(v), want = bf16Reference(v)
            #expect(got.bitPattern == want.bitPattern, "bf16(\(v)) = \(got), want \(want)")
        }
        #expect(BFloat16GEMM.round(.nan).isNaN)
        #expect(BFloat16GEMM.round(Float(bitPattern: 0x7F80_0001)).isNaN)   // a NaN whose payload rounding would clear
    }

    /// The bf16 product against float64 sums of the rounded operands, for every transpose, with leading
    /// dimensions wider than the matrices and beta ≠ 0; tolerance: float32 accumulation, relative to Σ|terms|.
    @Test(arguments: [(301, 257, 190, false, false), (37, 1001, 300, true, true), (515, 64, 129, false, true), (9, 13, 700, true, false)])
    func productMatchesFloat64OfRoundedOperands(m: Int, n: Int, k: Int, ta: Bool, tb: Bool) {
        var rng = SeededGenerator(seed: UInt64(m * 7 + k))
        let aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n
        let lda = aCols + 3, ldb = bCols + 5, ldc = n + 2
        let a = (0..<(aRows * lda)).map { _ in Float(rng.nextGaussian()) }
        let b = (0..<(bRows * ldb)).map { _ in Float(rng.nextGaussian()) }
        let c0 = (0..<(m * ldc)).map { _ in Float(rng.nextGaussian()) }
        var c = c0
        BLAS.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb,
                  beta: 0.5, c: &c, ldc: ldc, precision: .bfloat16)
        var worst = 0.0, differsFromFloat32 = false
        var c32 = c0
        BLAS.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb, beta: 0.5, c: &c32, ldc: ldc)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, size = 0.0
                for p in 0..<k {
                    let x = Double(bf16Reference(ta ? a[p * lda + i] : a[i * lda + p]))
                    let y = Double(bf16Reference(tb ? b[j * ldb + p] : b[p * ldb + j]))
                    s += x * y
                    size += abs(x * y)
                }
                let want = 0.75 * s + 0.5 * Double(c0[i * ldc + j])
                let err = abs(Double(c[i * ldc + j]) - want) / (0.75 * size + 0.5 * abs(Double(c0[i * ldc + j])) + 1e-30)
                worst = maxOrNaN(worst, err)
                if c[i * ldc + j] != c32[i * ldc + j] { differsFromFloat32 = true }
            }
            // Padding columns of C are untouched.
            for j in n..<ldc { #expect(c[i * ldc + j] == c0[i * ldc + j]) }
        }
        #expect(worst < Double(k) * 1.2e-7, "worst error \(worst) relative to Σ|terms|")
        #expect(differsFromFloat32, "the bf16 product equals the float32 one: the operands were not rounded")
    }

    /// A head rounded once (`BFloat16Matrix`) gives the same bits as rounding at every call, and the
    /// emulated path gives sgemm's bits on the rounded values.
    @Test func roundedOnceEqualsRoundedPerCall() {
        var rng = SeededGenerator(seed: 5)
        let m = 70, n = 333, k = 96
        let a = (0..<(m * k)).map { _ in Float(rng.nextGaussian()) }
        let w = (0..<(n * k)).map { _ in Float(rng.nextGaussian()) }
        var perCall = [Float](repeating: 0, count: m * n), once = perCall, onRounded = perCall
        BLAS.gemm(transB: true, m: m, n: n, k: k, a: a, b: w, c: &perCall, precision: .bfloat16)
        let head = w.withUnsafeBufferPointer { BFloat16Matrix($0.baseAddress!, rows: n, columns: k) }
        a.withUnsafeBufferPointer { ap in
            once.withUnsafeMutableBufferPointer { cp in
                BLAS.gemm(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, b: head, c: cp.baseAddress!)
            }
        }
        #expect(once == perCall)
        if !BFloat16GEMM.isNative {
            BLAS.gemm(transB: true, m: m, n: n, k: k, a: a.map(bf16Reference), b: w.map(bf16Reference), c: &onRounded)
            #expect(onRounded == perCall)
        }
    }

    /// Where the CPU has no bf16 instructions the mode says so, and why, instead of claiming a native kernel.
    @Test func theBackendNamesWhyItIsEmulated() throws {
        let flags = try BLASRuntimeTests.cpuFlags()
        if !flags.contains("avx512_bf16") && !flags.contains("amx_bf16") {
            #expect(!BFloat16GEMM.isNative)
            #expect(ComputePrecision.bfloat16.backend.contains("no AVX512-BF16 or AMX-BF16"))
        } else {
            #expect(BFloat16GEMM.isNative || !BFloat16GEMM.whyNotNative.isEmpty)
        }
        #expect(ComputePrecision.float32.backend == "float32")
    }

    /// The kernel check of the bf16 mode: where native, oneDNN must dispatch to the best bf16 instructions
    /// /proc/cpuinfo lists (AMX-BF16 tiles where present, else AVX512-BF16), unless the environment caps it,
    /// which the backend then names. Where not native on a bf16 CPU, the only acceptable reasons are a
    /// missing oneDNN, a cap, or the explicit emulation switch.
    @Test func nativeKernelIsTheBestTheCPUSupports() throws {
        let flags = try BLASRuntimeTests.cpuFlags()
        let env = ProcessInfo.processInfo.environment
        let cap = env["ONEDNN_MAX_CPU_ISA"] ?? env["DNNL_MAX_CPU_ISA"]
        guard flags.contains("avx512_bf16") || flags.contains("amx_bf16") else {
            #expect(!BFloat16GEMM.isNative && BFloat16GEMM.instructionSet == nil && BFloat16GEMM.kernel.isEmpty)
            return
        }
        guard BFloat16GEMM.isNative else {
            let why = BFloat16GEMM.whyNotNative
            #expect(why.contains("not installed") || why.contains("LLM_PRUNE_BF16_EMULATE") || (cap != nil && why.contains("MAX_CPU_ISA")),
                    "bf16 CPU emulated for another reason: \(why)")
            return
        }
        let backend = ComputePrecision.bfloat16.backend
        #expect(backend.hasPrefix("bf16 (native: oneDNN 2."), "\(backend)")
        if let cap {
            #expect(backend.contains("capped by") && backend.contains(cap), "\(backend)")
            return
        }
        let isa = try #require(BFloat16GEMM.instructionSet, "oneDNN reports no instruction set: \(backend)")
        if flags.isSuperset(of: ["amx_bf16", "amx_tile"]) {
            #expect(BFloat16GEMM.usesAMX, "AMX CPU, but oneDNN dispatches to \(backend)")
            #expect(backend.contains("avx512_core_amx"))
        } else {
            let bf16 = BFloat16GEMM.avx512BF16InstructionSet
            #expect(isa & bf16 == bf16, "AVX512-BF16 CPU, but oneDNN dispatches to \(backend)")
            #expect(backend.contains("avx512_core_bf16") && !BFloat16GEMM.usesAMX)
        }
    }

    /// An `ONEDNN_MAX_CPU_ISA` set by the environment is respected and named: AVX2 leaves oneDNN no bf16
    /// GEMM, so the mode is emulated and says why (checked in a child process, where the variable is read
    /// at oneDNN's first use).
    @Test func environmentCapOfOneDNNIsRespected() throws {
        let flags = try BLASRuntimeTests.cpuFlags()
        let backend = try #require(try TestChild.run("bf16-backend", env: ["ONEDNN_MAX_CPU_ISA": "AVX2"],
                                                     removing: ["DNNL_MAX_CPU_ISA", "LLM_PRUNE_BF16_EMULATE"])["backend"])
        #expect(backend.hasPrefix("bf16 (emulated: "), "\(backend)")
        if flags.contains("avx512_bf16") || flags.contains("amx_bf16") {
            #expect(backend.contains("ONEDNN_MAX_CPU_ISA=AVX2 is set") || backend.contains("not installed"), "\(backend)")
        } else {
            #expect(backend.contains("no AVX512-BF16 or AMX-BF16"), "\(backend)")
        }
    }
}
