import Foundation
import SafeTensors
import Testing

@Suite struct RoundTripTests {
    /// Values exactly representable in every floating-point dtype, so the round trip must be the identity.
    static let exactFloats: [Float] = [0, -0.0, 1, -1, 0.5, -2.25, 1024, -0.0078125, 3, 96, .infinity, -.infinity]

    @Test func everyDTypeRoundTrips() throws {
        let dir = try TempDir()
        let url = dir.file("all.safetensors")
        let ints: [Int64] = [0, 1, -1, 100, -100, 7]
        let oddName = "naïve \"quoted\" \\ name\twith tab"
        let entries: [TensorEntry] = [
            TensorEntry(name: "f64", dtype: .F64, shape: [3, 4], data: .floats(Self.exactFloats)),
            TensorEntry(name: "f32", dtype: .F32, shape: [12], data: .floats(Self.exactFloats)),
            TensorEntry(name: "f16", dtype: .F16, shape: [2, 6], data: .floats(Self.exactFloats)),
            TensorEntry(name: "bf16", dtype: .BF16, shape: [2, 2, 3], data: .floats(Self.exactFloats)),
            TensorEntry(name: "i64", dtype: .I64, shape: [3], data: .int64s([Int64.min, Int64.max, -5])),
            TensorEntry(name: "i32", dtype: .I32, shape: [2, 3], data: .int64s([Int64(Int32.min), Int64(Int32.max)] + ints[2..<6])),
            TensorEntry(name: "i16", dtype: .I16, shape: [6], data: .int64s([-32768, 32767] + ints[2..<6])),
            TensorEntry(name: "i8", dtype: .I8, shape: [6], data: .int64s([-128, 127] + ints[2..<6])),
            TensorEntry(name: "u8", dtype: .U8, shape: [5], data: .int64s([0, 255, 1, 128, 7])),
            TensorEntry(name: "bool", dtype: .BOOL, shape: [4], data: .int64s([1, 0, 0, 1])),
            TensorEntry(name: "raw", dtype: .I16, shape: [2], data: .bytes([0x01, 0x02, 0xFF, 0xFF])),
            TensorEntry(name: "scalar", dtype: .F32, shape: [], data: .floats([42])),
            TensorEntry(name: "empty", dtype: .BF16, shape: [0, 5], data: .floats([])),
            TensorEntry(name: oddName, dtype: .F32, shape: [1], data: .floats([-7.5])),
        ]
        let metadata = ["format": "pt", "note": "line\nbreak \"and\" quotes"]
        try SafeTensorsWriter.write(entries, metadata: metadata, to: url)
        #expect(try dir.listing() == ["all.safetensors"], "no temporary file may be left behind")

        let file = try SafeTensorsFile(url: url)
        #expect(file.metadata == metadata)
        // The data was laid out in the order given, so file order is the order given.
        #expect(file.tensorNames == entries.map(\.spec.name))
        #expect((8 + file.headerByteCount) % 8 == 0, "data section must start 8-byte aligned")
        for entry in entries {
            let info = try #require(file.info(entry.spec.name))
            #expect(info.dtype == entry.spec.dtype && info.shape == entry.spec.shape)
            #expect(info.byteCount == info.elementCount * info.dtype.byteSize)
        }
        for name in ["f64", "f32", "f16", "bf16"] {
            #expect(sameFloats(try file.floats(name), Self.exactFloats), "\(name)")
        }
        #expect(try file.int64s("i64") == [Int64.min, Int64.max, -5])
        #expect(try file.int64s("i32") == [Int64(Int32.min), Int64(Int32.max), -1, 100, -100, 7])
        #expect(try file.int64s("i16") == [-32768, 32767, -1, 100, -100, 7])
        #expect(try file.int64s("i8") == [-128, 127, -1, 100, -100, 7])
        #expect(try file.int64s("u8") == [0, 255, 1, 128, 7])
        #expect(try file.int64s("bool") == [1, 0, 0, 1])
        // 0x0201 and -1, little-endian.
        #expect(try file.int64s("raw") == [513, -1])
        #expect(try file.withRawBytes("raw") { Array($0) } == [0x01, 0x02, 0xFF, 0xFF])
        #expect(try file.floats("scalar") == [42])
        #expect(file.info("scalar")?.elementCount == 1)
        #expect(try file.floats("empty").isEmpty)
        #expect(try file.floats(oddName) == [-7.5])

        var buffer = [Float](repeating: .nan, count: 12)
        try buffer.withUnsafeMutableBufferPointer { try file.floats("bf16", into: $0) }
        #expect(sameFloats(buffer, Self.exactFloats))
    }

