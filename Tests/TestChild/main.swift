import Foundation
import Runs
import Tensor
import TestSupport

// llm-prune-test-child COMMAND: the child process of the tests that need a fresh process (see
// TestSupport/ChildProcess.swift). Prints `key=value` lines on stdout; exits 2 on an unknown command.
//   blas-report   BLASRuntime's record, the core in use now and the bit patterns of BLASProbe's product
//   blas-report-unknown-cpu  the same after OpenBLAS is restarted on its oldest core (a CPU it does not know)
//   bf16-backend  the bf16 compute mode's backend line (oneDNN's ISA cap is read at its first use)
//   peak-memory   the resident size (VmRSS) and ResidentMemory.peakBytes() before 128 MiB are touched, the peak
//                 after they are touched and after they are unmapped

func report(_ pairs: [(String, String)]) {
    print(pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "\n"))
}

/// The current resident size from /proc/self/status's VmRSS line (read here, not by the code under test).
func residentBytes() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).dropLast(3)) ?? -1) * 1024
}

switch CommandLine.arguments.dropFirst().first {
case "blas-report", "blas-report-unknown-cpu":
    // The second: as a CPU that OpenBLAS does not recognize, where the library starts on its oldest core.
    if CommandLine.arguments[1] == "blas-report-unknown-cpu" { _ = BLASRuntime.restart(fromCore: "Prescott") }
    var c = [Float](repeating: 0, count: BLASProbe.m * BLASProbe.n)
    BLAS.gemm(m: BLASProbe.m, n: BLASProbe.n, k: BLASProbe.k, a: BLASProbe.a, b: BLASProbe.b, c: &c)
    report(BLASRuntime.current.record.map { ($0.0, $0.1) } + [
        ("core_now", BLASRuntime.coreNow),
        ("product", c.map { String($0.bitPattern) }.joined(separator: ",")),
    ])
case "bf16-backend":
    report([("backend", ComputePrecision.bfloat16.backend)])
case "peak-memory":
    let bytes = 128 << 20
    let resident = residentBytes()
    let before = ResidentMemory.peakBytes()
    guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
        FileHandle.standardError.write(Data("mmap of \(bytes) bytes failed\n".utf8))
        exit(1)
    }
    let u = p.assumingMemoryBound(to: UInt8.self)
    for i in stride(from: 0, to: bytes, by: 4096) { u[i] = 1 }
    let touched = ResidentMemory.peakBytes()
    munmap(p, bytes)
    report([("bytes", String(bytes)), ("resident", String(resident)), ("before", String(before)), ("touched", String(touched)),
            ("unmapped", String(ResidentMemory.peakBytes()))])
default:
    FileHandle.standardError.write(Data("usage: llm-prune-test-child blas-report|bf16-backend|peak-memory\n".utf8))
    exit(2)
}
