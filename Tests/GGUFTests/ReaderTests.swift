import Foundation
import GGUF
import Testing

@Suite struct ReaderTests {
    /// Metadata of every value type, written by the gguf package (scripts/make_gguf_fixtures.py).
    @Test func everyMetadataTypeReads() throws {
        let f = try GGUFFile(url: try fixture("quants.gguf"))
        #expect(f.version == 3)
        #expect(f.alignment == 64)
        #expect(f.dataOffset % 64 == 0)
        #expect(f["general.alignment"] == .uint32(64))
        #expect(f["general.architecture"] == .string("test"))
        #expect(f["test.u8"] == .uint8(200))
        #expect(f["test.i8"] == .int8(-100))
        #expect(f["test.u16"] == .uint16(65000))
        #expect(f["test.i16"] == .int16(-32000))
        #expect(f["test.u32"] == .uint32(4_000_000_000))
        #expect(f["test.i32"] == .int32(-2_000_000_000))
        #expect(f["test.f32"] == .float32(0.1))
        #expect(f["test.bool"] == .bool(true))
        #expect(f["test.string"] == .string("naïve ✓ \"quoted\"\nline"))
        #expect(f["test.u64"] == .uint64(18_000_000_000_000_000_000))
        #expect(f["test.i64"] == .int64(-9_000_000_000_000_000_000))
        #expect(f["test.f64"] == .float64(0.1))
        #expect(f["test.strings"] == .array(.string(["a", "", "Ġthe", "<|im_start|>"])))
        #expect(f["test.floats"] == .array(.float32([0.5, -1.25, 3.0])))
        #expect(f["test.nested"] == .array(.array([.int32([1, 2, 3]), .int32([4]), .int32([5, 6])])))
        #expect(f["test.u64s"] == .array(.uint64([1, 1 << 63])))
        #expect(f.metadataKeys.first == "general.architecture")
        // 18e18 does not fit an Int: the typed accessor refuses it rather than wrapping.
        #expect(throws: GGUFError.self) { try f.int("test.u64") }
        #expect(try f.int("test.u32") == 4_000_000_000)
        #expect(throws: GGUFError.self) { try f.int("test.string") }
        #expect(try f.string("test.string").hasPrefix("naïve"))
    }

    @Test func tensorInfosAreRowMajor() throws {
        let f = try GGUFFile(url: try fixture("quants.gguf"))
        let q4k = try #require(f.info("Q4_K"))
        #expect(q4k.type == .Q4_K)
        #expect(q4k.dimensions == [512, 2])
        #expect(q4k.shape == [2, 512])
        #expect(q4k.byteCount == 4 * 144)
        let r3 = try #require(f.info("rank3"))
        #expect(r3.dimensions == [64, 2, 3] && r3.shape == [3, 2, 64])
        #expect(f.infos.allSatisfy { $0.offset % 64 == 0 })
        #expect(f.tensorNames.count == 14)
    }

    /// Version 2 has the same layout as version 3 for little-endian files.
    @Test func version2Reads() throws {
        var bytes = try [UInt8](Data(contentsOf: try fixture("quants.gguf")))
        bytes[4] = 2
        let dir = try TempDir()
        try writeFile(bytes, to: dir.file("v2.gguf"))
        let f = try GGUFFile(url: dir.file("v2.gguf"))
        #expect(f.version == 2)
        #expect(try f.floats("Q8_0").count == 256)
    }

