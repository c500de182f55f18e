import Foundation
import JSON
import Testing
import TestSupport

/// Paths the generation tests read.
enum Paths {
    /// A path relative to the repository root (`../shared/...` reaches the shared data).
    static func repository(_ relative: String) throws -> URL {
        let url = repositoryRoot.appendingPathComponent(relative).standardizedFileURL
        try #require(FileManager.default.fileExists(atPath: url.path), "missing \(url.path)")
        return url
    }

    /// Fixtures/generate/reference.json (scripts/generate_reference.py).
    static func reference() throws -> JSONValue {
        try JSONValue.parse(try Data(contentsOf: try repository("Fixtures/generate/reference.json")))
    }
}

extension JSONValue {
    var ints: [Int] { (arrayValue ?? []).compactMap(\.intValue) }
}
