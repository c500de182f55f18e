import Foundation
import Runs
import Testing

/// pruning.json keeps the text earlier versions wrote with Foundation's JSONEncoder, and their files read back.
@Suite struct RecordJSONTests {
    /// A record with every field set, slashes and non-ASCII in strings, and doubles that need all their digits.
    static let text = """
        {"tool": "llm-prune", "tool_version": "0.9", "arguments": ["llm-prune", "prune", "--output", "runs/é"],
         "input_model": "models/a b", "created": "2026-01-02T03:04:05Z",
         "summary": {"method": "wanda", "pattern": "0.5", "plan": {"10.q": "2:4", "2.k": "0.6"}, "planner": "owl",
                     "seed": 18446744073709551615, "sample_count": 128, "sequence_length": 2048,
                     "calibration_source": "text data/wiki.txt", "calibration_hash": "e6d8b8435ae8d918",
                     "blocks": [{"layer": 0, "seconds": 0.1, "layers": [
                        {"name": "model.layers.0.mlp.up_proj.weight", "layer": 0, "kind": "up", "shape": [172, 64],
                         "zeros": 5504, "sparsity": 0.5, "seconds": 1.25e-05},
                        {"name": "model.layers.0.mlp.down_proj.weight", "layer": 0, "kind": "down", "shape": [64, 172],
                         "zeros": 5504, "sparsity": 0.5}]}],
                     "parameters": 11008, "zeros": 5504, "sparsity": 0.5, "seconds": 1e+20},
         "results": {"wikitext2_perplexity": 130.20000000000002, "wikitext2_seqlen": 512},
         "notes": {"wanda++.seconds": "[[0.03,0.015]]", "input": "a/b"},
         "fine_tuning": {"arguments": ["llm-prune", "finetune"], "input_model": "/in", "settings": {"lr": "0.0001"},
                         "losses": [2.5, 1.0000000000000002, 3e-07], "evaluations": [{"step": 10, "perplexity": 30.25}],
                         "results": {}}}
        """

    @Test func writesWhatJSONEncoderWroteAndReadsItBack() throws {
        let reader = JSONDecoder()
        reader.keyDecodingStrategy = .convertFromSnakeCase
        let record = try reader.decode(PruningRecord.self, from: Data(Self.text.utf8))
        let writer = JSONEncoder()
        writer.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        writer.keyEncodingStrategy = .convertToSnakeCase
        let earlier = try writer.encode(record)
        #expect(String(decoding: try record.jsonData(), as: UTF8.self) == String(decoding: earlier, as: UTF8.self))
        #expect(try PruningRecord.decode(earlier) == record)
        #expect(try PruningRecord.decode(Data(Self.text.utf8)) == record)
        #expect(record.summary.seed == .max && record.fineTuning?.losses[1] == 1.0000000000000002)
    }

    @Test func aNonFiniteResultIsAnErrorNotText() throws {
        var record = try PruningRecord.decode(Data(Self.text.utf8))
        record.results["wikitext2_perplexity"] = .infinity
        #expect(throws: EncodingError.self) { _ = try record.jsonData() }
    }
}
