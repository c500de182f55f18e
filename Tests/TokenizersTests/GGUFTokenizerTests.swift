import Foundation
import JSON
import Testing
import GGUF
import Tokenizers

/// A byte-level vocabulary of every single byte (GPT-2's byte-to-scalar table) plus `extra` tokens, with
/// no merges unless given, as a `gpt2` GGUF spec: small enough to reason about by hand.
private func byteLevelSpec(pre: String?, extra: [String] = [], merges: [String] = [],
                           types: [Int32]? = nil, addBOS: Bool? = nil, bos: Int? = nil) -> GGUFTokenizerSpec {
    var tokens = (0..<256).map { String(Character(Unicode.Scalar(byteLevelScalar(UInt8($0)))!)) }
    tokens += extra
    return GGUFTokenizerSpec(model: "gpt2", pre: pre, tokens: tokens, tokenTypes: types, merges: merges,
                             bosTokenID: bos, addBOS: addBOS)
}

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards.
private func byteLevelScalar(_ b: UInt8) -> UInt32 {
    let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
    if printable { return UInt32(b) }
    var n: UInt32 = 0
    for c in 0..<Int(b) {
        let x = UInt8(c)
        if !((0x21...0x7E).contains(x) || (0xA1...0xAC).contains(x) || (0xAE...0xFF).contains(x)) { n += 1 }
    }
    return 256 + n
}

@Suite struct GGUFPreTokenizerTests {
    /// Words after pre-tokenization, in byte-level form (Ġ = space).
    func words(_ pre: String?, _ text: String) throws -> [String] {
        // No BOS: the LLaMA-3 group would add one by default, and these specs have none.
        let t = try Tokenizer(gguf: byteLevelSpec(pre: pre, addBOS: false))
        return try #require(t.preTokenizer).preTokenize(text)
    }

    // Expected pieces derived by hand from llama.cpp's regexes for each pre type (src/llama-vocab.cpp).
    @Test func smollmIsolatesEveryDigitThenSplitsAsGPT2() throws {
        // ½ is a number character (No) too; byte-level, its UTF-8 bytes C2 BD read "Â½".
        #expect(try words("smollm", "x 1234 ab's 5½") == ["x", "Ġ", "1", "2", "3", "4", "Ġab", "'s", "Ġ", "5", "Â½"])
        // starcoder and the others of llama.cpp's group behave the same.
        #expect(try words("starcoder", "a 12") == ["a", "Ġ", "1", "2"])
    }

    @Test func gpt2KeepsNumberRunsWithTheirSpace() throws {
        #expect(try words("gpt-2", "x 1234 ab's 5½") == ["x", "Ġ1234", "Ġab", "'s", "Ġ5Â½"])
    }

    @Test func llama3GroupsThreeDigitsAndKeepsSpaceBeforeLetters() throws {
        #expect(try words("llama-bpe", "x 1234 ab's\n\n  Hi") == ["x", "Ġ", "123", "4", "Ġab", "'s", "ĊĊ", "Ġ", "ĠHi"])
    }

    @Test func qwen2SplitsSingleDigits() throws {
        #expect(try words("qwen2", "x 1234 ab") == ["x", "Ġ", "1", "2", "3", "4", "Ġab"])
    }

    @Test func llamaCppDefaultSplitsPunctuationFirst() throws {
        // [\p{P}$+<=>^~|`]+ first, then GPT-2's split, then \p{N}+, then [0-9]{3}.
        #expect(try words("default", "a ,, b 12345") == ["a", "Ġ", ",,", "Ġb", "Ġ", "123", "45"])
        #expect(try words(nil, "a ,, b") == ["a", "Ġ", ",,", "Ġb"])
        #expect(try words("gpt-2", "a ,, b") == ["a", "Ġ,,", "Ġb"])
    }

    @Test func falconSplitsPunctuationAndThreeDigitRuns() throws {
        #expect(try words("falcon", "a ,, 12345") == ["a", "Ġ", ",,", "Ġ", "123", "45"])
    }

