import Foundation
import Testing

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

/// A file or folder under `Fixtures/safetensors/`; throws (failing the test) when it is absent.
func fixture(_ relative: String) throws -> URL {
    let url = try packageRoot().appendingPathComponent("Fixtures/safetensors").appendingPathComponent(relative)
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestSetupError(description: "fixture \(url.path) is missing; run scripts/make_safetensors_fixtures.py")
    }
    return url
}

/// A path under the shared data folder `../shared`; throws (failing the test) when it is absent.
func shared(_ relative: String) throws -> URL {
    let url = try packageRoot().deletingLastPathComponent().appendingPathComponent("shared")
        .appendingPathComponent(relative)
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestSetupError(description: "shared data \(url.path) is missing (expected ../shared beside the repository)")
    }
    return url
}

/// A JSON fixture parsed with Foundation (independent of the module's own JSON reader).
func jsonFixture(_ relative: String) throws -> [String: Any] {
    let data = try Data(contentsOf: try fixture(relative))
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TestSetupError(description: "\(relative) is not a JSON object")
    }
    return object
}

/// A fresh empty folder, removed when the returned object is released.
final class TempDir {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// The folder's entries, hidden ones included, sorted.
    func listing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Bytes of a safetensors file: the little-endian length prefix, `header`, then `data`.
func fileBytes(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    fileBytes(headerBytes: Array(header.utf8), data: data, declaredLength: declaredLength)
}

func fileBytes(headerBytes h: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    var out: [UInt8] = []
    withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    return out + h + data
}

/// Writes `bytes` to `url`, replacing it. The old file is unlinked first: truncating a file in place makes
/// ext4 flush it on close, which made the fuzz test's 1500 small writes take seconds.
func writeFile(_ bytes: [UInt8], to url: URL) throws {
    unlink(url.path)
    guard let f = fopen(url.path, "wb") else { throw TestSetupError(description: "cannot create \(url.path)") }
    let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
    guard written == bytes.count else { throw TestSetupError(description: "cannot write \(url.path)") }
}

/// True when both arrays hold the same float32 bit patterns, except that any NaN matches any NaN.
func sameFloats(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { x, y in
        x.isNaN ? y.isNaN : x.bitPattern == y.bitPattern
    }
}

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
