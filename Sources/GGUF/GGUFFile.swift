import Foundation
import MappedFiles
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's entry in a GGUF file, validated.
public struct GGUFTensorInfo: Hashable, Sendable {
    public let name: String
    public let type: GGMLType
    /// Dimensions as the file lists them: innermost (the row, contiguous in memory) first.
    public let dimensions: [Int]
    /// Dimensions outermost first (row-major, as PyTorch and safetensors write them): `dimensions` reversed.
    /// A GGUF `[576, 1536]` (ne0 = 576) is a `[1536, 576]` matrix of 1536 rows.
    public var shape: [Int] { dimensions.reversed() }
    /// The product of the dimensions.
    public let elementCount: Int
    /// The bytes the tensor occupies: rows × blocks per row × bytes per block.
    public let byteCount: Int
    /// Where the bytes start, relative to the data section (a multiple of the file's alignment).
    public let offset: Int
    /// The row length (`dimensions[0]`, or 1 for a tensor without dimensions).
    public var rowLength: Int { dimensions.first ?? 1 }
}

/// A memory-mapped GGUF file (versions 2 and 3, little-endian), validated strictly when opened.
///
/// Layout: `GGUF`, version (u32), tensor count (u64), metadata count (u64); the metadata key/value pairs
/// (key: u64 length + UTF-8; value: u32 type tag + value; arrays: element type, u64 count, elements);
/// the tensor infos (name, u32 dimension count, u64 dimensions innermost first, u32 ggml type, u64 offset);
/// padding to `general.alignment` (default 32); the data section. Every length and count is checked
/// against the bytes that remain before anything is allocated; every tensor's span must lie inside the
/// data section, aligned, and overlap no other. The file is never read whole: `floats(_:)` dequantizes one
/// tensor at a time straight from the mapping. Reads from several threads at once are safe.
public final class GGUFFile: @unchecked Sendable {
    /// The default alignment of tensor data (when `general.alignment` is absent).
    public static let defaultAlignment = 32
    /// Arrays nest at most this deep (a hostile file could otherwise recurse until the stack overflows).
    public static let maxNesting = 8
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4

    public let url: URL
    /// 2 or 3.
    public let version: Int
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Metadata by key.
    public let metadata: [String: GGUFValue]
    /// Tensor names in the order of their infos in the file.
    public let tensorNames: [String]
    /// `general.alignment`, or 32.
    public let alignment: Int
    /// Where the data section starts, from the beginning of the file.
    public let dataOffset: Int
    /// Size of the whole file in bytes.
    public let fileSize: Int

    private let infoByName: [String: GGUFTensorInfo]
    private let mapped: MappedFile

    public init(url: URL) throws {
        let path = url.path
        self.url = url
        let file: MappedFile
        do {
            file = try MappedFile(path: path, minimumSize: 24)
        } catch MappedFile.Failure.io(let reason) {
            throw GGUFError(.io, file: path, reason)
        } catch MappedFile.Failure.shorterThanMinimum(let size) {
            throw GGUFError(.truncated, file: path, "file is \(size) bytes, shorter than the 24-byte GGUF header")
        }
        do {
            let header = try Self.parse(file.bytes, file: path)
            version = header.version
            metadataKeys = header.keys
            metadata = header.metadata
            tensorNames = header.infos.map(\.name)
            infoByName = Dictionary(uniqueKeysWithValues: header.infos.map { ($0.name, $0) })
            alignment = header.alignment
            dataOffset = header.dataOffset
        }
        fileSize = file.bytes.count
        mapped = file
    }


    private var path: String { url.path }

    /// The info of `name`, or nil when the file has no such tensor.
    public func info(_ name: String) -> GGUFTensorInfo? { infoByName[name] }

    /// All infos, in file order.
    public var infos: [GGUFTensorInfo] { tensorNames.compactMap { infoByName[$0] } }

    func requireInfo(_ name: String) throws -> GGUFTensorInfo {
        guard let info = infoByName[name] else {
            throw GGUFError(.notFound, file: path, tensor: name, "no such tensor in the file")
        }
        return info
    }

