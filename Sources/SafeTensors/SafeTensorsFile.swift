import Foundation
import MappedFiles
import JSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's entry in a safetensors header, validated.
public struct TensorInfo: Hashable, Sendable {
    public let name: String
    public let dtype: DType
    /// Dimensions, outermost first; `[]` is a scalar (one element).
    public let shape: [Int]
    /// The product of `shape`.
    public let elementCount: Int
    /// `elementCount × dtype.byteSize`, equal to the span of `dataOffsets`.
    public let byteCount: Int
    /// The tensor's bytes within the data section (the header's `data_offsets`, end exclusive).
    public let dataOffsets: Range<Int>
}

/// A memory-mapped `.safetensors` file, validated strictly when opened.
///
/// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` (plus an optional `__metadata__` string map), then the
/// data section, which the tensors' spans must tile exactly. The file is mapped read-only and never read
/// whole; `floats(_:)` converts one tensor at a time. Reads from several threads at once are safe: nothing
/// mutates after `init`.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The largest header accepted (the reference implementation's bound): a larger length prefix means a
    /// corrupt or hostile file, and would otherwise make us parse gigabytes of "JSON".
    public static let maxHeaderBytes = 100_000_000

    public let url: URL
    /// The header's `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// Tensor names in the order their bytes appear in the data section.
    public let tensorNames: [String]
    /// Size of the whole file in bytes.
    public let fileSize: Int
    /// N, the header's length in bytes (padding included).
    public let headerByteCount: Int

    private let infoByName: [String: TensorInfo]
    private let mapped: MappedFile

    public init(url: URL) throws {
        let path = url.path
        self.url = url
        let file: MappedFile
        do {
            file = try MappedFile(path: path, minimumSize: 8)
        } catch MappedFile.Failure.io(let reason) {
            throw SafeTensorsError(.io, file: path, reason)
        } catch MappedFile.Failure.shorterThanMinimum(let size) {
            throw SafeTensorsError(.truncated, file: path,
                                   "file is \(size) bytes, shorter than the 8-byte header length prefix")
        }
        do {
            let header = try Self.parseHeader(file.bytes, file: path)
            metadata = header.metadata
            tensorNames = header.ordered.map(\.name)
            infoByName = Dictionary(uniqueKeysWithValues: header.ordered.map { ($0.name, $0) })
            headerByteCount = header.headerByteCount
        }
        fileSize = file.bytes.count
        mapped = file
    }


    /// The header entry of `name`, or nil when the file has no such tensor.
    public func info(_ name: String) -> TensorInfo? { infoByName[name] }

    /// All entries, in `tensorNames` order.
    public var infos: [TensorInfo] { tensorNames.compactMap { infoByName[$0] } }

    private var path: String { url.path }

    private func requireInfo(_ name: String) throws -> TensorInfo {
        guard let info = infoByName[name] else {
            throw SafeTensorsError(.noSuchTensor, file: path, tensor: name, "no such tensor in the file")
        }
        return info
    }

    /// Calls `body` with the tensor's bytes as stored (little-endian, row-major), straight from the
    /// mapping. The pointer is valid only during the call and may be unaligned.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try requireInfo(name)
        let start = mapped.bytes.baseAddress! + 8 + headerByteCount + info.dataOffsets.lowerBound
        return try body(UnsafeRawBufferPointer(start: start, count: info.byteCount))
    }

    /// The tensor as float32, converted from F64, F32, F16 or BF16 (F16/BF16 widen exactly; F64 rounds
    /// to nearest). Throws for integer dtypes.
    public func floats(_ name: String) throws -> [Float] {
        let info = try requireInfo(name)
        guard info.dtype.isFloatingPoint else {
            throw SafeTensorsError(.dtypeMismatch, file: path, tensor: name,
                                   "is \(info.dtype.rawValue), not a floating-point dtype; read it with int64s")
        }
        return try withRawBytes(name) { raw in
            [Float](unsafeUninitializedCapacity: info.elementCount) { out, initialized in
                decodeFloats(raw, dtype: info.dtype, into: out)
                initialized = info.elementCount
            }
        }
    }

    /// Converts the tensor to float32 into `buffer`, which must hold exactly `elementCount` floats; lets
    /// a caller fill its own storage without an intermediate array.
    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let info = try requireInfo(name)
        guard info.dtype.isFloatingPoint else {
            throw SafeTensorsError(.dtypeMismatch, file: path, tensor: name,
                                   "is \(info.dtype.rawValue), not a floating-point dtype; read it with int64s")
        }
        guard buffer.count == info.elementCount else {
            throw SafeTensorsError(.invalidArgument, file: path, tensor: name,
                                   "has \(info.elementCount) elements but the buffer holds \(buffer.count)")
        }
        try withRawBytes(name) { decodeFloats($0, dtype: info.dtype, into: buffer) }
    }

    /// The tensor's values as Int64, widened from I64, I32, I16, I8, U8 or BOOL (0/1; any nonzero byte
    /// reads as 1). Throws for floating-point dtypes.
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try requireInfo(name)
        guard !info.dtype.isFloatingPoint else {
            throw SafeTensorsError(.dtypeMismatch, file: path, tensor: name,
                                   "is \(info.dtype.rawValue), not an integer dtype; read it with floats")
        }
        return try withRawBytes(name) { raw in
            [Int64](unsafeUninitializedCapacity: info.elementCount) { out, initialized in
                decodeIntegers(raw, dtype: info.dtype, into: out)
                initialized = info.elementCount
            }
        }
    }

    // MARK: - Header validation

    struct Header {
        var metadata: [String: String]
        var ordered: [TensorInfo]
        var headerByteCount: Int
    }

    /// Parses and validates the header of the whole file `bytes`; every violation throws with `file` and,
    /// when it concerns one entry, the tensor's name.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, file: String) throws -> Header {
        let size = bytes.count
        let n = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        if n > UInt64(maxHeaderBytes) {
            throw SafeTensorsError(.headerTooLarge, file: file,
                                   "header length \(n) exceeds the \(maxHeaderBytes)-byte limit")
        }
        let headerLength = Int(n)
        if headerLength > size - 8 {
            throw SafeTensorsError(.truncated, file: file,
                                   "header length \(headerLength) runs past the end of the file (\(size - 8) bytes follow the length prefix)")
        }
        let dataSize = size - 8 - headerLength

        let json: JSONValue
        do {
            json = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)]))
        } catch let e as JSONSyntaxError {
            throw SafeTensorsError(.invalidHeader, file: file,
                                   "header is not valid JSON: \(e.reason) at byte \(e.offset) of the header")
        }
        guard case let .object(members) = json else {
            throw SafeTensorsError(.invalidHeader, file: file, "header is not a JSON object: \(json.rendered())")
        }

        var metadata: [String: String] = [:]
        var seen = Set<String>()
        var infos: [TensorInfo] = []
        infos.reserveCapacity(members.count)
        for (name, value) in members {
            guard seen.insert(name).inserted else {
                throw SafeTensorsError(.duplicateTensor, file: file, tensor: name, "appears twice in the header")
            }
            if name == "__metadata__" {
                metadata = try parseMetadata(value, file: file)
                continue
            }
            infos.append(try parseEntry(name, value, dataSize: dataSize, file: file))
        }

        // File order: by position in the data section; empty tensors keep header order among equals.
        let ordered = infos.enumerated().sorted {
            ($0.element.dataOffsets.lowerBound, $0.element.dataOffsets.upperBound, $0.offset)
                < ($1.element.dataOffsets.lowerBound, $1.element.dataOffsets.upperBound, $1.offset)
        }.map(\.element)

        // The non-empty spans, in order, must tile [0, dataSize) with neither overlaps nor gaps.
        var covered = 0
        var lastOwner: TensorInfo?
        for info in ordered where !info.dataOffsets.isEmpty {
            let span = info.dataOffsets
            if let owner = lastOwner, span.lowerBound < covered {
                throw SafeTensorsError(.overlap, file: file, tensor: info.name,
                                       "data_offsets \(render(span)) overlap tensor '\(owner.name)' at \(render(owner.dataOffsets))")
            }
            if span.lowerBound > covered {
                throw SafeTensorsError(.uncoveredBytes, file: file,
                                       "data section bytes [\(covered), \(span.lowerBound)) belong to no tensor")
            }
            covered = span.upperBound
            lastOwner = info
        }
        if covered < dataSize {
            throw SafeTensorsError(.uncoveredBytes, file: file,
                                   "data section bytes [\(covered), \(dataSize)) belong to no tensor")
        }
        return Header(metadata: metadata, ordered: ordered, headerByteCount: headerLength)
    }

    private static func render(_ r: Range<Int>) -> String { "[\(r.lowerBound), \(r.upperBound)]" }

    private static func parseMetadata(_ value: JSONValue, file: String) throws -> [String: String] {
        guard case let .object(pairs) = value else {
            throw SafeTensorsError(.invalidMetadata, file: file,
                                   "__metadata__ must be an object of strings, got \(value.rendered())")
        }
        var out: [String: String] = [:]
        for (key, v) in pairs {
            guard case let .string(s) = v else {
                throw SafeTensorsError(.invalidMetadata, file: file,
                                       "__metadata__ value of '\(key)' must be a string, got \(v.rendered())")
            }
            guard out.updateValue(s, forKey: key) == nil else {
                throw SafeTensorsError(.invalidMetadata, file: file, "__metadata__ key '\(key)' appears twice")
            }
        }
        return out
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataSize: Int, file: String) throws -> TensorInfo {
        func fail(_ kind: SafeTensorsError.Kind, _ message: String) -> SafeTensorsError {
            SafeTensorsError(kind, file: file, tensor: name, message)
        }
        guard case let .object(fields) = value else {
            throw fail(.invalidHeader, "entry must be an object with dtype, shape and data_offsets, got \(value.rendered())")
        }
        var dtypeValue: JSONValue?, shapeValue: JSONValue?, offsetsValue: JSONValue?
        for (key, v) in fields {
            switch key {
            case "dtype" where dtypeValue == nil: dtypeValue = v
            case "shape" where shapeValue == nil: shapeValue = v
            case "data_offsets" where offsetsValue == nil: offsetsValue = v
            case "dtype", "shape", "data_offsets": throw fail(.invalidHeader, "key '\(key)' appears twice in its entry")
            default: throw fail(.invalidHeader, "unknown key '\(key)' in its entry")
            }
        }
        guard let dtypeValue else { throw fail(.invalidHeader, "entry has no 'dtype'") }
        guard let shapeValue else { throw fail(.invalidHeader, "entry has no 'shape'") }
        guard let offsetsValue else { throw fail(.invalidHeader, "entry has no 'data_offsets'") }

        guard case let .string(dtypeName) = dtypeValue else {
            throw fail(.unknownDType, "dtype must be a string, got \(dtypeValue.rendered())")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            let known = DType.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail(.unknownDType, "unknown dtype '\(dtypeName)' (supported: \(known))")
        }

        guard case let .array(dims) = shapeValue else {
            throw fail(.invalidShape, "shape must be an array of non-negative integers, got \(shapeValue.rendered())")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var elementCount = 1
        for d in dims {
            guard let v = d.intValue, v >= 0 else {
                throw fail(.invalidShape, "shape must be an array of non-negative integers, got \(shapeValue.rendered())")
            }
            shape.append(v)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: v)
            guard !overflow else { throw fail(.invalidShape, "shape \(shapeValue.rendered()) has too many elements") }
            elementCount = product
        }
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw fail(.invalidShape, "shape \(shapeValue.rendered()) has too many elements") }

        guard case let .array(ends) = offsetsValue, ends.count == 2,
              let begin = ends[0].intValue, let end = ends[1].intValue, begin >= 0, begin <= end
        else {
            throw fail(.invalidOffsets, "data_offsets must be [begin, end] with 0 <= begin <= end, got \(offsetsValue.rendered())")
        }
        guard end <= dataSize else {
            throw fail(.invalidOffsets, "data_offsets [\(begin), \(end)] run past the \(dataSize)-byte data section")
        }
        guard end - begin == byteCount else {
            let shapeText = "[" + shape.map(String.init).joined(separator: ", ") + "]"
            throw fail(.sizeMismatch, "data_offsets [\(begin), \(end)] span \(end - begin) bytes but shape \(shapeText) of \(dtype.rawValue) needs \(byteCount)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, elementCount: elementCount,
                          byteCount: byteCount, dataOffsets: begin..<end)
    }
}

