import Foundation
import Testing
import Pruning
import Runs
#if canImport(Glibc)
import Glibc
#endif

/// `ResidentMemory`: the peak that `prune`/`eval --json` report and the fuzz suite bounds.
struct ResidentMemoryTests {
    @Test func readsTheHighWaterLineOfAStatusFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resident-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = dir.appendingPathComponent("status"), missing = dir.appendingPathComponent("other")
        try "Name:\tllm-prune\nVmPeak:\t  999999 kB\nVmHWM:\t    1892 kB\nVmRSS:\t 1000 kB\n".write(to: good, atomically: true, encoding: .utf8)
        try "Name:\tllm-prune\nVmRSS:\t 1000 kB\nNotVmHWM:\t 5 kB\n".write(to: missing, atomically: true, encoding: .utf8)
        #expect(ResidentMemory.highWaterBytes(statusPath: good.path) == 1892 * 1024)
        #expect(ResidentMemory.highWaterBytes(statusPath: missing.path) == nil)
        #expect(ResidentMemory.highWaterBytes(statusPath: dir.appendingPathComponent("absent").path) == nil)
    }

    @Test func thePeakCoversWhatThisProcessHoldsResident() {
        let bytes = 128 << 20
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes)
        defer { buffer.deallocate() }
        for i in stride(from: 0, to: bytes, by: 4096) { buffer[i] = UInt8(truncatingIfNeeded: i >> 12) }
        #expect(ResidentMemory.peakBytes() >= bytes)
        #expect(buffer[4096 * 7] == 7)
    }

    /// A child started by posix_spawn from this (large) process reports its own peak, not this process's:
    /// the failure the fuzz suite's memory bound once hit in CI (every case "1.17 GB").
    @Test func aSpawnedChildsPeakIsItsOwn() throws {
        let bytes = 256 << 20
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes)
        defer { buffer.deallocate() }
        for i in stride(from: 0, to: bytes, by: 4096) { buffer[i] = 1 }
        var pid: pid_t = 0
        let words: [String] = ["/bin/sh", "-c", "exec sleep 0.3"]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        #expect(posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0)
        var sampled = 0, status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            sampled = max(sampled, ResidentMemory.peakBytes(pid: pid) ?? 0)
            usleep(2000)
        }
        #expect(sampled > 0 && sampled < 64 << 20, "child peak \(sampled) bytes, parent holds \(bytes)")
        #expect(ResidentMemory.peakBytes(pid: pid) == nil)  // reaped: nothing to read
        #expect(buffer[4096] == 1)
    }
}
