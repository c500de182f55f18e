import Foundation
import MappedFiles
import JSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor's name, dtype and shape: all the header needs, before any data exists.
public struct TensorSpec: Hashable, Sendable {
    public var name: String
    public var dtype: DType
    /// Dimensions, outermost first; `[]` is a scalar.
    public var shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    /// The product of `shape`, or nil when a dimension is negative or the product overflows.
    public var elementCount: Int? {
        checkedElementCount(shape)
    }

    /// `elementCount × dtype.byteSize`, or nil when that is not a valid size.
    public var byteCount: Int? {
        guard let n = elementCount else { return nil }
        let (b, overflow) = n.multipliedReportingOverflow(by: dtype.byteSize)
        return overflow ? nil : b
    }
}

/// The values of one tensor to write, in row-major order.
public enum TensorData: Sendable {
    /// float32 values, stored in the spec's floating-point dtype (F16/BF16 round to nearest even, F64
    /// widens exactly).
    case floats([Float])
    /// Integer values, stored in the spec's integer dtype; each must fit it (BOOL: 0 or 1).
    case int64s([Int64])
    /// Bytes exactly as stored (little-endian elements of the spec's dtype), e.g. copied from another
    /// file with `withRawBytes`; the count must be the spec's `byteCount`.
    case bytes([UInt8])
}

/// A tensor to write: its spec and its values.
public struct TensorEntry: Sendable {
    public var spec: TensorSpec
    public var data: TensorData

    public init(spec: TensorSpec, data: TensorData) {
        self.spec = spec
        self.data = data
    }

    public init(name: String, dtype: DType, shape: [Int], data: TensorData) {
        self.init(spec: TensorSpec(name: name, dtype: dtype, shape: shape), data: data)
    }
}

/// Writes `.safetensors` files and sharded sets.
///
/// Every file is written to a hidden temporary file in the destination folder, flushed to disk, then
/// renamed over the destination, so a reader never sees a half-written file. The header is compact JSON
/// (`__metadata__` first when not empty, then the tensors in the order given, their data laid out in that
/// order), padded with spaces so the data section starts at a multiple of 8 bytes.
public enum SafeTensorsWriter {
    /// Writes `entries` into one file.
    public static func write(_ entries: [TensorEntry], metadata: [String: String] = [:], to url: URL) throws {
        var byName: [String: TensorData] = [:]
        for entry in entries { byName[entry.spec.name] = entry.data }
        try write(entries.map(\.spec), metadata: metadata, to: url) { spec in byName[spec.name] ?? .bytes([]) }
    }

    /// Writes one file whose tensors are `specs`, asking `data` for each tensor's values in `specs` order,
    /// one at a time, so a whole model never needs to sit in memory at once.
    public static func write(_ specs: [TensorSpec], metadata: [String: String] = [:], to url: URL,
                             data: (TensorSpec) throws -> TensorData) throws {
        let path = url.path
        let header = try headerBytes(specs, metadata: metadata, file: path)
        try writeAtomically(to: url) { sink in
            try sink.write(header)
            for spec in specs {
                try encode(try data(spec), as: spec, file: path) { try sink.write($0) }
            }
        }
    }

