import Datasets
import Foundation
import Testing

/// The folder holding Package.swift, found by walking up from this file.
func packageRoot() throws -> URL {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
        dir = dir.deletingLastPathComponent()
    }
    throw TestSetupError("no Package.swift above \(#filePath)")
}

/// A file under `../shared`; a missing file fails the test (shared data is required, never skipped).
func sharedFile(_ relative: String) throws -> URL {
    let url = try packageRoot().appendingPathComponent("../shared/\(relative)").standardizedFileURL
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestSetupError("shared data missing: \(url.path) (the tests need ../shared next to the package root)")
    }
    return url
}

func fixture(_ name: String) throws -> URL {
    let url = try packageRoot().appendingPathComponent("Fixtures/datasets/\(name)")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestSetupError("fixture missing: \(url.path) (regenerate with scripts/make_datasets_fixtures.py)")
    }
    return url
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A fresh temporary folder, removed by `cleanup`.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("datasets-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    func write(_ name: String, _ text: String) throws -> URL {
        let u = file(name)
        try Data(text.utf8).write(to: u)
        return u
    }
    func write(_ name: String, bytes: [UInt8]) throws -> URL {
        let u = file(name)
        try Data(bytes).write(to: u)
        return u
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// `gzip -c -<level> input` as bytes (the system's gzip, an independent compressor).
func gzipWithTool(_ input: URL, level: Int = 6) throws -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["gzip", "-c", "-\(level)", input.path]
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw TestSetupError("gzip failed with status \(p.terminationStatus)") }
    return [UInt8](data)
}

/// The error a throwing expression raised, as DatasetError (nil when it did not throw or threw another type).
func datasetError<T>(_ body: () throws -> T) -> (kind: String, message: String)? {
    do {
        _ = try body()
        return nil
    } catch let e as Datasets.DatasetError {
        return (e.kind.rawValue, e.description)
    } catch {
        return ("other: \(type(of: error))", "\(error)")
    }
}

/// Toy tokenizer for the sampler tests: space-separated decimal numbers → those numbers.
func numberEncoder(_ text: String) -> [Int] {
    text.split(separator: " ").map { Int($0) ?? -1 }
}

/// "0 1 2 … n-1"
func numberText(_ n: Int, from start: Int = 0) -> String {
    (start..<(start + n)).map(String.init).joined(separator: " ")
}
