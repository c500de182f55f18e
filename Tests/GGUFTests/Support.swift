import Foundation
import Testing
#if canImport(Glibc)
import Glibc
import TestSupport
#endif

/// A problem with the test environment (missing shared data or fixture), reported as a failure.
struct TestSetupError: Error, CustomStringConvertible {
    var description: String
}

/// The folder holding Package.swift, found by walking up from this source file.
func packageRoot() throws -> URL {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
        dir = dir.deletingLastPathComponent()
    }
    throw TestSetupError(description: "no Package.swift above \(#filePath)")
}

/// A file under `Fixtures/gguf/`; throws (failing the test) when it is absent.
func fixture(_ name: String) throws -> URL {
    let url = try packageRoot().appendingPathComponent("Fixtures/gguf").appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestSetupError(description: "fixture \(url.path) is missing; run scripts/make_gguf_fixtures.py")
    }
    return url
}

/// A path under the shared data folder `../shared`; throws (failing the test) when it is absent.
func shared(_ relative: String) throws -> URL {
    let url = try packageRoot().deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(relative)
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestSetupError(description: "shared data \(url.path) is missing (expected ../shared beside the repository)")
    }
    return url
}

/// A fresh empty folder, removed when the returned object is released.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    func listing() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: url.path).sorted() }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Writes `bytes` to `url`, replacing it (unlinked first: truncating in place makes ext4 flush on close).
func writeFile(_ bytes: [UInt8], to url: URL) throws {
    unlink(url.path)
    guard let f = fopen(url.path, "wb") else { throw TestSetupError(description: "cannot create \(url.path)") }
    let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
    guard written == bytes.count else { throw TestSetupError(description: "cannot write \(url.path)") }
}

/// True when both arrays hold the same float32 bit patterns.
func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

// relativeError(_:_:) (max |a − b| / max |b|, NaN on a NaN or a count mismatch) comes from TestSupport.

/// A small deterministic generator for the fuzz test (SplitMix64).
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Hand-assembled GGUF bytes, for malformed-file tests.
struct GGUFBytes {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes.append(contentsOf: Array(s.utf8)) }
    mutating func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
        bytes.append(contentsOf: Array("GGUF".utf8)); u32(version); u64(tensors); u64(kvs)
    }
    /// A tensor info: name, dimensions innermost first, ggml type id, offset.
    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name); u32(UInt32(dims.count)); dims.forEach { u64($0) }; u32(type); u64(offset)
    }
    mutating func pad(_ alignment: Int = 32) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }
}

/// A JSON fixture under `Fixtures/gguf/` as Foundation objects.
func jsonFixture(_ name: String) throws -> [String: Any] {
    let data = try Data(contentsOf: try fixture(name))
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TestSetupError(description: "fixture \(name) is not a JSON object")
    }
    return object
}