    @Test func headerIsPaddedJSONWithMetadataFirst() throws {
        let dir = try TempDir()
        let url = dir.file("h.safetensors")
        try SafeTensorsWriter.write([TensorEntry(name: "a", dtype: .F32, shape: [1], data: .floats([1]))],
                                    metadata: ["format": "pt"], to: url)
        let bytes = try [UInt8](Data(contentsOf: url))
        let n = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        #expect(trimmed == #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#)
        #expect(n % 8 == 0 && header.count - trimmed.count < 8)
        #expect(bytes.count == 8 + n + 4)
        // Foundation's parser agrees that the padded header is JSON.
        #expect(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) is [String: Any])
    }

    @Test func streamingWriterAsksForEachTensorOnceInOrder() throws {
        let dir = try TempDir()
        let specs = (0..<5).map { TensorSpec(name: "t\($0)", dtype: .BF16, shape: [$0 + 1]) }
        var asked: [String] = []
        try SafeTensorsWriter.write(specs, to: dir.file("s.safetensors")) { spec in
            asked.append(spec.name)
            return .floats([Float](repeating: Float(spec.shape[0]), count: spec.shape[0]))
        }
        #expect(asked == specs.map(\.name))
        let file = try SafeTensorsFile(url: dir.file("s.safetensors"))
        #expect(try file.floats("t3") == [4, 4, 4, 4])
        #expect(file.metadata.isEmpty)
    }
}

@Suite struct PyTorchFixtureTests {
    @Test func halfPrecisionDecodingMatchesPyTorch() throws {
        let file = try SafeTensorsFile(url: try fixture("conversions.safetensors"))
        #expect(file.metadata["format"] == "pt")
        #expect(file.info("source_as_f16")?.dtype == .F16)
        #expect(file.info("source_as_bf16")?.dtype == .BF16)
        #expect(sameFloats(try file.floats("source_as_f16"), try file.floats("f16_widened")))
        #expect(sameFloats(try file.floats("source_as_bf16"), try file.floats("bf16_widened")))
        #expect(sameFloats(try file.floats("source_as_f64"), try file.floats("f64_narrowed")))
        #expect(sameFloats(try file.floats("f64_values"), try file.floats("f64_values_as_f32")))
        #expect(file.info("rank3_bf16")?.shape == [2, 3, 4])
        #expect(sameFloats(try file.floats("rank3_bf16"), try file.floats("rank3_bf16_widened")))
    }

    /// float32 → F16/BF16 must round exactly as PyTorch's casts do, NaN included: compare bit patterns.
    @Test func halfPrecisionRoundingMatchesPyTorch() throws {
        let file = try SafeTensorsFile(url: try fixture("conversions.safetensors"))
        let source = try file.floats("source")
        #expect(source.count > 1000 && source.contains { $0.isNaN } && source.contains(.infinity))
        func halves(_ f: SafeTensorsFile, _ name: String) throws -> [UInt16] {
            try f.withRawBytes(name) { raw in (0..<raw.count / 2).map { UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8 } }
        }
        let torchF16 = try halves(file, "source_as_f16")
        let torchBF16 = try halves(file, "source_as_bf16")
        // NaN payloads differ between implementations (PyTorch's CPU cast gives BF16 0xFFFF, its scalar
        // path 0x7FC0, ours 0x7FC0); for NaN inputs only NaN-ness is compared.
        func isHalfNaN(_ bits: UInt16) -> Bool { bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0 }
        func isBF16NaN(_ bits: UInt16) -> Bool { bits & 0x7F80 == 0x7F80 && bits & 0x007F != 0 }
        var f16Mismatches: [String] = [], bf16Mismatches: [String] = []
        for (i, x) in source.enumerated() {
            let h = f16Bits(from: x), b = bf16Bits(from: x)
            if x.isNaN ? !(isHalfNaN(h) && isHalfNaN(torchF16[i])) : h != torchF16[i] {
                f16Mismatches.append("\(x): \(h) vs \(torchF16[i])")
            }
            if x.isNaN ? !(isBF16NaN(b) && isBF16NaN(torchBF16[i])) : b != torchBF16[i] {
                bf16Mismatches.append("\(x): \(b) vs \(torchBF16[i])")
            }
        }
        #expect(f16Mismatches.isEmpty, "\(f16Mismatches.prefix(5))")
        #expect(bf16Mismatches.isEmpty, "\(bf16Mismatches.prefix(5))")

        // The writer stores the same bytes as PyTorch (NaN excepted, as above).
        let finite = source.filter { !$0.isNaN }
        let nanFree = source.indices.filter { !source[$0].isNaN }
        let dir = try TempDir()
        let url = dir.file("w.safetensors")
        try SafeTensorsWriter.write([
            TensorEntry(name: "h", dtype: .F16, shape: [finite.count], data: .floats(finite)),
            TensorEntry(name: "b", dtype: .BF16, shape: [finite.count], data: .floats(finite)),
        ], to: url)
        let written = try SafeTensorsFile(url: url)
        #expect(try halves(written, "h") == nanFree.map { torchF16[$0] })
        #expect(try halves(written, "b") == nanFree.map { torchBF16[$0] })
    }

