import Foundation
import SafeTensors
import Testing

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

/// A committed fixture under Fixtures/pruning; a missing one is a failure, never a skip.
func pruningFixture(_ name: String) throws -> SafeTensorsFile {
    let url = try packageRoot().appendingPathComponent("Fixtures/pruning/\(name)")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw FixtureError("missing fixture \(url.path); run scripts/make_pruning_layer_fixtures.py")
    }
    return try SafeTensorsFile(url: url)
}

/// A folder of the shared data (../shared from the package root); missing data is a failure.
func sharedPath(_ relative: String) throws -> URL {
    let url = try packageRoot().deletingLastPathComponent().appendingPathComponent("shared/\(relative)")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw FixtureError("missing shared data \(url.path): see ../shared/README.md")
    }
    return url
}

/// numpy.packbits(kept, bitorder="little") → one Bool per element (true = kept).
func unpackKept(_ file: SafeTensorsFile, _ name: String, count: Int) throws -> [Bool] {
    try file.withRawBytes(name) { raw in
        guard raw.count == (count + 7) / 8 else { throw FixtureError("\(name): \(raw.count) bytes for \(count) bits") }
        return (0..<count).map { (raw[$0 / 8] >> UInt8($0 % 8)) & 1 == 1 }
    }
}

func shape(_ file: SafeTensorsFile, _ name: String) throws -> [Int] {
    guard let info = file.info(name) else { throw FixtureError("fixture has no tensor \(name)") }
    return info.shape
}
