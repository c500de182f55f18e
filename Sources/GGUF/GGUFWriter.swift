import Foundation
import MappedFiles
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor to write into a GGUF file: its name, the type to store, and its row-major shape.
public struct GGUFTensorSpec: Sendable {
    public var name: String
    public var type: GGMLType
    /// Dimensions outermost first (row-major); written innermost first as GGUF lists them.
    public var shape: [Int]

    public init(name: String, type: GGMLType, shape: [Int]) {
        self.name = name
        self.type = type
        self.shape = shape
    }

    /// Elements, or nil when a dimension is negative or the product overflows.
    public var elementCount: Int? {
        checkedElementCount(shape)
    }

    /// Bytes in the file, or nil when the row length is not a multiple of the type's block size.
    public var byteCount: Int? {
        guard let n = elementCount, let row = type.rowBytes(shape.last ?? 1) else { return nil }
        let rowLength = shape.last ?? 1
        return rowLength == 0 ? 0 : (n / rowLength) * row
    }
}

/// The values of one tensor to write.
public enum GGUFTensorData {
    /// float32 values, row-major, encoded into the spec's type (F32, F16, BF16 or Q8_0).
    case floats([Float])
    /// The bytes exactly as stored (e.g. copied from another GGUF file); the count must be the spec's `byteCount`.
    case bytes([UInt8])
}

/// Writes GGUF version 3 files (little-endian).
///
/// The file is written to a hidden temporary file beside the destination, flushed, then renamed over it,
/// so a reader never sees a half-written file. Tensors are asked for one at a time through `data`, so a
/// model is never held whole. Each tensor's data starts at a multiple of `general.alignment` (32 unless
/// the metadata sets it), as llama.cpp and the gguf package expect.
public enum GGUFWriter {
    /// The types `.floats` data can be encoded into.
    public static let encodableTypes: [GGMLType] = [.F32, .F16, .BF16, .Q8_0]

    public static func write(metadata: [(key: String, value: GGUFValue)], tensors: [GGUFTensorSpec],
                             to url: URL, data: (GGUFTensorSpec) throws -> GGUFTensorData) throws {
        let path = url.path
        func fail(_ message: String, tensor: String? = nil, key: String? = nil) -> GGUFError {
            GGUFError(.invalidArgument, file: path, tensor: tensor, key: key, message)
        }
        var alignment = GGUFFile.defaultAlignment
        var keys = Set<String>()
        for (key, value) in metadata {
            guard keys.insert(key).inserted else { throw fail("appears twice in the metadata", key: key) }
            if key == "general.alignment" {
                guard case let .uint32(a) = value, a > 0, a & (a - 1) == 0 else {
                    throw fail("must be a UINT32 power of two", key: key)
                }
                alignment = Int(a)
            }
        }
        var names = Set<String>()
        var offsets: [Int] = []
        var next = 0
        for t in tensors {
            guard names.insert(t.name).inserted else { throw fail("appears twice", tensor: t.name) }
            guard t.shape.count <= GGUFFile.maxDimensions else {
                throw fail("has \(t.shape.count) dimensions (at most \(GGUFFile.maxDimensions))", tensor: t.name)
            }
            guard let bytes = t.byteCount else {
                throw fail("shape \(t.shape) cannot be stored as \(t.type) (the row length must be a multiple of \(t.type.blockSize))", tensor: t.name)
            }
            offsets.append(next)
            next += (bytes + alignment - 1) / alignment * alignment
        }

        var header = ByteBuffer()
        header.u32(0x4655_4747)
        header.u32(3)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(metadata.count))
        for (key, value) in metadata {
            header.string(key)
            header.u32(value.type.rawValue)
            header.value(value)
        }
        for (t, offset) in zip(tensors, offsets) {
            header.string(t.name)
            header.u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
        }
        header.pad(to: alignment)

