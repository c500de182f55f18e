import CZlib
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file's bytes in chunks, gunzipped on the fly when the file starts with the gzip magic `1f 8b`.
///
/// The format is sniffed, not taken from the file name, so a `.json` that is really gzip (or a `.gz` that is
/// not) reads correctly. Gzip files may hold several concatenated members (what `cat a.gz b.gz` and
/// parallel compressors produce); they decompress to the concatenation of their contents, as `gzip -d` does.
///
/// Reading is bounded: at most `limit` bytes of content (after decompression) are delivered, then the
/// stream throws, so a file that never ends (a FIFO fed from /dev/zero), a gzip bomb or a mistaken huge
/// file cannot exhaust memory. Devices and sockets are refused outright (/dev/zero would never end).
final class ByteStream {
    let path: String
    let limit: Int
    private var delivered = 0
    private let fd: Int32
    private var inflater: Inflater?
    /// Raw bytes read ahead of the inflater (the sniffed first chunk).
    private var pending: [UInt8] = []
    private var fileEOF = false
    private static let chunkSize = 1 << 20

    init(url: URL, limit: Int = TextReader.maxBytes) throws {
        path = url.path
        self.limit = limit
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DatasetError(.fileNotFound, "\(path): no such file")
        }
        if isDirectory.boolValue { throw DatasetError(.unreadable, "\(path): is a directory, not a file") }
        let opened = open(path, O_RDONLY | O_CLOEXEC)
        if opened < 0 { throw DatasetError(.unreadable, "\(path): cannot open: \(String(cString: strerror(errno)))") }
        fd = opened
        var st = stat()
        if fstat(fd, &st) == 0 {
            let kind = st.st_mode & S_IFMT
            // (Thrown after every property is set, so deinit closes fd.)
            if kind != S_IFREG && kind != S_IFIFO {
                throw DatasetError(.unreadable, "\(path): is not a regular file or a pipe")
            }
            if kind == S_IFREG && Int(st.st_size) > limit {
                throw DatasetError(.tooLarge, "\(path): is \(formatCount(Int(st.st_size))) bytes, more than the \(formatCount(limit)) accepted")
            }
        }
        pending = try readRaw()
        if pending.count >= 2 && pending[0] == 0x1F && pending[1] == 0x8B {
            inflater = try Inflater(path: path)
        }
    }

    deinit { close(fd) }

    var isGzip: Bool { inflater != nil }

    /// Up to one chunk of raw file bytes; empty at end of file.
    private func readRaw() throws -> [UInt8] {
        if fileEOF { return [] }
        var buffer = [UInt8](repeating: 0, count: ByteStream.chunkSize)
        var filled = 0
        while filled < buffer.count {
            let n = buffer.withUnsafeMutableBytes { raw in
                read(fd, raw.baseAddress! + filled, raw.count - filled)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw DatasetError(.unreadable, "\(path): read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { fileEOF = true; break }
            filled += n
        }
        buffer.removeSubrange(filled...)
        return buffer
    }

    /// The next chunk of (decompressed) content, or nil at the end; throws once more than `limit` bytes
    /// of content would have been delivered.
    func next() throws -> [UInt8]? {
        guard let chunk = try nextUnbounded() else { return nil }
        delivered += chunk.count
        if delivered > limit {
            throw DatasetError(.tooLarge, "\(path): holds more than the \(formatCount(limit)) bytes accepted\(isGzip ? " (decompressed)" : "")")
        }
        return chunk
    }

    private func nextUnbounded() throws -> [UInt8]? {
        guard let inflater else {
            if !pending.isEmpty { defer { pending = [] }; return pending }
            let chunk = try readRaw()
            return chunk.isEmpty ? nil : chunk
        }
        while true {
            if inflater.needsInput {
                if pending.isEmpty { pending = try readRaw() }
                if pending.isEmpty {
                    try inflater.finish()
                    return nil
                }
                inflater.feed(pending)
                pending = []
            }
            let out = try inflater.inflateSome()
            if !out.isEmpty { return out }
        }
    }

    /// The whole (decompressed) content.
    func readAll() throws -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = try next() { all.append(contentsOf: chunk) }
        return all
    }
}

/// zlib's inflate set up for gzip (windowBits 15 + 32: gzip or zlib header, detected), fed raw chunks.
private final class Inflater {
    private let path: String
    private var stream = z_stream()
    private var input: [UInt8] = []
    private var consumed = 0
    /// True between members: the last member ended and no byte of a next one has been seen yet.
    private var atMemberBoundary = false
    private var members = 0
    private var outBuffer = [UInt8](repeating: 0, count: 1 << 18)

