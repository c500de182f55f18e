import Foundation
import Llama
import Tensor
import Testing

/// The bridge from the model's types to the backward's: on every tiny fixture checkpoint of the Llama
/// tests (GQA, MHA, explicit head_dim, attention bias, llama3 and linear RoPE scaling, Mistral sliding
/// window, Qwen2 biases), every block's tape forward equals `DecoderBlock.forward`, so geometry, biases,
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
            let tape = try DecoderBlockTape(geometry: geometry, capacity: T)
            let y = try tape.forward(x, parameters: BlockParameters(weights), rope: RopeTable(rope))
            let err = y.relativeError(to: expected.reshaped([T, c.hiddenSize]))
            #expect(err <= 1e-5, "\(name) block \(layer): relative error \(err)")
        }
    }

    @Test func parametersRoundTripThroughBlockWeights() throws {
        let checkpoint = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent("llama-attnbias"))
        var weights = try checkpoint.loadBlock(1)
        var p = BlockParameters(weights)
        for m in BlockMatrix.allCases {
            #expect(p[m] == weights[m.kind])
            #expect(p.biases[m.rawValue] == weights.bias(m.kind))
            #expect(BlockMatrix(m.kind) == m)
            p[m].data[0] = 42
        }
        p.write(into: &weights)
        for kind in LinearKind.allCases { #expect(weights[kind].data[0] == 42) }
        try weights.validate(configuration: checkpoint.configuration)
    }
}
