import Foundation
import GGUF
import Llama
import SafeTensors
import Tensor
import Testing
import TestSupport

@Suite struct ModelTests {
    @Test func tinyConfigurationFromMetadata() throws {
        let c = try LlamaConfiguration(gguf: try GGUFFile(url: try fixture("tiny-llama.gguf")))
        #expect(c.modelType == .llama)
        #expect(c.hiddenSize == 64 && c.numHiddenLayers == 2 && c.numAttentionHeads == 8 && c.numKeyValueHeads == 4)
        #expect(c.headDim == 8 && c.intermediateSize == 128 && c.vocabSize == 262 && c.maxPositionEmbeddings == 128)
        #expect(c.ropeTheta == 10000 && Float(c.rmsNormEps) == 1e-5)
        #expect(!c.tieWordEmbeddings)
        #expect(c.bosTokenId == 1 && c.eosTokenIds == [2])
    }

    /// Names map to Hugging Face's, and q/k come out exactly as transformers' GGUF loader makes them
    /// (dequantized by the gguf package, rows un-permuted): bit-identical.
    @Test func qkRowsEqualTransformers() throws {
        let checkpoint = try LlamaCheckpoint(ggufFile: try fixture("tiny-llama.gguf"))
        let expected = try SafeTensorsFile(url: try fixture("tiny-llama_expected.safetensors"))
        for layer in 0..<2 {
            for kind in [LinearKind.q, .k] {
                let name = LlamaTensorNames.weight(kind, layer: layer)
                #expect(try checkpoint.source.shape(of: name) == expected.info(name)?.shape)
                #expect(sameBits(try checkpoint.source.floats(name), try expected.floats(name)), "\(name)")
            }
        }
        #expect(checkpoint.headTensorName == LlamaTensorNames.lmHead)
    }

    @Test func tinyLogitsEqualTransformers() throws {
        let checkpoint = try LlamaCheckpoint(ggufFile: try fixture("tiny-llama.gguf"))
        let expected = try SafeTensorsFile(url: try fixture("tiny-llama_expected.safetensors"))
        let ids = try expected.int64s("input_ids").map { Int($0) }
        let logits = try checkpoint.loadModel().logits([ids])
        let want = try expected.floats("logits")
        #expect(logits.data.count == want.count)
        let error = relativeError(logits.data, want)
        #expect(error <= 1e-4, "relative error \(error)")
    }

    /// Architecture qwen2: q/k/v biases, rows not permuted; weights, biases and logits as transformers loads them.
    @Test func qwen2EqualsTransformers() throws {
        let checkpoint = try LlamaCheckpoint(ggufFile: try fixture("tiny-qwen2.gguf"))
        let c = checkpoint.configuration
        #expect(c.modelType == .qwen2 && c.hasQKVBias && !c.hasOutputBias && c.headDim == 8)
        let expected = try SafeTensorsFile(url: try fixture("tiny-qwen2_expected.safetensors"))
        for layer in 0..<2 {
            for kind in [LinearKind.q, .k] {
                for name in [LlamaTensorNames.weight(kind, layer: layer), LlamaTensorNames.bias(kind, layer: layer)] {
                    #expect(sameBits(try checkpoint.source.floats(name), try expected.floats(name)), "\(name)")
                }
            }
        }
        let ids = try expected.int64s("input_ids").map { Int($0) }
        let error = relativeError(try checkpoint.loadModel().logits([ids]).data, try expected.floats("logits"))
        #expect(error <= 1e-4, "relative error \(error)")
    }

    @Test func permutationRoundTripsAndMovesRows() throws {
        // 2 heads of 4 rows (half = 2), 1 column: GGUF rows (h, i, t) ← HF rows (h, t, i).
        let hf: [Float] = [0, 1, 2, 3, 4, 5, 6, 7]
        let gg = try GGUFTensorNaming.permuteRows(hf, rows: 8, heads: 2, toHuggingFace: false, tensor: "t")
        #expect(gg == [0, 2, 1, 3, 4, 6, 5, 7])
        #expect(try GGUFTensorNaming.permuteRows(gg, rows: 8, heads: 2, toHuggingFace: true, tensor: "t") == hf)
        let wide = (0..<48).map(Float.init)   // 8 rows × 6 columns
        let there = try GGUFTensorNaming.permuteRows(wide, rows: 8, heads: 2, toHuggingFace: false, tensor: "t")
        #expect(Array(there[6..<12]) == Array(wide[12..<18]))
        #expect(try GGUFTensorNaming.permuteRows(there, rows: 8, heads: 2, toHuggingFace: true, tensor: "t") == wide)
        #expect(throws: LlamaError.self) { try GGUFTensorNaming.permuteRows(hf, rows: 8, heads: 3, toHuggingFace: true, tensor: "t") }
    }

