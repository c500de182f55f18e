#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only, private memory map of a whole regular file, unmapped when the value is released.
///
/// The file formats (GGUF, safetensors) validate their own headers inside `bytes`; this type only opens,
/// checks and maps, so both formats refuse a directory, a device or a file shorter than their fixed
/// prefix in the same way before anything is read.
public final class MappedFile: @unchecked Sendable {
    /// Why a file could not be mapped: an I/O failure (message without the path), or a file shorter than
    /// the caller's minimum (its size).
    public enum Failure: Error, Equatable {
        case io(String)
        case shorterThanMinimum(size: Int)
    }

    /// The whole file. Valid while this value lives.
    public let bytes: UnsafeRawBufferPointer

    /// Maps the regular file at `path`, which must hold at least `minimumSize` bytes.
    public init(path: String, minimumSize: Int) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.io("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure.io("cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure.io("not a regular file") }
        let size = Int(st.st_size)
        guard size >= minimumSize else { throw Failure.shorterThanMinimum(size: size) }
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let raw = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), raw != MAP_FAILED else {
            throw Failure.io("cannot memory-map: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: raw, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

/// The number of elements of a tensor of `shape` (outermost first; `[]` is a scalar), or nil when a
/// dimension is negative or the product overflows: sizes read from a file are checked before use.
public func checkedElementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, overflow) = n.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        n = p
    }
    return n
}
