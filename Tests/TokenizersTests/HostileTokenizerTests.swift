import Foundation
import Testing
import Tokenizers

/// tokenizer.json contents built to trap or allocate without bound, and files that are not files
/// (issue 11): each is a one-line error naming the problem.
@Suite struct HostileTokenizerTests {
    private func error(_ json: String) -> String? {
        do { _ = try Tokenizer(tokenizerJSON: Data(json.utf8)); return nil } catch { return "\(error)" }
    }

    @Test func theBaseTokenizerLoads() throws {
        #expect(error(TokenizerTests.tinyJSON()) == nil)
    }

    @Test func aHugeVocabularyIdIsRefusedNotAllocated() throws {
        // 2^31 − 1 would size two 8 GiB id-indexed tables.
        let json = TokenizerTests.tinyJSON().replacingOccurrences(of: #""<0x0A>":8"#, with: #""<0x0A>":2147483647"#)
        let e = try #require(error(json))
        #expect(e.contains("vocab entry \"<0x0A>\" has id 2147483647, beyond the 1048585 ids 9 entries can plausibly span"), "\(e)")
    }

    @Test func aHugeAddedTokenIdIsRefusedNotAnOverflow() throws {
        // 2^63 − 1: "largest id + 1" would overflow.
        let json = TokenizerTests.tinyJSON().replacingOccurrences(of: #"{"id":2,"content":"</s>""#, with: #"{"id":9223372036854775807,"content":"</s>""#)
        let e = try #require(error(json))
        #expect(e.contains("added token \"</s>\" has id 9223372036854775807"), "\(e)")
        #expect(!e.contains("\n"))
    }

    @Test func mergesThatAreNotAnArrayAreAnError() throws {
        let json = TokenizerTests.tinyJSON().replacingOccurrences(of: #""merges":[["▁","h"],["▁h","i"]]"#, with: #""merges":"▁ h""#)
        let e = try #require(error(json))
        #expect(e.contains("\"merges\" is \"▁ h\", not an array"), "\(e)")
        // null still means none, as in Hugging Face.
        #expect(error(TokenizerTests.tinyJSON().replacingOccurrences(of: #""merges":[["▁","h"],["▁h","i"]]"#, with: #""merges":null"#)) == nil)
    }

    @Test func addedTokensThatAreNotAnArrayAreAnError() throws {
        let json = TokenizerTests.tinyJSON(extra: "").replacingOccurrences(of: #"{"version":"1.0","added_tokens":["#, with: #"{"version":"1.0","added_tokens":{"a":1},"ignored":["#)
        #expect(error(json)?.contains("\"added_tokens\" is {\"a\": 1}, not an array") == true)
    }

    @Test func aFolderOrDeviceWhereTokenizerJSONShouldBeIsNamed() throws {
        let dir = try TokenizerTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("tokenizer.json"), withIntermediateDirectories: false)
        let e = #expect(throws: TokenizerError.self) { _ = try Tokenizer(directory: dir) }
        #expect(e?.description == "\(dir.path)/tokenizer.json: is a directory, not a file")
        let device = #expect(throws: TokenizerError.self) {
            _ = try Tokenizer(tokenizerFile: URL(fileURLWithPath: "/dev/zero"), configFile: nil)
        }
        #expect(device?.description == "/dev/zero: is not a regular file")
    }
}
