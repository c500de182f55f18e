import Foundation
import CBZip2
import JSON

/// A zero-shot data file that is missing or malformed. `description` is one line naming the file and,
/// where there is one, the 1-based line.
public struct ZeroShotDataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(file: String, line: Int? = nil, _ message: String) {
        let oneLine = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        description = line.map { "\(file):\($0): \(oneLine)" } ?? "\(file): \(oneLine)"
    }
}

/// Readers shared by the task types. Files are at most a few MB: they are read whole.
public enum TaskFiles {
    /// `dataDirectory/relative`, or an error naming it when it does not exist.
    public static func locate(_ relative: String, in dataDirectory: URL) throws -> URL {
        let url = dataDirectory.appendingPathComponent(relative)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw ZeroShotDataError(file: url.path, "no such file (is --data-dir the shared data/zeroshot folder?)")
        }
        return url
    }

    /// The file's bytes, bunzipped when they start with the bzip2 magic "BZh".
    public static func bytes(_ url: URL) throws -> [UInt8] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ZeroShotDataError(file: url.path, "cannot read: \(error.localizedDescription)")
        }
        let raw = [UInt8](data)
        if raw.count >= 3 && raw[0] == 0x42 && raw[1] == 0x5A && raw[2] == 0x68 { return try bunzip2(raw, path: url.path) }
        return raw
    }

    /// Lines of a UTF-8 text file, split on "\n" (a final "\r" of a line is dropped; a final newline does
    /// not make an empty last line).
    public static func lines(_ url: URL) throws -> [String] {
        let raw = try bytes(url)
        var out: [String] = []
        var start = 0
        var lineNumber = 1
        func emit(_ end: Int) throws {
            var e = end
            if e > start && raw[e - 1] == 0x0D { e -= 1 }
            guard let s = String(validating: raw[start..<e], as: UTF8.self) else {
                throw ZeroShotDataError(file: url.path, line: lineNumber, "not valid UTF-8")
            }
            out.append(s)
        }
        for i in raw.indices where raw[i] == 0x0A {
            try emit(i)
            start = i + 1
            lineNumber += 1
        }
        if start < raw.count { try emit(raw.count) }
        return out
    }

    /// One JSON object per non-empty line, with its 1-based line number.
    public static func jsonLines(_ url: URL) throws -> [(line: Int, object: JSONObjectLine)] {
        var out: [(line: Int, object: JSONObjectLine)] = []
        for (i, text) in try lines(url).enumerated() where !text.allSatisfy({ $0 == " " || $0 == "\t" }) {
            let value: JSONValue
            do { value = try JSONValue.parse(text) } catch {
                throw ZeroShotDataError(file: url.path, line: i + 1, "\(error)")
            }
            guard case .object = value else {
                throw ZeroShotDataError(file: url.path, line: i + 1, "expected a JSON object, found \(value.rendered())")
            }
            out.append((i + 1, JSONObjectLine(value: value, file: url.path, line: i + 1)))
        }
        if out.isEmpty { throw ZeroShotDataError(file: url.path, "no documents (empty file)") }
        return out
    }

    static func bunzip2(_ input: [UInt8], path: String) throws -> [UInt8] {
        var stream = bz_stream()
        guard BZ2_bzDecompressInit(&stream, 0, 0) == BZ_OK else {
            throw ZeroShotDataError(file: path, "cannot start bzip2 decompression")
        }
        defer { BZ2_bzDecompressEnd(&stream) }
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 6)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var input = input
        var consumed = 0
        while true {
            let rc: Int32 = input.withUnsafeMutableBufferPointer { ip in
                chunk.withUnsafeMutableBufferPointer { cp in
                    ip.baseAddress!.withMemoryRebound(to: CChar.self, capacity: ip.count) { i in
                        cp.baseAddress!.withMemoryRebound(to: CChar.self, capacity: cp.count) { c in
                            stream.next_in = i + consumed
                            stream.avail_in = UInt32(ip.count - consumed)
                            stream.next_out = c
                            stream.avail_out = UInt32(cp.count)
                            let rc = BZ2_bzDecompress(&stream)
                            consumed = ip.count - Int(stream.avail_in)
                            return rc
                        }
                    }
                }
            }
            let produced = chunk.count - Int(stream.avail_out)
            output.append(contentsOf: chunk[0..<produced])
            if rc == BZ_STREAM_END {
                // Concatenated streams (what pbzip2 writes) continue after the first one's end.
                if consumed < input.count {
                    BZ2_bzDecompressEnd(&stream)
                    stream = bz_stream()
                    guard BZ2_bzDecompressInit(&stream, 0, 0) == BZ_OK else {
                        throw ZeroShotDataError(file: path, "cannot restart bzip2 decompression")
                    }
                    continue
                }
                return output
            }
            guard rc == BZ_OK else { throw ZeroShotDataError(file: path, "corrupt bzip2 data (error \(rc))") }
            if produced == 0 && consumed >= input.count {
                throw ZeroShotDataError(file: path, "truncated bzip2 data")
            }
        }
    }
}

/// A JSON object read from one line of a file, with typed field accessors whose errors name the file,
/// the line and the field.
public struct JSONObjectLine {
    public let value: JSONValue
    public let file: String
    public let line: Int

    public func error(_ message: String) -> ZeroShotDataError { ZeroShotDataError(file: file, line: line, message) }

    public func field(_ key: String, in object: JSONValue? = nil) throws -> JSONValue {
        guard let v = (object ?? value)[key] else { throw error("missing field \"\(key)\"") }
        return v
    }

    public func string(_ key: String, in object: JSONValue? = nil) throws -> String {
        let v = try field(key, in: object)
        guard let s = v.stringValue else { throw error("field \"\(key)\" is not a string: \(v.rendered())") }
        return s
    }

    public func bool(_ key: String) throws -> Bool {
        let v = try field(key)
        guard let b = v.boolValue else { throw error("field \"\(key)\" is not a boolean: \(v.rendered())") }
        return b
    }

    public func int(_ key: String) throws -> Int {
        let v = try field(key)
        guard let i = v.intValue else { throw error("field \"\(key)\" is not an integer: \(v.rendered())") }
        return i
    }

    public func array(_ key: String, in object: JSONValue? = nil) throws -> [JSONValue] {
        let v = try field(key, in: object)
        guard let a = v.arrayValue else { throw error("field \"\(key)\" is not an array: \(v.rendered())") }
        return a
    }
}
