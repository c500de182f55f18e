import Foundation
import Testing
import Pruning
import Runs
import TestSupport
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

    /// In a fresh process (`llm-prune-test-child peak-memory`, where no other test has raised the peak),
    /// touching 128 MiB raises `peakBytes()` to at least the resident size before plus 128 MiB, and the peak
    /// stays there once the pages are unmapped: it is the process's high-water mark, not its current size.
    /// (In this test process, whose peak other tests have already raised past any one allocation, a bound
    /// such as `peakBytes() >= 128 MiB` holds whatever `peakBytes` measures.)
    @Test func thePeakCoversWhatTheProcessHeldResident() throws {
        let r = try TestChild.run("peak-memory")
        let bytes = try #require(r["bytes"].flatMap(Int.init)), resident = try #require(r["resident"].flatMap(Int.init))
        let before = try #require(r["before"].flatMap(Int.init))
        let touched = try #require(r["touched"].flatMap(Int.init)), unmapped = try #require(r["unmapped"].flatMap(Int.init))
        #expect(bytes == 128 << 20)
        #expect(resident > 0 && before >= resident && before < 64 << 20, "a fresh child: resident \(resident), peak \(before) bytes")
        #expect(touched - resident >= bytes, "the peak is \(touched - resident) bytes above the resident size after \(bytes) were touched")
        // (Not `unmapped >= touched`: the kernel's per-thread RSS counters may lag by a few pages.)
        #expect(unmapped - resident >= bytes, "the peak fell to \(unmapped - resident) bytes above the resident size once the pages were unmapped")
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
            sampled = max(sampled, ResidentMemory.peakBytes(pid: pid) ?? 0)  // check-tests: integers
            usleep(2000)
        }
        #expect(sampled > 0 && sampled < 64 << 20, "child peak \(sampled) bytes, parent holds \(bytes)")
        #expect(ResidentMemory.peakBytes(pid: pid) == nil)  // reaped: nothing to read
        #expect(buffer[4096] == 1)
    }
}
