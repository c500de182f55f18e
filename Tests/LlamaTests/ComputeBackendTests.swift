import Foundation
import Llama
import Tensor
import Testing
import TestSupport

@Suite struct ComputeBackendTests {
    /// The block's forward and backward listing, op by op, through the backend it was given: the recording
    /// backend sees exactly the listing (and its reverse), and the bits equal the default CPU backend's.
    @Test func blockRunsEveryOpThroughItsBackend() throws {
        let g = BlockGeometry(hidden: 8, intermediate: 12, heads: 4, kvHeads: 2, rmsNormEps: 1e-5)
        let T = 7
        let rope = RoPE(headDim: g.headDim, theta: 10000, scaling: nil, positions: T)
        let p = randomBackwardBlock(g, seed: 41)
        let x = randomBackwardInput(T: T, C: g.hidden, seed: 42)
        let recording = RecordingBackend()
        let viaRecording = try DecoderBlock(geometry: g, capacity: T, backend: recording)
        let viaCPU = try DecoderBlock(geometry: g, capacity: T)
        #expect(recording.ops == ["attentionWorkspace"])

        let y1 = try viaRecording.forward(x, parameters: p, rope: rope)
        #expect(recording.ops.dropFirst() == ["rmsNorm", "linear", "linear", "linear", "rope", "rope", "attention", "linear",
                                              "rmsNorm", "linear", "linear", "gatedActivation", "linear"])
        let y2 = try viaCPU.forward(x, parameters: p, rope: rope)
        #expect(y1 == y2 && !y1.data.contains(where: \.isNaN))

        let before = recording.ops.count
        var g1 = BlockGradients(like: p), g2 = BlockGradients(like: p)
        let dx1 = try viaRecording.backward(y1, parameters: p, rope: rope, gradients: &g1)
        let dx2 = try viaCPU.backward(y2, parameters: p, rope: rope, gradients: &g2)
        #expect(Array(recording.ops[before...]) == [
            "linearBackward", "gatedActivationBackward", "linearBackward", "linearBackward", "rmsNormBackward",
            "linearBackward", "attentionBackward", "ropeBackward", "ropeBackward", "linearBackward", "linearBackward",
            "linearBackward", "rmsNormBackward"])
        #expect(dx1 == dx2)
        for m in LinearKind.allCases { #expect(g1[m] == g2[m], "\(m)") }
    }

    /// A model's forward (evaluation) and its cached-prefix forward (zero-shot) reach the blocks' math
    /// through the model's backend.
    @Test func modelForwardsUseTheModelsBackend() throws {
        var model = try tinyModel(layers: 2)
        let recording = RecordingBackend()
        model.backend = recording
        let tokens = [[1, 5, 9, 3]]
        let a = try model.hiddenStates(tokens)
        #expect(recording.ops.filter { $0 == "attention" }.count == 2)
        #expect(recording.ops.filter { $0 == "linear" }.count == 14)
        let prefix = try model.keyValuePrefix([[1, 5]], rope: model.rope(length: 4))
        _ = try model.hiddenStates(continuing: [[9, 3]], prefixRows: [0], prefix: prefix, rope: model.rope(length: 4))
        #expect(recording.ops.filter { $0 == "attentionContinuing" }.count == 2)
        var plain = model
        plain.backend = CPUBackend()
        #expect(try plain.hiddenStates(tokens) == a)
    }
}

/// A random two-layer LLaMA model of stories-like shapes (weights from the block test helper).
func tinyModel(layers: Int) throws -> LlamaModel {
    let json = """
    {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": \(layers), "num_attention_heads": 4,
     "num_key_value_heads": 2, "intermediate_size": 12, "vocab_size": 16, "tie_word_embeddings": true}
    """
    let c = try LlamaConfiguration(jsonData: Data(json.utf8))
    let g = BlockGeometry(configuration: c, layer: 0)
    let blocks = (0..<layers).map { l -> DecoderBlockWeights in
        var w = randomBackwardBlock(g, seed: UInt64(100 + l))
        w.layer = l
        return w
    }
    var rng = SeededGenerator(seed: 7)
    let embeddings = Tensor(shape: [16, 8], data: (0..<128).map { _ in Float(rng.nextGaussian()) })
    return try LlamaModel(configuration: c, embeddings: embeddings, blocks: blocks,
                          finalNorm: Tensor(shape: [8], data: Array(repeating: 1, count: 8)), head: nil)
}