    @Test func specificRoundingCases() {
        // Ties go to even, values past the top go to infinity, NaN stays NaN.
        #expect(bf16Bits(from: 1 + 0x1p-8) == 0x3F80)
        #expect(bf16Bits(from: 1 + 3 * 0x1p-8) == 0x3F82)
        #expect(bf16Bits(from: .greatestFiniteMagnitude) == 0x7F80)
        #expect(Float(bf16Bits: bf16Bits(from: .nan)).isNaN)
        #expect(f16Bits(from: 65520) == 0x7C00 && f16Bits(from: 65519) == 0x7BFF)
        #expect(f16Bits(from: 0x1p-25) == 0 && f16Bits(from: 3 * 0x1p-25) == 0x0002)
        #expect(Float(f16Bits: f16Bits(from: .nan)).isNaN)
        #expect(Float(f16Bits: 0x3C00) == 1 && Float(bf16Bits: 0xC000) == -2)
    }

    @Test func integerDTypesMatchPyTorch() throws {
        let file = try SafeTensorsFile(url: try fixture("conversions.safetensors"))
        let expectedDTypes: [String: DType] = ["ints_i64": .I64, "ints_i32": .I32, "ints_i16": .I16,
                                               "ints_i8": .I8, "ints_u8": .U8, "ints_bool": .BOOL]
        for (name, dtype) in expectedDTypes {
            #expect(file.info(name)?.dtype == dtype)
            #expect(try file.int64s(name) == file.int64s(name + "_as_i64"), "\(name)")
        }
        #expect(try file.int64s("ints_i64").contains(Int64.min))
    }

    @Test func oddShapesFromPyTorch() throws {
        let file = try SafeTensorsFile(url: try fixture("conversions.safetensors"))
        #expect(file.info("scalar_f32")?.shape == [])
        #expect(try file.floats("scalar_f32") == [2.5])
        #expect(file.info("empty_f16")?.shape == [0, 3])
        #expect(try file.floats("empty_f16").isEmpty)
    }

    @Test func readingTheWrongWayThrows() throws {
        let file = try SafeTensorsFile(url: try fixture("conversions.safetensors"))
        let path = file.url.path
        let e1 = try #require(throws: SafeTensorsError.self) { try file.floats("ints_i64") }
        #expect(e1.kind == .dtypeMismatch)
        #expect(e1.description == "\(path): tensor 'ints_i64': is I64, not a floating-point dtype; read it with int64s")
        let e2 = try #require(throws: SafeTensorsError.self) { try file.int64s("source") }
        #expect(e2.description == "\(path): tensor 'source': is F32, not an integer dtype; read it with floats")
        let e3 = try #require(throws: SafeTensorsError.self) { try file.floats("nope") }
        #expect(e3.kind == .noSuchTensor)
        #expect(e3.description == "\(path): tensor 'nope': no such tensor in the file")
        var small = [Float](repeating: 0, count: 3)
        let e4 = try #require(throws: SafeTensorsError.self) {
            try small.withUnsafeMutableBufferPointer { try file.floats("source", into: $0) }
        }
        #expect(e4.kind == .invalidArgument)
    }
}

