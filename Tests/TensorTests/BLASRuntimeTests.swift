import Foundation
import Testing
import Tensor
import TestSupport

/// The kernel check: the OpenBLAS core in use must be at least what the CPU's features allow, judged
/// from /proc/cpuinfo (the kernel's view, not the project's cpuid code).
@Suite struct BLASRuntimeTests {
    /// Instruction-set rank of OpenBLAS's x86-64 cores (the families its kernels are written for).
    static let rank: [String: Int] = [
        "prescott": 0, "atom": 0, "nano": 0, "opteron": 0, "opteron_sse3": 0, "barcelona": 0,
        "bobcat": 1, "core2": 1, "penryn": 1, "dunnington": 1, "nehalem": 2,
        "sandybridge": 3, "bulldozer": 3, "piledriver": 3, "steamroller": 3, "excavator": 3,
        "haswell": 4, "zen": 4, "skylakex": 5, "cooperlake": 6, "sapphirerapids": 7,
    ]

    /// The least rank a CPU with these /proc/cpuinfo flags must get: AVX-512 → SkylakeX or later, AVX2
    /// with FMA → Haswell/Zen, AVX → Sandybridge, SSE4.2 → Nehalem, SSSE3 → Core2.
    static func minimumRank(_ flags: Set<String>) -> Int {
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return 5 }
        if flags.isSuperset(of: ["avx2", "fma"]) { return 4 }
        if flags.contains("avx") { return 3 }
        if flags.contains("sse4_2") { return 2 }
        if flags.contains("ssse3") { return 1 }
        return 0
    }

    static func cpuFlags() throws -> Set<String> {
        let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("flags") })
        return Set(line.split(separator: ":", maxSplits: 1)[1].split(separator: " ").map(String.init))
    }

    @Test func kernelInUseIsTheBestTheCPUSupports() throws {
        #if arch(x86_64)
        let r = BLASRuntime.current
        #expect(r.library.hasPrefix("OpenBLAS"), "\(r.library)")
        #expect(r.threads == 1)
        #expect(BLASRuntime.coreNow == r.core)
        if r.source == .environment { return }  // the environment's choice is respected, by design
        let inUse = try #require(Self.rank[r.core.lowercased()], "unknown core \(r.core)")
        let needed = Self.minimumRank(try Self.cpuFlags())
        #expect(inUse >= needed, "core \(r.core) (rank \(inUse)) is below what this CPU supports (rank \(needed)): \(r.summary)")
        #endif
    }

    /// Runs `llm-prune-test-child blas-report` (a fresh process, where OpenBLAS chooses its core again)
    /// with `env`: the runtime record, the core in use and the bit patterns of `BLASProbe`'s product.
    func child(_ env: [String: String], command: String = "blas-report") throws -> [String: String] {
        try TestChild.run(command, env: env, removing: ["OPENBLAS_CORETYPE"])
    }

    static func product() -> [Float] {
        var c = [Float](repeating: 0, count: BLASProbe.m * BLASProbe.n)
        BLAS.gemm(m: BLASProbe.m, n: BLASProbe.n, k: BLASProbe.k, a: BLASProbe.a, b: BLASProbe.b, c: &c)
        return c
    }

    @Test func environmentCoreTypeIsRespected() throws {
        #if arch(x86_64)
        let r = try child(["OPENBLAS_CORETYPE": "Sandybridge"])
        #expect(r["core_source"] == "environment")
        #expect(r["environment_coretype"] == "Sandybridge")
        #expect(r["core"] == "Sandybridge" && r["core_now"] == "Sandybridge", "\(r)")
        #endif
    }

    /// A CPU that OpenBLAS does not recognize (simulated: the library starts on its SSE3 core) gets the
    /// best core for its features; the product is computed exactly (small integers and eighths).
    @Test func olderLibraryChoiceIsReplaced() throws {
        #if arch(x86_64)
        let r = try child([:], command: "blas-report-unknown-cpu")
        #expect(r["library_core"] == "Prescott", "\(r)")
        let needed = Self.minimumRank(try Self.cpuFlags())
        if needed > 0 {
            #expect(r["core_source"] == "selected", "\(r)")
            let core = try #require(r["core_now"]?.lowercased())
            #expect((Self.rank[core] ?? -1) >= needed, "\(r)")
            #expect(r["core"] == r["best_core_for_cpu"])
        }
        let here = Self.product().map { String($0.bitPattern) }.joined(separator: ",")
        #expect(r["product"] == here)
        #endif
    }
}
