import Foundation
import Llama
import Tensor
import Testing

/// The block the model evaluates is the block the backward differentiates: on every tiny fixture checkpoint of the Llama
/// tests (GQA, MHA, explicit head_dim, attention bias, llama3 and linear RoPE scaling, Mistral sliding
/// window, Qwen2 biases), every block's forward through a backward-capable `DecoderBlock` equals the model's `DecoderBlock.forward`, so geometry, biases,
/// per-layer windows and scaled RoPE tables all reach the tape.
@Suite struct BackwardBridgeTests {
    @Test(arguments: tinyFixtures)
    func tapeForwardMatchesModelForward(_ name: String) throws {
        let checkpoint = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent(name))
        let c = checkpoint.configuration
        let T = min(c.maxPositionEmbeddings, 48)
        let rope = RoPE(configuration: c, positions: T)
        for layer in 0..<c.numHiddenLayers {
            let weights = try checkpoint.loadBlock(layer)
            let x = randomBackwardInput(T: T, C: c.hiddenSize, seed: UInt64(7 + layer))
            let expected = DecoderBlock.forward(x.reshaped([1, T, c.hiddenSize]), weights: weights, configuration: c, rope: rope)
            let geometry = BlockGeometry(configuration: c, layer: layer)
            #expect(geometry.attentionWindow == c.attentionWindow(layer: layer))
            let tape = try DecoderBlock(geometry: geometry, capacity: T)
            let y = try tape.forward(x, parameters: weights, rope: rope)
            let err = y.relativeError(to: expected.reshaped([T, c.hiddenSize]))
            #expect(err <= 1e-5, "\(name) block \(layer): relative error \(err)")
        }
    }

    @Test func weightsIndexedByKindMatchNamedFields() throws {
        let checkpoint = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent("llama-attnbias"))
        var weights = try checkpoint.loadBlock(1)
        let fields: [LinearKind: Tensor] = [.q: weights.q, .k: weights.k, .v: weights.v, .o: weights.o,
                                            .gate: weights.gate, .up: weights.up, .down: weights.down]
        #expect(LinearKind.allCases.map(\.index) == Array(0..<7))
        for m in LinearKind.allCases {
            #expect(weights.weights[m.index] == fields[m]!)
            #expect(weights.biases[m.index] == weights.bias(m))
            weights[m].data[0] = 42
        }
        for kind in LinearKind.allCases { #expect(weights[kind].data[0] == 42) }
        try weights.validate(configuration: checkpoint.configuration)
        try weights.validate(against: BlockGeometry(configuration: checkpoint.configuration, layer: 1))
    }
}
