import Foundation
import GGUF
import Testing
import TestSupport

/// The real Gemma 3 270M GGUF (Q4_K_M by llama.cpp) against what the Python `gguf` package reads and
/// dequantizes from the same file (Fixtures/gguf/gemma3-270m.json, scripts/make_gemma3_fixtures.py).
@Suite struct Gemma3GGUFTests {
    static let fixtureName = "gemma3-270m.json"

    @Test func headerMetadataAndTensorListMatchTheGGUFPackage() throws {
        let file = try GGUFFile(url: try gemma3GGUF())
        let expected = try jsonFixture(Self.fixtureName)
        let facts = try #require(expected["file"] as? [String: Any])
        let metadata = try #require(expected["metadata"] as? [String: Any])

        #expect(file.fileSize == facts["size"] as? Int)
        #expect(file.version == 3)
        #expect(try file.string("general.architecture") == "gemma3")
        // Every gemma3.* and tokenizer scalar the fixture lists, compared as the file's value type.
        for (key, value) in metadata where key != "tokenizer.ggml.tokens.count" {
            let got = try #require(file[key], "\(key) is missing")
            if let s = got.string {
                #expect(s == value as? String, "\(key): \(got.summary) vs \(value)")
            } else if let b = got.bool {
                #expect(b == value as? Bool, "\(key): \(got.summary) vs \(value)")
            } else if let i = got.int {
                #expect(i == value as? Int, "\(key): \(got.summary) vs \(value)")
            } else {
                // float32 in the file: the same float32, bit for bit.
                let d = try #require(value as? Double, "\(key): fixture value \(value)")
                #expect(got.double.map { Float($0).bitPattern } == Float(d).bitPattern, "\(key): \(got.summary) vs \(d)")
            }
        }
        // The architecture values named in issue 28, spelled out.
        #expect(try file.int("gemma3.block_count") == 18)
        #expect(try file.int("gemma3.embedding_length") == 640)
        #expect(try file.int("gemma3.feed_forward_length") == 2048)
        #expect(try file.int("gemma3.attention.head_count") == 4)
        #expect(try file.int("gemma3.attention.head_count_kv") == 1)
        #expect(try file.int("gemma3.attention.key_length") == 256)
        #expect(try file.int("gemma3.attention.value_length") == 256)
        #expect(try file.int("gemma3.attention.sliding_window") == 512)
        #expect(try file.double("gemma3.rope.freq_base") == 1_000_000)
        #expect(try file.int("gemma3.context_length") == 32768)
        let tokens = try #require(file["tokenizer.ggml.tokens"]?.array)
        #expect(tokens.count == 262_144 && tokens.count == metadata["tokenizer.ggml.tokens.count"] as? Int)

        let list = try #require(facts["tensors"] as? [[Any]])
        #expect(file.tensorNames.count == facts["tensor_count"] as? Int && list.count == file.tensorNames.count)
        for (entry, name) in zip(list, file.tensorNames) {
            let info = try #require(file.info(name))
            #expect(entry[0] as? String == name && entry[1] as? String == info.type.description
                    && entry[2] as? [Int] == info.shape, "\(name): \(info.type) \(info.shape) vs \(entry)")
        }
        var types: [String: Int] = [:]
        for info in file.infos { types[info.type.description, default: 0] += 1 }
        #expect(types == facts["types"] as? [String: Int])
        #expect(Set(types.keys) == ["Q4_K", "Q5_0", "Q6_K", "Q8_0", "F32"])
    }

    /// One tensor of each type: all its float32 values hash as the gguf package's dequantization does
    /// (sha256 of the little-endian bytes), and 256 of them are compared bit for bit.
    @Test func oneTensorOfEachTypeDequantizesAsTheGGUFPackage() throws {
        let file = try GGUFFile(url: try gemma3GGUF())
        let sampled = try #require(try jsonFixture(Self.fixtureName)["tensors"] as? [[String: Any]])
        #expect(Set(sampled.compactMap { $0["type"] as? String }) == ["Q4_K", "Q5_0", "Q6_K", "Q8_0", "F32"])
        for t in sampled {
            let name = try #require(t["name"] as? String)
            let info = try #require(file.info(name), "\(name) is not in the file")
            #expect(info.type.description == t["type"] as? String && info.shape == t["shape"] as? [Int])
            let values = try file.floats(name)
            #expect(values.count == t["elements"] as? Int)
            let bytes = values.withUnsafeBufferPointer { buffer in
                buffer.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
            }
            #expect(sha256Hex(bytes) == t["sha256_f32le"] as? String, "\(name) (\(info.type)): sha256 of its values")
            let first = try #require(t["first"] as? [Double]).map { Float($0) }
            #expect(sameBits(Array(values.prefix(first.count)), first), "\(name) (\(info.type)): first values")
            let strided = try #require(t["strided"] as? [[Double]])
            #expect(strided.count == 128)
            for pair in strided {
                let i = Int(pair[0])
                #expect(values[i].bitPattern == Float(pair[1]).bitPattern, "\(name)[\(i)]: \(values[i]) vs \(pair[1])")
            }
        }
    }

    /// Every tensor of the file dequantizes, to finite values only.
    @Test func everyTensorDequantizesToFiniteValues() throws {
        let file = try GGUFFile(url: try gemma3GGUF())
        var buffer = [Float](repeating: 0, count: file.infos.map(\.elementCount).max() ?? 0)  // check-tests: integers
        var total = 0
        for info in file.infos {
            #expect(info.type.isDequantizable, "\(info.name) is \(info.type)")
            let finite = try buffer.withUnsafeMutableBufferPointer { all -> Bool in
                let part = UnsafeMutableBufferPointer(rebasing: all[0..<info.elementCount])
                try file.floats(info.name, into: part)
                return part.allSatisfy(\.isFinite)
            }
            #expect(finite, "\(info.name) (\(info.type)) has a NaN or an infinity")
            total += info.elementCount
        }
        #expect(total > 260_000_000)
    }
}