@Suite struct RealCheckpointTests {
    @Test func readsStories260K() throws {
        let reference = try jsonFixture("stories260K_reference.json")
        let url = try shared("models/stories260K/model.safetensors")
        let file = try SafeTensorsFile(url: url)
        let names = try #require(reference["names_in_file_order"] as? [String])
        #expect(file.tensorNames.count == 47)
        #expect(file.tensorNames.count == reference["tensor_count"] as? Int)
        #expect(file.tensorNames == names)
        #expect(file.metadata == (reference["metadata"] as? [String: String]))
        #expect(file.info("model.embed_tokens.weight")?.shape == [512, 64])
        #expect(file.info("model.layers.0.mlp.gate_proj.weight")?.shape == [172, 64])
        #expect(file.info("lm_head.weight") == nil, "stories260K ties its embeddings")
        let shapes = try #require(reference["shapes"] as? [String: [Int]])
        for (name, shape) in shapes { #expect(file.info(name)?.shape == shape, "\(name)") }

        let samples = try #require(reference["samples"] as? [String: [String: Any]])
        for (name, sample) in samples {
            let values = try file.floats(name)
            let first = try #require(sample["first"] as? [Double]).map(Float.init)
            let last = try #require(sample["last"] as? [Double]).map(Float.init)
            #expect(Array(values.prefix(8)) == first, "\(name)")
            #expect(Array(values.suffix(4)) == last, "\(name)")
            let sum = values.reduce(0.0) { $0 + Double($1) }
            let absSum = values.reduce(0.0) { $0 + Double(abs($1)) }
            let refSum = try #require(sample["sum_f64"] as? Double)
            let refAbs = try #require(sample["abs_sum_f64"] as? Double)
            // Summation order differs from PyTorch's; float64 keeps the difference far below this bound.
            #expect(abs(sum - refSum) <= 1e-9 * refAbs, "\(name)")
            #expect(abs(absSum - refAbs) <= 1e-9 * refAbs, "\(name)")
        }

        let checkpoint = try SafeTensorsCheckpoint(directory: url.deletingLastPathComponent())
        #expect(!checkpoint.usedIndex && checkpoint.notes.isEmpty)
        #expect(checkpoint.shardFiles == ["model.safetensors"])
        #expect(checkpoint.tensorNames == names)
        #expect(checkpoint.dtypeSummary == "F32 (47 tensors)")
        #expect(checkpoint.shardFile(of: "model.norm.weight") == "model.safetensors")
        #expect(try checkpoint.floats("model.norm.weight") == file.floats("model.norm.weight"))
    }

    @Test func readsCalibrationTokens() throws {
        let reference = try #require(try jsonFixture("stories260K_reference.json")["calibration"] as? [String: Any])
        let file = try SafeTensorsFile(url: try shared("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"))
        #expect(file.tensorNames == ["input_ids"])
        let info = try #require(file.info("input_ids"))
        #expect(info.dtype == .I64 && info.shape == [128, 512])
        #expect(info.shape == reference["shape"] as? [Int])
        let ids = try file.int64s("input_ids")
        #expect(Array(ids.prefix(16)) == (reference["first"] as? [Int])?.map(Int64.init))
        #expect(Array(ids[512..<520]) == (reference["row_1_first"] as? [Int])?.map(Int64.init))
        #expect(ids.reduce(0, +) == (reference["sum"] as? Int).map(Int64.init))
        #expect(ids.min() == (reference["min"] as? Int).map(Int64.init))  // check-tests: integers
        #expect(ids.max() == (reference["max"] as? Int).map(Int64.init))  // check-tests: integers
    }
}

@Suite struct ShardedCheckpointTests {
    /// Checks `checkpoint` against sharded_expected.json (written by PyTorch).
    private func checkAgainstExpected(_ checkpoint: SafeTensorsCheckpoint) throws {
        let expected = try jsonFixture("sharded_expected.json")
        let tensors = try #require(expected["tensors"] as? [String: [String: Any]])
        #expect(Set(checkpoint.tensorNames) == Set(tensors.keys))
        #expect(checkpoint.tensorNames.count == tensors.count)
        #expect(checkpoint.totalTensorBytes == expected["total_size"] as? Int)
        let dtypeNames: [String: DType] = ["float32": .F32, "float16": .F16, "bfloat16": .BF16, "int64": .I64]
        for (name, t) in tensors {
            let info = try #require(checkpoint.info(name))
            #expect(info.shape == t["shape"] as? [Int], "\(name)")
            #expect(info.dtype == dtypeNames[t["dtype"] as? String ?? ""], "\(name)")
            #expect(checkpoint.shardFile(of: name) == t["shard"] as? String, "\(name)")
            let values = try #require(t["values"] as? [Double])
            if info.dtype == .I64 {
                #expect(try checkpoint.int64s(name) == values.map { Int64($0) }, "\(name)")
            } else {
                #expect(try checkpoint.floats(name) == values.map { Float($0) }, "\(name)")
            }
        }
    }