    /// Calls `body` with the tensor's bytes as stored, straight from the mapping (valid only during the call).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try requireInfo(name)
        let start = mapped.bytes.baseAddress! + dataOffset + info.offset
        return try body(UnsafeRawBufferPointer(start: start, count: info.byteCount))
    }

    /// The tensor dequantized to float32, row-major (outermost dimension first, as `shape`).
    public func floats(_ name: String) throws -> [Float] {
        let info = try requireInfo(name)
        try checkDequantizable(info)
        return try [Float](unsafeUninitializedCapacity: info.elementCount) { out, initialized in
            try withRawBytes(name) { GGUFDequantizer.dequantize($0, type: info.type, rowLength: info.rowLength, into: out) }
            initialized = info.elementCount
        }
    }

    /// Dequantizes the tensor into `buffer`, which must hold exactly `elementCount` floats.
    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let info = try requireInfo(name)
        try checkDequantizable(info)
        guard buffer.count == info.elementCount else {
            throw GGUFError(.invalidArgument, file: path, tensor: name,
                            "has \(info.elementCount) elements but the buffer holds \(buffer.count)")
        }
        try withRawBytes(name) { GGUFDequantizer.dequantize($0, type: info.type, rowLength: info.rowLength, into: buffer) }
    }

    private func checkDequantizable(_ info: GGUFTensorInfo) throws {
        guard info.type.isDequantizable else {
            let supported = GGMLType.allCases.filter(\.isDequantizable).map(\.description).joined(separator: ", ")
            throw GGUFError(.unsupportedType, file: path, tensor: info.name,
                            "is \(info.type), which cannot be converted to float32 (supported: \(supported))")
        }
    }

    // MARK: - Metadata helpers

    /// The metadata value of `key`, or nil.
    public subscript(key: String) -> GGUFValue? { metadata[key] }

    /// `key` as a string; throws when absent or of another type.
    public func string(_ key: String) throws -> String {
        guard let v = metadata[key] else { throw GGUFError(.notFound, file: path, key: key, "missing") }
        guard let s = v.string else { throw GGUFError(.invalidMetadata, file: path, key: key, "is \(v.type), expected a string") }
        return s
    }

    /// `key` as an integer (any integer type); nil when absent, throws when of another type.
    public func int(_ key: String) throws -> Int? {
        guard let v = metadata[key] else { return nil }
        guard let i = v.int else { throw GGUFError(.invalidMetadata, file: path, key: key, "is \(v.type) \(v.summary), expected an integer") }
        return i
    }

    /// `key` as a number (float or integer); nil when absent, throws when of another type.
    public func double(_ key: String) throws -> Double? {
        guard let v = metadata[key] else { return nil }
        guard let d = v.double else { throw GGUFError(.invalidMetadata, file: path, key: key, "is \(v.type) \(v.summary), expected a number") }
        return d
    }

    /// `key` as a boolean; nil when absent, throws when of another type.
    public func bool(_ key: String) throws -> Bool? {
        guard let v = metadata[key] else { return nil }
        guard let b = v.bool else { throw GGUFError(.invalidMetadata, file: path, key: key, "is \(v.type) \(v.summary), expected a boolean") }
        return b
    }

    // MARK: - Parsing

    struct Header {
        var version: Int
        var keys: [String]
        var metadata: [String: GGUFValue]
        var infos: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    /// A bounds-checked little-endian reader over the mapped file.
    struct Reader {
        let bytes: UnsafeRawBufferPointer
        let file: String
        var offset = 0
        /// What is being read, for messages ("tensor count", "key 'x'").
        var context = "header"

        var remaining: Int { bytes.count - offset }

        mutating func need(_ n: Int, _ what: String) throws {
            guard n >= 0, n <= remaining else {
                throw GGUFError(.truncated, file: file, "\(what) at byte \(offset) needs \(n) bytes, only \(remaining) remain")
            }
        }

        mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
            try need(MemoryLayout<T>.size, what)
            let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
            offset += MemoryLayout<T>.size
            return v
        }

        /// A u64 that must be a count or size representable as Int.
        mutating func count(_ what: String) throws -> Int {
            let v = try load(UInt64.self, what)
            guard v <= UInt64(Int.max) else {
                throw GGUFError(.truncated, file: file, "\(what) \(v) is larger than any file")
            }
            return Int(v)
        }

        /// A string: u64 length, then that many bytes of UTF-8 (bounded by the bytes that remain).
        mutating func string(_ what: String, key: String? = nil, tensor: String? = nil) throws -> String {
            let n = try load(UInt64.self, "length of \(what)")
            guard n <= UInt64(remaining) else {
                throw GGUFError(.truncated, file: file, tensor: tensor, key: key,
                                "\(what) at byte \(offset - 8) is \(n) bytes long but only \(remaining) bytes remain")
            }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(n))])
            guard let s = String(validating: raw, as: UTF8.self) else {
                throw GGUFError(.invalidMetadata, file: file, tensor: tensor, key: key, "\(what) at byte \(offset) is not valid UTF-8")
            }
            offset += Int(n)
            return s
        }
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, file: String) throws -> Header {
        var r = Reader(bytes: bytes, file: file)
        let magic = try r.load(UInt32.self, "magic")
        guard magic == 0x4655_4747 else {   // "GGUF" read little-endian
            let shown = (0..<4).map { String(format: "%02x", bytes[$0]) }.joined(separator: " ")
            throw GGUFError(.badMagic, file: file, "not a GGUF file (first bytes \(shown), expected 47 47 55 46 'GGUF')")
        }
        let version = try r.load(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            if version.byteSwapped == 2 || version.byteSwapped == 3 {
                throw GGUFError(.unsupportedVersion, file: file, "big-endian GGUF files are not supported")
            }
            throw GGUFError(.unsupportedVersion, file: file, "GGUF version \(version) is not supported (supported: 2, 3)")
        }
        let tensorCount = try r.count("tensor count")
        let kvCount = try r.count("metadata count")
        // A key/value pair takes at least 13 bytes (empty key, type, one-byte value); a tensor info at least 24.
        guard kvCount <= r.remaining / 13 else {
            throw GGUFError(.truncated, file: file, "metadata count \(kvCount) cannot fit in the \(r.remaining) bytes that remain")
        }
        guard tensorCount <= r.remaining / 24 else {
            throw GGUFError(.truncated, file: file, "tensor count \(tensorCount) cannot fit in the \(r.remaining) bytes that remain")
        }

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(kvCount)
        for i in 0..<kvCount {
            let key = try r.string("metadata key #\(i)")
            let tag = try r.load(UInt32.self, "type of key '\(GGUFError.clip(key))'")
            let value = try readValue(&r, tag: tag, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw GGUFError(.duplicateKey, file: file, key: key, "appears twice in the metadata")
            }
            keys.append(key)
        }

        var alignment = defaultAlignment
        if let a = metadata["general.alignment"] {
            guard case let .uint32(v) = a else {
                throw GGUFError(.invalidMetadata, file: file, key: "general.alignment", "must be a UINT32, got \(a.type)")
            }
            guard v > 0, v & (v - 1) == 0 else {
                throw GGUFError(.invalidMetadata, file: file, key: "general.alignment", "\(v) is not a power of two")
            }
            alignment = Int(v)
        }

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(tensorCount)
        var seen = Set<String>()
        for i in 0..<tensorCount {
            let name = try r.string("name of tensor #\(i)")
            guard seen.insert(name).inserted else {
                throw GGUFError(.duplicateTensor, file: file, tensor: name, "appears twice in the tensor infos")
            }
            infos.append(try readTensorInfo(&r, name: name, file: file))
        }
        let (padded, overflow) = r.offset.addingReportingOverflow(alignment - 1)
        let dataOffset = overflow ? Int.max : padded / alignment * alignment
        if dataOffset > bytes.count && !infos.isEmpty {
            throw GGUFError(.truncated, file: file,
                            "the data section would start at byte \(dataOffset), past the end of the \(bytes.count)-byte file")
        }
        let dataSize = max(0, bytes.count - dataOffset)

        // Spans: aligned, inside the data section, pairwise disjoint.
        for info in infos {
            guard info.offset % alignment == 0 else {
                throw GGUFError(.invalidOffset, file: file, tensor: info.name,
                                "offset \(info.offset) is not a multiple of the alignment \(alignment)")
            }
            let (end, o) = info.offset.addingReportingOverflow(info.byteCount)
            guard !o, end <= dataSize else {
                throw GGUFError(.invalidOffset, file: file, tensor: info.name,
                                "bytes [\(info.offset), \(info.offset) + \(info.byteCount)) run past the \(dataSize)-byte data section")
            }
        }
        let ordered = infos.filter { $0.byteCount > 0 }.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.offset < a.offset + a.byteCount {
            throw GGUFError(.overlap, file: file, tensor: b.name,
                            "bytes [\(b.offset), \(b.offset + b.byteCount)) overlap tensor '\(GGUFError.clip(a.name))' at [\(a.offset), \(a.offset + a.byteCount))")
        }
        return Header(version: Int(version), keys: keys, metadata: metadata, infos: infos,
                      alignment: alignment, dataOffset: dataOffset)
    }

    private static func readTensorInfo(_ r: inout Reader, name: String, file: String) throws -> GGUFTensorInfo {
        func fail(_ kind: GGUFError.Kind, _ message: String) -> GGUFError {
            GGUFError(kind, file: file, tensor: name, message)
        }
        let nDims = try r.load(UInt32.self, "dimension count of tensor '\(GGUFError.clip(name))'")
        guard nDims <= UInt32(maxDimensions) else {
            throw fail(.invalidShape, "has \(nDims) dimensions (at most \(maxDimensions))")
        }
        var dims: [Int] = []
        var elements = 1
        for _ in 0..<Int(nDims) {
            let d = try r.load(UInt64.self, "dimensions of tensor '\(GGUFError.clip(name))'")
            guard d <= UInt64(Int64.max) else { throw fail(.invalidShape, "dimension \(d) is too large") }
            dims.append(Int(d))
            let (p, o) = elements.multipliedReportingOverflow(by: Int(d))
            guard !o else { throw fail(.invalidShape, "dimensions \(dims) have too many elements") }
            elements = p
        }
        let typeID = try r.load(UInt32.self, "type of tensor '\(GGUFError.clip(name))'")
        guard let type = GGMLType(rawValue: typeID) else {
            throw fail(.unknownType, "unknown ggml type id \(typeID)")
        }
        let offset = try r.load(UInt64.self, "offset of tensor '\(GGUFError.clip(name))'")
        guard offset <= UInt64(Int.max) else { throw fail(.invalidOffset, "offset \(offset) is larger than any file") }
        let rowLength = dims.first ?? 1
        guard let rowBytes = type.rowBytes(rowLength) else {
            throw fail(.invalidShape, "row length \(rowLength) is not a multiple of the \(type) block size \(type.blockSize)")
        }
        let rows = rowLength == 0 ? 0 : elements / rowLength
        let (bytes, o) = rows.multipliedReportingOverflow(by: rowBytes)
        guard !o else { throw fail(.invalidShape, "dimensions \(dims) of \(type) need too many bytes") }
        return GGUFTensorInfo(name: name, type: type, dimensions: dims, elementCount: elements,
                              byteCount: bytes, offset: Int(offset))
    }

    private static func readValue(_ r: inout Reader, tag: UInt32, key: String, depth: Int) throws -> GGUFValue {
        guard let type = GGUFValueType(rawValue: tag) else {
            throw GGUFError(.invalidMetadata, file: r.file, key: key, "unknown value type \(tag)")
        }
        let what = "value of key '\(GGUFError.clip(key))'"
        switch type {
        case .uint8: return .uint8(try r.load(UInt8.self, what))
        case .int8: return .int8(try r.load(Int8.self, what))
        case .uint16: return .uint16(try r.load(UInt16.self, what))
        case .int16: return .int16(try r.load(Int16.self, what))
        case .uint32: return .uint32(try r.load(UInt32.self, what))
        case .int32: return .int32(try r.load(Int32.self, what))
        case .float32: return .float32(Float(bitPattern: try r.load(UInt32.self, what)))
        case .bool: return .bool(try readBool(&r, key: key))
        case .string: return .string(try r.string(what, key: key))
        case .uint64: return .uint64(try r.load(UInt64.self, what))
        case .int64: return .int64(try r.load(Int64.self, what))
        case .float64: return .float64(Double(bitPattern: try r.load(UInt64.self, what)))
        case .array: return .array(try readArray(&r, key: key, depth: depth + 1))
        }
    }

    private static func readBool(_ r: inout Reader, key: String) throws -> Bool {
        let b = try r.load(UInt8.self, "value of key '\(GGUFError.clip(key))'")
        guard b <= 1 else {
            throw GGUFError(.invalidMetadata, file: r.file, key: key, "boolean byte \(b) is neither 0 nor 1")
        }
        return b == 1
    }

    private static func readArray(_ r: inout Reader, key: String, depth: Int) throws -> GGUFArray {
        guard depth <= maxNesting else {
            throw GGUFError(.invalidMetadata, file: r.file, key: key, "arrays nest deeper than \(maxNesting) levels")
        }
        let tag = try r.load(UInt32.self, "array type of key '\(GGUFError.clip(key))'")
        guard let type = GGUFValueType(rawValue: tag) else {
            throw GGUFError(.invalidMetadata, file: r.file, key: key, "unknown array element type \(tag)")
        }
        let n = try r.load(UInt64.self, "array count of key '\(GGUFError.clip(key))'")
        guard n <= UInt64(r.remaining / type.minimumSize) else {
            throw GGUFError(.truncated, file: r.file, key: key,
                            "array of \(n) \(type) values cannot fit in the \(r.remaining) bytes that remain")
        }
        let count = Int(n)
        func fixed<T: FixedWidthInteger>(_: T.Type) throws -> [T] {
            let size = MemoryLayout<T>.size
            try r.need(count * size, "array of key '\(GGUFError.clip(key))'")
            let base = r.offset
            let out = [T](unsafeUninitializedCapacity: count) { p, initialized in
                for i in 0..<count { p[i] = T(littleEndian: r.bytes.loadUnaligned(fromByteOffset: base + i * size, as: T.self)) }
                initialized = count
            }
            r.offset += count * size
            return out
        }
        switch type {
        case .uint8: return .uint8(try fixed(UInt8.self))
        case .int8: return .int8(try fixed(Int8.self))
        case .uint16: return .uint16(try fixed(UInt16.self))
        case .int16: return .int16(try fixed(Int16.self))
        case .uint32: return .uint32(try fixed(UInt32.self))
        case .int32: return .int32(try fixed(Int32.self))
        case .float32: return .float32(try fixed(UInt32.self).map { Float(bitPattern: $0) })
        case .bool:
            var out: [Bool] = []
            out.reserveCapacity(count)
            for _ in 0..<count { out.append(try readBool(&r, key: key)) }
            return .bool(out)
        case .string:
            var out: [String] = []
            out.reserveCapacity(count)
            for i in 0..<count { out.append(try r.string("string #\(i) of key '\(GGUFError.clip(key))'", key: key)) }
            return .string(out)
        case .uint64: return .uint64(try fixed(UInt64.self))
        case .int64: return .int64(try fixed(Int64.self))
        case .float64: return .float64(try fixed(UInt64.self).map { Double(bitPattern: $0) })
        case .array:
            var out: [GGUFArray] = []
            out.reserveCapacity(count)
            for _ in 0..<count { out.append(try readArray(&r, key: key, depth: depth + 1)) }
            return .array(out)
        }
    }
}
