import Dispatch
import Foundation

/// An opt-in profile of a run (`--profile`): wall seconds and floating-point operations per phase, and
/// the GEMMs by shape (calls, FLOP, seconds inside BLAS), so each phase's GEMM speed can be set next to
/// the BLAS's own speed on the same shapes (`GEMMBenchmark`).
///
/// Phases nest; a phase is charged only for its own time and FLOP (an inner phase's are not also the
/// outer's), so the phases of one thread add up to its wall time. FLOP are counted at the BLAS and LAPACK
/// entries (2mnk per GEMM, n²k per SYRK, n³/3 per Cholesky, 2n³/3 per inverse), on whatever thread
/// calls them; the few element-wise kernels (norms, RoPE, softmax) are not counted.
public enum Profile {
    /// Whether anything is recorded (off by default: the counters then cost one branch per BLAS call).
    nonisolated(unsafe) public private(set) static var isEnabled = false

    public static func enable() {
        lock.lock(); defer { lock.unlock() }
        isEnabled = true
        flops = 0
        phases = [:]
        order = []
        gemms = [:]
        stack = []
    }

    /// One phase's totals.
    public struct Phase: Sendable {
        public var name: String
        public var seconds: Double
        public var flops: Double
        public var calls: Int
        public var gflops: Double { seconds > 0 ? flops / seconds / 1e9 : 0 }
    }

