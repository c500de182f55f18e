import Foundation
import Testing
import Tokenizers

/// Loading, errors, special tokens and the public API.
@Suite struct TokenizerTests {
    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizers-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A tiny legacy-LLaMA-style tokenizer.json with the given pre_tokenizer and extra members.
    static func tinyJSON(preTokenizer: String = "null", extra: String = "") -> String {
        #"""
        {"version":"1.0","added_tokens":[
          {"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":2,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
         "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
         "pre_tokenizer":\#(preTokenizer),
         "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
         "model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,
           "vocab":{"<unk>":0,"<s>":1,"</s>":2,"▁":3,"h":4,"i":5,"▁h":6,"▁hi":7,"<0x0A>":8},
           "merges":[["▁","h"],["▁h","i"]]}\#(extra)}
        """#
    }

    @Test func missingFileNamesThePath() throws {
        let dir = URL(fileURLWithPath: "/nonexistent/tokenizer-dir")
        let error = #expect(throws: TokenizerError.self) { _ = try Tokenizer(directory: dir) }
        #expect(error?.description == "/nonexistent/tokenizer-dir/tokenizer.json: file not found")
    }

    @Test func badJSONNamesFileAndOffset() throws {
        let dir = try TokenizerTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("tokenizer.json")
        try Data(#"{"model": {"type": "BPE", "vocab": {"a": 0,}}"#.utf8).write(to: file)
        let error = #expect(throws: TokenizerError.self) { _ = try Tokenizer(directory: dir) }
        let d = try #require(error?.description)
        #expect(d.hasPrefix(file.path + ": invalid JSON at byte 43"), "\(d)")
        #expect(!d.contains("\n"))
    }

    @Test func unsupportedTypeNamesFileAndType() throws {
        let dir = try TokenizerTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("tokenizer.json")
        try Data(TokenizerTests.tinyJSON(preTokenizer: #"{"type":"Sequence","pretokenizers":[{"type":"BertPreTokenizer"}]}"#).utf8).write(to: file)
        let error = #expect(throws: TokenizerError.self) { _ = try Tokenizer(directory: dir) }
        #expect(error?.description == "\(file.path): unsupported pre_tokenizer type \"BertPreTokenizer\"")
    }

    @Test func badConfigNamesTheConfigFile() throws {
        let dir = try TokenizerTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(TokenizerTests.tinyJSON().utf8).write(to: dir.appendingPathComponent("tokenizer.json"))
        let config = dir.appendingPathComponent("tokenizer_config.json")
        try Data(#"{"bos_token": "<bos>"}"#.utf8).write(to: config)
        let error = #expect(throws: TokenizerError.self) { _ = try Tokenizer(directory: dir) }
        #expect(error?.description == "\(config.path): bos_token \"<bos>\" is not in the vocabulary")
    }

    @Test func addedTokensSplitTheInputFirst() throws {
        let t = try Tokenizer(tokenizerJSON: Data(TokenizerTests.tinyJSON().utf8))
        // No post-processor and no config: no BOS. Each piece between added tokens is normalized
        // separately, so each gets its own "▁" (as in `tokenizers`).
        #expect(t.encode("hi") == [7])
        #expect(t.encode("hi<s>hi</s>") == [7, 1, 7, 2])
        #expect(t.encode("<s>") == [1])
        #expect(t.encode("") == [])
        // "\n" has no token but a byte-fallback one; "x" has neither, so it is <unk>.
        #expect(t.encode("h\nx") == [6, 8, 0])
        #expect(t.decode([7, 1, 7, 2]) == "hi hi")
        #expect(t.decode([7, 1, 7, 2], skipSpecialTokens: false) == "hi<s> hi</s>")
        #expect(t.bosTokenID == nil && t.eosTokenID == nil)
        #expect(t.vocabSize == 9)
    }

    @Test func configAddsBOSWithoutPostProcessor() throws {
        let config = Data(#"{"bos_token":{"__type":"AddedToken","content":"<s>"},"eos_token":"</s>","add_bos_token":true,"add_eos_token":true}"#.utf8)
        let t = try Tokenizer(tokenizerJSON: Data(TokenizerTests.tinyJSON().utf8), configJSON: config)
        #expect(t.bosTokenID == 1)
        #expect(t.eosTokenID == 2)
        #expect(t.encode("hi") == [1, 7, 2])
        #expect(t.encode("hi", addSpecialTokens: false) == [7])
    }

    @Test func postProcessorWinsOverConfig() throws {
        let template = #""post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}}"#
        let json = TokenizerTests.tinyJSON(extra: "," + template)
        let config = Data(#"{"add_bos_token":false,"add_eos_token":true,"eos_token":"</s>"}"#.utf8)
        let t = try Tokenizer(tokenizerJSON: Data(json.utf8), configJSON: config)
        #expect(t.encode("hi") == [1, 7])
        #expect(t.bosTokenID == 1)
        #expect(t.eosTokenID == 2)
    }

    @Test func llama2SpecialTokensAndCanonicallyEquivalentPieces() throws {
        let t = try Tokenizer(directory: Paths.shared.appendingPathComponent("tokenizers/llama2"))
        #expect(t.bosTokenID == 1)
        #expect(t.eosTokenID == 2)
        #expect(t.vocabSize == 32000)
        #expect(t.id(for: "<unk>") == 0)
        #expect(t.token(for: 1) == "<s>")
        // "ί" U+03AF and "ί" U+1F77 are canonically equivalent but distinct pieces of the vocabulary.
        let tonos = try #require(t.id(for: "\u{3AF}"))
        let oxia = try #require(t.id(for: "\u{1F77}"))
        #expect(tonos != oxia)
        #expect(t.token(for: tonos).map { Array($0.unicodeScalars) } == ["\u{3AF}"])
        #expect(t.token(for: oxia).map { Array($0.unicodeScalars) } == ["\u{1F77}"])
    }

    @Test func decodeRoundTripsOnByteFallbackText() throws {
        let t = try Tokenizer(directory: Paths.shared.appendingPathComponent("models/stories260K"))
        // A 512-piece vocabulary: most non-ASCII text goes through byte fallback and must come back.
        for text in ["Hello, world!", "naïve café — “quotes” 😀", "line one\nline two\n\n", "  spaced  out  ", "中文 ﬁ ①"] {
            let ids = t.encode(text)
            #expect(ids.first == 1)
            #expect(t.decode(ids).unicodeScalars.elementsEqual(text.unicodeScalars), "\(visible(text))")
        }
    }

    @Test func concurrentEncodesAgree() throws {
        let t = try Tokenizer(directory: Paths.shared.appendingPathComponent("models/aidreams260K"))
        let lines = try WikiText.lines().filter { !$0.isEmpty }.prefix(400)
        let serial = lines.map { t.encode($0) }
        let texts = Array(lines)
        let lock = NSLock()
        var parallel = [[Int]](repeating: [], count: texts.count)
        DispatchQueue.concurrentPerform(iterations: 4) { w in
            for i in stride(from: w, to: texts.count, by: 4) {
                let ids = t.encode(texts[i])
                lock.lock()
                parallel[i] = ids
                lock.unlock()
            }
        }
        #expect(parallel == serial)
    }
}
