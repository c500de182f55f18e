import Foundation
import Llama
import SafeTensors
import Tensor
import Testing

/// A scratch copy of a fixture checkpoint whose tensors a test edits, in a fresh temporary folder.
private struct ScratchCheckpoint {
    let folder: URL
    var tensors: [(name: String, tensor: Tensor)]

    init(fixture: String) throws {
        let source = Paths.fixtures.appendingPathComponent(fixture)
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("llama-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"),
                                         to: folder.appendingPathComponent("config.json"))
        let file = try SafeTensorsCheckpoint(directory: source.appendingPathComponent("model.safetensors"))
        tensors = try file.tensorNames.map { name in
            (name, Tensor(shape: file.info(name)!.shape, data: try file.floats(name)))
        }
    }

    func write() throws -> URL {
        try SafeTensorsWriter.write(tensors.map { TensorEntry(name: $0.name, dtype: .F32, shape: $0.tensor.shape, data: .floats($0.tensor.data)) },
                                    metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))
        return folder
    }

    func remove() { try? FileManager.default.removeItem(at: folder) }
}

private func loadError(_ folder: URL) -> LlamaError? {
    do { _ = try LlamaCheckpoint(directory: folder); return nil } catch { return error as? LlamaError }
}

@Suite struct LoadingTests {
    @Test func tensorNameTable() throws {
        let c = try LlamaConfiguration(contentsOf: Paths.fixtures.appendingPathComponent("qwen2-bias"))
        #expect(LlamaTensorNames.weight(.q, layer: 3) == "model.layers.3.self_attn.q_proj.weight")
        #expect(LlamaTensorNames.bias(.v, layer: 0) == "model.layers.0.self_attn.v_proj.bias")
        #expect(LlamaTensorNames.weight(.down, layer: 1) == "model.layers.1.mlp.down_proj.weight")
        #expect(LlamaTensorNames.isIgnored("model.layers.0.self_attn.rotary_emb.inv_freq"))
        // The table names exactly the tensors transformers saved (qwen2: q/k/v biases, tied head).
        let saved = try SafeTensorsCheckpoint(directory: Paths.fixtures.appendingPathComponent("qwen2-bias"))
        #expect(Set(LlamaTensorNames.all(configuration: c).map(\.name)) == Set(saved.tensorNames))
        for (name, shape) in LlamaTensorNames.all(configuration: c) { #expect(saved.info(name)?.shape == shape, "\(name)") }
    }

    @Test func everyFixtureLoadsStrictly() throws {
        for name in tinyFixtures {
            let checkpoint = try LlamaCheckpoint(directory: Paths.fixtures.appendingPathComponent(name))
            let untied = !checkpoint.configuration.tieWordEmbeddings
            #expect(checkpoint.headTensorName == (untied ? LlamaTensorNames.lmHead : LlamaTensorNames.embedTokens), "\(name)")
        }
    }

    @Test func missingTensor() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-gqa")
        defer { scratch.remove() }
        scratch.tensors.removeAll { $0.name == "model.layers.1.mlp.up_proj.weight" }
        #expect(loadError(try scratch.write()) == .missingTensor("model.layers.1.mlp.up_proj.weight"))
    }

