import Foundation
import Llama
import Pruning
import Tensor
import Testing

/// Agreement with the project's PyTorch reference (scripts/reference_prune.py, fixtures in
/// Fixtures/reference) on stories260K, the shared calibration ids (128 × 512), at 2:4, block 0.
@Suite struct WandaPlusPlusReferenceTests {
    static let names: [LinearKind: String] = [
        .q: "self_attn.q_proj", .k: "self_attn.k_proj", .v: "self_attn.v_proj", .o: "self_attn.o_proj",
        .gate: "mlp.gate_proj", .up: "mlp.up_proj", .down: "mlp.down_proj",
    ]

    static func reference(_ method: String) throws -> WandaTensorFile {
        let url = wandaPackageRoot().appendingPathComponent("Fixtures/reference/stories260K-\(method)-2of4.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw WandaFixtureError(description: "\(url.path) is missing; scripts/reference_prune.py --method \(method) --sparsity 2:4 --out-dir Fixtures/reference makes it")
        }
        return try WandaTensorFile(url)
    }

    /// Block 0 of stories260K pruned by `variant` directly (no driver), with its statistics kept.
    static func pruneBlock0(_ variant: WandaPlusPlusVariant) throws -> (DecoderBlockWeights, WandaPlusPlusBlockRecord) {
        let model = try Stories260K()
        let samples = 128, tokens = 512
        let inputs = try model.embeddedCalibration(samples: samples, tokens: tokens)
        var block = try model.block(0)
        let g = Stories260K.geometry
        let rope = RoPE(headDim: g.headDim, theta: 10000, scaling: nil, positions: tokens)
        var rng = SeededGenerator(seed: 0)
        let pruner = try WandaPlusPlusBlock(geometry: g, options: WandaPlusPlusOptions(variant: variant))
        let record = try inputs.withUnsafeBufferPointer {
            try pruner.prune(&block, inputs: $0, samples: samples, tokens: tokens, rope: rope, generator: &rng,
                             select: referenceSelector(n: 2, m: 4), keepStatistics: true)
        }
        return (block, record)
    }

    static func maskAgreement(_ w: Tensor, _ reference: WandaTensorFile, _ key: String) throws -> Double {
        let kept = unpackBits(try reference.bytes(key), count: w.count)
        return Double(zip(kept, w.data).filter { $0 == ($1 != 0) }.count) / Double(w.count)
    }

    /// RGS only: G of every layer of block 0 within 1e-3 relative error (max |ΔG| / max |G|) of the
    /// reference's, ‖X‖ within 1e-4, and the 2:4 masks agreeing on ≥ 99% of the weights.
    @Test func block0GradientScoresAndMasksMatchReference() throws {
        let reference = try Self.reference("wanda++-rgs")
        let (block, record) = try Self.pruneBlock0(.rgsOnly)
        let G = try #require(record.gradientScores)
        let norms = try #require(record.columnNorms)
        for m in LinearKind.allCases {
            let key = "model.layers.0.\(Self.names[m]!)"
            let err = G[m.index].relativeError(to: try reference.float("G.\(key).weight"))
            #expect(err <= 1e-3, "G of \(m): relative error \(err)")
            let xref = try reference.float("xnorm.\(key)")
            let xerr = Tensor(shape: xref.shape, data: norms[m.index]).relativeError(to: xref)
            #expect(xerr <= 1e-4, "‖X‖ of \(m): relative error \(xerr)")
            let fraction = try Self.maskAgreement(block[m], reference, "\(key).weight")
            #expect(fraction >= 0.99, "\(m): masks agree on \(fraction)")
        }
    }

    /// Full Wanda++ (G, 5 rounds of RO on 32 drawn samples, G again, final prune) and RO only (the Wanda
    /// score in the rounds and the final prune) on block 0: the rounds draw the same samples as the
    /// reference (its generator is a port of ours), the masks agree on ≥ 99%, and G after RO within 1e-3.
    @Test(arguments: [WandaPlusPlusVariant.full, .roOnly])
    func block0WithRegionalOptimizationMatchesReference(_ variant: WandaPlusPlusVariant) throws {
        let reference = try Self.reference(variant.rawValue)
        let (block, record) = try Self.pruneBlock0(variant)
        let drawsJSON = try #require(reference.metadata["ro_draws"], "the reference fixture records no RO draws")
        let draws = try #require(try JSONSerialization.jsonObject(with: Data(drawsJSON.utf8)) as? [[[Int]]])
        #expect(record.roundSamples == draws.first)
        for m in LinearKind.allCases {
            let key = "model.layers.0.\(Self.names[m]!)"
            let fraction = try Self.maskAgreement(block[m], reference, "\(key).weight")
            #expect(fraction >= 0.99, "\(m): masks agree on \(fraction)")
            if variant.usesGradientScore {
                let err = try #require(record.gradientScores)[m.index].relativeError(to: try reference.float("G.\(key).weight"))
                #expect(err <= 1e-3, "G after RO of \(m): relative error \(err)")
            }
        }
    }
}
