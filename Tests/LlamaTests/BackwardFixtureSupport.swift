import Foundation
import Tensor

/// The repository root: the nearest folder above this file that holds Package.swift.
func packageRoot() -> URL {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while url.path != "/" {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        url.deleteLastPathComponent()
    }
    return URL(fileURLWithPath: "/")
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

/// A float32-only safetensors file read whole into memory: the fixtures of Fixtures/backward are a few
/// hundred KB. (A test-side reader so these tests depend only on the format, which
/// scripts/make_backward_fixtures.py writes with the `safetensors` package.)
struct FixtureFile {
    let name: String
    let tensors: [String: Tensor]
    let metadata: [String: String]

    init(_ url: URL) throws {
        name = url.lastPathComponent
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw FixtureError(description: "fixture \(url.path) is missing; run scripts/make_backward_fixtures.py")
        }
        guard data.count >= 8 else { throw FixtureError(description: "\(name): shorter than a safetensors header") }
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        guard headerLength > 0, 8 + headerLength <= data.count,
              let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any]
        else { throw FixtureError(description: "\(name): unreadable safetensors header") }
        let body = data.subdata(in: (8 + headerLength)..<data.count)
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (key, value) in header {
            if key == "__metadata__" {
                metadata = value as? [String: String] ?? [:]
                continue
            }
            guard let entry = value as? [String: Any], entry["dtype"] as? String == "F32",
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2,
                  offsets[0] >= 0, offsets[1] <= body.count, offsets[1] - offsets[0] == 4 * shape.reduce(1, *)
            else { throw FixtureError(description: "\(name): tensor \(key) is not a well-formed F32 entry") }
            var floats = [Float](repeating: 0, count: shape.reduce(1, *))
            floats.withUnsafeMutableBytes { dst in
                body.copyBytes(to: dst.bindMemory(to: UInt8.self), from: offsets[0]..<offsets[1])
            }
            tensors[key] = Tensor(shape: shape, data: floats)
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    func tensor(_ key: String) throws -> Tensor {
        guard let t = tensors[key] else { throw FixtureError(description: "\(name): no tensor \(key)") }
        return t
    }

    func int(_ key: String) throws -> Int {
        guard let s = metadata[key], let v = Int(s) else { throw FixtureError(description: "\(name): metadata \(key) missing") }
        return v
    }

    func double(_ key: String) throws -> Double {
        guard let s = metadata[key], let v = Double(s) else { throw FixtureError(description: "\(name): metadata \(key) missing") }
        return v
    }
}
