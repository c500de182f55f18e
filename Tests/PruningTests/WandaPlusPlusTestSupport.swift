import Foundation
import Llama
import Pruning
import SafeTensors
import Tensor

/// The repository root: the nearest folder above this file that holds Package.swift.
func wandaPackageRoot() -> URL {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while url.path != "/" {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        url.deleteLastPathComponent()
    }
    return URL(fileURLWithPath: "/")
}

/// ../shared, where the real checkpoints and calibration ids live.
func sharedData(_ relative: String) -> URL {
    wandaPackageRoot().deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(relative)
}

struct WandaFixtureError: Error, CustomStringConvertible {
    let description: String
}

/// A safetensors file (fixtures, the stories260K checkpoint, calibration ids) read through the SafeTensors
/// module: F32 tensors, I64 ids and numpy-packbits U8 masks.
struct WandaTensorFile {
    let file: SafeTensorsFile
    var name: String { file.url.lastPathComponent }

    init(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw WandaFixtureError(description: "\(url.path) is missing")
        }
        file = try SafeTensorsFile(url: url)
    }

    private func info(_ key: String) throws -> TensorInfo {
        guard let i = file.info(key) else { throw WandaFixtureError(description: "\(name): no tensor \(key)") }
        return i
    }

    func float(_ key: String) throws -> Tensor {
        Tensor(shape: try info(key).shape, data: try file.floats(key))
    }

    func int64(_ key: String) throws -> (shape: [Int], values: [Int64]) {
        (try info(key).shape, try file.int64s(key))
    }

    func bytes(_ key: String) throws -> [UInt8] {
        let i = try info(key)
        guard i.dtype == .U8 else { throw WandaFixtureError(description: "\(name): \(key) is \(i.dtype), expected U8") }
        return try file.withRawBytes(key) { [UInt8]($0) }
    }

    var metadata: [String: String] { file.metadata }
}

/// stories260K's geometry and block `layer` read from its checkpoint (config values as config.json states).
struct Stories260K {
    static let geometry = BlockGeometry(hidden: 64, intermediate: 172, heads: 8, kvHeads: 4, rmsNormEps: 1e-5)
    static let modelNames: [LinearKind: String] = [
        .q: "self_attn.q_proj", .k: "self_attn.k_proj", .v: "self_attn.v_proj", .o: "self_attn.o_proj",
        .gate: "mlp.gate_proj", .up: "mlp.up_proj", .down: "mlp.down_proj",
    ]

    let file: WandaTensorFile

    init() throws {
        file = try WandaTensorFile(sharedData("models/stories260K/model.safetensors"))
    }

    func block(_ layer: Int) throws -> DecoderBlockWeights {
        let p = "model.layers.\(layer)."
        return DecoderBlockWeights(
            weights: try LinearKind.allCases.map { try file.float(p + Self.modelNames[$0]! + ".weight") },
            inputNorm: try file.float(p + "input_layernorm.weight"),
            postAttentionNorm: try file.float(p + "post_attention_layernorm.weight"))
    }

    /// The embedded calibration ids: block 0's inputs (N, T, C) as one flat buffer.
    func embeddedCalibration(samples: Int, tokens: Int) throws -> [Float] {
        let ids = try WandaTensorFile(sharedData("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"))
            .int64("input_ids")
        guard ids.shape.count == 2, ids.shape[0] >= samples, ids.shape[1] >= tokens else {
            throw WandaFixtureError(description: "calibration ids are \(ids.shape), need \(samples) × \(tokens)")
        }
        let emb = try file.float("model.embed_tokens.weight")
        let C = emb.shape[1]
        var out = [Float](repeating: 0, count: samples * tokens * C)
        for n in 0..<samples {
            for t in 0..<tokens {
                let id = Int(ids.values[n * ids.shape[1] + t])
                guard id >= 0, id < emb.shape[0] else { throw WandaFixtureError(description: "token id \(id) out of range") }
                for c in 0..<C { out[(n * tokens + t) * C + c] = emb.data[id * C + c] }
            }
        }
        return out
    }
}

/// The selection rule of the PyTorch reference, written plainly: in every comparison group prune the k
/// lowest scores, a stable ascending sort deciding ties (lower column first). N:M groups are m consecutive
/// columns of a row (the last partial group of w columns prunes max(0, w − n)); a ratio prunes
/// floor(cols · ratio) per row.
func referenceSelector(n: Int, m: Int) -> MaskSelector {
    return { _, scores, rows, cols, pruned in
        for r in 0..<rows {
            var c0 = 0
            while c0 < cols {
                let w = min(m, cols - c0)
                let order = (0..<w).sorted { a, b in
                    let sa = scores[r * cols + c0 + a], sb = scores[r * cols + c0 + b]
                    return sa < sb || (sa == sb && a < b)
                }
                let k = max(0, w - n)
                for (rank, j) in order.enumerated() { pruned[r * cols + c0 + j] = rank < k }
                c0 += m
            }
        }
    }
}

func ratioSelector(_ ratio: Double) -> MaskSelector {
    return { _, scores, rows, cols, pruned in
        let k = Int((Double(cols) * ratio).rounded(.down))
        for r in 0..<rows {
            let order = (0..<cols).sorted { a, b in
                let sa = scores[r * cols + a], sb = scores[r * cols + b]
                return sa < sb || (sa == sb && a < b)
            }
            for (rank, j) in order.enumerated() { pruned[r * cols + j] = rank < k }
        }
    }
}

/// Unpacks numpy `packbits(bitorder="little")` to `count` booleans.
func unpackBits(_ bytes: [UInt8], count: Int) -> [Bool] {
    (0..<count).map { i in (bytes[i >> 3] >> UInt8(i & 7)) & 1 == 1 }
}
