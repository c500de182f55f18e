import Testing
import JSON

struct Layer: Codable, Equatable {
    var name: String
    var shape: [Int]
    var seconds: Double?
}

struct Record: Codable, Equatable {
    var toolVersion: String
    var seed: UInt64
    var smallest: Int64
    var ratio: Double
    var tiny: Double
    var scale: Float
    var enabled: Bool
    var layers: [Layer]
    var results: [String: Double]
    var plan: [String: String]?
    var nested: Int??
    var grid: [[Double]]
}

@Suite struct CodableBridgeTests {
    let record = Record(
        toolVersion: "1.2", seed: .max, smallest: .min, ratio: 0.1, tiny: 1e-300, scale: 0.1, enabled: true,
        layers: [Layer(name: "model.layers.0.mlp.up_proj", shape: [8, 4], seconds: nil),
                 Layer(name: "a/b \"c\"", shape: [], seconds: 2.5)],
        results: ["wikitext2_perplexity": 130.25, "c4SeqLen": 512], plan: nil, nested: 4, grid: [[], [1, -0.5]])

    @Test func encodesAsFoundationsEncoderLaysOut() throws {
        let value = try JSONValueEncoder().encode(record)
        #expect(value.text(.sortedKeys) == """
            {"enabled":true,"grid":[[],[1,-0.5]],"layers":[{"name":"model.layers.0.mlp.up_proj","shape":[8,4]},\
            {"name":"a/b \\"c\\"","seconds":2.5,"shape":[]}],"nested":4,"ratio":0.1,\
            "results":{"c4SeqLen":512,"wikitext2_perplexity":130.25},"scale":0.1,"seed":18446744073709551615,\
            "smallest":-9223372036854775808,"tiny":1e-300,"toolVersion":"1.2"}
            """)
    }

    @Test func nilOptionalsAreOmittedAndAnExplicitNilIsNull() throws {
        var r = record
        r.nested = .some(nil)
        let value = try JSONValueEncoder().encode(r)
        #expect(value["plan"] == nil && value["layers"]?.arrayValue?.first?["seconds"] == nil)
        #expect(value["nested"] == .null)
        // As with Foundation, null reads back as the outer nil.
        #expect(try JSONValueDecoder().decode(Record.self, from: value).nested == .none)
    }

    @Test func snakeCaseConvertsPropertyNamesButNotDictionaryKeys() throws {
        let value = try JSONValueEncoder(convertsKeysToSnakeCase: true).encode(record)
        let keys = try #require(value.objectValue).map(\.key)
        #expect(keys.contains("tool_version") && !keys.contains("toolVersion"))
        #expect(value["results"]?["c4SeqLen"] == .number("512"))
        #expect(try JSONValueDecoder(convertsKeysFromSnakeCase: true).decode(Record.self, from: value) == record)
        #expect(JSONValueEncoder.snakeCase("sampleCount") == "sample_count")
        #expect(JSONValueEncoder.snakeCase("baseURLPath") == "base_url_path")
        #expect(JSONValueEncoder.snakeCase("wikitext2Perplexity") == "wikitext2_perplexity")
        #expect(JSONValueDecoder.camelCase("tool_version") == "toolVersion")
        #expect(JSONValueDecoder.camelCase("_private_key_") == "_privateKey_")
        #expect(JSONValueDecoder.camelCase("plain") == "plain")
    }

    @Test func roundTripsExactly() throws {
        for layout: JSONLayout in [[], [.prettyPrinted, .sortedKeys]] {
            let text = try JSONValueEncoder().encode(record).text(layout)
            let back = try JSONValueDecoder().decode(Record.self, from: try JSONValue.parse(text))
            #expect(back == record)
            #expect(back.ratio == 0.1 && back.tiny == 1e-300 && back.seed == UInt64.max && back.smallest == Int64.min)
        }
    }

    @Test func readsTextFoundationWrote() throws {
        // As JSONEncoder writes it: pretty, " : ", escaped slashes, integral doubles without ".0".
        let text = """
            {
              "enabled" : false,
              "grid" : [

              ],
              "layers" : [
                {
                  "name" : "a\\/b",
                  "shape" : [
                    1
                  ]
                }
              ],
              "nested" : 3,
              "ratio" : 1,
              "results" : {

              },
              "scale" : 1e-05,
              "seed" : 0,
              "smallest" : 7,
              "tiny" : 4.9406564584124654e-324,
              "toolVersion" : "x"
            }
            """
        let r = try JSONValueDecoder().decode(Record.self, from: try JSONValue.parse(text))
        #expect(r == Record(toolVersion: "x", seed: 0, smallest: 7, ratio: 1, tiny: .leastNonzeroMagnitude, scale: 1e-5, enabled: false,
                            layers: [Layer(name: "a/b", shape: [1], seconds: nil)], results: [:], plan: nil,
                            nested: .some(3), grid: []))
    }

    @Test func missingKeysAndWrongTypesAreTypedErrorsWithTheirPath() throws {
        func error(_ text: String) throws -> DecodingError? {
            do { _ = try JSONValueDecoder().decode([Layer].self, from: try JSONValue.parse(text)); return nil }
            catch let e as DecodingError { return e }
        }
        guard case let .keyNotFound(key, context)? = try error(#"[{"name": "a", "shape": []}, {"name": "b"}]"#) else {
            Issue.record("no keyNotFound"); return
        }
        #expect(key.stringValue == "shape")
        #expect(context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue } == ["1"])

        guard case let .typeMismatch(type, mismatch)? = try error(#"[{"name": "a", "shape": [1, "2"]}]"#) else {
            Issue.record("no typeMismatch"); return
        }
        #expect(type == Int.self)
        #expect(mismatch.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue } == ["0", "shape", "1"])

        guard case let .valueNotFound(nullType, _)? = try error(#"[{"name": null, "shape": []}]"#) else {
            Issue.record("no valueNotFound"); return
        }
        #expect(nullType == String.self)
        // An absent optional and a null one both decode as nil.
        #expect(try error(#"[{"name": "a", "shape": [], "seconds": null}]"#) == nil)
    }

    @Test func numbersMustFitTheirType() throws {
        func decodes<T: Decodable>(_ type: T.Type, _ text: String) -> Bool {
            (try? JSONValueDecoder().decode(type, from: try JSONValue.parse(text))) != nil
        }
        #expect(decodes(UInt64.self, "18446744073709551615") && !decodes(UInt64.self, "18446744073709551616"))
        #expect(!decodes(UInt64.self, "-1") && !decodes(Int.self, "1.5") && !decodes(Int.self, "1e3"))
        #expect(decodes(Double.self, "1e308") && !decodes(Double.self, "1e400") && !decodes(Float.self, "1e39"))
        #expect(!decodes(Bool.self, "1") && !decodes(String.self, "1") && !decodes(Double.self, "\"1\""))
        #expect(decodes(Int?.self, "null") && !decodes(Int.self, "null"))
    }

    @Test func nonFiniteNumbersAreRefused() throws {
        for bad in [Double.nan, .infinity, -.infinity] {
            #expect(throws: EncodingError.self) { _ = try JSONValueEncoder().encode(["loss": [1, bad]]) }
        }
        #expect(throws: EncodingError.self) { _ = try JSONValueEncoder().encode(Float.nan) }
    }

    @Test func repeatedKeysReadTheFirstMember() throws {
        let value = try JSONValue.parse(#"{"name": "first", "shape": [], "name": "second"}"#)
        #expect(try JSONValueDecoder().decode(Layer.self, from: value).name == "first")
        #expect(try JSONValueDecoder().decode([String: Int].self, from: try JSONValue.parse(#"{"a": 1, "a": 2}"#)) == ["a": 1])
    }
}