    @Test func namesMapBothWays() {
        let pairs = [
            ("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"), ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
            ("blk.12.ffn_norm.weight", "model.layers.12.post_attention_layernorm.weight"),
            ("blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"),
            ("blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"),
            ("blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"),
            ("blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"),
            ("blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight"),
            ("blk.29.ffn_up.weight", "model.layers.29.mlp.up_proj.weight"),
            ("blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"),
        ]
        for (g, h) in pairs {
            #expect(GGUFTensorNaming.huggingFaceName(g) == h)
            #expect(GGUFTensorNaming.ggufName(h) == g)
        }
        for odd in ["rope_freqs.weight", "blk.x.attn_q.weight", "blk.01.attn_q.weight", "blk.1.attn_q.scale", "blk.1.attn_qkv.weight"] {
            #expect(GGUFTensorNaming.huggingFaceName(odd) == nil, "\(odd)")
        }
        // Sandwich norms (Gemma 3): ffn_norm is the MLP input's norm, post_attention_norm the attention output's.
        let gemma = [
            ("blk.4.ffn_norm.weight", "model.layers.4.pre_feedforward_layernorm.weight"),
            ("blk.4.post_attention_norm.weight", "model.layers.4.post_attention_layernorm.weight"),
            ("blk.4.post_ffw_norm.weight", "model.layers.4.post_feedforward_layernorm.weight"),
            ("blk.4.attn_q_norm.weight", "model.layers.4.self_attn.q_norm.weight"),
            ("blk.4.attn_k_norm.weight", "model.layers.4.self_attn.k_norm.weight"),
            ("blk.4.attn_norm.weight", "model.layers.4.input_layernorm.weight"),
        ]
        for (g, h) in gemma {
            #expect(GGUFTensorNaming.huggingFaceName(g, normPlacement: .sandwich) == h)
            #expect(GGUFTensorNaming.ggufName(h, normPlacement: .sandwich) == g)
        }
        #expect(GGUFTensorNaming.huggingFaceName("blk.4.attn_norm.bias") == nil)
    }

    /// A tensor the LLaMA table does not know keeps its GGUF name and is refused as unused, not dropped.
    @Test func unknownTensorsAreRefused() throws {
        let src = try GGUFFile(url: try fixture("tiny-llama.gguf"))
        let dir = try TempDir()
        let url = dir.file("extra.gguf")
        let metadata = src.metadataKeys.map { ($0, src[$0]!) }
        var specs = try src.infos.map { GGUFTensorSpec(name: $0.name, type: $0.type, shape: $0.shape) }
        specs.append(GGUFTensorSpec(name: "rope_freqs.weight", type: .F32, shape: [4]))
        try GGUFWriter.write(metadata: metadata.map { (key: $0.0, value: $0.1) }, tensors: specs, to: url) { spec in
            spec.name == "rope_freqs.weight" ? .floats([1, 1, 1, 1]) : .bytes(try src.withRawBytes(spec.name) { Array($0) })
        }
        #expect(throws: LlamaError.unusedTensors(["rope_freqs.weight"])) { try LlamaCheckpoint(ggufFile: url) }

        // A tensor stored under a Hugging Face name that a llama.cpp tensor also maps to shadows nothing.
        let twice = dir.file("twice.gguf")
        var specs2 = try src.infos.map { GGUFTensorSpec(name: $0.name, type: $0.type, shape: $0.shape) }
        specs2.append(GGUFTensorSpec(name: "model.norm.weight", type: .F32, shape: [64]))
        try GGUFWriter.write(metadata: metadata.map { (key: $0.0, value: $0.1) }, tensors: specs2, to: twice) { spec in
            spec.name == "model.norm.weight" ? .floats([Float](repeating: 1, count: 64)) : .bytes(try src.withRawBytes(spec.name) { Array($0) })
        }
        #expect(throws: LlamaError.unusedTensors(["gguf:model.norm.weight"])) { try LlamaCheckpoint(ggufFile: twice) }
    }

