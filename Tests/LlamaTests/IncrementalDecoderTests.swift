import Foundation
import Llama
import Tensor
import Testing
import TestSupport

/// Generation's KV-cache forward against the full forward of the whole sequence: the logits of every
/// position, whichever way the sequence is cut into passes (a prompt, single tokens, a multi-token
/// continuation of the cache).
@Suite struct IncrementalDecoderTests {
    /// Token ids of length `count` in 0..<vocab (a fixed pseudo-random sequence).
    static func tokens(_ count: Int, vocab: Int, seed: UInt64) -> [Int] {
        var g = SeededGenerator(seed: seed)
        return (0..<count).map { _ in g.nextInt(below: vocab) }
    }

    /// Runs `ids` through a decoder in passes of the given sizes and compares each pass's last-position
    /// logits with row (end − 1) of the full forward's logits.
    static func checkAgainstFullForward(_ model: LlamaModel, ids: [Int], passes: [Int], tolerance: Double) throws {
        precondition(passes.reduce(0, +) == ids.count)
        let full = try model.logits([ids])
        let v = model.vocabularySize
        let decoder = try IncrementalDecoder(model: model, capacity: ids.count)
        var end = 0
        for n in passes {
            let logits: [Float]
            if n == 1 {
                logits = Array(try decoder.step(ids[end]))
            } else {
                logits = Array(try decoder.append(ids[end..<(end + n)]))
            }
            end += n
            #expect(decoder.position == end)
            let reference = Array(full.data[((end - 1) * v)..<(end * v)])
            let error = relativeError(logits, reference)
            #expect(error <= tolerance, "position \(end - 1): relative error \(error)")
        }
    }

    /// Every tiny architecture fixture (GQA, MHA untied, head_dim ≠ C/nh, biases, RoPE scalings, Mistral's
    /// window, Qwen2/3, Gemma 3's sandwich norms with a 5-token window, Gemma 2's soft-caps): a 6-token
    /// prompt, then one token at a time, then a 3-token pass over the cache, then single tokens, 24 in all
    /// (the windows of 4–5 are crossed several times).
    @Test(arguments: tinyFixtures)
    func tinyFixtureDecodesAsTheFullForward(_ name: String) throws {
        let model = try LlamaCheckpoint(model: Paths.fixtures.appendingPathComponent(name)).loadModel()
        let ids = Self.tokens(24, vocab: model.vocabularySize, seed: 7)
        try Self.checkAgainstFullForward(model, ids: ids, passes: [6] + Array(repeating: 1, count: 10) + [3] + Array(repeating: 1, count: 5),
                                         tolerance: 2e-5)
    }

    /// The shared stories260K (5 layers, GQA, tied head): a 12-token prompt then 52 single tokens.
    @Test func stories260KDecodesAsTheFullForward() throws {
        let model = try LlamaCheckpoint(model: try Paths.shared("models/stories260K")).loadModel()
        let ids = Self.tokens(64, vocab: model.vocabularySize, seed: 11)
        try Self.checkAgainstFullForward(model, ids: ids, passes: [12] + Array(repeating: 1, count: 52), tolerance: 2e-5)
    }

    /// A first pass of one token (no prompt beyond BOS) and a sequence that fills the capacity exactly.
    @Test func singleTokenPromptFillsTheCapacity() throws {
        let model = try LlamaCheckpoint(model: Paths.fixtures.appendingPathComponent("gemma3-sandwich")).loadModel()
        let ids = Self.tokens(9, vocab: model.vocabularySize, seed: 3)
        try Self.checkAgainstFullForward(model, ids: ids, passes: Array(repeating: 1, count: 9), tolerance: 2e-5)
    }

    /// A reset decoder gives the same logits as a fresh one.
    @Test func resetStartsOver() throws {
        let model = try LlamaCheckpoint(model: Paths.fixtures.appendingPathComponent("qwen3-qknorm")).loadModel()
        let decoder = try IncrementalDecoder(model: model, capacity: 8)
        let first = Array(try decoder.append([3, 9, 1]))
        try decoder.step(4)
        decoder.reset()
        #expect(decoder.position == 0)
        let again = Array(try decoder.append([3, 9, 1]))
        #expect(first == again && !first.contains(where: \.isNaN))
    }

    /// Past the capacity, past max_position_embeddings, and ids outside the vocabulary: errors naming them.
    @Test func refusesWhatDoesNotFit() throws {
        let model = try LlamaCheckpoint(model: Paths.fixtures.appendingPathComponent("gemma3-sandwich")).loadModel()
        let positions = model.configuration.maxPositionEmbeddings
        #expect(throws: LlamaError.invalidInput("\(positions + 1) positions exceed the model's max_position_embeddings \(positions)")) {
            try IncrementalDecoder(model: model, capacity: positions + 1)
        }
        let decoder = try IncrementalDecoder(model: model, capacity: 4)
        try decoder.append([1, 2, 3])
        #expect(throws: LlamaError.invalidInput("5 positions exceed the decoder's 4 (prompt + new tokens)")) {
            try decoder.append([4, 5])
        }
        #expect(throws: LlamaError.invalidInput("token id 96 is outside 0..<96")) { try decoder.step(96) }
        #expect(decoder.position == 3)
    }

    /// Every op of a decode pass, the head included, reaches the math through the model's backend.
    @Test func decodeRunsThroughTheBackend() throws {
        var model = try tinyModel(layers: 2)
        let recording = RecordingBackend()
        model.backend = recording
        let decoder = try IncrementalDecoder(model: model, capacity: 6)
        try decoder.append([1, 5, 9])
        let before = recording.ops.count
        try decoder.step(3)
        let ops = Array(recording.ops[before...])
        #expect(ops.filter { $0 == "attentionContinuing" }.count == 2)
        // Seven projections per block, then the head.
        #expect(ops.filter { $0 == "linear" }.count == 15)
        #expect(ops.suffix(2) == ["rmsNorm", "linear"])
    }
}
