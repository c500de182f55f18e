import Datasets
import Foundation
import Testing
import TestSupport

@Suite struct ReaderTests {
    /// The documents of Fixtures/datasets/c4-mini.json.gz (see scripts/make_datasets_fixtures.py).
    static let c4MiniDocuments = [
        "The first document.",
        "Café — naïve résumé 😀",
        "Line one\nLine two\twith tab \"quoted\" \\ backslash",
        "",
        "last one",
    ]

    @Test func c4FixtureWithTwoGzipMembers() throws {
        let docs = try TextReader.c4Shard(at: try fixture("c4-mini.json.gz"))
        #expect(docs == Self.c4MiniDocuments)
    }

    @Test func gzipToolOutputAcrossChunksAndMembers() throws {
        let dir = try TempDir()
        // Several MiB of lines, so lines straddle both the 1 MiB read chunks and the inflater's output chunks.
        var expected: [String] = []
        var text = ""
        for i in 0..<24_000 {
            let doc = "document \(i): " + String(repeating: "word\(i % 97) ", count: 1 + (i * 7919) % 40) + "é\u{1F600}"
            expected.append(doc)
            text += "{\"meta\": {\"i\": \(i)}, \"text\": \"\(doc)\"}\n"
        }
        let plain = try dir.write("part.json", text)
        let second = try dir.write("second.json", "{\"text\": \"after the member boundary\"}\n")
        // Two members, made by the system's gzip at different levels, concatenated as `cat a.gz b.gz` does.
        let gz = try dir.write("shard.json.gz", bytes: try gzipWithTool(plain, level: 1) + gzipWithTool(second, level: 9))
        expected.append("after the member boundary")

        let fromGzip = try TextReader.c4Shard(at: gz)
        #expect(fromGzip.count == expected.count)
        #expect(fromGzip == expected)
        // The same content uncompressed reads the same (format sniffed, not taken from the name).
        #expect(try TextReader.c4Shard(at: plain) == Array(expected.dropLast()))
        let misnamed = try dir.write("misnamed.json", bytes: try gzipWithTool(second))
        #expect(try TextReader.c4Shard(at: misnamed) == ["after the member boundary"])
        // Plain text through gzip too.
        #expect(try TextReader.plainText(at: gz) == text + "{\"text\": \"after the member boundary\"}\n")
    }

    @Test func jsonlFieldSelection() throws {
        let dir = try TempDir()
        let url = try dir.write("data.jsonl", """
            {"text": "t1", "content": "c1"}
            {"content": "c2", "text": "t2", "extra": [1, 2, {"x": null}]}

            {"content": "c\\u00e93 \\ud83d\\ude00", "text": "t3"}
            """)
        #expect(try TextReader.jsonLines(at: url, field: "content") == ["c1", "c2", "cé3 😀"])
        #expect(try TextReader.jsonLines(at: url) == ["t1", "t2", "t3"])
    }

    @Test func missingFieldNamesFileLineAndField() throws {
        let dir = try TempDir()
        let url = try dir.write("docs.jsonl", "{\"text\": \"a\"}\n\n{\"body\": \"b\", \"id\": 3}\n")
        let e = try #require(datasetError { try TextReader.jsonLines(at: url) })
        #expect(e.kind == "missingField")
        #expect(e.message == "\(url.path): line 3: no field \"text\" (the object has \"body\", \"id\")")
    }

    @Test func jsonErrorsAreOneLineWithLineNumbers() throws {
        let dir = try TempDir()
        let notString = try dir.write("a.jsonl", "{\"text\": \"ok\"}\n{\"text\": 12}\n")
        let e1 = try #require(datasetError { try TextReader.jsonLines(at: notString) })
        #expect(e1.kind == "missingField")
        #expect(e1.message == "\(notString.path): line 2: field \"text\" is a number, not a string")

        let nullField = try dir.write("n.jsonl", "{\"text\": null}\n")
        #expect(datasetError { try TextReader.jsonLines(at: nullField) }?.message
                == "\(nullField.path): line 1: field \"text\" is null, not a string")

        let broken = try dir.write("b.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n")
        let e2 = try #require(datasetError { try TextReader.jsonLines(at: broken) })
        #expect(e2.kind == "badJSON")
        #expect(e2.message == "\(broken.path): line 2: invalid JSON: unterminated string at byte 9 of the line")
        #expect(!e2.message.contains("\n"))