    @Test func mergesApplyWithinWordsOnly() throws {
        // "1 2" is the merge of "1" and "2": GPT-2 keeps " 12" as one word and merges it, smollm never
        // lets two digits share a word.
        let spec = byteLevelSpec(pre: "gpt-2", extra: ["12", "Ġ12"], merges: ["1 2", "Ġ 12"])
        let gpt2 = try Tokenizer(gguf: spec)
        #expect(gpt2.encode(" 12") == [257])
        var smollm = spec
        smollm.pre = "smollm"
        let s = try Tokenizer(gguf: smollm)
        let space = try #require(s.id(for: "Ġ")), one = try #require(s.id(for: "1")), two = try #require(s.id(for: "2"))
        #expect(s.encode(" 12") == [space, one, two])
    }
}

@Suite struct GGUFSpecialTokenTests {
    @Test func controlTokensAreSpecialAndUserDefinedArePlainAddedTokens() throws {
        var types = [Int32](repeating: 1, count: 258)
        types[256] = 3
        types[257] = 4
        let t = try Tokenizer(gguf: byteLevelSpec(pre: "gpt-2", extra: ["<|im_start|>", "<tool>"], types: types))
        let added = t.addedTokens
        #expect(added.map(\.content) == ["<|im_start|>", "<tool>"])
        #expect(added.map(\.special) == [true, false])
        let a = try #require(t.id(for: "a"))
        #expect(t.encode("a<|im_start|>a<tool>") == [a, 256, a, 257])
        #expect(t.decode([a, 256, a, 257]) == "aa<tool>")
    }

    @Test func bosIsAddedOnlyWhenTheMetadataSaysSo() throws {
        var types = [Int32](repeating: 1, count: 257)
        types[256] = 3
        func ids(_ addBOS: Bool?, pre: String) throws -> [Int] {
            let t = try Tokenizer(gguf: byteLevelSpec(pre: pre, extra: ["<s>"], types: types, addBOS: addBOS, bos: 256))
            #expect(t.bosTokenID == 256)
            return t.encode("a")
        }
        let aID = Int(UInt8(ascii: "a"))  // a printable byte is its own token, at its own index
        #expect(try ids(nil, pre: "smollm") == [aID])          // llama.cpp: BPE adds no BOS by default
        #expect(try ids(false, pre: "smollm") == [aID])
        #expect(try ids(true, pre: "smollm") == [256, aID])
        #expect(try ids(nil, pre: "llama-bpe") == [256, aID])  // ... except the LLaMA-3 group
        #expect(try ids(false, pre: "llama-bpe") == [aID])
    }

    @Test func eosIsAppendedWhenAsked() throws {
        var spec = byteLevelSpec(pre: "gpt-2", extra: ["<s>", "</s>"], types: Array(repeating: 1, count: 256) + [3, 3],
                                 addBOS: true, bos: 256)
        spec.eosTokenID = 257
        spec.addEOS = true
        let t = try Tokenizer(gguf: spec)
        let a = try #require(t.id(for: "a"))
        #expect(t.encode("a") == [256, a, 257])
        #expect(t.encode("a", addSpecialTokens: false) == [a])
    }
}

@Suite struct GGUFSpecErrorTests {
    func message(_ spec: GGUFTokenizerSpec) -> String? {
        do { _ = try Tokenizer(gguf: spec); return nil } catch { return "\(error)" }
    }

