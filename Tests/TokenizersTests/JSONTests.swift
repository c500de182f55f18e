import Foundation
import Testing
import Tokenizers

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
            #expect(throws: JSONParseError.self, "\(bad)") { _ = try JSONValue.parse(bad) }
        }
        let invalidUTF8 = Data([0x22, 0xC3, 0x28, 0x22])
        #expect(throws: JSONParseError.self) { _ = try JSONValue.parse(invalidUTF8) }
    }
}