    /// The two fixture shards copied into a fresh folder, without their index.
    private func copiedShards() throws -> TempDir {
        let dir = try TempDir()
        for name in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            try FileManager.default.copyItem(at: try fixture("sharded/\(name)"), to: dir.file(name))
        }
        return dir
    }

    private func writeIndex(_ weightMap: [String: String], in dir: TempDir) throws {
        let json = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": weightMap])
        try json.write(to: dir.file("model.safetensors.index.json"))
    }

    private static let fixtureWeightMap = [
        "layers.0.weight": "model-00001-of-00002.safetensors", "layers.0.bias": "model-00001-of-00002.safetensors",
        "layers.1.weight": "model-00002-of-00002.safetensors", "position_ids": "model-00002-of-00002.safetensors",
    ]

    @Test func readsTheIndex() throws {
        let checkpoint = try SafeTensorsCheckpoint(directory: try fixture("sharded"))
        #expect(checkpoint.usedIndex)
        #expect(checkpoint.notes.isEmpty)
        #expect(checkpoint.shardFiles == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(checkpoint.metadata == ["format": "pt"])
        #expect(checkpoint.dtypeCounts == [.F32: 1, .BF16: 1, .F16: 1, .I64: 1])
        try checkAgainstExpected(checkpoint)
    }

    @Test func globsWhenTheIndexIsMissing() throws {
        let dir = try copiedShards()
        let checkpoint = try SafeTensorsCheckpoint(directory: dir.url)
        #expect(!checkpoint.usedIndex && checkpoint.notes.isEmpty)
        #expect(checkpoint.shardFiles == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        try checkAgainstExpected(checkpoint)
    }

    /// The error a checkpoint folder gives, or nil when it opens.
    private func openingError(_ dir: TempDir) -> SafeTensorsError? {
        do { _ = try SafeTensorsCheckpoint(directory: dir.url); return nil } catch let e as SafeTensorsError {
            return e
        } catch { return nil }
    }

    @Test func anIndexNamingAnAbsentShardIsAMissingShardError() throws {
        let dir = try copiedShards()
        var weightMap = Self.fixtureWeightMap
        weightMap["position_ids"] = "model-00003-of-00003.safetensors"
        try writeIndex(weightMap, in: dir)
        let e = try #require(openingError(dir))
        #expect(e.kind == .missingShard)
        #expect(e.description.hasSuffix("model.safetensors.index.json: names shard model-00003-of-00003.safetensors, which is missing from the folder"))
    }

    @Test func anIndexThatMisplacesATensorIsNotJSONOrEscapesTheFolderIsAnError() throws {
        let dir = try copiedShards()
        var weightMap = Self.fixtureWeightMap
        weightMap["position_ids"] = "model-00001-of-00002.safetensors"
        try writeIndex(weightMap, in: dir)
        let misplaced = try #require(openingError(dir))
        #expect(misplaced.kind == .invalidIndex)
        #expect(misplaced.description.hasSuffix("tensor 'position_ids': is mapped to model-00001-of-00002.safetensors, which has no such tensor"))

        weightMap = Self.fixtureWeightMap
        weightMap["position_ids"] = "../../etc/passwd"
        try writeIndex(weightMap, in: dir)
        let escaping = try #require(openingError(dir))
        #expect(escaping.kind == .invalidIndex)
        #expect(escaping.description.contains("names \"../../etc/passwd\", which is not a file name in the folder"))

        try Data("{\"weight_map\": ".utf8).write(to: dir.file("model.safetensors.index.json"))
        let broken = try #require(openingError(dir))
        #expect(broken.kind == .invalidIndex)
        #expect(broken.description.contains("model.safetensors.index.json: is not valid JSON"))

        try Data("[1, 2]".utf8).write(to: dir.file("model.safetensors.index.json"))
        #expect(openingError(dir)?.description.hasSuffix("has no weight_map object") == true)
    }