    /// Each malformed file gets its own error kind and a one-line message naming the file and the tensor or key.
    @Test func malformedFilesAreRefused() throws {
        let dir = try TempDir()
        let url = dir.file("bad.gguf")
        func refuse(_ bytes: [UInt8], _ kind: GGUFError.Kind, _ fragment: String, tensor: String? = nil, key: String? = nil,
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
            try writeFile(bytes, to: url)
            do {
                _ = try GGUFFile(url: url)
                Issue.record("opened a malformed file (expected \(kind))", sourceLocation: sourceLocation)
            } catch let e as GGUFError {
                #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
                #expect(e.description.contains(fragment), "\(e)", sourceLocation: sourceLocation)
                #expect(e.description.hasPrefix(url.path + ": "), sourceLocation: sourceLocation)
                #expect(!e.description.contains("\n"), sourceLocation: sourceLocation)
                #expect(e.tensor == tensor && e.key == key, "\(e)", sourceLocation: sourceLocation)
            }
        }
        var b = GGUFBytes()
        b.header(tensors: 0, kvs: 0)
        var magic = b.bytes; magic[0] = UInt8(ascii: "X")
        try refuse(magic, .badMagic, "not a GGUF file")
        try refuse(Array(b.bytes.prefix(10)), .truncated, "shorter than the 24-byte GGUF header")
        var v1 = GGUFBytes(); v1.header(version: 1, tensors: 0, kvs: 0)
        try refuse(v1.bytes, .unsupportedVersion, "version 1")
        var be = GGUFBytes(); be.header(version: 3 << 24, tensors: 0, kvs: 0)
        try refuse(be.bytes, .unsupportedVersion, "big-endian")

        var huge = GGUFBytes(); huge.header(tensors: 0, kvs: UInt64.max)
        try refuse(huge.bytes, .truncated, "larger than any file")
        var many = GGUFBytes(); many.header(tensors: 1 << 40, kvs: 0)
        try refuse(many.bytes, .truncated, "tensor count")

        var longKey = GGUFBytes(); longKey.header(tensors: 0, kvs: 1); longKey.u64(1 << 50); longKey.bytes += [UInt8](repeating: 0, count: 64)
        try refuse(longKey.bytes, .truncated, "bytes long")
        var longString = GGUFBytes(); longString.header(tensors: 0, kvs: 1); longString.string("k"); longString.u32(8); longString.u64(1 << 40)
        try refuse(longString.bytes, .truncated, "bytes long", key: "k")
        var hugeArray = GGUFBytes(); hugeArray.header(tensors: 0, kvs: 1); hugeArray.string("arr"); hugeArray.u32(9); hugeArray.u32(8); hugeArray.u64(1 << 60)
        try refuse(hugeArray.bytes, .truncated, "cannot fit", key: "arr")
        var badType = GGUFBytes(); badType.header(tensors: 0, kvs: 1); badType.string("t"); badType.u32(13)
        try refuse(badType.bytes, .invalidMetadata, "unknown value type 13", key: "t")
        var badUTF8 = GGUFBytes(); badUTF8.header(tensors: 0, kvs: 1); badUTF8.string("s"); badUTF8.u32(8); badUTF8.u64(2); badUTF8.bytes += [0xC3, 0x28]
        try refuse(badUTF8.bytes, .invalidMetadata, "not valid UTF-8", key: "s")
        var badBool = GGUFBytes(); badBool.header(tensors: 0, kvs: 1); badBool.string("b"); badBool.u32(7); badBool.bytes.append(2)
        try refuse(badBool.bytes, .invalidMetadata, "neither 0 nor 1", key: "b")
        var deep = GGUFBytes(); deep.header(tensors: 0, kvs: 1); deep.string("deep"); deep.u32(9)
        for _ in 0..<20 { deep.u32(9); deep.u64(1) }
        deep.bytes += [UInt8](repeating: 0, count: 64)
        try refuse(deep.bytes, .invalidMetadata, "nest deeper", key: "deep")
        var dup = GGUFBytes(); dup.header(tensors: 0, kvs: 2)
        for _ in 0..<2 { dup.string("k"); dup.u32(4); dup.u32(1) }
        try refuse(dup.bytes, .duplicateKey, "appears twice", key: "k")
        var align = GGUFBytes(); align.header(tensors: 0, kvs: 1); align.string("general.alignment"); align.u32(4); align.u32(48)
        try refuse(align.bytes, .invalidMetadata, "not a power of two", key: "general.alignment")
        var alignType = GGUFBytes(); alignType.header(tensors: 0, kvs: 1); alignType.string("general.alignment"); alignType.u32(10); alignType.u64(32)
        try refuse(alignType.bytes, .invalidMetadata, "must be a UINT32", key: "general.alignment")

        func oneTensor(dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, data: Int = 64, name: String = "w") -> [UInt8] {
            var t = GGUFBytes(); t.header(tensors: 1, kvs: 0)
            t.tensor(name, dims: dims, type: type, offset: offset); t.pad()
            return t.bytes + [UInt8](repeating: 0, count: data)
        }
        try refuse(oneTensor(dims: [1, 1, 1, 1, 1]), .invalidShape, "5 dimensions", tensor: "w")
        try refuse(oneTensor(dims: [1 << 62, 1 << 62]), .invalidShape, "too many elements", tensor: "w")
        try refuse(oneTensor(dims: [1 << 63]), .invalidShape, "too large", tensor: "w")
        try refuse(oneTensor(dims: [16], type: 99), .unknownType, "unknown ggml type id 99", tensor: "w")
        try refuse(oneTensor(dims: [48], type: 8), .invalidShape, "not a multiple of the Q8_0 block size 32", tensor: "w")
        try refuse(oneTensor(dims: [17]), .invalidOffset, "run past", tensor: "w")
        try refuse(oneTensor(dims: [4], offset: 8), .invalidOffset, "not a multiple of the alignment 32", tensor: "w")
        try refuse(oneTensor(dims: [4], offset: UInt64.max), .invalidOffset, "larger than any file", tensor: "w")
        // The data section starting past the end of the file.
        var noData = GGUFBytes(); noData.header(tensors: 1, kvs: 0); noData.tensor("w", dims: [1], type: 0, offset: 0)
        try refuse(noData.bytes, .truncated, "past the end")

        var two = GGUFBytes(); two.header(tensors: 2, kvs: 0)
        two.tensor("a", dims: [16], type: 0, offset: 0)
        two.tensor("b", dims: [8], type: 0, offset: 32)
        two.pad()
        try refuse(two.bytes + [UInt8](repeating: 0, count: 96), .overlap, "overlap tensor 'a'", tensor: "b")
        var same = GGUFBytes(); same.header(tensors: 2, kvs: 0)
        same.tensor("a", dims: [4], type: 0, offset: 0)
        same.tensor("a", dims: [4], type: 0, offset: 32)
        same.pad()
        try refuse(same.bytes + [UInt8](repeating: 0, count: 64), .duplicateTensor, "appears twice", tensor: "a")
        // A newline in a hostile name stays on one line.
        try refuse(oneTensor(dims: [17], name: "evil\nname"), .invalidOffset, "evil name", tensor: "evil\nname")
    }