    init(path: String) throws {
        self.path = path
        let rc = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        if rc != Z_OK { throw DatasetError(.badGzip, "\(path): cannot initialise zlib (code \(rc))") }
    }

    deinit { inflateEnd(&stream) }

    var needsInput: Bool { consumed >= input.count }

    func feed(_ bytes: [UInt8]) { input = bytes; consumed = 0 }

    /// Inflates from the current input; returns what it produced (possibly empty when it needs more input).
    func inflateSome() throws -> [UInt8] {
        if needsInput { return [] }
        if atMemberBoundary {
            // Another member follows the last one: start afresh on it.
            if inflateReset(&stream) != Z_OK { throw DatasetError(.badGzip, "\(path): cannot reset zlib") }
            atMemberBoundary = false
        }
        let inCount = input.count - consumed
        var rc: Int32 = Z_OK
        var produced = 0
        let outCapacity = outBuffer.count
        input.withUnsafeMutableBufferPointer { inBuf in
            outBuffer.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress! + consumed
                stream.avail_in = UInt32(inCount)
                stream.next_out = outBuf.baseAddress!
                stream.avail_out = UInt32(outCapacity)
                rc = inflate(&stream, Z_NO_FLUSH)
                consumed += inCount - Int(stream.avail_in)
                produced = outCapacity - Int(stream.avail_out)
                // The pointers die with these closures; never leave them dangling in the stream.
                stream.next_in = nil
                stream.next_out = nil
                stream.avail_in = 0
            }
        }
        switch rc {
        case Z_OK, Z_BUF_ERROR:
            break
        case Z_STREAM_END:
            members += 1
            atMemberBoundary = true
        default:
            let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
            let which = members == 0 ? "" : " (after \(members) complete member\(members == 1 ? "" : "s"))"
            throw DatasetError(.badGzip, "\(path): corrupt gzip data\(which): \(reason)")
        }
        return Array(outBuffer[0..<produced])
    }

    /// Called at end of file: the last member must have ended.
    func finish() throws {
        if !atMemberBoundary {
            throw DatasetError(.badGzip, "\(path): truncated gzip data (the file ends inside a compressed member)")
        }
    }
}

/// Splits a byte stream into lines at `\n` (the terminator is not included) and hands each one to `body`
/// with its 1-based line number. A last line without a terminator is still delivered; an empty file has
/// no lines.
func forEachLine(in stream: ByteStream, _ body: (Int, ArraySlice<UInt8>) throws -> Void) throws {
    var carry: [UInt8] = []
    var lineNumber = 0
    while let chunk = try stream.next() {
        var start = 0
        while let nl = chunk[start...].firstIndex(of: 0x0A) {
            lineNumber += 1
            if carry.isEmpty {
                try body(lineNumber, chunk[start..<nl])
            } else {
                carry.append(contentsOf: chunk[start..<nl])
                try body(lineNumber, carry[...])
                carry.removeAll(keepingCapacity: true)
            }
            start = nl + 1
        }
        carry.append(contentsOf: chunk[start...])
    }
    if !carry.isEmpty {
        lineNumber += 1
        try body(lineNumber, carry[...])
    }
}

/// `bytes` as a String, or an error naming the line of the first malformed UTF-8 sequence.
func decodeUTF8(_ bytes: ArraySlice<UInt8>, path: String, firstLine: Int = 1) throws -> String {
    if let s = String(validating: bytes, as: UTF8.self) { return s }
    // Slow path, failures only: find where the malformed sequence starts.
    var parser = Unicode.UTF8.ForwardParser()
    var iterator = bytes.makeIterator()
    var offset = 0
    loop: while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid(let scalar): offset += scalar.count
        case .error(let length): _ = length; break loop
        case .emptyInput: break loop
        }
    }
    let prefix = bytes[bytes.startIndex..<(bytes.startIndex + offset)]
    let line = firstLine + prefix.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    let lineStart = prefix.lastIndex(of: 0x0A).map { $0 + 1 } ?? bytes.startIndex
    let column = bytes.startIndex + offset - lineStart + 1
    throw DatasetError(.invalidUTF8, "\(path): line \(line): invalid UTF-8 at byte \(column) of the line")
}