// MARK: - Element decoding

/// float32 values of all 65,536 binary16 bit patterns: a lookup is several times faster than the
/// software conversion Swift emits for `Float16` → `Float` on x86-64 without F16C.
let float16Table: [Float] = (0...UInt16.max).map { Float(f16Bits: $0) }

/// Tensors at least this large are converted on several threads (each thread also takes its share of
/// the page faults of the mapping).
let parallelConversionThreshold = 1 << 20

/// Converts `raw` (little-endian elements of a floating-point `dtype`, possibly unaligned) to float32.
func decodeFloats(_ raw: UnsafeRawBufferPointer, dtype: DType, into out: UnsafeMutableBufferPointer<Float>) {
    let n = out.count
    guard n > 0, let dst = out.baseAddress, let src = raw.baseAddress else { return }
    let threads = n >= parallelConversionThreshold ? min(ProcessInfo.processInfo.activeProcessorCount, 16) : 1
    let chunk = (n + threads - 1) / threads
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        let range = (t * chunk)..<min(n, (t + 1) * chunk)
        if !range.isEmpty { decodeFloats(src, dtype: dtype, into: dst, range: range) }
    }
}

private func decodeFloats(_ src: UnsafeRawPointer, dtype: DType, into dst: UnsafeMutablePointer<Float>, range: Range<Int>) {
    switch dtype {
    case .F32:
        #if _endian(little)
        UnsafeMutableRawPointer(dst + range.lowerBound)
            .copyMemory(from: src + 4 * range.lowerBound, byteCount: 4 * range.count)
        #else
        for i in range {
            dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        }
        #endif
    case .F16:
        float16Table.withUnsafeBufferPointer { table in
            for i in range {
                dst[i] = table[Int(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))]
            }
        }
    case .BF16:
        for i in range {
            dst[i] = Float(bf16Bits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    case .F64:
        for i in range {
            dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        }
    case .I64, .I32, .I16, .I8, .U8, .BOOL:
        // Callers check the dtype first; integer tensors are not converted to floats here.
        (dst + range.lowerBound).update(repeating: .nan, count: range.count)
    }
}

/// Widens `raw` (little-endian elements of an integer `dtype`, possibly unaligned) to Int64.
func decodeIntegers(_ raw: UnsafeRawBufferPointer, dtype: DType, into out: UnsafeMutableBufferPointer<Int64>) {
    let n = out.count
    guard n > 0, let dst = out.baseAddress else { return }
    switch dtype {
    case .I64:
        for i in 0..<n { dst[i] = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
    case .I32:
        for i in 0..<n { dst[i] = Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
    case .I16:
        for i in 0..<n { dst[i] = Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
    case .I8:
        for i in 0..<n { dst[i] = Int64(raw.load(fromByteOffset: i, as: Int8.self)) }
    case .U8:
        for i in 0..<n { dst[i] = Int64(raw[i]) }
    case .BOOL:
        for i in 0..<n { dst[i] = raw[i] == 0 ? 0 : 1 }
    case .F64, .F32, .F16, .BF16:
        out.update(repeating: 0)
    }
}