    @Test func missingTensorsAndUnsupportedTypes() throws {
        let f = try GGUFFile(url: try fixture("quants.gguf"))
        #expect(throws: GGUFError.self) { try f.floats("nope") }
        let dir = try TempDir()
        var t = GGUFBytes(); t.header(tensors: 1, kvs: 0)
        t.tensor("iq", dims: [256], type: GGMLType.IQ2_XXS.rawValue, offset: 0); t.pad()
        try writeFile(t.bytes + [UInt8](repeating: 0, count: 96), to: dir.file("iq.gguf"))
        let g = try GGUFFile(url: dir.file("iq.gguf"))
        do {
            _ = try g.floats("iq")
            Issue.record("dequantized IQ2_XXS")
        } catch let e as GGUFError {
            #expect(e.kind == .unsupportedType && e.description.contains("IQ2_XXS"))
        }
    }

    /// Seeded corruptions of a real file (truncations, byte flips, huge counts and lengths): each must open
    /// (and then dequantize without trouble) or throw a GGUFError; nothing may trap or allocate unboundedly.
    @Test func randomCorruptionsNeverCrash() throws {
        let original = try [UInt8](Data(contentsOf: try fixture("quants.gguf")))
        let headerEnd = try GGUFFile(url: try fixture("quants.gguf")).dataOffset
        let dir = try TempDir()
        let url = dir.file("fuzz.gguf")
        var rng = SplitMix(state: 8)
        var opened = 0, refused = 0
        let rounds = 1200
        for _ in 0..<rounds {
            var bytes = original
            switch rng.below(4) {
            case 0:
                bytes = Array(bytes.prefix(rng.below(headerEnd + 64)))
            case 1:
                for _ in 0..<(1 + rng.below(3)) { bytes[rng.below(headerEnd)] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2:
                // A length, count or dimension made huge: 0xFF over the high bytes of a random u64 position.
                let i = rng.below(headerEnd - 8)
                for k in (4 + rng.below(4))..<8 { bytes[i + k] = 0xFF }
            default:
                bytes[rng.below(headerEnd)] ^= UInt8(1 << rng.below(8))
            }
            try writeFile(bytes, to: url)
            do {
                let f = try GGUFFile(url: url)
                opened += 1
                for info in f.infos where info.type.isDequantizable { _ = try f.floats(info.name) }
            } catch is GGUFError {
                refused += 1
            }
        }
        #expect(opened + refused == rounds)
        #expect(refused > rounds / 2, "most corruptions must be caught (\(refused) refused)")
    }
}