    @Test func badMetadataIsOneLineNamingTheKey() throws {
        var s = byteLevelSpec(pre: "gpt-2")
        s.tokenTypes = [1]
        #expect(message(s)?.contains("tokenizer.ggml.token_type has 1 entries for 256 tokens") == true)
        s = byteLevelSpec(pre: "gpt-2")
        s.bosTokenID = 256
        #expect(message(s)?.contains("tokenizer.ggml.bos_token_id 256 is not an id of the 256 tokens") == true)
        s = byteLevelSpec(pre: "gpt-2", addBOS: true)
        #expect(message(s)?.contains("add_bos_token is true but there is no tokenizer.ggml.bos_token_id") == true)
        s = byteLevelSpec(pre: "tekken-like")
        #expect(message(s)?.contains("unsupported tokenizer.ggml.pre \"tekken-like\"") == true)
        s = byteLevelSpec(pre: "gpt-2")
        s.model = "t5"
        #expect(message(s)?.contains("unsupported tokenizer.ggml.model \"t5\"") == true)
        s = byteLevelSpec(pre: "gpt-2", merges: ["ab"])
        #expect(message(s)?.contains("tokenizer.ggml.merges entry 0 \"ab\" is not \"left right\"") == true)
        s = byteLevelSpec(pre: "gpt-2", merges: ["a b"])
        #expect(message(s)?.contains("merge 0 result \"ab\" is not in the vocabulary") == true)
        s = byteLevelSpec(pre: "gpt-2", extra: ["a"])
        #expect(message(s)?.contains("tokenizer.ggml.tokens has \"a\" twice") == true)
        s = byteLevelSpec(pre: "gpt-2")
        s.tokenTypes = Array(repeating: 9, count: 256)
        #expect(message(s)?.contains("token_type of token 0 is 9") == true)
        s = byteLevelSpec(pre: "gpt-2")
        s.merges = nil
        #expect(message(s)?.contains("needs tokenizer.ggml.merges") == true)
        #expect(message(GGUFTokenizerSpec(model: "llama", tokens: ["<unk>", "<s>", "</s>"]))?.contains("needs tokenizer.ggml.scores") == true)
        #expect(message(GGUFTokenizerSpec(model: "gpt2", tokens: []))?.contains("tokenizer.ggml.tokens is empty") == true)
        for m in [message(byteLevelSpec(pre: "nope"))] { #expect(m?.contains("\n") == false) }
    }
}

// MARK: - SentencePiece (`llama`) model

/// Pieces, scores and types of a SentencePiece `tokenizer.model` (a protobuf ModelProto), read the way
/// llama.cpp's converter reads them into `tokenizer.ggml.tokens` / `scores` / `token_type` (SentencePiece's
/// piece types are GGUF's token types), plus `add_dummy_prefix` (→ `add_space_prefix`).
struct SentencePieceModel {
    var pieces: [String] = []
    var scores: [Float] = []
    var types: [Int32] = []
    var addDummyPrefix = true

    init(_ data: Data) throws {
        let bytes = [UInt8](data)
        var r = ProtoReader(bytes: bytes[...])
        while let (field, wire) = try r.tag() {
            if field == 1 && wire == 2 {
                var p = ProtoReader(bytes: try r.lengthDelimited())
                var piece = "", score: Float = 0, type: Int32 = 1
                while let (f, w) = try p.tag() {
                    switch (f, w) {
                    case (1, 2): piece = String(decoding: try p.lengthDelimited(), as: UTF8.self)
                    case (2, 5): score = Float(bitPattern: try p.fixed32())
                    case (3, 0): type = Int32(try p.varint())
                    default: try p.skip(w)
                    }
                }
                pieces.append(piece); scores.append(score); types.append(type)
            } else if field == 3 && wire == 2 {
                var n = ProtoReader(bytes: try r.lengthDelimited())
                while let (f, w) = try n.tag() {
                    if f == 3 && w == 0 { addDummyPrefix = try n.varint() != 0 } else { try n.skip(w) }
                }
            } else {
                try r.skip(wire)
            }
        }
    }
}

struct ProtoReader {
    var bytes: ArraySlice<UInt8>

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while let b = bytes.popFirst() {
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
            if shift > 63 { break }
        }
        throw FixtureError("malformed protobuf varint")
    }
    mutating func tag() throws -> (Int, Int)? {
        if bytes.isEmpty { return nil }
        let t = try varint()
        return (Int(t >> 3), Int(t & 7))
    }
    mutating func lengthDelimited() throws -> ArraySlice<UInt8> {
        let n = Int(try varint())
        guard n <= bytes.count else { throw FixtureError("protobuf length past the end") }
        let out = bytes.prefix(n)
        bytes = bytes.dropFirst(n)
        return out
    }
    mutating func fixed32() throws -> UInt32 {
        guard bytes.count >= 4 else { throw FixtureError("protobuf fixed32 past the end") }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[bytes.startIndex + k]) << (8 * UInt32(k)) }
        bytes = bytes.dropFirst(4)
        return v
    }
    mutating func skip(_ wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1: guard bytes.count >= 8 else { throw FixtureError("protobuf past the end") }; bytes = bytes.dropFirst(8)
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw FixtureError("protobuf wire type \(wire) not supported")
        }
    }
}

