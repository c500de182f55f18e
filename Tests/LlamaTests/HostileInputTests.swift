import Foundation
import Llama
import Tensor
import Testing
import TestSupport

/// config.json values and checkpoints built to trap or exhaust memory: each must be a one-line error
/// naming the key (issue 11), before any allocation sized by the hostile value.
private func config(_ extra: String = "") -> String {
    """
    {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 8,
     "intermediate_size": 100, "vocab_size": 300\(extra)}
    """
}

private func refusal(_ json: String) -> LlamaError? {
    do { _ = try LlamaConfiguration(jsonData: Data(json.utf8)); return nil } catch { return error as? LlamaError }
}

@Suite struct HostileConfigurationTests {
    @Test func hugeSizesAreRefusedBeforeAnyShapeArithmetic() throws {
        // 2^62: the q projection's 8 × 2^62 rows would overflow.
        #expect(refusal(config(#", "head_dim": 4611686018427387904"#))
                == .invalidConfiguration("head_dim 4611686018427387904 exceeds the limit of 16384 this tool accepts"))
        #expect(refusal(config().replacingOccurrences(of: #""num_hidden_layers": 3"#, with: #""num_hidden_layers": 1000000000"#))
                == .invalidConfiguration("num_hidden_layers 1000000000 exceeds the limit of 16384 this tool accepts"))
        #expect(refusal(config().replacingOccurrences(of: #""vocab_size": 300"#, with: #""vocab_size": 2147483647"#))
                == .invalidConfiguration("vocab_size 2147483647 exceeds the limit of 16777216 this tool accepts"))
        #expect(refusal(config(#", "head_dim": 128"#).replacingOccurrences(of: #""num_attention_heads": 8"#, with: #""num_attention_heads": 16384"#))
                == .invalidConfiguration("num_attention_heads × head_dim = 2097152 exceeds the 1048576 this tool accepts"))
    }

    @Test func aFloatTooLargeForIntIsAnErrorNotATrap() throws {
        let rope = #", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 1e30}"#
        #expect(refusal(config(rope)) == .invalidConfiguration(
            "rope key 'original_max_position_embeddings' is 1e+30, not an integer in 1...1073741824"))
        let nan = rope.replacingOccurrences(of: "1e30", with: "8192.5")
        #expect(refusal(config(nan))?.description.contains("original_max_position_embeddings") == true)
        #expect(refusal(config(#", "rope_theta": 1e400"#))
                == .unreadableConfiguration(file: "config.json", reason: "key 'rope_theta' is 1e400, too large for a double"))
    }

    @Test func nonIntegralAndOutOfRangeNumbersNameTheKey() throws {
        #expect(refusal(config(#", "head_dim": 8.5"#))
                == .unreadableConfiguration(file: "config.json", reason: "key 'head_dim' is 8.5, not an integer"))
        #expect(refusal(config(#", "max_position_embeddings": 99999999999999999999"#))
                == .unreadableConfiguration(file: "config.json", reason: "key 'max_position_embeddings' is 99999999999999999999, outside the range of a 64-bit integer"))
        #expect(refusal(config(#", "eos_token_id": [2, 1e3]"#))
                == .unreadableConfiguration(file: "config.json", reason: "key 'eos_token_id' is 1e3, not an integer literal"))
    }

    @Test func aConfigThatIsNotAnObjectSaysSo() throws {
        #expect(refusal("[1, 2, 3]") == .unreadableConfiguration(file: "config.json", reason: "the top level is an array, not a JSON object"))
        #expect(refusal("\"llama\"") == .unreadableConfiguration(file: "config.json", reason: "the top level is a string, not a JSON object"))
    }

    @Test func aFolderOrDeviceWhereConfigJSONShouldBeIsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("config.json"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: LlamaError.unreadableConfiguration(file: dir.appendingPathComponent("config.json").path, reason: "is a directory, not a file")) {
            try LlamaConfiguration(contentsOf: dir)
        }
        #expect(throws: LlamaError.unreadableConfiguration(file: "/dev/zero", reason: "is not a regular file")) {
            try LlamaConfiguration(contentsOf: URL(fileURLWithPath: "/dev/zero"))
        }
    }

    @Test func moreLayersThanTheCheckpointHoldsIsRefusedBeforeTheNameTable() throws {
        var c = try LlamaConfiguration(jsonData: Data(config().utf8))
        c.numHiddenLayers = 16384
        let weights = InMemoryWeights(["model.embed_tokens.weight": Tensor(shape: [300, 64], data: [Float](repeating: 0, count: 300 * 64)),
                                       "model.layers.0.input_layernorm.weight": Tensor(shape: [64], data: [Float](repeating: 1, count: 64))])
        #expect(throws: LlamaError.invalidConfiguration("num_hidden_layers is 16384 but the checkpoint holds only 1 block tensors")) {
            try LlamaCheckpoint(configuration: c, source: weights)
        }
    }

    /// NaN outside the blocks (final norm, untied head) is refused like NaN inside them, although
    /// pruning never reads those tensors.
    @Test func nonFiniteTensorsOutsideTheBlocksAreFound() throws {
        var c = try LlamaConfiguration(jsonData: Data(config().utf8))
        c.numHiddenLayers = 1
        var tensors: [String: Tensor] = [:]
        for (name, shape) in LlamaTensorNames.all(configuration: c) {
            tensors[name] = Tensor(shape: shape, data: [Float](repeating: 0.01, count: shape.reduce(1, *)))
        }
        try LlamaCheckpoint(configuration: c, source: InMemoryWeights(tensors)).checkNonBlockTensorsFinite()
        for name in [LlamaTensorNames.finalNorm, LlamaTensorNames.lmHead, LlamaTensorNames.embedTokens] {
            var bad = tensors
            bad[name]!.data[3] = name == LlamaTensorNames.lmHead ? .infinity : .nan
            let checkpoint = try LlamaCheckpoint(configuration: c, source: InMemoryWeights(bad))
            #expect(throws: LlamaError.self) { try checkpoint.checkNonBlockTensorsFinite() }
            do { try checkpoint.checkNonBlockTensorsFinite() } catch {
                #expect("\(error)".contains("tensor \(name) holds a non-finite value"), "\(error)")
            }
        }
    }

    /// TestSupport's error measures (shared by every test target): NaN on either side, in any position, and a
    /// count mismatch give NaN, which fails every comparison.
    @Test func theTestsOwnErrorHelpersFailOnNaN() {
        let (a, b): ([Float], [Double]) = ([1, 2, 3], [1, 2, 3])
        #expect(relativeError(a, b) == 0 && maxAbsError(a, b) == 0)
        for i in 0..<3 {
            var x = a, y = b
            x[i] = .nan
            y[i] = .nan
            #expect(relativeError(x, b).isNaN && relativeError(a, y).isNaN && maxAbsError(x, b).isNaN && maxAbsError(a, y).isNaN, "NaN at \(i)")
            #expect(relativeError(x, b.map(Float.init)).isNaN, "NaN at \(i)")
            #expect(x.maxOrNaN()!.isNaN && x.minOrNaN()!.isNaN, "NaN at \(i)")
        }
        #expect(relativeError(a, [1, 2] as [Double]).isNaN)
        #expect(maxOrNaN(Float(1), .nan).isNaN && maxOrNaN(Float.nan, 1).isNaN && minOrNaN(1.0, .nan).isNaN && minOrNaN(Double.nan, 1).isNaN)
        #expect(maxOrNaN(1.0, 2.0) == 2 && minOrNaN(1.0, 2.0) == 1 && [3.0, -1, 2].maxOrNaN() == 3 && [3.0, -1, 2].minOrNaN() == -1)
        #expect(([] as [Double]).maxOrNaN() == nil)
    }
}
