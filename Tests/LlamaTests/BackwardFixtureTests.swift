import Foundation
import Llama
import Tensor
import Testing

/// The fixtures of scripts/make_backward_fixtures.py: PyTorch autograd through transformers'
/// LlamaDecoderLayer / Qwen2DecoderLayer / MistralDecoderLayer in float32. llama-gqa (80 tokens) and
/// mistral-window (72 tokens, window 20) span several of the attention kernels' 64-row blocks.
private let fixtureNames = ["llama-gqa", "llama-mha", "llama-bias", "qwen2-bias", "mistral-window"]

private struct LoadedFixture {
    let file: BackwardFixtureFile
    let geometry: BlockGeometry
    let parameters: DecoderBlockWeights
    let rope: RoPE
    let x: Tensor

    init(_ name: String) throws {
        file = try BackwardFixtureFile(backwardPackageRoot().appendingPathComponent("Fixtures/backward/\(name).safetensors"))
        geometry = BlockGeometry(hidden: try file.int("hidden"), intermediate: try file.int("intermediate"),
                                 heads: try file.int("heads"), kvHeads: try file.int("kv_heads"),
                                 headDim: try file.int("head_dim"), rmsNormEps: Float(try file.double("rms_norm_eps")),
                                 attentionWindow: try file.int("sliding_window") > 0 ? try file.int("sliding_window") : nil)
        parameters = try Self.parameters(file, prefix: "")
        rope = RoPE(headDim: geometry.headDim, theta: try file.double("rope_theta"), scaling: nil, positions: try file.int("tokens"))
        x = try file.tensor("x")
    }

    /// The layer's parameters; `prefix` "ro." swaps in the 2:4-pruned weights (biases and norms stay).
    static func parameters(_ f: BackwardFixtureFile, prefix: String) throws -> DecoderBlockWeights {
        DecoderBlockWeights(
            weights: try LinearKind.allCases.map { try f.tensor("\(prefix)\($0.projectionName).weight") },
            biases: try LinearKind.allCases.map { try f.optionalTensor("\($0.projectionName).bias") },
            inputNorm: try f.tensor("input_layernorm.weight"),
            postAttentionNorm: try f.tensor("post_attention_layernorm.weight"))
    }
}

@Suite struct BackwardFixtureTests {
    /// The brief's bound for float32 gradients against PyTorch float32 autograd (max-abs error over the
    /// tensor relative to its largest entry). Both sides round differently (BLAS blocking, summation
    /// order), so bit equality is not expected; measured errors are around 1e-6.
    static let tolerance: Float = 1e-4

    @Test(arguments: fixtureNames)
    func ropeTablesMatchTransformers(_ name: String) throws {
        let f = try LoadedFixture(name)
        let cos = try f.file.tensor("rope.cos"), sin = try f.file.tensor("rope.sin")
        let mine = (Tensor(shape: cos.shape, data: f.rope.cosTable), Tensor(shape: sin.shape, data: f.rope.sinTable))
        // float32 angles up to T·1 rad; cos/sin of the same float angle differ by at most an ulp or two.
        #expect(mine.0.maxAbsDifference(cos) <= 1e-6)
        #expect(mine.1.maxAbsDifference(sin) <= 1e-6)
    }

    @Test(arguments: fixtureNames)
    func forwardMatchesTransformers(_ name: String) throws {
        let f = try LoadedFixture(name)
        let tape = try DecoderBlock(geometry: f.geometry, capacity: f.x.shape[0])
        let y = try tape.forward(f.x, parameters: f.parameters, rope: f.rope)
        let err = y.relativeError(to: try f.file.tensor("y"))
        #expect(err <= 1e-5, "\(name): dense output relative error \(err)")
        let sparse = try LoadedFixture.parameters(f.file, prefix: "ro.")
        let ys = try tape.forward(f.x, parameters: sparse, rope: f.rope)
        let errs = ys.relativeError(to: try f.file.tensor("ro.y"))
        #expect(errs <= 1e-5, "\(name): pruned output relative error \(errs)")
    }

    /// ‖y‖₂ (RGS), ⟨R, y⟩, and Σ(y_dense − y_pruned)² at the pruned weights (RO): every weight, bias and
    /// the input gradient against autograd.
    @Test(arguments: fixtureNames)
    func gradientsMatchAutograd(_ name: String) throws {
        let f = try LoadedFixture(name)
        let T = f.x.shape[0]
        let tape = try DecoderBlock(geometry: f.geometry, capacity: T)
        let r = try f.file.tensor("proj.r")
        let dense = f.parameters
        let sparse = try LoadedFixture.parameters(f.file, prefix: "ro.")

        for loss in ["rgs", "proj", "ro"] {
            let p = loss == "ro" ? sparse : dense
            var dy: Tensor
            switch loss {
            case "rgs":
                let y = try tape.forward(f.x, parameters: p, rope: f.rope)
                let norm = Float(y.data.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
                dy = Tensor(shape: y.shape, data: y.data.map { $0 / norm })
            case "proj":
                try tape.forward(f.x, parameters: p, rope: f.rope)
                dy = r
            default:
                // The dense target comes from our own forward, as in regional optimization.
                let target = try tape.forward(f.x, parameters: dense, rope: f.rope)
                let y = try tape.forward(f.x, parameters: p, rope: f.rope)
                dy = Tensor(shape: y.shape, data: zip(y.data, target.data).map { 2 * ($0 - $1) })
            }
            var grads = BlockGradients(like: p)
            let dx = try tape.backward(dy, parameters: p, rope: f.rope, gradients: &grads)
            for m in LinearKind.allCases {
                let err = grads[m].relativeError(to: try f.file.tensor("\(loss).grad.\(m.projectionName).weight"))
                #expect(err <= Self.tolerance, "\(name) \(loss): \(m).weight relative error \(err)")
                if let db = grads.biases[m.index] {
                    let errb = db.relativeError(to: try f.file.tensor("\(loss).grad.\(m.projectionName).bias"))
                    #expect(errb <= Self.tolerance, "\(name) \(loss): \(m).bias relative error \(errb)")
                } else {
                    #expect(f.file.file.info("\(loss).grad.\(m.projectionName).bias") == nil, "\(name): \(m) has a bias we ignored")
                }
            }
            let errx = dx.relativeError(to: try f.file.tensor("\(loss).grad.x"))
            #expect(errx <= Self.tolerance, "\(name) \(loss): input gradient relative error \(errx)")
        }
    }
}