/// A `llama` GGUF spec as llama.cpp's converter makes it from a folder's tokenizer.model and
/// tokenizer_config.json (`add_bos_token`).
func sentencePieceSpec(_ folder: URL) throws -> GGUFTokenizerSpec {
    let sp = try SentencePieceModel(Paths.read(folder.appendingPathComponent("tokenizer.model"), what: "tokenizer.model"))
    let config = try JSONValue.parse(Paths.read(folder.appendingPathComponent("tokenizer_config.json"), what: "tokenizer_config.json"))
    return GGUFTokenizerSpec(model: "llama", tokens: sp.pieces, scores: sp.scores, tokenTypes: sp.types,
                             bosTokenID: 1, eosTokenID: 2, unknownTokenID: 0,
                             addBOS: config["add_bos_token"]?.boolValue, addEOS: config["add_eos_token"]?.boolValue,
                             addSpacePrefix: sp.addDummyPrefix)
}

/// Checks `tokenizer` against an expected-ids fixture (every line, the evaluation string, probes).
func checkAgainstFixture(_ tokenizer: Tokenizer, expected key: String, label: String, probes: Bool = true) throws {
    let info = try loadFixtureJSON("expected/\(key).json")
    let lines = try WikiText.lines()
    let text = WikiText.evaluationString(lines)
    // First, on a cold word cache: the time is that of a fresh tokenizer.
    let cpuStart = threadCPUSeconds()
    let ids = tokenizer.encode(text)
    let cpu = threadCPUSeconds() - cpuStart
    print("[tokenizers] \(label): evaluation string -> \(ids.count) ids in \(String(format: "%.3f", cpu)) s CPU")
    #expect(ids.count == info["eval"]?["count"]?.intValue, "\(label): \(ids.count) ids")
    #expect(fnv1a64(ids: ids) == info["eval"]?["fnv"]?.stringValue, "\(label): ids hash")
    let first = try #require(info["eval"]?["first_ids"]?.intArray)
    #expect(Array(ids.prefix(first.count)) == first, "\(label): first ids")
    if let last = info["eval"]?["last_ids"]?.intArray { #expect(Array(ids.suffix(last.count)) == last, "\(label): last ids") }
    #expect(cpu < 2.0, "\(label): encoding the evaluation string took \(cpu) s of CPU")
    let expected = try Paths.readText(Paths.fixtures.appendingPathComponent("expected/\(key).lines.txt"), what: "expected ids")
        .split(separator: "\n", omittingEmptySubsequences: false)
    try #require(expected.count == lines.count + 1)
    var idMismatches = 0, decodeMismatches = 0
    for (i, line) in lines.enumerated() {
        let fields = expected[i].split(separator: " ")
        let ids = tokenizer.encode(line)
        if "\(ids.count) \(fnv1a64(ids: ids))" != "\(fields[0]) \(fields[1])" {
            idMismatches += 1
            if idMismatches <= 3 { Issue.record("\(label): line \(i + 1) ids differ: \"\(visible(line))\"") }
        }
        let decoded = tokenizer.decode(ids)
        let ok = fields.count == 2 ? decoded.unicodeScalars.elementsEqual(line.unicodeScalars)
                                   : fnv1a64(bytes: decoded.utf8) == String(fields[2])
        if !ok { decodeMismatches += 1 }
    }
    #expect(idMismatches == 0, "\(label): \(idMismatches) of \(lines.count) lines have different ids")
    #expect(decodeMismatches == 0, "\(label): \(decodeMismatches) of \(lines.count) lines decode differently")

    guard probes else { return }
    for p in try #require(info["probes"]?.arrayValue) {
        let text = try #require(p["text"]?.stringValue)
        #expect(tokenizer.encode(text) == p["ids"]?.intArray, "\(label): \"\(visible(text))\"")
        #expect(tokenizer.encode(text, addSpecialTokens: false) == p["ids_no_special"]?.intArray, "\(label): \"\(visible(text))\" without special tokens")
        #expect(tokenizer.decode(tokenizer.encode(text)).unicodeScalars.elementsEqual((p["decoded"]?.stringValue ?? "").unicodeScalars),
                "\(label): decode of \"\(visible(text))\"")
    }
}

