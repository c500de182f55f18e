import Foundation
import GGUF
import JSON
import Testing
import TestSupport
import Tokenizers

/// Gemma 3 270M's `tokenizer.ggml.*` metadata (and `general.architecture`), read by the GGUF module from
/// the file `make setup` fetches into `models/gemma-3-270m/`.
enum Gemma3 {
    static let fixture = "expected/gemma3-gguf.json"

    static func spec() throws -> GGUFTokenizerSpec {
        let gguf = try gemma3GGUF()
        let m = try #require(try GGUFFile(url: gguf).tokenizerMetadata(), "no tokenizer.ggml.model in \(gguf.path)")
        return GGUFTokenizerSpec(model: m.model, pre: m.pre, tokens: m.tokens, scores: m.scores,
                                 tokenTypes: m.tokenTypes?.map { Int32(clamping: $0) }, merges: m.merges,
                                 bosTokenID: m.bosTokenID, eosTokenID: m.eosTokenID, unknownTokenID: m.unknownTokenID,
                                 paddingTokenID: m.paddingTokenID, addBOS: m.addBOSToken, addEOS: m.addEOSToken,
                                 addSpacePrefix: m.addSpacePrefix, chatTemplate: m.chatTemplate, architecture: m.architecture)
    }
}

/// `Tokenizer(gguf:)` on Gemma 3's metadata against transformers' tokenizer loaded from the same GGUF
/// (`AutoTokenizer.from_pretrained(folder, gguf_file=…)`, Fixtures/tokenizers/expected/gemma3-gguf.json
/// from scripts/make_gemma3_fixtures.py).
@Suite struct GGUFGemma3Tests {
    @Test func specIsTheMetadataTheFixtureScriptRead() throws {
        let spec = try Gemma3.spec()
        let meta = try #require(try loadFixtureJSON(Gemma3.fixture)["gguf"])
        #expect(spec.architecture == "gemma3" && spec.architecture == meta["architecture"]?.stringValue)
        #expect(spec.model == meta["model"]?.stringValue && spec.pre == meta["pre"]?.stringValue && spec.merges == nil)
        #expect(spec.tokens.count == 262_144 && spec.tokens.count == meta["vocab_size"]?.intValue)
        for type in [1, 3, 4, 6] {
            #expect(spec.tokenTypes?.filter { $0 == type }.count == meta["token_type_counts"]?[String(type)]?.intValue, "type \(type)")
        }
        #expect(spec.bosTokenID == meta["bos"]?.intValue && spec.eosTokenID == meta["eos"]?.intValue)
        #expect(spec.unknownTokenID == meta["unk"]?.intValue && spec.paddingTokenID == meta["pad"]?.intValue)
        #expect(spec.addBOS == true && spec.addEOS == false && spec.addSpacePrefix == false)
    }

    /// The WikiText-2 test evaluation string gives transformers' 292,283 ids (BOS first), the same ids
    /// (hash, first and last 64), and every probe (spaces, newlines, tabs, digits, scripts, emoji, control
    /// and user-defined token text, byte-token text) the same ids, with and without special tokens.
    @Test func tokenizerFromMetadataMatchesTransformers() throws {
        let spec = try Gemma3.spec()
        let start = threadCPUSeconds()
        let t = try Tokenizer(gguf: spec)
        print("[tokenizers] Gemma 3: Tokenizer(gguf:) built in \(String(format: "%.3f", threadCPUSeconds() - start)) s CPU")
        let info = try loadFixtureJSON(Gemma3.fixture)
        #expect(t.bosTokenID == 2 && t.vocabSize == info["vocab_size"]?.intValue)

        let text = WikiText.evaluationString(try WikiText.lines())
        let cpuStart = threadCPUSeconds()
        let ids = t.encode(text)
        print("[tokenizers] Gemma 3: evaluation string -> \(ids.count) ids in \(String(format: "%.3f", threadCPUSeconds() - cpuStart)) s CPU")
        #expect(ids.count == 292_283 && ids.count == info["eval"]?["count"]?.intValue, "\(ids.count) ids")
        #expect(ids.first == 2)
        #expect(fnv1a64(ids: ids) == info["eval"]?["fnv"]?.stringValue)
        let first = try #require(info["eval"]?["first_ids"]?.intArray), last = try #require(info["eval"]?["last_ids"]?.intArray)
        #expect(Array(ids.prefix(first.count)) == first && Array(ids.suffix(last.count)) == last)

        let probes = try #require(info["probes"]?.arrayValue)
        #expect(probes.count > 250)
        var mismatches = 0
        for probe in probes {
            let text = try #require(probe["text"]?.stringValue)
            let want = try #require(probe["ids"]?.intArray)
            let got = t.encode(text)
            if got != want { mismatches += 1 }
            #expect(got == want, "\(text.debugDescription): \(got) vs transformers' \(want)")
            if let plain = probe["ids_no_special"]?.intArray {
                #expect(t.encode(text, addSpecialTokens: false) == plain, "\(text.debugDescription) without special tokens")
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(probes.count) probes differ")
        try checkDecoding(t, ids: ids, probes: probes, label: "Gemma 3 (GGUF metadata)")
    }

    /// The tokenizer.json / tokenizer_config.json that `GGUFTokenizer.write` makes for Gemma 3 loads back
    /// into the same tokenizer: the same evaluation ids and decodes.
    @Test func writtenTokenizerJSONMatchesTransformers() throws {
        let (reloaded, json, config) = try writtenAndReloaded(try Gemma3.spec())
        #expect(json["normalizer"]?["type"]?.stringValue == "Sequence" && json["pre_tokenizer"]?.isNull == true)
        #expect(config["add_bos_token"]?.boolValue == true && config["bos_token"]?.stringValue == "<bos>")
        let info = try loadFixtureJSON(Gemma3.fixture)
        let ids = reloaded.encode(WikiText.evaluationString(try WikiText.lines()))
        #expect(ids.count == 292_283 && fnv1a64(ids: ids) == info["eval"]?["fnv"]?.stringValue)
        let probes = try #require(info["probes"]?.arrayValue)
        for probe in probes {
            let text = try #require(probe["text"]?.stringValue)
            #expect(reloaded.encode(text) == probe["ids"]?.intArray, "\(text.debugDescription)")
        }
        try checkDecoding(reloaded, ids: ids, probes: probes, label: "Gemma 3 (written tokenizer.json)")
    }

    /// transformers' `decode(ids, skip_special_tokens=True)` of the evaluation ids (hash) and each probe.
    func checkDecoding(_ t: Tokenizer, ids: [Int], probes: [JSONValue], label: String) throws {
        let info = try loadFixtureJSON(Gemma3.fixture)
        #expect(fnv1a64(bytes: t.decode(ids).utf8) == info["eval"]?["decoded_fnv"]?.stringValue, "\(label): decode of the evaluation ids")
        for probe in probes {
            let want = try #require(probe["decoded"]?.stringValue)
            let got = t.decode(try #require(probe["ids"]?.intArray))
            #expect(got.unicodeScalars.elementsEqual(want.unicodeScalars), "\(label): decode of \(probe["text"]?.stringValue?.debugDescription ?? "?"): \(got.debugDescription) vs \(want.debugDescription)")
        }
    }
}