    @Test func aMissingShardWithoutAnIndexIsNamed() throws {
        let dir = try copiedShards()
        try FileManager.default.removeItem(at: dir.file("model-00001-of-00002.safetensors"))
        let e = try #require(openingError(dir))
        #expect(e.kind == .missingShard)
        #expect(e.description.contains("shard model-00001-of-00002.safetensors is missing"))
        #expect(SafeTensorsCheckpoint.missingShard(["a-00001-of-00003.safetensors", "a-00003-of-00003.safetensors"]) == "a-00002-of-00003.safetensors")
        #expect(SafeTensorsCheckpoint.missingShard(["model.safetensors", "x-1-of-2.safetensors"]) == nil)
    }

    @Test func anIndexThatLeavesOutAFileIsNoted() throws {
        let dir = try copiedShards()
        // Only the first shard is indexed; the second file's tensors are therefore not in the checkpoint.
        try writeIndex(["layers.0.weight": "model-00001-of-00002.safetensors"], in: dir)
        let checkpoint = try SafeTensorsCheckpoint(directory: dir.url)
        #expect(checkpoint.usedIndex)
        #expect(checkpoint.shardFiles == ["model-00001-of-00002.safetensors"])
        #expect(checkpoint.notes == ["model.safetensors.index.json leaves out model-00002-of-00002.safetensors; those files are ignored"])
        // A tensor of an indexed shard missing from weight_map is still found through the shard's header.
        #expect(Set(checkpoint.tensorNames) == ["layers.0.weight", "layers.0.bias"])
        #expect(checkpoint.info("position_ids") == nil)
    }

    @Test func aTensorInTwoFilesIsAnError() throws {
        let dir = try copiedShards()
        try FileManager.default.copyItem(at: dir.file("model-00001-of-00002.safetensors"), to: dir.file("zz-copy.safetensors"))
        let error = try #require(throws: SafeTensorsError.self) { try SafeTensorsCheckpoint(directory: dir.url) }
        #expect(error.kind == .duplicateTensor)
        #expect(error.description.hasPrefix("\(dir.url.path): tensor 'layers.0."))
        #expect(error.description.hasSuffix("appears in both model-00001-of-00002.safetensors and zz-copy.safetensors"))
    }

    @Test func anEmptyFolderIsAnError() throws {
        let dir = try TempDir()
        let error = try #require(throws: SafeTensorsError.self) { try SafeTensorsCheckpoint(directory: dir.url) }
        #expect(error.description == "\(dir.url.path): no *.safetensors file in the folder")
        let missing = try #require(throws: SafeTensorsError.self) {
            try SafeTensorsCheckpoint(directory: dir.file("absent"))
        }
        #expect(missing.kind == .io)
    }

    @Test func writesAShardedSetWithIndex() throws {
        let dir = try TempDir()
        let specs = (0..<6).map { TensorSpec(name: "w\($0)", dtype: $0 % 2 == 0 ? .BF16 : .F32, shape: [2, $0 + 1]) }
        let shardOf = Dictionary(uniqueKeysWithValues: specs.enumerated().map {
            ($1.name, SafeTensorsWriter.shardFileName($0 % 3 + 1, of: 3))
        })
        var asked: [String] = []
        let written = try SafeTensorsWriter.writeSharded(specs, shardOf: shardOf, metadata: ["format": "pt"], to: dir.url) { spec in
            asked.append(spec.name)
            let n = 2 * spec.shape[1]
            return .floats((0..<n).map { Float($0) * 0.5 })
        }
        #expect(written == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"])
        #expect(asked == ["w0", "w3", "w1", "w4", "w2", "w5"])
        #expect(try dir.listing() == written + ["model.safetensors.index.json"])

        let index = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.file("model.safetensors.index.json"))) as? [String: Any])
        #expect(index["weight_map"] as? [String: String] == shardOf)
        let totalSize = specs.reduce(0) { $0 + 2 * ($1.shape[1]) * $1.dtype.byteSize }
        #expect((index["metadata"] as? [String: Any])?["total_size"] as? Int == totalSize)

        let checkpoint = try SafeTensorsCheckpoint(directory: dir.url)
        #expect(checkpoint.usedIndex && checkpoint.notes.isEmpty)
        #expect(checkpoint.shardFiles == written)
        #expect(checkpoint.totalTensorBytes == totalSize)
        for spec in specs {
            #expect(checkpoint.shardFile(of: spec.name) == shardOf[spec.name])
            #expect(checkpoint.info(spec.name)?.dtype == spec.dtype)
            #expect(try checkpoint.floats(spec.name) == (0..<2 * spec.shape[1]).map { Float($0) * 0.5 })
        }
        #expect(checkpoint.metadata == ["format": "pt"])
    }

    @Test func shardFileNamesFollowHuggingFace() {
        #expect(SafeTensorsWriter.shardFileName(1, of: 3) == "model-00001-of-00003.safetensors")
        #expect(SafeTensorsWriter.shardFileName(12, of: 123456) == "model-00012-of-123456.safetensors")
    }
}