    /// Writes a sharded checkpoint into `directory`: each tensor goes to the file `shardOf[name]` names
    /// (shards in file-name order, tensors within a shard in `specs` order; `data` is called in that
    /// order), every shard carries `metadata`, and `model.safetensors.index.json` is written last with
    /// `{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}`. Returns the shard file names.
    @discardableResult
    public static func writeSharded(_ specs: [TensorSpec], shardOf: [String: String],
                                    metadata: [String: String] = [:], to directory: URL,
                                    data: (TensorSpec) throws -> TensorData) throws -> [String] {
        let dirPath = directory.path
        var groups: [String: [TensorSpec]] = [:]
        var totalSize = 0
        for spec in specs {
            guard let file = shardOf[spec.name] else {
                throw SafeTensorsError(.invalidArgument, file: dirPath, tensor: spec.name, "has no shard assigned")
            }
            guard file.hasSuffix(".safetensors"), !file.contains("/"), !file.hasPrefix(".") else {
                throw SafeTensorsError(.invalidArgument, file: dirPath, tensor: spec.name,
                                       "shard name '\(file)' must be a plain file name ending in .safetensors")
            }
            guard let bytes = spec.byteCount else {
                throw SafeTensorsError(.invalidArgument, file: dirPath, tensor: spec.name, "invalid shape \(spec.shape)")
            }
            totalSize += bytes
            groups[file, default: []].append(spec)
        }
        let shardNames = groups.keys.sorted()
        // Check every header before writing any file, so a bad argument leaves the folder untouched.
        for name in shardNames {
            _ = try headerBytes(groups[name]!, metadata: metadata, file: directory.appendingPathComponent(name).path)
        }
        for name in shardNames {
            try write(groups[name]!, metadata: metadata, to: directory.appendingPathComponent(name), data: data)
        }
        let weightMap = specs.map(\.name).sorted().map { "\(jsonQuoted($0)): \(jsonQuoted(shardOf[$0]!))" }
        let index = "{\n  \"metadata\": {\"total_size\": \(totalSize)},\n  \"weight_map\": {\n    "
            + weightMap.joined(separator: ",\n    ") + "\n  }\n}\n"
        try writeAtomically(to: directory.appendingPathComponent(SafeTensorsCheckpoint.indexFileName)) { sink in
            try sink.write(Array(index.utf8))
        }
        return shardNames
    }

    /// Hugging Face's shard file name: `shardFileName(1, of: 3)` is `model-00001-of-00003.safetensors`.
    public static func shardFileName(_ number: Int, of count: Int) -> String {
        func pad(_ n: Int) -> String {
            let s = String(n)
            return s.count >= 5 ? s : String(repeating: "0", count: 5 - s.count) + s
        }
        return "model-\(pad(number))-of-\(pad(count)).safetensors"
    }

    // MARK: - Header

