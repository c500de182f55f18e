import Foundation
import Llama
import SafeTensors
import Tensor
import Testing
import TestSupport

/// Paths the tests read: the package root (the folder holding Package.swift), its fixtures and ../shared.
enum Paths {
    static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
            url.deleteLastPathComponent()
        }
        fatalError("no Package.swift above \(#filePath)")
    }()

    static var fixtures: URL { packageRoot.appendingPathComponent("Fixtures/llama") }

    /// A folder of ../shared; records a failure naming the path when it is missing.
    static func shared(_ relative: String) throws -> URL {
        let url = packageRoot.deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(relative)
        try #require(FileManager.default.fileExists(atPath: url.path),
                     "shared data missing: \(url.path) (the tests need ../shared next to the package root)")
        return url
    }
}

/// The tiny fixture checkpoints made by scripts/make_llama_fixtures.py.
let tinyFixtures = [
    "llama-gqa", "llama-mha-untied", "llama-headdim", "llama-attnbias", "llama3-rope", "linear-rope",
    "mistral-window", "qwen2-bias", "qwen3-qknorm", "gemma3-sandwich", "gemma2-softcap",
]

/// A reference file: input ids (B, T) and tensors by name.
struct Reference {
    let ids: [[Int]]
    let file: SafeTensorsCheckpoint

    init(_ url: URL) throws {
        file = try SafeTensorsCheckpoint(directory: url)
        let shape = try #require(file.info("input_ids")).shape
        let flat = try file.int64s("input_ids").map(Int.init)
        ids = (0..<shape[0]).map { Array(flat[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    }

    func tensor(_ name: String) throws -> Tensor {
        let info = try #require(file.info(name))
        return Tensor(shape: info.shape, data: try file.floats(name))
    }
}

/// Deterministic test data.
func randomTensor(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(g.nextGaussian() * scale) })
}

// relativeError(_:_:) (max|a − b| / max|b|, NaN on a NaN) comes from TestSupport.