    /// One GEMM shape's totals (row-major m, n, k and transposes, as called).
    public struct GEMMShape: Hashable, Sendable, Comparable {
        public var m, n, k: Int
        public var transA, transB: Bool
        /// Operands rounded to bfloat16 (`ComputePrecision.bfloat16`).
        public var bfloat16: Bool
        public init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, bfloat16: Bool = false) {
            self.m = m; self.n = n; self.k = k; self.transA = transA; self.transB = transB; self.bfloat16 = bfloat16
        }
        public var label: String { "\(m)×\(n)×\(k)\(transA ? " Aᵀ" : "")\(transB ? " Bᵀ" : "")\(bfloat16 ? " bf16" : "")" }
        public static func < (a: GEMMShape, b: GEMMShape) -> Bool { (a.m, a.n, a.k) < (b.m, b.n, b.k) }
    }

    public struct GEMMTotals: Sendable {
        public var calls = 0
        public var flops = 0.0
        /// Wall seconds of the calls made outside the project's own worker threads (those made on a
        /// worker overlap others and are left out of the time, not of `flops`).
        public var seconds = 0.0
        public var timedFlops = 0.0
        public var gflops: Double { seconds > 0 ? timedFlops / seconds / 1e9 : 0 }
    }

    /// Runs `body` as phase `name`.
    public static func phase<R>(_ name: String, _ body: () throws -> R) rethrows -> R {
        if !isEnabled { return try body() }
        enter(name)
        defer { leave() }
        return try body()
    }

    /// The phases in order of first use.
    public static var phaseTotals: [Phase] {
        lock.lock(); defer { lock.unlock() }
        return order.map { phases[$0]! }
    }

    /// The GEMM shapes, most FLOP first.
    public static var gemmTotals: [(GEMMShape, GEMMTotals)] {
        lock.lock(); defer { lock.unlock() }
        return gemms.sorted { $0.value.flops > $1.value.flops }
    }

    // MARK: Recording (called by BLAS and Linalg)

    static func countFlops(_ f: Double) {
        lock.lock(); flops += f; lock.unlock()
    }

    static func recordGEMM(_ shape: GEMMShape, flops f: Double, nanoseconds: UInt64?) {
        lock.lock(); defer { lock.unlock() }
        flops += f
        var t = gemms[shape] ?? GEMMTotals()
        t.calls += 1
        t.flops += f
        if let nanoseconds { t.seconds += Double(nanoseconds) / 1e9; t.timedFlops += f }
        gemms[shape] = t
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private static func enter(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        let t = now()
        chargeTop(t)
        if phases[name] == nil {
            phases[name] = Phase(name: name, seconds: 0, flops: 0, calls: 0)
            order.append(name)
        }
        phases[name]!.calls += 1
        stack.append((name, t, flops))
    }

    private static func leave() {
        lock.lock(); defer { lock.unlock() }
        let t = now()
        chargeTop(t)
        stack.removeLast()
        if !stack.isEmpty { stack[stack.count - 1].since = t; stack[stack.count - 1].flopsAt = flops }
    }

    /// Charges the innermost open phase with the time and FLOP since it last resumed.
    private static func chargeTop(_ t: UInt64) {
        guard let top = stack.last else { return }
        phases[top.name]!.seconds += Double(t &- top.since) / 1e9
        phases[top.name]!.flops += flops - top.flopsAt
        stack[stack.count - 1].since = t
        stack[stack.count - 1].flopsAt = flops
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var flops = 0.0
    nonisolated(unsafe) private static var phases: [String: Phase] = [:]
    nonisolated(unsafe) private static var order: [String] = []
    nonisolated(unsafe) private static var gemms: [GEMMShape: GEMMTotals] = [:]
    nonisolated(unsafe) private static var stack: [(name: String, since: UInt64, flopsAt: Double)] = []
}

/// sgemm speed of this process's BLAS on given shapes, through the same entry as every product
/// (`BLAS.gemm`: split across the workers) and as one single-threaded call.
public enum GEMMBenchmark {
    public struct Result: Sendable {
        public var shape: Profile.GEMMShape
        /// GFLOP/s through `BLAS.gemm` on all workers, and of one unsplit call on one thread.
        public var gflops: Double
        public var singleThreadGflops: Double
        /// GFLOP/s of the bf16 product (`BLAS.gemm` with a `BFloat16Matrix`: B rounded once beforehand, as
        /// the head is; A rounded in every call), when asked for. The block projections round their weight
        /// in every call too, which adds about 1/m of the product's time.
        public var bfloat16Gflops: Double?
    }

    /// Times each shape for about `seconds` (at least 2 calls after a warm-up call), on random inputs;
    /// with `bfloat16`, also the bf16 product of the same shape. The first shape's all-worker rate is timed
    /// twice and the first timing dropped: the cores' clocks ramp up under the first load (seen: 120
    /// against 172 GFLOP/s for the same shape timed first and third).
    public static func run(_ shapes: [Profile.GEMMShape], seconds: Double = 0.3, bfloat16: Bool = false) -> [Result] {
        shapes.enumerated().map { index, s in
            var rng = SeededGenerator(seed: UInt64(s.m &* 131 &+ s.n &* 7 &+ s.k))
            let a = (0..<(s.m * s.k)).map { _ in Float(rng.nextDouble() - 0.5) }
            let b = (0..<(s.k * s.n)).map { _ in Float(rng.nextDouble() - 0.5) }
            var c = [Float](repeating: 0, count: s.m * s.n)
            func rate(_ body: () -> Void) -> Double {
                body()
                var calls = 0
                let start = Profile.now()
                repeat { body(); calls += 1 } while calls < 2 || Double(Profile.now() - start) / 1e9 < seconds
                let elapsed = Double(Profile.now() - start) / 1e9
                return 2 * Double(s.m) * Double(s.n) * Double(s.k) * Double(calls) / elapsed / 1e9
            }
            func allWorkers() -> Double {
                rate { BLAS.gemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, a: a, b: b, c: &c, profiled: false) }
            }
            if index == 0 { _ = allWorkers() }
            let all = allWorkers()
            let one = rate {
                BLAS.singleThreaded {
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, s.transA ? s.m : s.k, b, s.transB ? s.k : s.n,
                                   0, cp.baseAddress!, s.n)
                    }
                }
            }
            var bf16: Double?
            if bfloat16 {
                let rb = b.withUnsafeBufferPointer {
                    BFloat16Matrix($0.baseAddress!, rows: s.transB ? s.n : s.k, columns: s.transB ? s.k : s.n)
                }
                bf16 = rate {
                    a.withUnsafeBufferPointer { ap in
                        c.withUnsafeMutableBufferPointer { cp in
                            BLAS.gemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, a: ap.baseAddress!,
                                      b: rb, c: cp.baseAddress!)
                        }
                    }
                }
            }
            return Result(shape: s, gflops: all, singleThreadGflops: one, bfloat16Gflops: bf16)
        }
    }
}
