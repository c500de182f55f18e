import Tensor

/// What one decoder block's forward pass keeps for a backward pass, all as computed (float32).
/// N = B·T rows; NH, NKV heads of width HD; C hidden; I intermediate.
public struct DecoderBlockCache: Sendable {
    /// (B, T, C): the block's input x.
    public var input: Tensor
    /// (N): 1/rms of each input row (input RMSNorm).
    public var inputRstd: Tensor
    /// (B, T, C): RMSNorm(x) · input_layernorm — the input of q, k and v.
    public var normedInput: Tensor
    /// (B, T, NH·HD): queries after bias and RoPE.
    public var q: Tensor
    /// (B, T, NKV·HD): keys after bias and RoPE.
    public var k: Tensor
    /// (B, T, NKV·HD): values (after bias).
    public var v: Tensor
    /// (B, NH, T): per query row log Σ exp(scores); `Attention.probabilities` rebuilds P from q, k and this.
    public var attentionLogSumExp: Tensor
    /// (B, T, NH·HD): attention output before o_proj — the input of o.
    public var attention: Tensor
    /// (B, T, C): x + o_proj(attention), the residual stream between attention and MLP.
    public var residual: Tensor
    /// (N): 1/rms of each residual row (post-attention RMSNorm).
    public var postAttentionRstd: Tensor
    /// (B, T, C): RMSNorm(residual) · post_attention_layernorm — the input of gate and up.
    public var normedResidual: Tensor
    /// (B, T, I): gate_proj output (pre-activation).
    public var gate: Tensor
    /// (B, T, I): up_proj output.
    public var up: Tensor
    /// (B, T, I): silu(gate) · up — the input of down.
    public var activation: Tensor
}

/// One LLaMA decoder block:
///
///     h = x + o_proj(Attention(RoPE(q_proj(RMSNorm(x))), RoPE(k_proj(·)), v_proj(·)))
///     y = h + down_proj(silu(gate_proj(RMSNorm(h))) · up_proj(RMSNorm(h)))
///
/// on a batch x of shape (B, T, C), positions 0..<T in every sequence.
public enum DecoderBlock {
    /// Hands the input of a linear layer to a consumer (pruning statistics), as (B·T, in).
    /// It is called once per kind, in the order q, k, v, o, gate, up, down. q, k and v receive the same
    /// tensor (one shared storage, no copy), as do gate and up: a consumer that wants one statistic per
    /// distinct input can act on `.q`, `.o`, `.gate` and `.down` only.
    public typealias Capture = (LinearKind, Tensor) -> Void

    /// The block's output (B, T, C).
    public static func forward(
        _ x: Tensor, weights: DecoderBlockWeights, configuration: LlamaConfiguration, rope: RoPE,
        capture: Capture? = nil
    ) -> Tensor {
        run(x, weights: weights, configuration: configuration, rope: rope, capture: capture, keep: false).output
    }

    /// The block's output (B, T, C) and the intermediates a backward pass needs.
    public static func forwardWithCache(
        _ x: Tensor, weights: DecoderBlockWeights, configuration: LlamaConfiguration, rope: RoPE,
        capture: Capture? = nil
    ) -> (output: Tensor, cache: DecoderBlockCache) {
        let r = run(x, weights: weights, configuration: configuration, rope: rope, capture: capture, keep: true)
        return (r.output, r.cache!)
    }

    private static func run(
        _ x: Tensor, weights w: DecoderBlockWeights, configuration c: LlamaConfiguration, rope: RoPE,
        capture: Capture?, keep: Bool
    ) -> (output: Tensor, cache: DecoderBlockCache?) {
        precondition(x.rank == 3 && x.shape[2] == c.hiddenSize, "DecoderBlock: input \(x.shape), hidden size \(c.hiddenSize)")
        precondition(rope.headDim == c.headDim && rope.positions >= x.shape[1],
                     "DecoderBlock: RoPE table (\(rope.positions) positions, head_dim \(rope.headDim)) for input \(x.shape)")
        let b = x.shape[0], t = x.shape[1], n = b * t
        let nh = c.numAttentionHeads, nkv = c.numKeyValueHeads, hd = c.headDim
        let eps = Float(c.rmsNormEps)

        // Attention half.
        let (xn, rstd1) = RMSNorm.forward(x, weight: w.inputNorm, eps: eps)            // (B, T, C), (N)
        if let capture {
            let flat = xn.reshaped([n, c.hiddenSize])
            capture(.q, flat); capture(.k, flat); capture(.v, flat)
        }
        var q = Linear.forward(xn, weight: w.q, bias: w.qBias)                          // (B, T, NH·HD)
        var k = Linear.forward(xn, weight: w.k, bias: w.kBias)                          // (B, T, NKV·HD)
        let v = Linear.forward(xn, weight: w.v, bias: w.vBias)                          // (B, T, NKV·HD)
        q.data.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, batch: b, length: t, heads: nh) }
        k.data.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, batch: b, length: t, heads: nkv) }
        let (att, lse) = Attention.forward(q: q, k: k, v: v, heads: nh, kvHeads: nkv,
                                           window: c.attentionWindow(layer: w.layer))   // (B, T, NH·HD), (B, NH, T)
        capture?(.o, att.reshaped([n, nh * hd]))
        var h = Linear.forward(att, weight: w.o, bias: w.oBias)                         // (B, T, C)
        add(&h, x)

        // MLP half.
        let (hn, rstd2) = RMSNorm.forward(h, weight: w.postAttentionNorm, eps: eps)    // (B, T, C), (N)
        if let capture {
            let flat = hn.reshaped([n, c.hiddenSize])
            capture(.gate, flat); capture(.up, flat)
        }
        let gate = Linear.forward(hn, weight: w.gate)                                   // (B, T, I)
        let up = Linear.forward(hn, weight: w.up)                                       // (B, T, I)
        let act = SwiGLU.forward(gate: gate, up: up)                                    // (B, T, I)
        capture?(.down, act.reshaped([n, c.intermediateSize]))
        var y = Linear.forward(act, weight: w.down)                                     // (B, T, C)
        add(&y, h)

        guard keep else { return (y, nil) }
        let cache = DecoderBlockCache(
            input: x, inputRstd: rstd1, normedInput: xn, q: q, k: k, v: v, attentionLogSumExp: lse,
            attention: att, residual: h, postAttentionRstd: rstd2, normedResidual: hn,
            gate: gate, up: up, activation: act)
        return (y, cache)
    }

    /// a += b elementwise (same shapes; the residual connections).
    static func add(_ a: inout Tensor, _ b: Tensor) {
        precondition(a.count == b.count)
        a.data.withUnsafeMutableBufferPointer { ap in
            b.data.withUnsafeBufferPointer { bp in
                let a = ap.baseAddress!, b = bp.baseAddress!
                parallelChunks(ap.count, minimumPerThread: 65_536) { range in
                    for i in range { a[i] += b[i] }
                }
            }
        }
    }
}