        let dir = url.deletingLastPathComponent()
        let temp = dir.appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
        guard FileManager.default.createFile(atPath: temp.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: temp.path) else {
            throw GGUFError(.io, file: path, "cannot create \(temp.path)")
        }
        var done = false
        defer {
            try? handle.close()
            if !done { unlink(temp.path) }
        }
        do {
            try handle.write(contentsOf: header.bytes)
            for t in tensors {
                let bytes = try encode(t, try data(t), file: path)
                var padded = bytes
                let pad = (alignment - bytes.count % alignment) % alignment
                padded.append(contentsOf: repeatElement(0, count: pad))
                try handle.write(contentsOf: padded)
            }
            try handle.synchronize()
        } catch let e as GGUFError {
            throw e
        } catch {
            throw GGUFError(.io, file: path, "cannot write: \(error.localizedDescription)")
        }
        try? handle.close()
        guard rename(temp.path, path) == 0 else {
            throw GGUFError(.io, file: path, "cannot rename \(temp.path) into place: \(String(cString: strerror(errno)))")
        }
        done = true
    }

    /// The stored bytes of one tensor.
    static func encode(_ t: GGUFTensorSpec, _ data: GGUFTensorData, file: String) throws -> [UInt8] {
        let byteCount = t.byteCount!
        switch data {
        case let .bytes(b):
            guard b.count == byteCount else {
                throw GGUFError(.invalidArgument, file: file, tensor: t.name, "got \(b.count) bytes, \(t.type) \(t.shape) needs \(byteCount)")
            }
            return b
        case let .floats(x):
            guard x.count == t.elementCount! else {
                throw GGUFError(.invalidArgument, file: file, tensor: t.name, "got \(x.count) values for shape \(t.shape)")
            }
            return try encodeFloats(x, type: t.type, file: file, tensor: t.name)
        }
    }

    /// float32 values encoded as `type`: F32 as is, F16 and BF16 rounded to nearest even (BF16 as ggml's
    /// `ggml_compute_fp32_to_bf16`: NaN made quiet), Q8_0 as `gguf.quants.quantize` (d = max|x|/127 in
    /// float32, q = x·(1/d) rounded half away from zero, d stored as half). Q8_0 blocks are symmetric:
    /// a zero stays exactly zero.
    public static func encodeFloats(_ x: [Float], type: GGMLType, file: String = "", tensor: String? = nil) throws -> [UInt8] {
        var out: [UInt8] = []
        switch type {
        case .F32:
            out.reserveCapacity(4 * x.count)
            for v in x { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        case .F16:
            out.reserveCapacity(2 * x.count)
            for v in x { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        case .BF16:
            out.reserveCapacity(2 * x.count)
            for v in x { withUnsafeBytes(of: bf16(v).littleEndian) { out.append(contentsOf: $0) } }
        case .Q8_0:
            guard x.count % 32 == 0 else {
                throw GGUFError(.invalidArgument, file: file, tensor: tensor, "\(x.count) values are not whole Q8_0 blocks of 32")
            }
            out.reserveCapacity(x.count / 32 * 34)
            var q = [Int8](repeating: 0, count: 32)
            for b in stride(from: 0, to: x.count, by: 32) {
                var amax: Float = 0
                for j in 0..<32 { amax = max(amax, abs(x[b + j])) }
                let d = amax / 127
                let id: Float = d == 0 ? 0 : 1 / d
                for j in 0..<32 {
                    // A subnormal d makes 1/d infinite; clamp so no input can trap the conversion.
                    let v = (x[b + j] * id).rounded(.toNearestOrAwayFromZero)
                    q[j] = v.isNaN ? 0 : Int8(max(-127, min(127, v)))
                }
                withUnsafeBytes(of: Float16(d).bitPattern.littleEndian) { out.append(contentsOf: $0) }
                for j in 0..<32 { out.append(UInt8(bitPattern: q[j])) }
            }
        default:
            throw GGUFError(.invalidArgument, file: file, tensor: tensor,
                            "cannot encode floats as \(type) (supported: \(encodableTypes.map(\.description).joined(separator: ", ")))")
        }
        return out
    }

    /// ggml_compute_fp32_to_bf16: NaN → quiet NaN with the sign and top mantissa bits kept; else round to nearest even.
    static func bf16(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if u & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: (u >> 16) | 64) }
        return UInt16(truncatingIfNeeded: (UInt64(u) + UInt64(0x7FFF + ((u >> 16) & 1))) >> 16)
    }
}

/// Little-endian serialization of GGUF header parts.
struct ByteBuffer {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func raw<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u64(UInt64(utf8.count))
        bytes.append(contentsOf: utf8)
    }
    mutating func pad(to alignment: Int) {
        let pad = (alignment - bytes.count % alignment) % alignment
        bytes.append(contentsOf: repeatElement(0, count: pad))
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case let .uint8(x): raw(x)
        case let .int8(x): raw(x)
        case let .uint16(x): raw(x)
        case let .int16(x): raw(x)
        case let .uint32(x): raw(x)
        case let .int32(x): raw(x)
        case let .float32(x): raw(x.bitPattern)
        case let .bool(x): raw(UInt8(x ? 1 : 0))
        case let .string(s): string(s)
        case let .uint64(x): raw(x)
        case let .int64(x): raw(x)
        case let .float64(x): raw(x.bitPattern)
        case let .array(a): array(a)
        }
    }

    mutating func array(_ a: GGUFArray) {
        u32(a.elementType.rawValue)
        u64(UInt64(a.count))
        switch a {
        case let .uint8(x): x.forEach { raw($0) }
        case let .int8(x): x.forEach { raw($0) }
        case let .uint16(x): x.forEach { raw($0) }
        case let .int16(x): x.forEach { raw($0) }
        case let .uint32(x): x.forEach { raw($0) }
        case let .int32(x): x.forEach { raw($0) }
        case let .float32(x): x.forEach { raw($0.bitPattern) }
        case let .bool(x): x.forEach { raw(UInt8($0 ? 1 : 0)) }
        case let .string(x): x.forEach { string($0) }
        case let .uint64(x): x.forEach { raw($0) }
        case let .int64(x): x.forEach { raw($0) }
        case let .float64(x): x.forEach { raw($0.bitPattern) }
        case let .array(x): x.forEach { array($0) }
        }
    }
}