    /// The length prefix and padded header JSON for `specs`, after checking that names are unique and
    /// shapes valid.
    static func headerBytes(_ specs: [TensorSpec], metadata: [String: String], file: String) throws -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }
            json += "\"__metadata__\":{" + pairs.joined(separator: ",") + "}"
            first = false
        }
        var seen = Set<String>()
        var offset = 0
        for spec in specs {
            guard spec.name != "__metadata__" else {
                throw SafeTensorsError(.invalidArgument, file: file, tensor: spec.name, "name is reserved for metadata")
            }
            guard seen.insert(spec.name).inserted else {
                throw SafeTensorsError(.duplicateTensor, file: file, tensor: spec.name, "given twice")
            }
            guard let bytes = spec.byteCount else {
                throw SafeTensorsError(.invalidArgument, file: file, tensor: spec.name,
                                       "invalid shape \(spec.shape): dimensions must be non-negative and the size must fit")
            }
            let shape = spec.shape.map(String.init).joined(separator: ",")
            json += (first ? "" : ",")
                + "\(jsonQuoted(spec.name)):{\"dtype\":\"\(spec.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            first = false
            offset += bytes
        }
        json += "}"
        var header = Array(json.utf8)
        // Pad so the data section (after the 8-byte prefix) starts 8-byte aligned.
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        return out
    }

    // MARK: - Encoding

    /// Converts `data` to the stored bytes of `spec` and hands them to `emit` (possibly in pieces).
    static func encode(_ data: TensorData, as spec: TensorSpec, file: String,
                       emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        func fail(_ message: String) -> SafeTensorsError {
            SafeTensorsError(.invalidArgument, file: file, tensor: spec.name, message)
        }
        let count = spec.elementCount ?? -1
        switch data {
        case let .bytes(bytes):
            guard bytes.count == spec.byteCount else {
                throw fail("\(bytes.count) bytes given but shape \(spec.shape) of \(spec.dtype.rawValue) needs \(spec.byteCount ?? -1)")
            }
            try bytes.withUnsafeBytes(emit)
        case let .floats(values):
            guard spec.dtype.isFloatingPoint else {
                throw fail("float values given for integer dtype \(spec.dtype.rawValue)")
            }
            guard values.count == count else {
                throw fail("\(values.count) values given but shape \(spec.shape) has \(count) elements")
            }
            switch spec.dtype {
            case .F32:
                #if _endian(little)
                try values.withUnsafeBytes(emit)
                #else
                try [UInt32](values.map { $0.bitPattern.littleEndian }).withUnsafeBytes(emit)
                #endif
            case .F16:
                try [UInt16](unsafeUninitializedCapacity: count) { out, n in
                    for i in 0..<count { out[i] = f16Bits(from: values[i]).littleEndian }
                    n = count
                }.withUnsafeBytes(emit)
            case .BF16:
                try [UInt16](unsafeUninitializedCapacity: count) { out, n in
                    for i in 0..<count { out[i] = bf16Bits(from: values[i]).littleEndian }
                    n = count
                }.withUnsafeBytes(emit)
            case .F64:
                try values.map { Double($0).bitPattern.littleEndian }.withUnsafeBytes(emit)
            case .I64, .I32, .I16, .I8, .U8, .BOOL:
                break  // excluded by the guard above
            }
        case let .int64s(values):
            guard let range = spec.dtype.integerRange else {
                throw fail("integer values given for floating-point dtype \(spec.dtype.rawValue)")
            }
            guard values.count == count else {
                throw fail("\(values.count) values given but shape \(spec.shape) has \(count) elements")
            }
            if let i = values.firstIndex(where: { !range.contains($0) }) {
                throw fail("value \(values[i]) at index \(i) does not fit \(spec.dtype.rawValue) (\(range.lowerBound)...\(range.upperBound))")
            }
            switch spec.dtype {
            case .I64: try values.map { $0.littleEndian }.withUnsafeBytes(emit)
            case .I32: try values.map { Int32(truncatingIfNeeded: $0).littleEndian }.withUnsafeBytes(emit)
            case .I16: try values.map { Int16(truncatingIfNeeded: $0).littleEndian }.withUnsafeBytes(emit)
            case .I8: try values.map { Int8(truncatingIfNeeded: $0) }.withUnsafeBytes(emit)
            case .U8, .BOOL: try values.map { UInt8(truncatingIfNeeded: $0) }.withUnsafeBytes(emit)
            case .F64, .F32, .F16, .BF16: break  // excluded by integerRange above
            }
        }
    }

    // MARK: - Atomic file output

    /// Appends bytes to an open file descriptor.
    struct Sink {
        let fd: Int32
        let path: String

        func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

        func write(_ buffer: UnsafeRawBufferPointer) throws {
            guard var p = buffer.baseAddress else { return }
            var left = buffer.count
            while left > 0 {
                let n = SafeTensorsWriter.systemWrite(fd, p, left)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError(.io, file: path, "write failed: \(String(cString: strerror(errno)))")
                }
                p += n
                left -= n
            }
        }
    }

    #if canImport(Glibc)
    private static let systemWrite = Glibc.write
    #else
    private static let systemWrite = Darwin.write
    #endif

    /// Runs `body` on a hidden temporary file beside `url`, flushes it, and renames it to `url`; on any
    /// error the temporary file is removed and `url` is left as it was.
    static func writeAtomically(to url: URL, _ body: (Sink) throws -> Void) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent().path
        let temp = folder + "/." + url.lastPathComponent + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SafeTensorsError(.io, file: path, "cannot create a temporary file in \(folder): \(String(cString: strerror(errno)))")
        }
        var closed = false
        do {
            try body(Sink(fd: fd, path: path))
            guard fsync(fd) == 0 else {
                throw SafeTensorsError(.io, file: path, "cannot flush to disk: \(String(cString: strerror(errno)))")
            }
            closed = true
            guard close(fd) == 0 else {
                throw SafeTensorsError(.io, file: path, "cannot close: \(String(cString: strerror(errno)))")
            }
            guard rename(temp, path) == 0 else {
                throw SafeTensorsError(.io, file: path, "cannot rename the temporary file into place: \(String(cString: strerror(errno)))")
            }
        } catch {
            if !closed { close(fd) }
            unlink(temp)
            throw error
        }
    }
}
