import Foundation
import JSON
import Llama
import Testing

private func decode(_ json: String) throws -> LlamaConfiguration {
    try LlamaConfiguration(jsonData: Data(json.utf8))
}

/// A minimal llama config with `extra` spliced in (a JSON fragment starting with a comma, or empty).
private func llama(_ extra: String = "", type: String = "llama") -> String {
    """
    {"model_type": "\(type)", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 8,
     "intermediate_size": 100, "vocab_size": 300\(extra)}
    """
}

/// The error a decoding throws (nil when it succeeds).
private func refusal(_ json: String) -> LlamaError? {
    do { _ = try decode(json); return nil } catch { return error as? LlamaError }
}

@Suite struct ConfigurationTests {
    @Test func sharedStoriesConfig() throws {
        let c = try LlamaConfiguration(contentsOf: try Paths.shared("models/stories260K"))
        #expect(c.modelType == .llama)
        #expect(c.hiddenSize == 64 && c.numHiddenLayers == 5 && c.numAttentionHeads == 8)
        #expect(c.numKeyValueHeads == 4 && c.headDim == 8 && c.queryGroupSize == 2)
        #expect(c.intermediateSize == 172 && c.vocabSize == 512 && c.maxPositionEmbeddings == 512)
        #expect(c.rmsNormEps == 1e-5 && c.ropeTheta == 10000 && c.ropeScaling == nil)
        #expect(c.tieWordEmbeddings && c.bosTokenId == 1 && c.eosTokenIds == [2] && c.torchDtype == "float32")
        #expect(!c.hasQKVBias && !c.hasOutputBias && c.attentionWindow(layer: 0) == nil)
    }

    @Test func defaultsFollowTransformers() throws {
        let c = try decode(llama())
        #expect(c.numKeyValueHeads == 8)          // = heads
        #expect(c.headDim == 8)                   // = hidden / heads
        #expect(c.ropeTheta == 10000 && c.ropeScaling == nil)
        #expect(c.rmsNormEps == 1e-6 && !c.tieWordEmbeddings && c.maxPositionEmbeddings == 2048)
        #expect(c.bosTokenId == nil && c.eosTokenIds.isEmpty && c.torchDtype == nil)
        #expect(try decode(llama(type: "mistral")).maxPositionEmbeddings == 131072)
        #expect(try decode(llama(type: "qwen2")).maxPositionEmbeddings == 32768)
    }