        let array = try dir.write("c.jsonl", "[\"text\"]\n")
        #expect(datasetError { try TextReader.jsonLines(at: array) }?.message
                == "\(array.path): line 1: expected a JSON object, found an array")

        let badBytes = try dir.write("d.jsonl", bytes: Array("{\"text\": \"a\"}\n{\"text\": \"b".utf8) + [0xFF] + Array("\"}\n".utf8))
        let e3 = try #require(datasetError { try TextReader.jsonLines(at: badBytes) })
        #expect(e3.kind == "invalidUTF8")
        #expect(e3.message == "\(badBytes.path): line 2: invalid UTF-8 at byte 12 of the line")
    }

    @Test func missingFileAndDirectory() throws {
        let dir = try TempDir()
        let missing = dir.file("nope.json.gz")
        let e = try #require(datasetError { try TextReader.c4Shard(at: missing) })
        #expect(e.kind == "fileNotFound")
        #expect(e.message == "\(missing.path): no such file")
        let e2 = try #require(datasetError { try TextReader.plainText(at: dir.url) })
        #expect(e2.kind == "unreadable")
        #expect(e2.message.hasPrefix(dir.url.path))
    }

    @Test func corruptTruncatedAndTrailingGzip() throws {
        let dir = try TempDir()
        let source = try dir.write("src.json", String(repeating: "{\"text\": \"some repeated document text\"}\n", count: 2000))
        let good = try gzipWithTool(source)
        #expect(try TextReader.c4Shard(at: try dir.write("good.json.gz", bytes: good)).count == 2000)

        var corrupt = good
        for i in 40..<60 { corrupt[i] ^= 0x5A }
        let c = try dir.write("corrupt.json.gz", bytes: corrupt)
        let e1 = try #require(datasetError { try TextReader.c4Shard(at: c) })
        #expect(e1.kind == "badGzip")
        #expect(e1.message.hasPrefix("\(c.path): corrupt gzip data"))

        let t = try dir.write("truncated.json.gz", bytes: Array(good.prefix(good.count - 20)))
        let e2 = try #require(datasetError { try TextReader.c4Shard(at: t) })
        #expect(e2.kind == "badGzip")
        #expect(e2.message == "\(t.path): truncated gzip data (the file ends inside a compressed member)")

        let g = try dir.write("trailing.json.gz", bytes: good + Array("garbage".utf8))
        let e3 = try #require(datasetError { try TextReader.c4Shard(at: g) })
        #expect(e3.kind == "badGzip")
        #expect(e3.message.hasPrefix("\(g.path): corrupt gzip data (after 1 complete member)"))
    }

    @Test func emptyFiles() throws {
        let dir = try TempDir()
        let empty = try dir.write("empty.json", "")
        #expect(try TextReader.jsonLines(at: empty).isEmpty)
        #expect(try TextReader.plainText(at: empty) == "")
        #expect(try TextReader.wikiTextRows(at: empty).isEmpty)
    }

    @Test func plainTextIsVerbatimAndValidated() throws {
        let dir = try TempDir()
        let url = try dir.write("t.txt", "a\r\nb\rc\n\u{FEFF}d")
        #expect(try TextReader.plainText(at: url) == "a\r\nb\rc\n\u{FEFF}d")
        let bad = try dir.write("bad.txt", bytes: Array("line one\nline two\nab".utf8) + [0xC3, 0x28] + Array("\n".utf8))
        let e = try #require(datasetError { try TextReader.plainText(at: bad) })
        #expect(e.kind == "invalidUTF8")
        #expect(e.message == "\(bad.path): line 3: invalid UTF-8 at byte 3 of the line")
    }

    /// Rows printed by scripts/make_datasets_fixtures.py (Python's universal newlines and str.strip()).
    @Test func wikiTextRowRuleOnEdgeCases() throws {
        let rows = try TextReader.wikiTextRows(at: try fixture("wikitext-edge.raw"))
        #expect(rows == [
            "",
            " = Title = \n",
            "",
            "",
            "a line with CRLF\n",
            "a line with CR\n",
            "and one after it\n",
            "",
            " été — 😀 \n",
            "\u{FEFF}\n",
            "no final newline",
        ])
    }

    /// Expected values from scripts/make_datasets_fixtures.py, which builds the rows as the Hugging Face
    /// `wikitext` loader does. (With the stories260K tokenizer this string is 815,070 tokens with one BOS.)
    @Test func wikiText2EvaluationString() throws {
        let url = try sharedFile("text/wikitext-2-raw/wiki.test.raw")
        let rows = try TextReader.wikiTextRows(at: url)
        #expect(rows.count == 4358)
        #expect(rows.filter { !$0.isEmpty }.count == 2891)
        let s = try TextReader.wikiTextEvaluationString(at: url)
        #expect(s.unicodeScalars.count == 1_294_336)
        #expect(s.utf8.count == 1_296_370)
        #expect(sha256Hex(Array(s.utf8)) == "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83")
    }

    @Test func sha256HelperKnownVectors() {
        #expect(sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(sha256Hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha256Hex(Array(String(repeating: "a", count: 1000).utf8))
                == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
