import Foundation
import Llama
import SafeTensors
import Tensor
import Testing
import TestSupport

/// max|a − b| / max|b|, NaN when either side holds a NaN (so a NaN can never pass).
private func gradientError(_ a: [Float], _ b: [Double]) -> Double { relativeError(a, b) }

/// The causal-LM loss of a whole model in float64, written plainly (the float64 block of
/// BackwardNaiveBlock.swift, one sequence at a time), for central differences.
private struct NaiveCausalLM {
    var embeddings: [Double], head: [Double]?, finalNorm: [Double]
    var blocks: [NaiveBackwardBlock]
    let C: Int, V: Int, eps: Double

    init(_ m: LlamaModel, length: Int) {
        let c = m.configuration
        C = c.hiddenSize; V = c.vocabSize; eps = c.rmsNormEps
        embeddings = m.embeddings.data.map(Double.init)
        head = m.head?.data.map(Double.init)
        finalNorm = m.finalNorm.data.map(Double.init)
        blocks = m.blocks.map {
            NaiveBackwardBlock($0, geometry: BlockGeometry(configuration: c, layer: $0.layer), theta: c.ropeTheta,
                               scaling: c.ropeScaling, positions: length)
        }
    }

    /// Mean next-token CE over all sequences; `x0` overrides the embedding output (B·T·C).
    func loss(_ tokens: [[Int]], x0: [Double]? = nil) -> Double {
        let T = tokens[0].count
        var total = 0.0
        for (b, row) in tokens.enumerated() {
            var x = x0.map { Array($0[(b * T * C)..<((b + 1) * T * C)]) } ?? row.flatMap { embeddings[($0 * C)..<(($0 + 1) * C)] }
            for block in blocks { x = block.forward(x, T: T) }
            let h = head ?? embeddings
            for t in 0..<(T - 1) {
                var ss = 0.0
                for c in 0..<C { ss += x[t * C + c] * x[t * C + c] }
                let r = 1 / (ss / Double(C) + eps).squareRoot()
                let xf = (0..<C).map { x[t * C + $0] * r * finalNorm[$0] }
                let z = (0..<V).map { v in (0..<C).reduce(0.0) { $0 + xf[$1] * h[v * C + $1] } }
                let m = z.maxOrNaN()!
                let lse = m + Foundation.log(z.reduce(0.0) { $0 + Foundation.exp($1 - m) })
                total += lse - z[row[t + 1]]
            }
        }
        return total / Double(tokens.count * (T - 1))
    }
}

@Suite struct CausalLMBackwardTests {
    static let tolerance = 1e-4

    /// Gradients of every block matrix and of the embeddings' output against float64 central
    /// differences of the whole model's loss, on a sample of entries (tied and untied heads, GQA, MHA,
    /// biases, sliding window). The logits chunk is smaller than the rows, so the chunking is exercised.
    @Test(arguments: ["llama-gqa", "llama-mha-untied", "llama-attnbias", "mistral-window"])
    func gradientsMatchFloat64FiniteDifferences(_ name: String) throws {
        let model = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent(name)).loadModel()
        let c = model.configuration
        var rng = SeededGenerator(seed: 3)
        let T = 9
        let tokens = (0..<2).map { _ in (0..<T).map { _ in rng.nextInt(below: c.vocabSize) } }
        let backward = try CausalLMBackward(configuration: c, batch: 2, length: T, rowsPerChunk: 5)
        var grads: [Int: BlockGradients] = [:]
        let (loss, count) = try backward.run(model: model, tokens: tokens, matrices: Set(LinearKind.allCases)) { grads[$0] = $1 }
        #expect(count == 2 * (T - 1))
        let naive = NaiveCausalLM(model, length: T)
        let reference = naive.loss(tokens)
        #expect(abs(loss - reference) <= 1e-5 * abs(reference), "loss \(loss) vs float64 \(reference)")

