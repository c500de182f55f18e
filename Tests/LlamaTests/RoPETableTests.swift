import Foundation
import Llama
import SafeTensors
import Testing
import TestSupport

/// RoPE tables at SmolLM2-135M's shape (head_dim 64, theta 100,000) and long positions, against
/// transformers' own `LlamaRotaryEmbedding` (Fixtures/llama/rope-theta100000-hd64.safetensors, made by
/// scripts/make_rope_fixtures.py). transformers rounds the angles p·θᵢ to float32; matching that, not the
/// exact angles, is what keeps llm-prune's block outputs on the PyTorch reference's at p up to 2047.
@Suite struct RoPETableTests {
    @Test func tablesEqualTransformersAtLongPositions() throws {
        let file = try SafeTensorsFile(url: Paths.fixtures.appendingPathComponent("rope-theta100000-hd64.safetensors"))
        let positions = try file.int64s("positions").map(Int.init)
        let (cos, sin) = (try file.floats("cos"), try file.floats("sin"))
        let (cos64, sin64) = (try file.floats("cos64"), try file.floats("sin64"))
        let half = 32
        try #require(positions.count > 50 && positions.last == 2047 && cos.count == positions.count * half)
        let rope = RoPE(headDim: 64, theta: 100_000, scaling: nil, positions: 2048)
        var worst: Float = 0, exactGap: Float = 0
        for (r, p) in positions.enumerated() {
            for i in 0..<half {
                let (c, s) = (rope.cosTable[p * half + i], rope.sinTable[p * half + i])
                let d = maxOrNaN(abs(c - cos[r * half + i]), abs(s - sin[r * half + i]))
                // NaN fails here: every comparison with it is false.
                #expect(d <= 2.5e-7, "position \(p), frequency \(i): cos \(c) vs \(cos[r * half + i]), sin \(s) vs \(sin[r * half + i])")
                worst = maxOrNaN(worst, d)
                exactGap = maxOrNaN(exactGap, maxOrNaN(abs(cos[r * half + i] - cos64[r * half + i]), abs(sin[r * half + i] - sin64[r * half + i])))
            }
        }
        #expect(worst <= 2.5e-7)
        // The fixture tells float32 angles from exact ones: tables from float64 angles would miss by ~1e-4.
        #expect(exactGap > 2e-5)
    }
}
