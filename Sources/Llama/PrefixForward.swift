import Foundation
import Tensor

/// The keys and values that a batch of token sequences ("prefixes") leaves at every layer (a KV cache),
/// so that continuations of them can be run without recomputing the prefixes.
///
/// Sequences of different lengths are right-padded to `paddedLength`; a causal model's states at the real
/// positions do not depend on the padding after them, and continuations read only the first `lengths[i]`
/// positions of prefix i.
public struct KeyValuePrefix: Sendable {
    /// Per layer: (B, P, NKV·HD) keys after RoPE, and values; P = `paddedLength`.
    public var keys: [Tensor]
    public var values: [Tensor]
    /// The real length of each prefix (≤ P).
    public var lengths: [Int]
    public var paddedLength: Int

    public var count: Int { lengths.count }
    /// Bytes this cache holds.
    public var bytes: Int { (keys + values).reduce(0) { $0 + $1.count * 4 } }
}

extension LlamaModel {
    /// Runs `prefixes` (each non-empty; right-padded internally) and keeps their keys and values at every
    /// layer. `rope` must cover the longest prefix.
    public func keyValuePrefix(_ prefixes: [[Int]], rope: RoPE) throws -> KeyValuePrefix {
        guard !prefixes.isEmpty, prefixes.allSatisfy({ !$0.isEmpty }) else {
            throw LlamaError.invalidInput("a key/value prefix needs at least one non-empty sequence")
        }
        let padded = prefixes.map(\.count).max()!
        let tokens = prefixes.map { $0 + Array(repeating: 0, count: padded - $0.count) }
        var keys: [Tensor] = [], values: [Tensor] = []
        _ = try forwardContinuing(tokens, prefixRows: nil, prefix: nil, rope: rope) { k, v in
            keys.append(k); values.append(v)
        }
        return KeyValuePrefix(keys: keys, values: values, lengths: prefixes.map(\.count), paddedLength: padded)
    }

    /// (R, S, C): the hidden states after the final RMSNorm of `rows`, right-padded to S = the longest row
    /// (padding positions hold states of no meaning). Row r continues prefix `prefixRows[r]` of `prefix`
    /// (its positions then start at that prefix's length and it attends to the prefix's keys), or starts
    /// at position 0 when that entry is nil. The result equals `hiddenStates(prefix + row)` at the row's
    /// positions, up to float32 rounding. `rope` must cover the longest prefix plus S.
    public func hiddenStates(continuing rows: [[Int]], prefixRows: [Int?], prefix: KeyValuePrefix?,
                             rope: RoPE) throws -> Tensor {
        guard !rows.isEmpty, rows.allSatisfy({ !$0.isEmpty }), prefixRows.count == rows.count else {
            throw LlamaError.invalidInput("continuation rows must be non-empty and name one prefix (or none) each")
        }
        for p in prefixRows {
            if let p { guard let prefix, (0..<prefix.count).contains(p) else {
                throw LlamaError.invalidInput("continuation row refers to prefix \(p), which does not exist")
            } }
        }
        let s = rows.map(\.count).max()!
        let tokens = rows.map { $0 + Array(repeating: 0, count: s - $0.count) }
        return try forwardContinuing(tokens, prefixRows: prefixRows, prefix: prefix, rope: rope, keep: nil)
    }

    /// The shared layer loop, through the one block forward with position offsets and the cached prefix
    /// (`BlockContinuation`). Without a prefix every row starts at position 0 (plain causal attention);
    /// `keep` receives each layer's keys (after RoPE) and values, (B, T, nkv·hd) each.
    private func forwardContinuing(
        _ tokens: [[Int]], prefixRows: [Int?]?, prefix: KeyValuePrefix?, rope: RoPE,
        keep: ((Tensor, Tensor) -> Void)?
    ) throws -> Tensor {
        let (b, t) = try checkTokens(tokens)
        let offsets = (0..<b).map { r in prefixRows?[r].map { prefix!.lengths[$0] } ?? 0 }
        guard rope.headDim == configuration.headDim, offsets.max()! + t <= rope.positions else {
            throw LlamaError.invalidInput("RoPE table of \(rope.positions) positions is too short for \(offsets.max()! + t)")
        }
        let rows = (prefixRows ?? Array(repeating: nil, count: b)).map { $0 ?? -1 }
        let c = configuration, a = c.architecture
        var x = Self.embed(tokens, table: embeddings, batch: b, length: t, scale: a.embeddingScale)
        reusedBuffers.blocks.borrow(make: { DecoderBlockPool(backend: backend) }) { pool in
            for weights in blocks {
                let block = DecoderBlock.forwardBlock(weights: weights, configuration: c, rope: rope, rows: b * t, length: t,
                                                      precision: computePrecision, pool: pool)
                let kw = block.geometry.kvWidth
                // Without a prefix the layer's tables are unused: an empty one stands in for them.
                let keys = prefix?.keys[weights.layer] ?? Tensor(shape: [0], data: [])
                let values = prefix?.values[weights.layer] ?? Tensor(shape: [0], data: [])
                x.data.withUnsafeBufferPointer { xp in
                    keys.data.withUnsafeBufferPointer { kp in
                        values.data.withUnsafeBufferPointer { vp in
                            let continuation = BlockContinuation(
                                offsets: offsets, prefixRows: rows, keys: kp.baseAddress ?? xp.baseAddress!,
                                values: vp.baseAddress ?? xp.baseAddress!, stride: prefix?.paddedLength ?? 0)
                            block.forward(xp.baseAddress!, batch: b, tokens: t, parameters: weights, rope: rope,
                                          continuing: continuation)
                        }
                    }
                }
                if let keep, let k = block.savedActivations["k"], let v = block.savedActivations["v"] {
                    keep(Tensor(shape: [b, t, kw], data: Array(k)), Tensor(shape: [b, t, kw], data: Array(v)))
                }
                x = Tensor(shape: x.shape, data: Array(block.output))
            }
        }
        return RMSNorm.forward(x, weight: finalNorm, eps: Float(c.rmsNormEps), weightOffset: a.normWeightOffset).out
    }
}