        let h = 1e-5
        for layer in [0, c.numHiddenLayers - 1] {
            for m in LinearKind.allCases {
                let count = naive.blocks[layer].w[m.index].count
                let probes = (0..<6).map { _ in rng.nextInt(below: count) }
                var fd: [Double] = [], mine: [Float] = []
                for i in probes {
                    var plus = naive, minus = naive
                    plus.blocks[layer].w[m.index][i] += h
                    minus.blocks[layer].w[m.index][i] -= h
                    fd.append((plus.loss(tokens) - minus.loss(tokens)) / (2 * h))
                    mine.append(try #require(grads[layer])[m].data[i])
                }
                let err = gradientError(mine, fd)
                #expect(err <= Self.tolerance, "\(name) layer \(layer) \(m.projectionName): relative error \(err)")
            }
        }
        // dL/dx₀ at the embeddings' output.
        let x0 = tokens.flatMap { $0.flatMap { id in naive.embeddings[(id * c.hiddenSize)..<((id + 1) * c.hiddenSize)] } }
        let probes = (0..<12).map { _ in rng.nextInt(below: x0.count) }
        var fd: [Double] = [], mine: [Float] = []
        for i in probes {
            var plus = x0, minus = x0
            plus[i] += h; minus[i] -= h
            fd.append((naive.loss(tokens, x0: plus) - naive.loss(tokens, x0: minus)) / (2 * h))
            mine.append(backward.inputGradient[i])
        }
        let err = gradientError(mine, fd)
        #expect(err <= Self.tolerance, "\(name) dL/dx0: relative error \(err)")
    }

    /// Loss and gradients against PyTorch autograd through transformers' whole model
    /// (scripts/make_lm_backward_fixtures.py).
    @Test(arguments: ["llama-gqa", "llama-mha-untied", "llama-attnbias", "qwen2-bias", "mistral-window", "qwen3-qknorm",
                      "gemma3-sandwich", "gemma2-softcap"])
    func gradientsMatchPyTorchAutograd(_ name: String) throws {
        let model = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent(name)).loadModel()
        let c = model.configuration
        let file = try SafeTensorsFile(url: Paths.packageRoot.appendingPathComponent("Fixtures/lmbackward/\(name).safetensors"))
        let shape = try #require(file.info("input_ids")).shape
        let flat = try file.int64s("input_ids").map(Int.init)
        let tokens = (0..<shape[0]).map { Array(flat[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
        let backward = try CausalLMBackward(configuration: c, batch: shape[0], length: shape[1], rowsPerChunk: 7)
        var grads: [Int: BlockGradients] = [:]
        let (loss, _) = try backward.run(model: model, tokens: tokens, matrices: Set(LinearKind.allCases)) { grads[$0] = $1 }
        let expected = Double(try file.floats("loss")[0])
        #expect(abs(loss - expected) <= Self.tolerance * abs(expected), "\(name): loss \(loss) vs PyTorch \(expected)")
        let dx = gradientError(backward.inputGradient, try file.floats("grad.embeds").map(Double.init))
        #expect(dx <= Self.tolerance, "\(name) dL/d embeddings: relative error \(dx)")
        for layer in 0..<c.numHiddenLayers {
            for m in LinearKind.allCases {
                let ref = try file.floats("grad.\(layer).\(m.projectionName).weight").map(Double.init)
                let err = gradientError(try #require(grads[layer])[m].data, ref)
                #expect(err <= Self.tolerance, "\(name) layer \(layer) \(m.projectionName): relative error \(err)")
            }
        }
    }

    /// Memory: the inputs of every block plus one block, not L blocks' activations.
    @Test func memoryIsOneBlockPlusBlockInputs() throws {
        let model = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent("llama-gqa")).loadModel()
        let c = model.configuration
        let backward = try CausalLMBackward(configuration: c, batch: 1, length: 32)
        let block = DecoderBlock.bytes(geometry: BlockGeometry(configuration: c, layer: 0), capacity: 32)
        let parameters = model.blocks[0].weights.reduce(0) { $0 + $1.count }
        // L inputs and 8 more (N, C)-sized buffers (x_L, xf, dxf, dy, dx, two logits-chunk rows), the logits chunk, one block's gradients, one block.
        let bound = block + 4 * (32 * c.hiddenSize * (c.numHiddenLayers + 8) + 32 * (c.vocabSize + 1) + parameters)
        #expect(backward.bytes <= bound && backward.bytes >= block)
        #expect(throws: LlamaError.self) { try backward.run(model: model, tokens: [[1, 2, 3]]) }
    }
}
