import Foundation
import Llama
import Tensor
import Testing
import TestSupport

/// A small block with everything switched on: GQA, llama attention_bias (q/k/v/o biases), RoPE scaling,
/// and — through a mistral configuration — a sliding window shorter than the sequence.
private func configuration(type: String, window: Int? = nil) throws -> LlamaConfiguration {
    let extra = type == "llama" ? #", "attention_bias": true"# : #", "sliding_window": \#(window ?? 0)"#
    let json = """
    {"model_type": "\(type)", "hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 4,
     "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 40, "vocab_size": 50, "rms_norm_eps": 1e-5,
     "rope_theta": 500.0, "rope_scaling": {"type": "linear", "factor": 1.5}\(extra)}
    """
    return try LlamaConfiguration(jsonData: Data(json.utf8))
}

private func randomBlock(_ c: LlamaConfiguration, seed: UInt64) throws -> DecoderBlockWeights {
    var s = seed
    func next(_ shape: [Int], _ scale: Double) -> Tensor { s += 1; return randomTensor(shape, seed: s, scale: scale) }
    func w(_ kind: LinearKind) -> Tensor { let sh = kind.shape(c); return next(sh, 1.2 / Double(sh[1]).squareRoot()) }
    func b(_ kind: LinearKind) -> Tensor? { kind.hasBias(c) ? next([kind.shape(c)[0]], 0.3) : nil }
    let norm1 = Tensor(shape: [c.hiddenSize], data: next([c.hiddenSize], 0.2).data.map { $0 + 1 })
    let norm2 = Tensor(shape: [c.hiddenSize], data: next([c.hiddenSize], 0.2).data.map { $0 + 1 })
    return try DecoderBlockWeights(
        layer: 0, configuration: c, q: w(.q), k: w(.k), v: w(.v), o: w(.o), gate: w(.gate), up: w(.up), down: w(.down),
        qBias: b(.q), kBias: b(.k), vBias: b(.v), oBias: b(.o), inputNorm: norm1, postAttentionNorm: norm2)
}

/// The block in double precision, keeping the intermediates the cache should hold.
private func naiveBlock(_ x: Tensor, _ w: DecoderBlockWeights, _ c: LlamaConfiguration, inv: [Double])
    -> (out: [Double], parts: [String: [Double]]) {
    let (b, t, ch) = (x.shape[0], x.shape[1], x.shape[2])
    let n = b * t, nh = c.numAttentionHeads, nkv = c.numKeyValueHeads, hd = c.headDim, inter = c.intermediateSize
    func lin(_ a: [Double], _ kind: LinearKind) -> [Double] {
        let sh = kind.shape(c)
        return Naive.linear(a, w[kind].doubles, w.bias(kind)?.doubles, rows: n, inF: sh[1], outF: sh[0])
    }
    let (xn, rstd1) = Naive.rmsNorm(x.doubles, w.inputNorm.doubles, rows: n, eps: c.rmsNormEps)
    let q = Naive.rope(lin(xn, .q), inv: inv, b: b, t: t, h: nh, hd: hd)
    let k = Naive.rope(lin(xn, .k), inv: inv, b: b, t: t, h: nkv, hd: hd)
    let v = lin(xn, .v)
    let att = Naive.attention(q: q, k: k, v: v, b: b, t: t, nh: nh, nkv: nkv, hd: hd, window: c.attentionWindow(layer: 0))
    let h = zip(x.doubles, lin(att.out, .o)).map { $0 + $1 }
    let (hn, rstd2) = Naive.rmsNorm(h, w.postAttentionNorm.doubles, rows: n, eps: c.rmsNormEps)
    let gate = lin(hn, .gate), up = lin(hn, .up)
    let act = zip(gate, up).map { Naive.silu($0) * $1 }
    let y = zip(h, Naive.linear(act, w.down.doubles, nil, rows: n, inF: inter, outF: ch)).map { $0 + $1 }
    return (y, ["inputRstd": rstd1, "normedInput": xn, "q": q, "k": k, "v": v, "lse": att.lse, "attention": att.out,
                "residual": h, "postAttentionRstd": rstd2, "normedResidual": hn, "gate": gate, "up": up, "activation": act])
}

@Suite struct DecoderBlockTests {
    @Test(arguments: [("llama", nil), ("mistral", 5)] as [(String, Int?)])
    func blockAndCacheMatchDoubleReference(type: String, window: Int?) throws {
        let c = try configuration(type: type, window: window)
        #expect(c.attentionWindow(layer: 0) == window)
        let w = try randomBlock(c, seed: 100)
        let x = randomTensor([2, 13, c.hiddenSize], seed: 99)
        let rope = RoPE(configuration: c, positions: 13)
        let block = try DecoderBlock(geometry: BlockGeometry(configuration: c, layer: 0), capacity: 2 * 13, maxLength: 13)
        let y = try block.forward(x, parameters: w, rope: rope)
        let ref = naiveBlock(x, w, c, inv: Naive.inverseFrequencies(c))
        #expect(relativeError(y.data, ref.out) < 1e-5)
        #expect(DecoderBlock.forward(x, weights: w, configuration: c, rope: rope) == y)
        let saved = block.savedActivations
        for (name, buffer) in saved {
            let error = relativeError(Array(buffer), ref.parts[name]!)
            #expect(error < 1e-5, "\(name): relative error \(error)")
        }
        #expect(saved["q"]!.count == 2 * 13 * 32 && saved["k"]!.count == 2 * 13 * 16 && saved["lse"]!.count == 2 * 4 * 13)
        #expect(saved["gate"]!.count == 2 * 13 * 40 && saved["inputRstd"]!.count == 26)
    }

