import CBLASRuntime

/// Which BLAS and which of its kernels this process runs, as set up before `main` by `CBLASRuntime`:
/// OpenBLAS's DYNAMIC_ARCH "core" (its kernel family) is re-selected at start when the library's own
/// choice ranks below what the CPU's features allow, unless `OPENBLAS_CORETYPE` came from the environment.
public struct BLASRuntime: Sendable, Equatable {
    /// Where the core in use came from.
    public enum Source: String, Sendable {
        /// OpenBLAS's own load-time detection, already the best for the CPU.
        case library
        /// `OPENBLAS_CORETYPE` as the environment set it (respected, never overridden).
        case environment
        /// Chosen by llm-prune from the CPU's features, the library having picked an older core.
        case selected
        /// The library cannot switch cores (not a DYNAMIC_ARCH build).
        case fixed
    }

    /// `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64".
    public var library: String
    /// The core in use, as OpenBLAS names it (e.g. "Haswell", "Zen", "SkylakeX", "Cooperlake").
    public var core: String
    /// The core OpenBLAS picked by itself when it loaded.
    public var libraryCore: String
    /// The best core of this OpenBLAS build for the CPU's features.
    public var expectedCore: String
    public var source: Source
    /// `OPENBLAS_CORETYPE` as the environment set it, or nil.
    public var environmentCore: String?
    /// CPU vendor (cpuid) and the features that decide the core, enabled by the CPU and the OS.
    public var vendor: String
    public var cpuFeatures: [String]
    /// OpenBLAS's own thread count (1: all parallelism is the project's, see `BLAS.gemm`).
    public var threads: Int

    /// The state of this process.
    public static let current: BLASRuntime = {
        let s = llmprune_blas_runtime()!.pointee
        let names: [(UInt32, String)] = [
            (LLMPRUNE_SSE3.rawValue, "sse3"), (LLMPRUNE_SSSE3.rawValue, "ssse3"), (LLMPRUNE_SSE42.rawValue, "sse4.2"),
            (LLMPRUNE_AVX.rawValue, "avx"), (LLMPRUNE_AVX2.rawValue, "avx2"), (LLMPRUNE_FMA.rawValue, "fma"),
            (LLMPRUNE_AVX512F.rawValue, "avx512f"), (LLMPRUNE_AVX512BW.rawValue, "avx512bw"),
            (LLMPRUNE_AVX512VL.rawValue, "avx512vl"), (LLMPRUNE_AVX512DQ.rawValue, "avx512dq"),
            (LLMPRUNE_AVX512BF16.rawValue, "avx512_bf16"), (LLMPRUNE_AMXBF16.rawValue, "amx_bf16"),
            (LLMPRUNE_AMXTILE.rawValue, "amx_tile"),
        ]
        let env = string(s.environment_core)
        return BLASRuntime(
            library: string(s.config), core: string(s.core), libraryCore: string(s.library_core),
            expectedCore: string(s.expected_core),
            source: [0: .library, 1: .environment, 2: .selected][Int(s.source)] ?? .fixed,
            environmentCore: env.isEmpty ? nil : env, vendor: string(s.vendor),
            cpuFeatures: names.filter { s.features & $0.0 != 0 }.map(\.1), threads: Int(s.threads))
    }()

    /// One line for people: library, core and why that core.
    public var summary: String {
        let why: String
        switch source {
        case .library: why = "OpenBLAS's own choice, the best this build has for the CPU"
        case .environment: why = "set by OPENBLAS_CORETYPE=\(environmentCore ?? "") in the environment, respected"
                + (core.lowercased() == expectedCore.lowercased() ? "" : "; the best for this CPU would be \(expectedCore)")
        case .selected: why = "selected by llm-prune for this CPU; OpenBLAS alone picked \(libraryCore)"
        case .fixed: why = "fixed at build time"
        }
        return "\(library.split(separator: " ").prefix(2).joined(separator: " ")), core \(core) (\(why)); "
            + "\(threads) BLAS thread, \(workerCount) workers; elementwise kernels \(VectorMath.instructionSet); "
            + "CPU \(vendor) \(cpuFeatures.joined(separator: " "))"
    }

    /// The record for JSON reports: string values only.
    public var record: [(String, String)] {
        [("library", library), ("core", core), ("core_source", source.rawValue), ("library_core", libraryCore),
         ("best_core_for_cpu", expectedCore), ("environment_coretype", environmentCore ?? ""),
         ("cpu_vendor", vendor), ("cpu_features", cpuFeatures.joined(separator: " ")),
         ("blas_threads", String(threads)), ("workers", String(workerCount)),
         ("elementwise_kernels", VectorMath.instructionSet)]
    }

    /// The core OpenBLAS reports now (equal to `core` unless something re-initialized it since).
    public static var coreNow: String { String(cString: llmprune_blas_current_core()) }

    /// Restarts OpenBLAS on `core` (OpenBLAS's spelling, e.g. "Prescott", its oldest), as the library leaves
    /// a CPU newer than itself, and chooses again as at start-up. False when the library has no dynamic
    /// dispatch or OPENBLAS_CORETYPE decides. Only before `current` is first read and any BLAS work: a
    /// fresh process that checks the re-selection (the tests' child process) calls it.
    public static func restart(fromCore core: String) -> Bool { llmprune_blas_restart_from_core(core) != 0 }

    private static func string<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}