    @Test func untiedModelWithoutHead() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-mha-untied")
        defer { scratch.remove() }
        scratch.tensors.removeAll { $0.name == "lm_head.weight" }
        #expect(loadError(try scratch.write()) == .missingTensor("lm_head.weight"))
    }

    @Test func unusedTensors() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-gqa")
        defer { scratch.remove() }
        scratch.tensors.append(("model.layers.0.mlp.gate_proj.bias", Tensor.zeros([48])))
        scratch.tensors.append(("model.layers.2.input_layernorm.weight", Tensor.zeros([32])))
        let error = loadError(try scratch.write())
        #expect(error == .unusedTensors(["model.layers.0.mlp.gate_proj.bias", "model.layers.2.input_layernorm.weight"]))
        #expect(error?.description == "checkpoint has 2 tensor(s) the model does not use: model.layers.0.mlp.gate_proj.bias, model.layers.2.input_layernorm.weight")
    }

    @Test func wrongShape() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-gqa")
        defer { scratch.remove() }
        let i = scratch.tensors.firstIndex { $0.name == "model.layers.0.self_attn.k_proj.weight" }!
        scratch.tensors[i].tensor = Tensor.zeros([32, 32])
        let error = loadError(try scratch.write())
        #expect(error == .shapeMismatch(tensor: "model.layers.0.self_attn.k_proj.weight", expected: [16, 32], found: [32, 32]))
        #expect(error?.description == "tensor model.layers.0.self_attn.k_proj.weight has shape [32, 32], expected [16, 32]")
    }

    @Test func nonFiniteWeightsAreRefused() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-gqa")
        defer { scratch.remove() }
        let i = scratch.tensors.firstIndex { $0.name == "model.layers.1.mlp.down_proj.weight" }!
        scratch.tensors[i].tensor.data[7] = .nan
        let checkpoint = try LlamaCheckpoint(directory: try scratch.write())   // headers alone are fine
        #expect(throws: LlamaError.checkpoint("tensor model.layers.1.mlp.down_proj.weight holds a non-finite value (nan at element 7)")) {
            try checkpoint.loadBlock(1)
        }
        _ = try checkpoint.loadBlock(0)
    }

    @Test func rotaryBuffersAreIgnored() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-gqa")
        defer { scratch.remove() }
        scratch.tensors.append(("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor.zeros([4])))
        let model = try LlamaCheckpoint(directory: try scratch.write()).loadModel()
        let reference = try Reference(Paths.fixtures.appendingPathComponent("llama-gqa-reference.safetensors"))
        #expect(try model.logits(reference.ids).relativeError(to: reference.tensor("logits")) <= 1e-4)
    }

    /// Tied config but an lm_head.weight in the file: the stored head is used, as transformers 5 does. The
    /// stored head is the embedding matrix with its rows rotated by one (row i = embedding row i + 1), so
    /// the logits it gives are transformers' tied logits with their columns rotated the same way, and the
    /// tied matrix would give the unrotated ones.
    @Test func tiedConfigWithStoredHead() throws {
        var scratch = try ScratchCheckpoint(fixture: "llama-gqa")
        defer { scratch.remove() }
        let embeddings = scratch.tensors.first { $0.name == LlamaTensorNames.embedTokens }!.tensor
        let (v, c) = (embeddings.shape[0], embeddings.shape[1])
        var rotated = [Float]()
        for i in 0..<v {
            let from = (i + 1) % v
            rotated += embeddings.data[(from * c)..<((from + 1) * c)]
        }
        scratch.tensors.append((LlamaTensorNames.lmHead, Tensor(shape: embeddings.shape, data: rotated)))
        let folder = try scratch.write()
        let checkpoint = try LlamaCheckpoint(directory: folder)
        #expect(checkpoint.headTensorName == LlamaTensorNames.lmHead)
        let reference = try Reference(Paths.fixtures.appendingPathComponent("llama-gqa-reference.safetensors"))
        let tied = try reference.tensor("logits")
        try #require(tied.shape.last == v)
        var shifted = tied.data
        for k in 0..<shifted.count {
            let row = k - k % v
            shifted[k] = tied.data[row + (k % v + 1) % v]
        }
        let expected = Tensor(shape: tied.shape, data: shifted)
        #expect(expected.relativeError(to: tied) > 0.5, "the rotated head must give other logits than the tied one")
        let logits = try checkpoint.loadModel().logits(reference.ids)
        #expect(logits.relativeError(to: expected) <= 1e-4, "stored head: relative error \(logits.relativeError(to: expected))")
        // A wrong-shaped stored head is refused like any other tensor.
        scratch.tensors[scratch.tensors.count - 1].tensor = Tensor.zeros([95, 32])
        #expect(loadError(try scratch.write()) == .shapeMismatch(tensor: "lm_head.weight", expected: [96, 32], found: [95, 32]))
    }

    @Test func inMemorySourceAndMissingFolder() throws {
        let folder = Paths.fixtures.appendingPathComponent("llama-attnbias")
        let file = try SafeTensorsCheckpoint(directory: folder)
        var tensors: [String: Tensor] = [:]
        for name in file.tensorNames { tensors[name] = Tensor(shape: file.info(name)!.shape, data: try file.floats(name)) }
        let c = try LlamaConfiguration(contentsOf: folder)
        let block = try LlamaCheckpoint(configuration: c, source: InMemoryWeights(tensors)).loadBlock(1)
        #expect(block.layer == 1 && block.oBias == tensors["model.layers.1.self_attn.o_proj.bias"])
        #expect(throws: LlamaError.invalidInput("layer 2 outside 0..<2")) {
            try LlamaCheckpoint(configuration: c, source: InMemoryWeights(tensors)).loadBlock(2)
        }
        let nowhere = URL(fileURLWithPath: "/nonexistent/model")
        #expect(loadError(nowhere) == .unreadableConfiguration(file: "/nonexistent/model/config.json", reason: "no such file"))
    }
}
