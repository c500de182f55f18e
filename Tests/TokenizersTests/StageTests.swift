import Foundation
import JSON
import Testing
import Tokenizers

/// Each stage type in isolation. The table-driven tests replay Fixtures/tokenizers/stages.json: configs
/// as `tokenizers` serializes them, with the outputs of its Python bindings. The hand-written tests
/// check definitions on small hand-made JSON.
@Suite struct StageTests {
    static func same(_ a: String, _ b: String) -> Bool { a.unicodeScalars.elementsEqual(b.unicodeScalars) }

    static func groups(_ kind: String) throws -> [(JSONValue, [JSONValue])] {
        let stages = try loadFixtureJSON("stages.json")
        let list = try #require(stages[kind]?.arrayValue, "stages.json has no \(kind)")
        return try list.map { g in
            (try #require(g["config"]), try #require(g["cases"]?.arrayValue))
        }
    }

    // MARK: table-driven, against `tokenizers`

    @Test func normalizersMatchTokenizers() throws {
        let groups = try StageTests.groups("normalizer")
        try #require(groups.count >= 10)
        for (config, cases) in groups {
            let n = try Normalizers.make(config)
            for c in cases {
                let input = try #require(c.arrayValue?[0].stringValue)
                let want = try #require(c.arrayValue?[1].stringValue)
                let got = n.normalize(input)
                #expect(StageTests.same(got, want), "\(config.jsonText) on \"\(visible(input))\": got \"\(visible(got))\", expected \"\(visible(want))\"")
            }
        }
    }

    @Test func preTokenizersMatchTokenizers() throws {
        let groups = try StageTests.groups("pre_tokenizer")
        try #require(groups.count >= 15)
        for (config, cases) in groups {
            let p = try PreTokenizers.make(config)
            for c in cases {
                let input = try #require(c.arrayValue?[0].stringValue)
                let want = try #require(c.arrayValue?[1].stringArray)
                let got = p.preTokenize(input)
                let ok = got.count == want.count && zip(got, want).allSatisfy { StageTests.same($0, $1) }
                #expect(ok, "\(config.jsonText) on \"\(visible(input))\": got \(got.map { visible($0) }), expected \(want.map { visible($0) })")
            }
        }
    }

    @Test func decodersMatchTokenizers() throws {
        let groups = try StageTests.groups("decoder")
        try #require(groups.count >= 8)
        for (config, cases) in groups {
            let d = try Decoders.make(config)
            for c in cases {
                let tokens = try #require(c.arrayValue?[0].stringArray)
                let want = try #require(c.arrayValue?[1].stringValue)
                let got = d.decodeToString(tokens)
                #expect(StageTests.same(got, want), "\(config.jsonText) on \(tokens.map { visible($0) }): got \"\(visible(got))\", expected \"\(visible(want))\"")
            }
        }
    }

    @Test func bpeModelsMatchTokenizers() throws {
        let groups = try StageTests.groups("model")
        try #require(groups.count >= 6)
        for (config, cases) in groups {
            let m = try BPEModel(json: config)
            for c in cases {
                let word = try #require(c.arrayValue?[0].stringValue)
                let want = try #require(c.arrayValue?[1].intArray)
                let got = m.tokenize(Array(word.unicodeScalars))
                #expect(got == want, "model #\(cases.count) \"\(word)\": got \(got), expected \(want)")
            }
        }
    }

    // MARK: hand-made configurations

    @Test func legacyLlamaNormalizer() throws {
        let n = try Normalizers.make(JSONValue.parse(#"""
            {"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},
             {"type":"Replace","pattern":{"String":" "},"content":"▁"}]}
            """#))
        #expect(n.normalize("Hello world") == "▁Hello▁world")
        #expect(n.normalize(" a") == "▁▁a")
        // Prepend leaves empty text empty.
        #expect(n.normalize("") == "")
    }

    @Test func metaspacePrependSchemes() throws {
        let first = try PreTokenizers.make(JSONValue.parse(#"{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}"#))
        #expect(first.preTokenize("Hey  you") == ["▁Hey", "▁", "▁you"])
        // "first" only prepends to a piece that starts the input (e.g. not after an added token).
        let later = first.preTokenize([PreToken(text: Array("you".unicodeScalars), atInputStart: false)])
        #expect(later.map { String(String.UnicodeScalarView($0.text)) } == ["you"])
        let always = try PreTokenizers.make(JSONValue.parse(#"{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":false}"#))
        let alwaysLater = always.preTokenize([PreToken(text: Array("a b".unicodeScalars), atInputStart: false)])
        #expect(alwaysLater.map { String(String.UnicodeScalarView($0.text)) } == ["▁a▁b"])
        // Files from before prepend_scheme: add_prefix_space true means always.
        let legacy = try PreTokenizers.make(JSONValue.parse(#"{"type":"Metaspace","replacement":"▁","add_prefix_space":true}"#))
        #expect(legacy.preTokenize("a b") == ["▁a", "▁b"])
    }

    @Test func splitBehaviors() throws {
        func split(_ behavior: String, invert: Bool = false) throws -> [String] {
            let p = try PreTokenizers.make(JSONValue.parse(
                #"{"type":"Split","pattern":{"String":"-"},"behavior":"\#(behavior)","invert":\#(invert)}"#))
            return p.preTokenize("a-b--c")
        }
        #expect(try split("Isolated") == ["a", "-", "b", "-", "-", "c"])
        #expect(try split("Removed") == ["a", "b", "c"])
        #expect(try split("MergedWithPrevious") == ["a-", "b-", "-", "c"])
        #expect(try split("MergedWithNext") == ["a", "-b", "-", "-c"])
        #expect(try split("Contiguous") == ["a", "-", "b", "--", "c"])
        #expect(try split("Removed", invert: true) == ["-", "-", "-"])
    }

    @Test func byteLevelPreTokenizerMapsBytes() throws {
        let p = try PreTokenizers.make(JSONValue.parse(#"{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"#))
        // Space is byte 0x20 -> U+0120 'Ġ'; newline 0x0A -> U+010A 'Ċ'; 'é' is bytes C3 A9 -> 'Ã' '©'.
        #expect(p.preTokenize("a é\n") == ["a", "\u{120}\u{C3}\u{A9}", "\u{10A}"])
        #expect(ByteLevelTable.byteToScalar.count == 256)
        #expect(Set(ByteLevelTable.byteToScalar).count == 256)
        #expect(ByteLevelTable.byteToScalar[0x21] == "!" && ByteLevelTable.byteToScalar[0x00] == "\u{100}")
    }

    @Test func bpeMergesByRankThenPosition() throws {
        // Rank decides: "b c" (rank 0) merges before "a b" (rank 1), so "abc" becomes a+bc then abc.
        let m = try BPEModel(json: JSONValue.parse(#"""
            {"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5,"aa":6},
             "merges":["b c",["a","b"],["a","bc"],"a a"]}
            """#))
        #expect(m.tokenize(Array("abc".unicodeScalars)) == [5])
        #expect(m.tokenize(Array("ab".unicodeScalars)) == [3])
        // Equal ranks merge leftmost first: "aaa" -> aa + a.
        #expect(m.tokenize(Array("aaa".unicodeScalars)) == [6, 0])
        // No unk_token: unknown scalars are dropped.
        #expect(m.tokenize(Array("xa".unicodeScalars)) == [0])
    }

    @Test func bpeByteFallbackAndUnknown() throws {
        let m = try BPEModel(json: JSONValue.parse(#"""
            {"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,
             "vocab":{"<unk>":0,"a":1,"<0xC3>":2,"<0xA9>":3},"merges":[]}
            """#))
        // 'é' = C3 A9 falls back to bytes; 'ß' = C3 9F lacks <0x9F>, so it is unknown; two fuse into one.
        #expect(m.tokenize(Array("aé".unicodeScalars)) == [1, 2, 3])
        #expect(m.tokenize(Array("ßßa".unicodeScalars)) == [0, 1])
    }

    @Test func llamaDecoderChain() throws {
        let d = try Decoders.make(JSONValue.parse(#"""
            {"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},
             {"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}
            """#))
        #expect(d.decodeToString(["▁Hello", "▁world", "<0x0A>"]) == "Hello world\n")
        // A byte run that is not UTF-8 becomes one U+FFFD per byte.
        #expect(d.decodeToString(["▁a", "<0xE2>", "<0x82>"]) == "a\u{FFFD}\u{FFFD}")
    }

    @Test func templateProcessing() throws {
        let p = try PostProcessors.make(JSONValue.parse(#"""
            {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},
             {"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
             "pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},
             "</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}}
            """#))
        #expect(p.process([7, 8]) == [1, 7, 8, 2])
        #expect(p.prefixIDs == [1])
    }

    @Test func unsupportedStageTypesNameTheType() throws {
        let cases: [(String, () throws -> Void)] = [
            ("normalizer type \"BertNormalizer\"", { _ = try Normalizers.make(JSONValue.parse(#"{"type":"BertNormalizer"}"#)) }),
            ("pre_tokenizer type \"Whitespace\"", { _ = try PreTokenizers.make(JSONValue.parse(#"{"type":"Whitespace"}"#)) }),
            ("decoder type \"WordPiece\"", { _ = try Decoders.make(JSONValue.parse(#"{"type":"WordPiece"}"#)) }),
            ("post_processor type \"Foo\"", { _ = try PostProcessors.make(JSONValue.parse(#"{"type":"Foo"}"#)) }),
            ("model type \"Unigram\"", { _ = try BPEModel(json: JSONValue.parse(#"{"type":"Unigram","vocab":[]}"#)) }),
        ]
        for (needle, body) in cases {
            let error = #expect(throws: TokenizerError.self) { try body() }
            #expect(error?.description == "unsupported \(needle)")
        }
    }

    @Test func invalidBPEConfigurationsThrow() throws {
        #expect(throws: TokenizerError.self) {
            _ = try BPEModel(json: JSONValue.parse(#"{"type":"BPE","vocab":{"a":0},"merges":["a b"]}"#))
        }
        #expect(throws: TokenizerError.self) {
            _ = try BPEModel(json: JSONValue.parse(#"{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b c"]}"#))
        }
        #expect(throws: TokenizerError.self) {
            _ = try BPEModel(json: JSONValue.parse(#"{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}"#))
        }
        #expect(throws: TokenizerError.self) {
            _ = try BPEModel(json: JSONValue.parse(#"{"type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1}"#))
        }
    }
}
