import Foundation

/// Resident memory of a process, as the kernel counts it.
///
/// The peak is the `VmHWM` line of `/proc/<pid>/status`: the high-water mark of the process's current
/// address space, which starts afresh at `execve`. `getrusage`'s `ru_maxrss` is not used where `VmHWM`
/// can be read, because Linux carries it across `execve` from the address space the new program replaced:
/// a process started by `posix_spawn` (or `vfork`) from a parent holding 1 GiB reports that 1 GiB as its own
/// peak, whatever it uses itself.
public enum ResidentMemory {
    /// The peak resident set size of this process so far, in bytes.
    public static func peakBytes() -> Int {
        if let hwm = highWaterBytes(statusPath: "/proc/self/status") { return hwm }
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024  // KiB on Linux
    }

    /// The peak resident set size of process `pid` so far, in bytes; nil when it cannot be read (the process
    /// has exited, or this is not Linux).
    public static func peakBytes(pid: Int32) -> Int? {
        highWaterBytes(statusPath: "/proc/\(pid)/status")
    }

    /// The `VmHWM:  1892 kB` line of a `/proc/<pid>/status` file, in bytes; nil without one. One `read`
    /// into a fixed buffer: this runs every few milliseconds while a child is watched.
    public static func highWaterBytes(statusPath: String) -> Int? {
        let fd = open(statusPath, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buffer -> Int? in
            let n = read(fd, buffer.baseAddress, buffer.count)
            guard n > 0 else { return nil }
            let text = UnsafeBufferPointer(rebasing: buffer[..<n])
            let key = Array("VmHWM:".utf8)
            var i = 0
            while i + key.count <= text.count {
                let atLineStart = i == 0 || text[i - 1] == UInt8(ascii: "\n")
                if atLineStart && text[i..<(i + key.count)].elementsEqual(key) {
                    var j = i + key.count, kib = 0, digits = 0
                    while j < text.count && (text[j] == UInt8(ascii: " ") || text[j] == UInt8(ascii: "\t")) { j += 1 }
                    while j < text.count, text[j] >= UInt8(ascii: "0"), text[j] <= UInt8(ascii: "9") {
                        kib = kib * 10 + Int(text[j] - UInt8(ascii: "0")); j += 1; digits += 1
                    }
                    return digits > 0 ? kib * 1024 : nil
                }
                i += 1
            }
            return nil
        }
    }
}
