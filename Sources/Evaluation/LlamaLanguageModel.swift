import Foundation
import Llama
import Tensor

/// The LLaMA model already has `logits(_:)` (B, T) → (B, T, V) and `vocabularySize`; its summed NLL is
/// fused with the head (`FusedNLL`), so the (B, T, V) logits are never held.
extension LlamaModel: CausalLanguageModel {
    public func negativeLogLikelihood(_ tokens: [[Int]]) throws -> Double {
        let h = try Profile.phase("eval forward") { try hiddenStates(tokens) }
        return Profile.phase("eval NLL") {
            FusedNLL.sum(hidden: h, head: head ?? embeddings, tokens: tokens, precision: computePrecision,
                         softcap: configuration.architecture.finalLogitSoftcap, buffers: reusedBuffers.headSlabs)
        }
    }
}

/// The next-token NLL of hidden states under a linear head, a slab of rows at a time: each slab's logits
/// (rows, V) come from one GEMM and are reduced at once (maximum, Σ exp in float64 groups, the target's
/// logit) while still in cache, so evaluation memory no longer grows with V · T.
public enum FusedNLL {
    /// Rows per slab: large enough that re-reading the head per slab costs little against the GEMM.
    public static let rowsPerSlab = 256

    /// Σ over b, t < T−1 of logsumexp(h[b, t] · Wᵀ) − (h[b, t] · Wᵀ)[tokens[b][t+1]], in float64.
    /// hidden: (B, T, C); head: (V, C). Targets must lie in 0..<V (the caller checked the tokens). `buffers`,
    /// when given, lends the slab buffers of an earlier call of the same shapes (same bits either way).
    public static func sum(hidden: Tensor, head: Tensor, tokens: [[Int]], precision: ComputePrecision = .float32,
                           softcap: Float? = nil, buffers: Reusable<HeadSlabs>? = nil) -> Double {
        let b = tokens.count, t = tokens.first?.count ?? 0
        let c = head.shape[1], v = head.shape[0]
        precondition(hidden.count == b * t * c, "FusedNLL: hidden \(hidden.shape) for \(b)×\(t) tokens of width \(c)")
        guard t > 1 else { return 0 }
        // Rows are the positions that predict a token: (i, j < T−1), contiguous within each window.
        let predicted = t - 1
        let rows = b * predicted
        let make = { HeadSlabs(rowsPerSlab: rowsPerSlab, maxRows: rows, channels: c, vocabulary: v, precision: precision,
                               softcap: softcap) }
        guard let buffers else {
            var slabs = make()
            return sum(hidden: hidden, head: head, tokens: tokens, slabs: &slabs)
        }
        return buffers.borrow(make: make, reusable: { $0.matches(rowsPerSlab: rowsPerSlab, maxRows: rows, channels: c,
                                                                  vocabulary: v, precision: precision, softcap: softcap) }) { slabs in
            sum(hidden: hidden, head: head, tokens: tokens, slabs: &slabs)
        }
    }

    private static func sum(hidden: Tensor, head: Tensor, tokens: [[Int]], slabs: inout HeadSlabs) -> Double {
        let t = tokens.first?.count ?? 0, v = head.shape[0]
        let predicted = t - 1
        let rows = tokens.count * predicted
        var partial = [Double](repeating: 0, count: slabs.rowsPerSlab)
        var total = 0.0
        hidden.data.withUnsafeBufferPointer { hp in
            head.data.withUnsafeBufferPointer { wp in
                partial.withUnsafeMutableBufferPointer { pp in
                    slabs.forEach(hidden: hp.baseAddress!, head: wp.baseAddress!, rows: rows,
                                  source: { ($0 / predicted) * t + $0 % predicted }) { start, count, logits in
                        parallelChunks(count, minimumPerThread: max(1, 65_536 / max(v, 1))) { range in
                            for r in range {
                                let row = start + r, target = tokens[row / predicted][row % predicted + 1]
                                let z = logits + r * v
                                pp[r] = CrossEntropy.logSumExp(z, count: v) - Double(z[target])
                            }
                        }
                        for r in 0..<count { total += pp[r] }
                    }
                }
            }
        }
        return total
    }
}
