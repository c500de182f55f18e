import Foundation
import Datasets
import FineTuning
import Runs
import Llama
import Pruning
import SafeTensors
import Testing
import Tokenizers
import Evaluation

/// `llm-prune finetune` end to end on a pruned stories260K: the merged checkpoint keeps the input's zero
/// pattern and passes the 2:4 validator, pruning.json gains the fine-tuning record, and the adapter is in
/// PEFT's layout.
@Suite struct FineTuningJobTests {
    @Test(arguments: [LoRAMode.masked, .plain])
    func writesAMergedTwoFourCheckpointAndAPEFTAdapter(_ mode: LoRAMode) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tokens = try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors")
        _ = try PruningJob.run(PruningJobOptions(
            model: try sharedPath("models/stories260K"), method: try PruningMethods.make("magnitude"), pattern: .nm(n: 2, m: 4),
            calibrationFile: nil, calibrationFormat: .tokens, output: dir.appendingPathComponent("pruned"), toolVersion: "test"))
        let out = dir.appendingPathComponent("tuned")
        let evalFile = dir.appendingPathComponent("eval.txt")
        try String(repeating: "Once upon a time there was a little girl who liked to play. ", count: 40)
            .write(to: evalFile, atomically: true, encoding: .utf8)
        let r = try FineTuningJob.run(FineTuningJobOptions(
            model: dir.appendingPathComponent("pruned"), trainFile: tokens, trainFormat: .tokens, seqlen: 64,
            lora: LoRAOptions(rank: 4, alpha: 8, dropout: 0.05, targets: [.q, .v, .gate], mode: mode),
            training: TrainingOptions(steps: 4, learningRate: 1e-2, warmup: 1, gradientAccumulation: 2),
            output: out, evaluation: (.text, evalFile, 64, 2), arguments: ["llm-prune", "finetune", "(test)"], toolVersion: "test"))
        #expect(r.losses.count == 4 && r.inputZeros == r.outputZeros && r.inputZeros > 0)
        #expect(r.perplexities["before"] != nil && r.perplexities[mode == .masked ? "merged" : "remasked"] != nil)

        let input = try LlamaCheckpoint(directory: dir.appendingPathComponent("pruned"))
        let tuned = try LlamaCheckpoint(directory: out)
        var changed = false
        for layer in 0..<tuned.configuration.numHiddenLayers {
            let a = try input.loadBlock(layer), b = try tuned.loadBlock(layer)
            for kind in LinearKind.allCases {
                #expect(a[kind].data.map { $0 == 0 } == b[kind].data.map { $0 == 0 }, "layer \(layer) \(kind): zero pattern changed")
                try SparsityCheck.validateNM(b[kind].data, rows: b[kind].shape[0], cols: b[kind].shape[1], n: 2, m: 4, name: "\(kind)")
                if a[kind] != b[kind] { changed = true }
            }
        }
        #expect(changed)
        let record = try PruningRecord.decode(try Data(contentsOf: out.appendingPathComponent("pruning.json")))
        #expect(record.summary.pattern == "2:4")
        let ft = try #require(record.fineTuning)
        #expect(ft.losses == r.losses && ft.settings["lora_mode"] == mode.rawValue)

        let adapter = try SafeTensorsFile(url: out.appendingPathComponent("adapter/adapter_model.safetensors"))
        #expect(adapter.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")?.shape == [4, 64])
        #expect(adapter.info("base_model.model.model.layers.4.mlp.gate_proj.lora_B.weight")?.shape == [172, 4])
        #expect(adapter.tensorNames.count == 5 * 3 * 2)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("adapter/adapter_config.json"))) as! [String: Any]
        #expect(config["peft_type"] as? String == "LORA" && config["r"] as? Int == 4)
        #expect(config["target_modules"] as? [String] == ["q_proj", "v_proj", "gate_proj"])
    }

    /// The held-out figures follow the evaluation protocol of `llm-prune eval`: special tokens only where the
    /// tokenizer's post-processor adds them. Here a stories260K copy with no post-processor and add_bos_token
    /// false, whose tokenizer_config.json still names `<s>` as bos_token (as SmolLM2's): no BOS before the text.
    @Test func heldOutEvaluationEncodesAsEval() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: try sharedPath("models/stories260K"), to: model)
        let tokenizerURL = model.appendingPathComponent("tokenizer.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: tokenizerURL)) as! [String: Any]
        json["post_processor"] = NSNull()
        try JSONSerialization.data(withJSONObject: json).write(to: tokenizerURL)
        let configURL = model.appendingPathComponent("tokenizer_config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["add_bos_token"] = false
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let evalFile = dir.appendingPathComponent("eval.txt")
        let text = String(repeating: "Once upon a time there was a little girl who liked to play. ", count: 40)
        try text.write(to: evalFile, atomically: true, encoding: .utf8)

        let tokenizer = try Tokenizer(directory: model)
        let ids = tokenizer.encode(text)
        #expect(ids.first != tokenizer.bosTokenID, "the copy's tokenizer must add no BOS")
        let windows = try EvaluationWindows(text: text, source: "eval", seqlen: 64, encode: { _ in ids }, bosTokenID: nil)
        let expected = try Perplexity.evaluate(model: try LlamaCheckpoint(directory: model).loadModel(), windows: windows, maxWindows: 2)

        let r = try FineTuningJob.run(FineTuningJobOptions(
            model: model, trainFile: try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"),
            trainFormat: .tokens, seqlen: 64, lora: LoRAOptions(rank: 2, alpha: 4, dropout: 0, targets: [.q], mode: .plain),
            training: TrainingOptions(steps: 1, learningRate: 1e-3, warmup: 0, gradientAccumulation: 1),
            output: nil, evaluation: (.text, evalFile, 64, 2), arguments: ["llm-prune", "finetune", "(test)"], toolVersion: "test"))
        let before = try #require(r.perplexities["before"])
        #expect(abs(before - expected.perplexity) <= 1e-9 * expected.perplexity, "\(before) vs \(expected.perplexity)")
    }
}