@Suite struct WriterArgumentTests {
    private func rejects(_ entries: [TensorEntry], _ expected: String, kind: SafeTensorsError.Kind = .invalidArgument) throws {
        let dir = try TempDir()
        let url = dir.file("bad.safetensors")
        let error = try #require(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(entries, to: url) }
        #expect(error.kind == kind)
        #expect(error.description == "\(url.path): \(expected)")
        #expect(try dir.listing().isEmpty, "a failed write must leave nothing behind")
    }

    @Test func wrongElementCount() throws {
        try rejects([TensorEntry(name: "a", dtype: .F16, shape: [2, 2], data: .floats([1, 2, 3]))],
                    "tensor 'a': 3 values given but shape [2, 2] has 4 elements")
    }

    @Test func integerOutOfRange() throws {
        try rejects([TensorEntry(name: "a", dtype: .U8, shape: [3], data: .int64s([1, 256, 3]))],
                    "tensor 'a': value 256 at index 1 does not fit U8 (0...255)")
        try rejects([TensorEntry(name: "b", dtype: .BOOL, shape: [1], data: .int64s([2]))],
                    "tensor 'b': value 2 at index 0 does not fit BOOL (0...1)")
    }

    @Test func payloadOfTheWrongKind() throws {
        try rejects([TensorEntry(name: "a", dtype: .I32, shape: [1], data: .floats([1]))],
                    "tensor 'a': float values given for integer dtype I32")
        try rejects([TensorEntry(name: "a", dtype: .BF16, shape: [1], data: .int64s([1]))],
                    "tensor 'a': integer values given for floating-point dtype BF16")
        try rejects([TensorEntry(name: "a", dtype: .F32, shape: [2], data: .bytes([0, 0, 0]))],
                    "tensor 'a': 3 bytes given but shape [2] of F32 needs 8")
    }

    @Test func badNamesAndShapes() throws {
        try rejects([TensorEntry(name: "a", dtype: .F32, shape: [1], data: .floats([1])),
                     TensorEntry(name: "a", dtype: .F32, shape: [1], data: .floats([1]))],
                    "tensor 'a': given twice", kind: .duplicateTensor)
        try rejects([TensorEntry(name: "__metadata__", dtype: .F32, shape: [1], data: .floats([1]))],
                    "tensor '__metadata__': name is reserved for metadata")
        try rejects([TensorEntry(name: "a", dtype: .F32, shape: [-1], data: .floats([]))],
                    "tensor 'a': invalid shape [-1]: dimensions must be non-negative and the size must fit")
    }

    @Test func aFailedWriteKeepsTheOldFile() throws {
        let dir = try TempDir()
        let url = dir.file("m.safetensors")
        try SafeTensorsWriter.write([TensorEntry(name: "old", dtype: .F32, shape: [1], data: .floats([1]))], to: url)
        struct Interrupted: Error {}
        #expect(throws: Interrupted.self) {
            try SafeTensorsWriter.write([TensorSpec(name: "new", dtype: .F32, shape: [1])], to: url) { _ in throw Interrupted() }
        }
        #expect(try dir.listing() == ["m.safetensors"])
        #expect(try SafeTensorsFile(url: url).tensorNames == ["old"])
    }

    @Test func shardedWriteRejectsUnassignedTensors() throws {
        let dir = try TempDir()
        let error = try #require(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.writeSharded([TensorSpec(name: "a", dtype: .F32, shape: [1])], shardOf: [:], to: dir.url) { _ in .floats([1]) }
        }
        #expect(error.description == "\(dir.url.path): tensor 'a': has no shard assigned")
        #expect(try dir.listing().isEmpty)
    }
}
