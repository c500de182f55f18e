import Testing
import JSON

@Suite struct WriterTests {
    let sample: JSONValue = .object([
        ("b", .array([.number("1"), .bool(true), .null, .array([]), .object([])])),
        ("a", .object([("y", .string("a/b\n")), ("x", .number("0.5"))])),
    ])

    @Test func compactTextHasNoWhitespace() {
        #expect(sample.text() == #"{"b":[1,true,null,[],{}],"a":{"y":"a/b\n","x":0.5}}"#)
        #expect(sample.text(.sortedKeys) == #"{"a":{"x":0.5,"y":"a/b\n"},"b":[1,true,null,[],{}]}"#)
    }

    @Test func prettyTextIsFoundationsLayout() {
        let expected = """
            {
              "a" : {
                "x" : 0.5,
                "y" : "a/b\\n"
              },
              "b" : [
                1,
                true,
                null,
                [

                ],
                {

                }
              ]
            }
            """
        #expect(sample.text([.prettyPrinted, .sortedKeys]) == expected)
        #expect(JSONValue.array([]).text(.prettyPrinted) == "[\n\n]")
        #expect(JSONValue.string("x").text(.prettyPrinted) == "\"x\"")
    }

    @Test func writtenTextParsesBackToTheSameValue() throws {
        for layout: JSONLayout in [[], .prettyPrinted] {
            #expect(try JSONValue.parse(sample.text(layout)) == sample)
        }
    }

    @Test func sortedKeysAreInUTF8ByteOrderAsJSONEncoderSortsThem() {
        // The order Foundation's JSONEncoder(.sortedKeys) wrote these keys in.
        let expected = ["", "A1", "Z", "a+b", "a.b", "a10", "a2", "aB", "a_b", "ab", "b", "layer.10.q", "layer.9.q", "z", "é"]
        let object = JSONValue.object(expected.reversed().map { ($0, .null) })
        #expect(object.text(.sortedKeys) == "{" + expected.map { "\"\($0)\":null" }.joined(separator: ",") + "}")
        #expect(object.text() == "{" + expected.reversed().map { "\"\($0)\":null" }.joined(separator: ",") + "}")
    }

    @Test func numbersAreShortestRoundTripText() throws {
        let cases: [(Double, String)] = [
            (1, "1"), (0.1, "0.1"), (1e-300, "1e-300"), (1e20, "1e+20"), (-0.0, "-0"), (100, "100"),
            (.leastNonzeroMagnitude, "5e-324"), (.greatestFiniteMagnitude, "1.7976931348623157e+308"), (1.0 / 3, "0.3333333333333333"),
            (9.999999747378752e-06, "9.999999747378752e-06"),
        ]
        for (x, text) in cases {
            #expect(JSONValue(x) == .number(text))
            let back = try #require(JSONValue.parse(text).doubleValue)
            #expect(back == x && back.sign == x.sign, "\(text)")
        }
        #expect(JSONValue(Float(0.1)) == .number("0.1"))
        #expect(JSONValue(Double.nan) == nil && JSONValue(Double.infinity) == nil && JSONValue(-Float.infinity) == nil)
        #expect(JSONValue(UInt64.max) == .number("18446744073709551615"))
        #expect(JSONValue(Int64.min) == .number("-9223372036854775808"))
    }
}