/// Writes the spec's tokenizer files to a fresh temporary folder and loads them back.
func writtenAndReloaded(_ spec: GGUFTokenizerSpec) throws -> (Tokenizer, JSONValue, JSONValue) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguftok-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try GGUFTokenizer.write(spec, to: dir)
    let json = try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent("tokenizer.json")))
    let config = try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json")))
    return (try Tokenizer(directory: dir), json, config)
}

/// The `llama` model against the ids `tokenizers` gives with each folder's own tokenizer.json (which
/// equal `sentencepiece`'s on every line, ../shared/README.md): pieces and scores in, merges by score.
@Suite struct GGUFSentencePieceTests {
    @Test("llama model from tokenizer.model pieces and scores", arguments: [
        ("stories260K", "models/stories260K"), ("aidreams260K", "models/aidreams260K"), ("llama2", "tokenizers/llama2"),
    ])
    func llamaModel(_ key: String, _ folder: String) throws {
        let spec = try sentencePieceSpec(Paths.shared.appendingPathComponent(folder))
        try checkAgainstFixture(try Tokenizer(gguf: spec), expected: key, label: "\(key) (GGUF llama spec)")
    }

    @Test func writtenLlamaTokenizerJSONMatchesTheOriginalStages() throws {
        let folder = Paths.shared.appendingPathComponent("tokenizers/llama2")
        let (reloaded, json, config) = try writtenAndReloaded(try sentencePieceSpec(folder))
        let original = try JSONValue.parse(Paths.read(folder.appendingPathComponent("tokenizer.json"), what: "llama2 tokenizer.json"))
        for stage in ["normalizer", "pre_tokenizer", "decoder", "added_tokens"] {
            #expect(json[stage] == original[stage], "\(stage): \(json[stage]?.rendered() ?? "nil") vs \(original[stage]?.rendered() ?? "nil")")
        }
        #expect(json["post_processor"]?["single"] == original["post_processor"]?["single"])
        #expect(config["bos_token"]?.stringValue == "<s>" && config["add_bos_token"]?.boolValue == true)
        let text = WikiText.evaluationString(try WikiText.lines())
        let info = try loadFixtureJSON("expected/llama2.json")
        let ids = reloaded.encode(text)
        #expect(ids.count == info["eval"]?["count"]?.intValue && fnv1a64(ids: ids) == info["eval"]?["fnv"]?.stringValue)
    }
}

// MARK: - SmolLM2 (the real vocabulary)

