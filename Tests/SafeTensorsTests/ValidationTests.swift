import Foundation
import SafeTensors
import Testing

/// Each corrupt file must be refused with one thrown error whose one-line description names the file
/// (and the tensor when one is at fault) and says what is wrong.
@Suite struct ValidationTests {
    /// Writes `bytes` to a fresh temporary file, opens it, and checks the error's kind and full text
    /// (`expected` is the description after "<path>: ").
    private func refuses(_ bytes: [UInt8], kind: SafeTensorsError.Kind, _ expected: String,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try TempDir()
        let url = dir.file("model.safetensors")
        try writeFile(bytes, to: url)
        let error = try #require(throws: SafeTensorsError.self, sourceLocation: sourceLocation) {
            try SafeTensorsFile(url: url)
        }
        #expect(error.kind == kind, sourceLocation: sourceLocation)
        #expect(error.description == "\(url.path): \(expected)", sourceLocation: sourceLocation)
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
    }

    private let sixteen = [UInt8](repeating: 0, count: 16)

    @Test func truncatedFile() throws {
        try refuses([1, 2, 3, 4, 5], kind: .truncated, "file is 5 bytes, shorter than the 8-byte header length prefix")
        try refuses([], kind: .truncated, "file is 0 bytes, shorter than the 8-byte header length prefix")
    }

    @Test func headerLengthBeyondTheFile() throws {
        try refuses(fileBytes(header: "{}", declaredLength: 100), kind: .truncated,
                    "header length 100 runs past the end of the file (2 bytes follow the length prefix)")
    }

    @Test func headerLengthTooBig() throws {
        try refuses(fileBytes(header: "{}", declaredLength: 200_000_000), kind: .headerTooLarge,
                    "header length 200000000 exceeds the 100000000-byte limit")
        try refuses(fileBytes(header: "{}", declaredLength: UInt64.max), kind: .headerTooLarge,
                    "header length 18446744073709551615 exceeds the 100000000-byte limit")
    }

    @Test func headerNotJSON() throws {
        try refuses(fileBytes(header: #"{"x": {"dtype": "F32","#), kind: .invalidHeader,
                    "header is not valid JSON: expected a string key at byte 22 of the header")
        try refuses(fileBytes(header: #"{"x": nul}"#), kind: .invalidHeader,
                    "header is not valid JSON: invalid literal at byte 9 of the header")
        try refuses(fileBytes(header: "{\"\u{01}\": 1}"), kind: .invalidHeader,
                    "header is not valid JSON: control character in a string at byte 2 of the header")
        var invalidUTF8 = Array(#"{"x": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "\#u{e9}": 1}"#.utf8)
        invalidUTF8[invalidUTF8.count - 6] = 0xFF  // an invalid UTF-8 byte inside the last key
        try refuses(fileBytes(headerBytes: invalidUTF8, data: [0, 0, 0, 0]), kind: .invalidHeader, "header is not valid JSON: string is not valid UTF-8 at byte 61 of the header")
        let deep = String(repeating: "[", count: 100_000)
        try refuses(fileBytes(header: deep), kind: .invalidHeader,
                    "header is not valid JSON: nesting deeper than 64 levels at byte 64 of the header")
    }

    @Test func headerNotAnObject() throws {
        try refuses(fileBytes(header: "[1, 2]"), kind: .invalidHeader, "header is not a JSON object: [1, 2]")
    }

    @Test func unknownDType() throws {
        try refuses(fileBytes(header: #"{"x": {"dtype": "F9", "shape": [4], "data_offsets": [0, 16]}}"#, data: sixteen),
                    kind: .unknownDType,
                    "tensor 'x': unknown dtype 'F9' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)")
        try refuses(fileBytes(header: #"{"x": {"dtype": 4, "shape": [4], "data_offsets": [0, 16]}}"#, data: sixteen),
                    kind: .unknownDType, "tensor 'x': dtype must be a string, got 4")
    }

    @Test func shapeNotNonNegativeIntegers() throws {
        for shape in ["[2, -2]", "[2.5]", #"["4"]"#, "[1e1]", "4", "[true]"] {
            try refuses(fileBytes(header: #"{"x": {"dtype": "F32", "shape": \#(shape), "data_offsets": [0, 16]}}"#, data: sixteen),
                        kind: .invalidShape,
                        "tensor 'x': shape must be an array of non-negative integers, got \(shape)")
        }
        try refuses(fileBytes(header: #"{"x": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}"#, data: sixteen),
                    kind: .invalidShape, "tensor 'x': shape [4294967296, 4294967296] has too many elements")
    }

    @Test func offsetsMalformed() throws {
        for offsets in ["[8, 4]", "[0]", "[0, 16, 16]", "[-1, 15]", "[0.0, 16]", "null"] {
            try refuses(fileBytes(header: #"{"x": {"dtype": "F32", "shape": [4], "data_offsets": \#(offsets)}}"#, data: sixteen),
                        kind: .invalidOffsets,
                        "tensor 'x': data_offsets must be [begin, end] with 0 <= begin <= end, got \(offsets)")
        }
    }

    @Test func offsetsOutOfRange() throws {
        try refuses(fileBytes(header: #"{"x": {"dtype": "F32", "shape": [10], "data_offsets": [0, 40]}}"#, data: sixteen),
                    kind: .invalidOffsets, "tensor 'x': data_offsets [0, 40] run past the 16-byte data section")
    }

    @Test func spanDiffersFromShape() throws {
        try refuses(fileBytes(header: #"{"x": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}"#,
                              data: [UInt8](repeating: 0, count: 12)),
                    kind: .sizeMismatch, "tensor 'x': data_offsets [0, 12] span 12 bytes but shape [2, 2] of F32 needs 16")
    }

    @Test func overlappingOffsets() throws {
        let header = #"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}"#
        try refuses(fileBytes(header: header, data: [UInt8](repeating: 0, count: 24)),
                    kind: .overlap, "tensor 'b': data_offsets [8, 24] overlap tensor 'a' at [0, 16]")
        let same = #"{"a": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}"#
        try refuses(fileBytes(header: same, data: [0, 0, 0, 0]),
                    kind: .overlap, "tensor 'b': data_offsets [0, 4] overlap tensor 'a' at [0, 4]")
    }

    @Test func dataSectionNotCovered() throws {
        try refuses(fileBytes(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, data: sixteen),
                    kind: .uncoveredBytes, "data section bytes [8, 16) belong to no tensor")
        try refuses(fileBytes(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#, data: sixteen),
                    kind: .uncoveredBytes, "data section bytes [0, 8) belong to no tensor")
    }

    @Test func duplicateNamesAndBadEntries() throws {
        let entry = #"{"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}"#
        try refuses(fileBytes(header: #"{"a": \#(entry), "a": \#(entry)}"#, data: [UInt8](repeating: 0, count: 8)),
                    kind: .duplicateTensor, "tensor 'a': appears twice in the header")
        try refuses(fileBytes(header: #"{"a": {"dtype": "F32", "data_offsets": [0, 8]}}"#, data: [UInt8](repeating: 0, count: 8)),
                    kind: .invalidHeader, "tensor 'a': entry has no 'shape'")
        try refuses(fileBytes(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}"#, data: [UInt8](repeating: 0, count: 8)),
                    kind: .invalidHeader, "tensor 'a': unknown key 'x' in its entry")
        try refuses(fileBytes(header: #"{"a": [1]}"#), kind: .invalidHeader,
                    "tensor 'a': entry must be an object with dtype, shape and data_offsets, got [1]")
        try refuses(fileBytes(header: "{\"line\\nbreak\": 5}"), kind: .invalidHeader,
                    "tensor 'line break': entry must be an object with dtype, shape and data_offsets, got 5")
    }

    @Test func badMetadata() throws {
        try refuses(fileBytes(header: #"{"__metadata__": {"k": 5}}"#), kind: .invalidMetadata,
                    "__metadata__ value of 'k' must be a string, got 5")
        try refuses(fileBytes(header: #"{"__metadata__": ["k"]}"#), kind: .invalidMetadata,
                    #"__metadata__ must be an object of strings, got ["k"]"#)
    }

    @Test func notARegularFile() throws {
        let dir = try TempDir()
        let error = try #require(throws: SafeTensorsError.self) { try SafeTensorsFile(url: dir.url) }
        #expect(error.description == "\(dir.url.path): not a regular file")
        let missing = try #require(throws: SafeTensorsError.self) { try SafeTensorsFile(url: dir.file("none.safetensors")) }
        #expect(missing.description == "\(dir.file("none.safetensors").path): cannot open: No such file or directory")
    }

    @Test func acceptsAnEmptyHeaderAndZeroSizedTensorsAnywhere() throws {
        let dir = try TempDir()
        let url = dir.file("ok.safetensors")
        try Data(fileBytes(header: "{}")).write(to: url)
        #expect(try SafeTensorsFile(url: url).tensorNames.isEmpty)
        let header = #"{"z": {"dtype": "F32", "shape": [0, 4], "data_offsets": [8, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#
        try Data(fileBytes(header: header + "  ", data: [UInt8](repeating: 0, count: 8))).write(to: url)
        let file = try SafeTensorsFile(url: url)
        #expect(file.tensorNames == ["a", "z"])
        #expect(try file.floats("z").isEmpty)
    }

    /// Random corruptions of a valid file: each must either open (and then read without trouble) or throw
    /// a SafeTensorsError; nothing may crash.
    @Test func randomCorruptionsNeverCrash() throws {
        let dir = try TempDir()
        let good = dir.file("good.safetensors")
        try SafeTensorsWriter.write([
            TensorEntry(name: "w", dtype: .BF16, shape: [3, 4], data: .floats((0..<12).map { Float($0) })),
            TensorEntry(name: "b", dtype: .F32, shape: [4], data: .floats([1, 2, 3, 4])),
            TensorEntry(name: "ids", dtype: .I64, shape: [2], data: .int64s([5, 6])),
        ], metadata: ["format": "pt"], to: good)
        let original = try [UInt8](Data(contentsOf: good))
        let headerEnd = 8 + original[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        var rng = SplitMix(state: 42)
        let url = dir.file("fuzz.safetensors")
        var opened = 0, refused = 0
        let printable = Array(#"{}[]",:0123456789-.eE "tfnul\FBI"#.utf8)
        for _ in 0..<1500 {
            var bytes = original
            switch rng.below(4) {
            case 0:  // truncate anywhere
                bytes = Array(bytes.prefix(rng.below(bytes.count + 1)))
            case 1:  // change one byte of the length prefix
                bytes[rng.below(8)] = UInt8(truncatingIfNeeded: rng.next())
            default:  // replace 1–3 header bytes with JSON-ish characters or random bytes
                for _ in 0..<(1 + rng.below(3)) {
                    let i = 8 + rng.below(headerEnd - 8)
                    bytes[i] = rng.below(4) == 0 ? UInt8(truncatingIfNeeded: rng.next()) : printable[rng.below(printable.count)]
                }
            }
            try writeFile(bytes, to: url)
            do {
                let file = try SafeTensorsFile(url: url)
                opened += 1
                for name in file.tensorNames {
                    guard let info = file.info(name) else { continue }
                    if info.dtype.isFloatingPoint { _ = try file.floats(name) } else { _ = try file.int64s(name) }
                }
            } catch is SafeTensorsError {
                refused += 1
            }
        }
        #expect(opened + refused == 1500)
        #expect(refused > 1000, "most corruptions must be caught (\(refused) refused)")
    }
}
