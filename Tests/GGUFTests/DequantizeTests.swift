import Foundation
import GGUF
import SafeTensors
import Testing
import TestSupport

@Suite struct DequantizeTests {
    static let types = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "rank3"]

    /// Every supported type against `gguf.quants.dequantize`, bit for bit.
    @Test(arguments: types) func matchesTheGGUFPackage(_ name: String) throws {
        let f = try GGUFFile(url: try fixture("quants.gguf"))
        let expected = try SafeTensorsFile(url: try fixture("quants_expected.safetensors"))
        let info = try #require(f.info(name))
        #expect(info.shape == expected.info(name)?.shape)
        let got = try f.floats(name)
        let want = try expected.floats(name)
        #expect(got.count == want.count)
        let mismatches = zip(got, want).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
        #expect(mismatches.isEmpty, "\(name): \(mismatches.count) of \(want.count) differ, first at \(mismatches.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")")
        // The same through a caller's buffer.
        var buffer = [Float](repeating: .nan, count: info.elementCount)
        try buffer.withUnsafeMutableBufferPointer { try f.floats(name, into: $0) }
        #expect(sameBits(buffer, want))
    }

    /// The parallel path (large tensors) gives the same values as block-by-block conversion.
    @Test func parallelConversionMatchesBlockwise() throws {
        var rng = SplitMix(state: 3)
        for type in [GGMLType.Q4_1, .Q6_K, .F16] {
            let elements = GGUFDequantizer.parallelThreshold * 2
            let blocks = elements / type.blockSize
            var raw = [UInt8](repeating: 0, count: blocks * type.typeSize)
            for i in raw.indices { raw[i] = UInt8(truncatingIfNeeded: rng.next()) }
            // Keep half-precision fields finite: clear the exponent's top bit of every byte pair's high byte.
            for i in stride(from: 1, to: raw.count, by: 2) { raw[i] &= 0xBF }
            var whole = [Float](repeating: 0, count: elements)
            raw.withUnsafeBytes { r in whole.withUnsafeMutableBufferPointer { GGUFDequantizer.dequantize(r, type: type, rowLength: 4096, into: $0) } }
            var one = [Float](repeating: 0, count: elements)
            raw.withUnsafeBytes { r in
                one.withUnsafeMutableBufferPointer { o in
                    for b in 0..<blocks {
                        GGUFDequantizer.dequantizeBlocks(r.baseAddress! + b * type.typeSize, type: type, count: 1,
                                                         into: o.baseAddress! + b * type.blockSize)
                    }
                }
            }
            #expect(sameBits(whole, one), "\(type)")
        }
    }

    /// The writer's encodings read back: metadata as given, F32 exactly, F16/BF16 rounded to nearest even
    /// (checked against the SafeTensors module's PyTorch-checked conversions), Q8_0 close and keeping zeros.
    @Test func writerRoundTrips() throws {
        let dir = try TempDir()
        let url = dir.file("out.gguf")
        var rng = SplitMix(state: 11)
        let x: [Float] = (0..<256).map { i in i % 7 == 0 ? 0 : Float(Int(rng.next() % 20001) - 10000) / 3000 }
        let metadata: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string("test")), ("general.alignment", .uint32(64)),
            ("test.tokens", .array(.string(["a", "b"]))), ("test.nested", .array(.array([.uint8([1]), .uint8([2, 3])]))),
        ]
        let specs = [GGMLType.F32, .F16, .BF16, .Q8_0].map { GGUFTensorSpec(name: "\($0)", type: $0, shape: [4, 64]) }
        try GGUFWriter.write(metadata: metadata, tensors: specs, to: url) { _ in .floats(x) }
        #expect(try dir.listing() == ["out.gguf"], "no temporary file may be left behind")
        let f = try GGUFFile(url: url)
        #expect(f.alignment == 64)
        #expect(f.metadataKeys == metadata.map(\.key))
        for (k, v) in metadata { #expect(f[k] == v) }
        #expect(try f.floats("F32") == x)
        #expect(try f.floats("F16") == x.map { Float(Float16($0)) })
        #expect(try f.floats("BF16") == x.map { Float(bf16Bits: bf16Bits(from: $0)) })
        let q8 = try f.floats("Q8_0")
        // Round to nearest within each block of 32: |q·d₁₆ − x| ≤ d₁₆/2 + 127·|d₁₆ − d| with d = max|x|/127 and
        // d₁₆ the half-precision d the block stores (≈ 0.56·d; a truncating encoder misses by up to d).
        for b in stride(from: 0, to: x.count, by: 32) {
            let amax = x[b..<(b + 32)].map { Double(abs($0)) }.maxOrNaN()!
            let d = amax / 127, d16 = Double(Float16(Float(amax) / 127))
            let bound = d16 / 2 + 127 * abs(d16 - d) + 1e-6 * d
            let worst = (b..<(b + 32)).map { abs(Double(q8[$0]) - Double(x[$0])) }.maxOrNaN()!
            #expect(worst <= bound, "Q8_0 block at \(b): misses by \(worst), round to nearest allows \(bound) (scale \(d16))")
        }
        #expect(zip(q8, x).allSatisfy { $1 != 0 || $0 == 0 }, "Q8_0 must keep every zero")
    }

    /// Q8_0 encoding equals the gguf package's `quantize` bit for bit: re-encoding the package's own
    /// dequantized Q8_0 values reproduces its stored blocks (they are fixed points of the quantizer).
    @Test func q8EncodingMatchesThePackage() throws {
        let f = try GGUFFile(url: try fixture("quants.gguf"))
        let values = try f.floats("Q8_0")
        let stored = try f.withRawBytes("Q8_0") { Array($0) }
        let encoded = try GGUFWriter.encodeFloats(values, type: .Q8_0)
        #expect(encoded == stored)
    }
}