/// SmolLM2-135M-Instruct's `tokenizer.ggml.*` metadata, read by the GGUF module from the shared file.
enum SmolLM2 {
    static let gguf = Paths.shared.appendingPathComponent("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
    /// transformers' conversion of the same GGUF's tokenizer (tokenizer.json and tokenizer_config.json of
    /// `scripts/convert_gguf_with_transformers.py --tokenizer-only`, transformers 5.25.0, tokenizers 0.23.3).
    static let hfFolder = Paths.fixtures.appendingPathComponent("smollm2-transformers")

    static func spec() throws -> GGUFTokenizerSpec {
        let m = try #require(try GGUFFile(url: gguf).tokenizerMetadata(), "no tokenizer.ggml.model in \(gguf.path)")
        return GGUFTokenizerSpec(model: m.model, pre: m.pre, tokens: m.tokens, scores: m.scores,
                                 tokenTypes: m.tokenTypes?.map { Int32(clamping: $0) }, merges: m.merges,
                                 bosTokenID: m.bosTokenID, eosTokenID: m.eosTokenID, unknownTokenID: m.unknownTokenID,
                                 paddingTokenID: m.paddingTokenID, addBOS: m.addBOSToken, addEOS: m.addEOSToken,
                                 addSpacePrefix: m.addSpacePrefix, chatTemplate: m.chatTemplate)
    }
}

@Suite struct GGUFSmolLM2Tests {
    @Test func specIsTheMetadataTheFixtureScriptRead() throws {
        let spec = try SmolLM2.spec()
        let meta = try #require(try loadFixtureJSON("expected/smollm2-gguf.json")["gguf"])
        #expect(spec.model == meta["model"]?.stringValue && spec.pre == meta["pre"]?.stringValue)
        #expect(spec.tokens.count == meta["tokens"]?.intValue && spec.merges?.count == meta["merges"]?.intValue)
        #expect(spec.tokenTypes?.filter { $0 == 3 }.count == meta["control_tokens"]?.intValue)
        #expect(spec.bosTokenID == meta["bos_token_id"]?.intValue && spec.eosTokenID == meta["eos_token_id"]?.intValue)
        #expect(spec.unknownTokenID == meta["unknown_token_id"]?.intValue && spec.paddingTokenID == meta["padding_token_id"]?.intValue)
        #expect(spec.addBOS == meta["add_bos_token"]?.boolValue)
    }

    @Test func tokenizerFromMetadataMatchesTokenizers() throws {
        let spec = try SmolLM2.spec()
        let start = threadCPUSeconds()
        let t = try Tokenizer(gguf: spec)
        print("[tokenizers] SmolLM2: Tokenizer(gguf:) built in \(String(format: "%.3f", threadCPUSeconds() - start)) s CPU")
        #expect(t.bosTokenID == 1)  // named, never added
        try checkAgainstFixture(t, expected: "smollm2-gguf", label: "SmolLM2 (GGUF metadata)")
    }

    @Test func writtenTokenizerJSONMatchesTokenizers() throws {
        let (reloaded, json, config) = try writtenAndReloaded(try SmolLM2.spec())
        let stages = try #require(try loadFixtureJSON("expected/smollm2-gguf.json")["stages"])
        for stage in ["normalizer", "pre_tokenizer", "decoder"] {
            #expect(json[stage] == stages[stage], "\(stage): \(json[stage]?.rendered() ?? "nil")")
        }
        #expect(config["add_bos_token"]?.boolValue == false && config["bos_token"]?.stringValue == "<|im_start|>")
        #expect(config["chat_template"]?.stringValue?.hasPrefix("{% for message in messages %}") == true)
        try checkAgainstFixture(reloaded, expected: "smollm2-gguf", label: "SmolLM2 (written tokenizer.json)", probes: false)
    }
}

@Suite struct SmolLM2TransformersConversionTests {
    /// Item 4 of issue 8: transformers' conversion names `<|im_start|>` as bos_token but its
    /// post-processor adds nothing, so neither may llm-prune. The ids are transformers' own on that folder
    /// (`AutoTokenizer` gives 304,978 ids starting 1116, 446, 6356, 389; bos_token_id 1).
    @Test func transformersConversionAddsNoBOS() throws {
        _ = try Paths.read(SmolLM2.hfFolder.appendingPathComponent("tokenizer.json"), what: "transformers' SmolLM2 tokenizer.json")
        let config = try JSONValue.parse(Paths.read(SmolLM2.hfFolder.appendingPathComponent("tokenizer_config.json"), what: "its tokenizer_config.json"))
        #expect(config["bos_token"]?.stringValue == "<|im_start|>")
        let t = try Tokenizer(directory: SmolLM2.hfFolder)
        #expect(t.bosTokenID == 1)
        let ids = t.encode(WikiText.evaluationString(try WikiText.lines()))
        #expect(ids.count == 304_978 && Array(ids.prefix(4)) == [1116, 446, 6356, 389])
    }
}