    /// The statistics pass hands each distinct linear input once (q for q/k/v, o, gate for gate/up, down),
    /// each equal to that input in a full forward pass of the same batch, though it stops before down.
    @Test func captureHandsEachDistinctLinearInput() throws {
        let c = try configuration(type: "llama")
        let w = try randomBlock(c, seed: 200)
        let x = randomTensor([3, 6, c.hiddenSize], seed: 201)
        let rope = RoPE(configuration: c, positions: 6)
        var seen: [(LinearKind, [Float])] = []
        x.data.withUnsafeBufferPointer { xp in
            DecoderBlock.captureInputs(xp.baseAddress!, batch: 3, tokens: 6, weights: w, configuration: c, rope: rope,
                                       pool: DecoderBlockPool()) { seen.append(($0, Array($1))) }
        }
        #expect(seen.map(\.0) == [.q, .o, .gate, .down])
        let block = try DecoderBlock(geometry: BlockGeometry(configuration: c, layer: 0), capacity: 18, maxLength: 6)
        try block.forward(x, parameters: w, rope: rope)
        for (kind, values) in seen {
            #expect(values.count == 18 * kind.shape(c)[1] && values == Array(block.input(of: kind)), "\(kind)")
        }
    }

    /// A pass resumed at the o projection (from x and attn) or at the post-attention norm (from h) computes
    /// the same floats as a full pass: the same kernels on the same rows. The resumed pass starts from the
    /// attention of the unchanged q, k, v, while o, gate, up and down differ from that pass's block (as in
    /// the stage-by-stage prune). A resumed pass cannot be differentiated.
    @Test(arguments: [("llama", nil), ("mistral", 5)] as [(String, Int?)])
    func resumedPassesMatchTheFullPass(type: String, window: Int?) throws {
        let c = try configuration(type: type, window: window)
        let w = try randomBlock(c, seed: 300)
        var changed = w
        for m in [LinearKind.o, .gate, .up, .down] {
            changed.weights[m.index].data = changed.weights[m.index].data.enumerated().map { $0.offset % 3 == 0 ? 0 : $0.element }
        }
        let (B, T) = (2, 9)
        let x = randomTensor([B, T, c.hiddenSize], seed: 301)
        let rope = RoPE(configuration: c, positions: T)
        let geometry = BlockGeometry(configuration: c, layer: 0)
        let full = try DecoderBlock(geometry: geometry, capacity: B * T, maxLength: T)
        let expected = try full.forward(x, parameters: changed, rope: rope)
        let residual = Array(full.residual), activation = Array(full.mlpActivation)

        let block = try DecoderBlock(geometry: geometry, capacity: B * T, maxLength: T)
        try block.forward(x, parameters: w, rope: rope)
        let attention = Array(block.attentionOutput)
        x.data.withUnsafeBufferPointer { xp in
            attention.withUnsafeBufferPointer { ap in
                block.forward(resuming: .oProjection(input: xp.baseAddress!, attention: ap.baseAddress!), batch: B, tokens: T,
                              parameters: changed, rope: rope)
            }
        }
        #expect(block.resumed && block.completed == .output)
        #expect(Array(block.output) == expected.data && Array(block.residual) == residual)
        residual.withUnsafeBufferPointer { hp in
            block.forward(resuming: .postAttentionNorm(residual: hp.baseAddress!), batch: B, tokens: T, parameters: changed,
                          rope: rope, stop: .downInput)
        }
        #expect(block.completed == .downInput && Array(block.mlpActivation) == activation)
        residual.withUnsafeBufferPointer { hp in
            block.forward(resuming: .postAttentionNorm(residual: hp.baseAddress!), batch: B, tokens: T, parameters: changed, rope: rope)
        }
        #expect(Array(block.output) == expected.data)
        #expect(expected.data.allSatisfy { $0.isFinite })
        var gradients = BlockGradients(like: changed)
        #expect(throws: BlockBackwardError.self) {
            try block.backward(Tensor.zeros(x.shape), parameters: changed, rope: rope, gradients: &gradients)
        }
    }

    @Test func weightsByKindAndValidation() throws {
        let c = try configuration(type: "llama")
        var w = try randomBlock(c, seed: 300)
        #expect(w[.q].shape == [32, 24] && w[.k].shape == [16, 24] && w[.o].shape == [24, 32])
        #expect(w[.gate].shape == [40, 24] && w[.down].shape == [24, 40])
        #expect(w.bias(.o) != nil && w.bias(.gate) == nil)
        var zeroed = w[.up]
        zeroed.data = [Float](repeating: 0, count: zeroed.count)
        w[.up] = zeroed
        #expect(w.up == zeroed)
        #expect(w.namedTensors(configuration: c).map(\.name) == LlamaTensorNames.block(layer: 0, configuration: c).map(\.name))
        #expect(throws: LlamaError.shapeMismatch(tensor: "model.layers.0.self_attn.k_proj.weight", expected: [16, 24], found: [32, 24])) {
            try DecoderBlockWeights(layer: 0, configuration: c, q: w.q, k: w.q, v: w.v, o: w.o, gate: w.gate, up: w.up,
                                    down: w.down, qBias: w.qBias, kBias: w.kBias, vBias: w.vBias, oBias: w.oBias,
                                    inputNorm: w.inputNorm, postAttentionNorm: w.postAttentionNorm)
        }
        #expect(throws: LlamaError.missingTensor("model.layers.0.self_attn.o_proj.bias")) {
            try DecoderBlockWeights(layer: 0, configuration: c, q: w.q, k: w.k, v: w.v, o: w.o, gate: w.gate, up: w.up,
                                    down: w.down, qBias: w.qBias, kBias: w.kBias, vBias: w.vBias,
                                    inputNorm: w.inputNorm, postAttentionNorm: w.postAttentionNorm)
        }
    }
}
