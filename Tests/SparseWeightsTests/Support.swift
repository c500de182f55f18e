import Foundation

/// The folder holding Package.swift, found by walking up from this file.
func packageRoot(_ file: String = #filePath) throws -> URL {
    var dir = URL(fileURLWithPath: file).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
        dir = dir.deletingLastPathComponent()
    }
    throw FixtureError("no Package.swift above \(file)")
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A folder of the shared data (../shared from the package root); missing data is a failure.
func sharedPath(_ relative: String) throws -> URL {
    let url = try packageRoot().deletingLastPathComponent().appendingPathComponent("shared/\(relative)")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw FixtureError("missing shared data \(url.path): see ../shared/README.md")
    }
    return url
}

/// A committed fixture folder under Fixtures/sparse; a missing one is a failure, never a skip.
func sparseFixture(_ name: String) throws -> URL {
    let url = try packageRoot().appendingPathComponent("Fixtures/sparse/\(name)")
    guard FileManager.default.fileExists(atPath: url.appendingPathComponent("model.safetensors").path) else {
        throw FixtureError("missing fixture \(url.path); run scripts/check_sparse_checkpoint.py fixture")
    }
    return url
}

/// A fresh folder under the temporary directory.
func scratchFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sparse-weights-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
