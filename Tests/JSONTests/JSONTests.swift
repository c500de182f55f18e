import Foundation
import Testing
import JSON

@Suite struct JSONTests {
    @Test func parsesValuesAndKeepsOrder() throws {
        let v = try JSONValue.parse(#"{"b": [1, -2.5e1, true, false, null], "a": {"x": "y"}, "b": 3}"#)
        let members = try #require(v.objectValue)
        #expect(members.map { $0.0 } == ["b", "a", "b"])
        #expect(v["b"]?.arrayValue?.count == 5)
        #expect(v["b"]?.arrayValue?[1].doubleValue == -25)
        #expect(v["b"]?.arrayValue?[0].intValue == 1)
        #expect(v["b"]?.arrayValue?[4].isNull == true)
        #expect(v["a"]?["x"]?.stringValue == "y")
    }

    @Test func decodesEscapes() throws {
        let v = try JSONValue.parse(#"["\u2581\n\t\"\\\/", "\ud83d\ude00", "é"]"#)
        let a = try #require(v.arrayValue)
        #expect(a[0].stringValue == "\u{2581}\n\t\"\\/")
        #expect(a[1].stringValue == "😀")
        #expect(a[2].stringValue == "é")
    }

    @Test func keepsCanonicallyEquivalentKeysApart() throws {
        // U+03AF and U+1F77 are canonically equivalent; both must survive with their exact scalars.
        let v = try JSONValue.parse("{\"\u{3AF}\": 1, \"\u{1F77}\": 2}")
        let keys = try #require(v.objectValue).map { Array($0.0.unicodeScalars) }
        #expect(keys == [["\u{3AF}"], ["\u{1F77}"]])
        #expect(v["\u{1F77}"]?.intValue == 2)
    }

    @Test func rejectsMalformedText() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"\\ud800\"", "\"abc", "01x", "[1] 2", "\"\u{01}\"", "tru"] {
            #expect(throws: JSONSyntaxError.self, "\(bad)") { _ = try JSONValue.parse(bad) }
        }
        let invalidUTF8 = Data([0x22, 0xC3, 0x28, 0x22])
        #expect(throws: JSONSyntaxError.self) { _ = try JSONValue.parse(invalidUTF8) }
    }

    @Test func keepsNumberLiteralsExact() throws {
        let v = try JSONValue.parse("[1, 1.0, 9007199254740993, -0, 2e3]")
        let a = try #require(v.arrayValue)
        #expect(a[0] != a[1])                              // 1 and 1.0 stay apart
        #expect(a[0].intValue == 1 && a[1].intValue == nil)
        #expect(a[2].intValue == 9_007_199_254_740_993)    // 2^53 + 1: exact, no detour through Double
        #expect(a[4].intValue == nil && a[4].doubleValue == 2000)
        #expect(v.jsonText == "[1, 1.0, 9007199254740993, -0, 2e3]")
    }

    @Test func reportsWhereAndWhyItFailed() {
        func failure(_ text: String) -> String? {
            do { _ = try JSONValue.parse(Array(text.utf8)); return nil } catch { return "\(error)" }
        }
        #expect(failure(#"{"a": 1, 2}"#) == "invalid JSON at byte 9: expected a string key")
        #expect(failure("[tru]") == "invalid JSON at byte 4: invalid literal")
        #expect(failure("\"a\u{01}\"") == "invalid JSON at byte 2: control character in a string")
        #expect(failure(#"["abc"#) == "invalid JSON at byte 1: unterminated string")
        #expect(failure("[1] x") == "invalid JSON at byte 4: unexpected text after the JSON value")
        #expect(failure(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))
                == "invalid JSON at byte 64: nesting deeper than 64 levels")
        #expect(failure(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)) == nil)
    }

    @Test func skipsAByteOrderMarkOnlyInFiles() throws {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        #expect(try JSONValue.parse(Data(bom + Array("[1]".utf8))) == .array([.number("1")]))
        #expect(throws: JSONSyntaxError.self) { _ = try JSONValue.parse(bom + Array("[1]".utf8)) }
    }

    @Test func quotesStringsBackToJSON() throws {
        let s = "a\"b\\c\n\u{01}\u{7F}é"
        #expect(jsonQuoted(s) == #""a\"b\\c\n\u0001\u007fé""#)
        #expect(try JSONValue.parse(jsonQuoted(s)).stringValue == s)
    }
}
