import Foundation
import SafeTensors
import Tensor

/// The repository root: the nearest folder above this file that holds Package.swift.
func backwardPackageRoot() -> URL {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while url.path != "/" {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        url.deleteLastPathComponent()
    }
    return URL(fileURLWithPath: "/")
}

struct BackwardFixtureError: Error, CustomStringConvertible {
    let description: String
}

/// A fixture of scripts/make_backward_fixtures.py: float32 tensors and string metadata.
struct BackwardFixtureFile {
    let file: SafeTensorsFile
    var name: String { file.url.lastPathComponent }

    init(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw BackwardFixtureError(description: "fixture \(url.path) is missing; run scripts/make_backward_fixtures.py")
        }
        file = try SafeTensorsFile(url: url)
    }

    func tensor(_ key: String) throws -> Tensor {
        guard let info = file.info(key) else { throw BackwardFixtureError(description: "\(name): no tensor \(key)") }
        return Tensor(shape: info.shape, data: try file.floats(key))
    }

    /// The tensor, or nil when the file has none of that name (optional biases).
    func optionalTensor(_ key: String) throws -> Tensor? {
        file.info(key) == nil ? nil : try tensor(key)
    }

    func int(_ key: String) throws -> Int {
        guard let s = file.metadata[key], let v = Int(s) else { throw BackwardFixtureError(description: "\(name): metadata \(key) missing") }
        return v
    }

    func double(_ key: String) throws -> Double {
        guard let s = file.metadata[key], let v = Double(s) else { throw BackwardFixtureError(description: "\(name): metadata \(key) missing") }
        return v
    }
}