    /// Metadata the configuration cannot use is refused with a one-line error naming the key.
    @Test func badModelMetadataIsRefused() throws {
        let src = try GGUFFile(url: try fixture("tiny-llama.gguf"))
        let dir = try TempDir()
        func variant(_ edit: (inout [(key: String, value: GGUFValue)]) -> Void) throws -> URL {
            var metadata = src.metadataKeys.map { (key: $0, value: src[$0]!) }
            edit(&metadata)
            let url = dir.file("v.gguf")
            try? FileManager.default.removeItem(at: url)
            let specs = src.infos.map { GGUFTensorSpec(name: $0.name, type: $0.type, shape: $0.shape) }
            try GGUFWriter.write(metadata: metadata, tensors: specs, to: url) { .bytes(try src.withRawBytes($0.name) { Array($0) }) }
            return url
        }
        func refusal(_ url: URL) -> String {
            do { _ = try LlamaCheckpoint(ggufFile: url); return "opened" } catch { return String(describing: error) }
        }
        let gpt2 = try variant { m in m[m.firstIndex { $0.key == "general.architecture" }!].value = .string("gpt2") }
        #expect(refusal(gpt2).contains("general.architecture 'gpt2'"))
        let noBlocks = try variant { m in m.removeAll { $0.key == "llama.block_count" } }
        #expect(refusal(noBlocks).contains("missing key 'llama.block_count'"))
        let textHeads = try variant { m in m[m.firstIndex { $0.key == "llama.attention.head_count" }!].value = .string("8") }
        #expect(refusal(textHeads).contains("key 'llama.attention.head_count'"))
        let yarn = try variant { m in m.append((key: "llama.rope.scaling.type", value: .string("yarn"))) }
        #expect(refusal(yarn).contains("rope.scaling.type 'yarn'"))
        let partial = try variant { m in
            m[m.firstIndex { $0.key == "llama.rope.dimension_count" }!].value = .uint32(4)
            m.append((key: "llama.attention.key_length", value: .uint32(8)))
        }
        #expect(refusal(partial).contains("partial rotary"))
        let shape = try variant { m in m[m.firstIndex { $0.key == "llama.feed_forward_length" }!].value = .uint32(96) }
        #expect(refusal(shape).contains("has shape"))
        for text in [refusal(gpt2), refusal(noBlocks), refusal(textHeads)] { #expect(!text.contains("\n")) }
    }

    @Test func tokenizerMetadataIsExtracted() throws {
        let m = try #require(try GGUFFile(url: try fixture("tiny-llama.gguf")).tokenizerMetadata())
        #expect(m.model == "gpt2" && m.pre == "smollm")
        #expect(m.tokens.count == 262 && m.tokens[0] == "<|endoftext|>" && m.tokens[4 + 65] == "A" && m.tokens[4 + 32] == "Ġ")
        #expect(m.tokenTypes?.prefix(5) == [3, 3, 3, 2, 1])
        #expect(m.merges == ["Ġ t", "h e"])
        #expect(m.bosTokenID == 1 && m.eosTokenID == 2 && m.unknownTokenID == 3 && m.addBOSToken == false)
        #expect(try GGUFFile(url: try fixture("quants.gguf")).tokenizerMetadata() == nil)
    }

    // MARK: - The real model

    static let smollm2 = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"

    @Test func smolLM2ConfigurationAndTokenizer() throws {
        let file = try GGUFFile(url: try shared(Self.smollm2))
        let c = try LlamaConfiguration(gguf: file)
        #expect(c.modelType == .llama && c.hiddenSize == 576 && c.numHiddenLayers == 30)
        #expect(c.numAttentionHeads == 9 && c.numKeyValueHeads == 3 && c.headDim == 64 && c.intermediateSize == 1536)
        #expect(c.vocabSize == 49152 && c.tieWordEmbeddings && c.ropeTheta == 100_000 && c.maxPositionEmbeddings == 8192)
        #expect(file.info("token_embd.weight")?.type == .Q8_0 && file.info("blk.0.attn_q.weight")?.type == .Q4_1)
        let m = try #require(try file.tokenizerMetadata())
        #expect(m.model == "gpt2" && m.pre == "smollm" && m.tokens.count == 49152 && m.merges?.count == 48900)
        #expect(m.bosTokenID == 1 && m.eosTokenID == 2 && m.addBOSToken == false)
    }

    /// SmolLM2-135M from its GGUF: logits of 8 tokens equal transformers' (the same GGUF, float32) at 256
    /// vocabulary columns, plus every position's maximum and argmax.
    @Test func smolLM2LogitsEqualTransformers() throws {
        let expected = try SafeTensorsFile(url: try fixture("smollm2_logits.safetensors"))
        let checkpoint = try LlamaCheckpoint(ggufFile: try shared(Self.smollm2))
        let ids = try expected.int64s("input_ids").map { Int($0) }
        let columns = try expected.int64s("columns").map { Int($0) }
        let logits = try checkpoint.loadModel().logits([ids])
        let vocab = checkpoint.configuration.vocabSize
        #expect(logits.data.count == ids.count * vocab)
        var slice: [Float] = [], maxima: [Float] = [], argmax: [Int64] = []
        for p in 0..<ids.count {
            let row = Array(logits.data[(p * vocab)..<((p + 1) * vocab)])
            slice += columns.map { row[$0] }
            let top = try #require(row.maxOrNaN())
            let m = try #require(row.firstIndex(of: top), "position \(p): the logits hold a NaN")
            maxima.append(row[m])
            argmax.append(Int64(m))
        }
        let error = relativeError(slice, try expected.floats("logits"))
        #expect(error <= 1e-4, "relative error \(error)")
        #expect(relativeError(maxima, try expected.floats("max_logit")) <= 1e-4)
        #expect(argmax == (try expected.int64s("argmax")))
    }
}