    @Test func explicitHeadDimAndTokenIds() throws {
        let c = try decode(llama(#", "head_dim": 16, "num_key_value_heads": 2, "eos_token_id": [2, 7], "bos_token_id": 1, "torch_dtype": "bfloat16""#))
        #expect(c.headDim == 16 && c.numKeyValueHeads == 2 && c.queryGroupSize == 4)
        #expect(c.eosTokenIds == [2, 7] && c.bosTokenId == 1 && c.torchDtype == "bfloat16")
        #expect(try decode(llama(#", "head_dim": null, "eos_token_id": null"#)).headDim == 8)
    }

    @Test func ropeScalingLegacyForms() throws {
        let l3 = try decode(llama(#", "rope_theta": 500000.0, "max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#))
        #expect(l3.ropeTheta == 500000)
        #expect(l3.ropeScaling == .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192))
        // The older "type" key; original_max_position_embeddings defaults to max_position_embeddings.
        let l3b = try decode(llama(#", "max_position_embeddings": 4096, "rope_scaling": {"type": "llama3", "factor": 2, "low_freq_factor": 1, "high_freq_factor": 2}"#))
        #expect(l3b.ropeScaling == .llama3(factor: 2, lowFreqFactor: 1, highFreqFactor: 2, originalMaxPositionEmbeddings: 4096))
        #expect(try decode(llama(#", "rope_scaling": {"type": "linear", "factor": 4.0}"#)).ropeScaling == .linear(factor: 4))
        #expect(try decode(llama(#", "rope_scaling": null"#)).ropeScaling == nil)
        #expect(try decode(llama(#", "rope_scaling": {"rope_type": "default"}"#)).ropeScaling == nil)
    }

    @Test func ropeParametersOfTransformers5() throws {
        // Written by transformers 5 save_pretrained (scripts/make_llama_fixtures.py).
        let l3 = try LlamaConfiguration(contentsOf: Paths.fixtures.appendingPathComponent("llama3-rope"))
        #expect(l3.ropeTheta == 500000)
        #expect(l3.ropeScaling == .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16))
        let lin = try LlamaConfiguration(contentsOf: Paths.fixtures.appendingPathComponent("linear-rope"))
        #expect(lin.ropeTheta == 1000 && lin.ropeScaling == .linear(factor: 2.5) && lin.headDim == 12)
        let plain = try decode(llama(#", "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}"#))
        #expect(plain.ropeTheta == 1e6 && plain.ropeScaling == nil)
        // rope_scaling wins over rope_parameters, as in transformers.
        let both = try decode(llama(#", "rope_parameters": {"rope_type": "linear", "factor": 3}, "rope_scaling": {"type": "linear", "factor": 5}"#))
        #expect(both.ropeScaling == .linear(factor: 5))
    }

    @Test func biasSemanticsPerModelType() throws {
        let plain = try decode(llama())
        #expect(!plain.hasQKVBias && !plain.hasOutputBias)
        let biased = try decode(llama(#", "attention_bias": true"#))
        #expect(biased.hasQKVBias && biased.hasOutputBias)   // llama: o_proj too
        let qwen = try decode(llama(#", "attention_bias": false"#, type: "qwen2"))
        #expect(qwen.hasQKVBias && !qwen.hasOutputBias)      // Qwen2Attention: q/k/v always, o never
        let mistral = try decode(llama(#", "attention_bias": true"#, type: "mistral"))
        #expect(!mistral.hasQKVBias && !mistral.hasOutputBias)
    }

    @Test func slidingWindows() throws {
        let m = try decode(llama(#", "sliding_window": 4096"#, type: "mistral"))
        #expect((0..<3).allSatisfy { m.attentionWindow(layer: $0) == 4096 })
        #expect(try decode(llama(#", "sliding_window": null"#, type: "mistral")).attentionWindow(layer: 0) == nil)
        #expect(try decode(llama(type: "mistral")).attentionWindow(layer: 2) == 4096)   // MistralConfig's default
        #expect(try decode(llama(#", "use_sliding_window": true"#, type: "qwen2")).attentionWindow(layer: 2) == nil) // layer < 28
        #expect(try decode(llama(#", "use_sliding_window": true, "max_window_layers": 2"#, type: "qwen2")).attentionWindow(layer: 2) == 4096)
        // qwen2: only with use_sliding_window, only from max_window_layers on (or as layer_types says).
        let off = try decode(llama(#", "sliding_window": 16, "max_window_layers": 1"#, type: "qwen2"))
        #expect((0..<3).allSatisfy { off.attentionWindow(layer: $0) == nil })
        let on = try decode(llama(#", "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 1"#, type: "qwen2"))
        #expect(on.attentionWindow(layer: 0) == nil && on.attentionWindow(layer: 1) == 16 && on.attentionWindow(layer: 2) == 16)
        let typed = try decode(llama(#", "sliding_window": 16, "use_sliding_window": true, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]"#, type: "qwen2"))
        #expect(typed.attentionWindow(layer: 0) == 16 && typed.attentionWindow(layer: 1) == nil && typed.attentionWindow(layer: 2) == 16)
        // llama has no sliding window even if the key is present.
        #expect(try decode(llama(#", "sliding_window": 16"#)).attentionWindow(layer: 0) == nil)
    }

    /// The architecture description each model type maps to: the LLaMA recipe, with its biases, per-layer
    /// windows and RoPE base from the file, and its block geometry carrying the per-layer part.
    @Test func architectureDescriptionOfEachModelType() throws {
        let qwen = try decode(llama(#", "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 1, "rope_theta": 1000000, "tie_word_embeddings": true"#,
                                    type: "qwen2"))
        let a = qwen.architecture
        #expect(a.normPlacement == .pre && a.normForm == .scaled && a.activation == .silu && !a.qkNorm)
        #expect(a.embeddingScale == nil && a.attentionSoftcap == nil && a.finalLogitSoftcap == nil)
        #expect(a.attentionScale == 1 / Float(8).squareRoot())
        #expect(a.layers == [.init(window: nil, ropeTheta: 1e6), .init(window: 16, ropeTheta: 1e6), .init(window: 16, ropeTheta: 1e6)])
        #expect(a.qkvBias && !a.outputBias && a.tiedHead)
        #expect(BlockGeometry(configuration: qwen, layer: 1).attentionWindow == 16)
        #expect(BlockGeometry(configuration: qwen, layer: 0).attentionWindow == nil)
        let biased = try decode(llama(#", "attention_bias": true"#)).architecture
        #expect(biased.qkvBias && biased.outputBias && !biased.tiedHead && biased.layers.allSatisfy { $0.window == nil && $0.ropeTheta == 10000 })
        try a.checkSupported()
    }

    /// gemma3_text as Gemma3TextConfig reads it: the Gemma 3 recipe, every sixth layer full by default, the
    /// two RoPE bases (also from transformers 5's per-layer-type rope_parameters), the attention scale from
    /// query_pre_attn_scalar, a tied head by default; encoding round-trips.
    @Test func gemma3TextConfiguration() throws {
        let json = #"""
        {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 7, "num_attention_heads": 4,
         "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 100, "vocab_size": 300,
         "sliding_window": 16, "rope_theta": 1000000, "query_pre_attn_scalar": 64}
        """#
        let c = try decode(json)
        #expect(c.modelType == .gemma3Text && c.tieWordEmbeddings && c.maxPositionEmbeddings == 131072)
        #expect(c.layerTypes == ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
                                 "sliding_attention", "full_attention", "sliding_attention"])
        let a = c.architecture
        #expect(a.normPlacement == .sandwich && a.normForm == .offset && a.activation == .geluTanh && a.qkNorm)
        #expect(a.embeddingScale == Float(Double(64).squareRoot()) && a.attentionScale == 0.125)
        #expect(a.layers[5] == .init(window: nil, ropeTheta: 1e6) && a.layers[6] == .init(window: 16, ropeTheta: 10000))
        #expect(a.attentionSoftcap == nil && a.finalLogitSoftcap == nil && !a.qkvBias)
        try a.checkSupported()
        #expect(BlockGeometry(configuration: c, layer: 0).ropeTheta == 10000)
        // The norm names follow the placement: Gemma's post_attention_layernorm is the attention output's.
        #expect(LlamaTensorNames.norm(.mlpInput, layer: 2, architecture: a) == "model.layers.2.pre_feedforward_layernorm.weight")
        #expect(LlamaTensorNames.norm(.attentionOutput, layer: 2, architecture: a) == "model.layers.2.post_attention_layernorm.weight")
        #expect(LlamaTensorNames.block(layer: 0, configuration: c).count == 13)
        let again = try LlamaConfiguration(jsonData: try JSONValueEncoder().encode(c).text().data(using: .utf8)!)
        #expect(again == c)
        // transformers 5 writes per-layer-type RoPE parameters.
        let t5 = try decode(llama(#", "layer_types": ["sliding_attention", "full_attention", "sliding_attention"], "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000}, "sliding_attention": {"rope_type": "default", "rope_theta": 10000}}"#,
                                  type: "gemma3_text"))
        #expect(t5.ropeTheta == 1e6 && t5.ropeLocalBaseFreq == 10000 && t5.attentionWindow(layer: 0) == 4096 && t5.attentionWindow(layer: 1) == nil)
        // Soft-capping is described, and refused when the model is opened.
        #expect(try decode(llama(#", "final_logit_softcapping": 30.0"#, type: "gemma3_text")).architecture.finalLogitSoftcap == 30)
        #expect(refusal(llama(#", "hidden_activation": "gelu""#, type: "gemma3_text")) != nil)
    }

    /// Every feature the description can hold is computed (Gemma 3's sandwich norms, QK-norm and per-layer
    /// RoPE bases, Gemma 2's soft-caps); a cap that is not positive and finite is refused, named, in one line.
    @Test func architectureFeaturesAreComputedAndBadCapsRefused() throws {
        var a = try decode(llama()).architecture
        a.normPlacement = .sandwich
        a.qkNorm = true
        a.layers[0].ropeTheta = 1e6
        a.finalLogitSoftcap = 30
        a.attentionSoftcap = 50
        try a.checkSupported()
        a.finalLogitSoftcap = 0
        #expect {
            try a.checkSupported()
        } throws: { e in
            let s = String(describing: e)
            return s.contains("final logit soft-cap 0.0") && !s.contains("attention logit") && !s.contains("\n")
        }
        a.finalLogitSoftcap = 30
        a.attentionSoftcap = .nan
        #expect(throws: LlamaError.self) { try a.checkSupported() }
    }

    /// gemma2 as Gemma2Config reads it: Gemma 3's recipe without QK-norm, every second layer sliding, one RoPE
    /// base, both soft-caps on by default (30 and 50) and off when null.
    @Test func gemma2Configuration() throws {
        let c = try decode(llama(#", "sliding_window": 8, "query_pre_attn_scalar": 16"#, type: "gemma2"))
        #expect(c.layerTypes == ["sliding_attention", "full_attention", "sliding_attention"] && c.tieWordEmbeddings)
        let a = c.architecture
        #expect(a.normPlacement == .sandwich && a.normForm == .offset && a.activation == .geluTanh && !a.qkNorm)
        #expect(a.finalLogitSoftcap == 30 && a.attentionSoftcap == 50 && a.attentionScale == 0.25)
        #expect(a.layers == [.init(window: 8, ropeTheta: 10000), .init(window: nil, ropeTheta: 10000), .init(window: 8, ropeTheta: 10000)])
        let uncapped = try decode(llama(#", "final_logit_softcapping": null, "attn_logit_softcapping": null"#, type: "gemma2"))
        #expect(uncapped.architecture.finalLogitSoftcap == nil && uncapped.architecture.attentionSoftcap == nil)
        #expect(try LlamaConfiguration(jsonData: try JSONValueEncoder().encode(c).text().data(using: .utf8)!) == c)
    }

    @Test func refusals() throws {
        #expect(refusal(llama(type: "gemma")) == .unsupportedModelType("gemma"))
        #expect(refusal(llama(#", "rope_scaling": {"type": "dynamic", "factor": 2.0}"#))
                == .unsupportedOption("rope scaling type 'dynamic' (supported: default, linear, llama3)"))
        #expect(refusal(llama(#", "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000}"#))
                == .unsupportedOption("rope scaling type 'yarn' (supported: default, linear, llama3)"))
        #expect(refusal(llama(#", "mlp_bias": true"#)) == .unsupportedOption("mlp_bias = true (biases on gate/up/down projections)"))
        #expect(refusal(llama(#", "hidden_act": "gelu""#)) == .unsupportedOption("hidden_act 'gelu' (only silu is supported)"))
        #expect(refusal(llama(#", "partial_rotary_factor": 0.5"#))
                == .unsupportedOption("partial_rotary_factor 0.5 (only full rotary embeddings are supported)"))
        #expect(refusal(llama(#", "quantization_config": {"quant_method": "gptq"}"#))
                == .unsupportedOption("quantization_config is present (quantized checkpoints are not supported)"))
        #expect(refusal(llama(#", "rope_parameters": {"full_attention": {"rope_type": "default"}}"#))
                == .unsupportedOption("per-layer-type rope_parameters (one RoPE for all layers is supported)"))
        #expect(refusal(llama(#", "layer_types": ["full_attention", "chunked_attention", "full_attention"]"#, type: "qwen2"))
                == .unsupportedOption("layer type 'chunked_attention' (supported: full_attention, sliding_attention)"))
        #expect(refusal(llama(#", "rope_scaling": {"type": "linear"}"#)) == .invalidConfiguration("rope scaling 'linear' needs 'factor'"))
        #expect(refusal(llama(#", "num_key_value_heads": 3"#))
                == .invalidConfiguration("num_attention_heads 8 is not a multiple of num_key_value_heads 3"))
        #expect(refusal(llama(#", "head_dim": 7"#)) == .invalidConfiguration("head_dim 7 must be positive and even for rotary embeddings"))
        #expect(refusal(#"{"model_type": "llama", "hidden_size": 60, "num_hidden_layers": 1, "num_attention_heads": 8, "intermediate_size": 8, "vocab_size": 8}"#)
                == .invalidConfiguration("hidden_size 60 is not a multiple of num_attention_heads 8 and head_dim is not given"))
        #expect(refusal(llama(#", "sliding_window": 0"#, type: "mistral")) == .invalidConfiguration("sliding_window 0 must be positive"))
    }

    @Test func unreadableFilesAreOneLineErrors() throws {
        #expect(refusal(#"{"model_type": "llama", "num_hidden_layers": 1, "num_attention_heads": 8, "intermediate_size": 8, "vocab_size": 8}"#)
                == .unreadableConfiguration(file: "config.json", reason: "missing key 'hidden_size'"))
        #expect(refusal(llama(#", "num_key_value_heads": "four""#))
                == .unreadableConfiguration(file: "config.json", reason: "key 'num_key_value_heads' is not an integer"))
        #expect(refusal("{not json") == .unreadableConfiguration(file: "config.json", reason: "not valid JSON: expected a string key at byte 1"))
        let missing = URL(fileURLWithPath: "/nonexistent/folder/config.json")
        #expect(throws: LlamaError.unreadableConfiguration(file: missing.path, reason: "no such file")) {
            try LlamaConfiguration(contentsOf: missing)
        }
        for error in [refusal("{not json"), refusal(llama(type: "gemma")), refusal(llama(#", "mlp_bias": true"#))] {
            let text = try #require(error).description
            #expect(!text.contains("\n"), "multi-line error: \(text)")
        }
    }

    @Test func encodingRoundTrips() throws {
        let sources = [
            llama(#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "eos_token_id": [2, 3], "bos_token_id": 1, "attention_bias": true, "torch_dtype": "float16""#),
            llama(#", "sliding_window": 16, "use_sliding_window": true, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]"#, type: "qwen2"),
            llama(#", "sliding_window": 7, "rope_scaling": {"type": "linear", "factor": 2}"#, type: "mistral"),
        ]
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys]
        for json in sources {
            let c = try decode(json)
            let again = try decode(String(decoding: try JSONEncoder().encode(c), as: UTF8.self))
            #expect(again == c)
            // The JSON module writes the text Foundation's encoder wrote (convert's config.json keeps it).
            let text = try JSONValueEncoder().encode(c).text(.sortedKeys)
            #expect(text == String(decoding: try foundation.encode(c), as: UTF8.self))
            #expect(try decode(text) == c)
        }
    }
}
