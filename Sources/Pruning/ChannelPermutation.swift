import Llama
import Tensor

/// Input-channel permutations for N:M masks, and folding one into the model without changing its function.
///
/// An N:M mask chooses within groups of m consecutive input columns, so which columns share a group decides
/// how much score the mask can keep. A permutation `order` puts original column `order[p]` at position p;
/// the mask is chosen on the permuted matrix W[:, order], which is N:M as stored only if the weight is stored
/// permuted. That is exact only where the permutation can be undone upstream: the MLP's intermediate channels
/// (the input of down_proj) are produced row by row by gate_proj and up_proj and combined elementwise, so
/// permuting the rows of gate and up together with the columns of down leaves the block's function unchanged
/// (`DecoderBlockWeights.permuteIntermediateChannels`). The other linears are not permuted: q, k, v, gate and
/// up read the residual stream, which every block, every norm and the embeddings share; o reads the
/// attention heads, whose channels could move only within a head (with v's rows, the same way for every
/// query head of a KV group), not across the groups of m that RIA's reallocation forms.
public enum ChannelPermutation {
    /// RIA's heuristic channel reallocation: the column order that spreads important columns over the
    /// groups. Columns are sorted by `importance` ascending (ties: lower index first); the sorted list is cut
    /// into m consecutive chunks, chunk k holding as many columns as there are positions p ≡ k (mod m); chunk
    /// k fills those positions in increasing p, reversed for every second chunk (k odd). With a width that is
    /// a multiple of m the chunks are RIA's `int(in · k / m)` cuts; otherwise the last, partial group takes
    /// one column from each of the first chunks.
    ///
    /// RIA's optional refinement by a linear-sum assignment per slot is not done.
    public static func interleaved(importance: [Double], groupSize m: Int) -> [Int] {
        precondition(m > 0, "interleaved: group size \(m)")
        let count = importance.count
        let sorted = (0..<count).sorted { a, b in
            importance[a] < importance[b] || (importance[a] == importance[b] && a < b)
        }
        var order = [Int](repeating: 0, count: count)
        var next = 0
        for k in 0..<min(m, count) {
            let positions = Array(stride(from: k, to: count, by: m))
            let chunk = sorted[next..<(next + positions.count)]
            next += positions.count
            for (p, column) in zip(positions, k % 2 == 1 ? Array(chunk.reversed()) : Array(chunk)) { order[p] = column }
        }
        return order
    }

    /// Whether `order` is a permutation of 0..<count.
    public static func isPermutation(_ order: [Int], count: Int) -> Bool {
        guard order.count == count else { return false }
        var seen = [Bool](repeating: false, count: count)
        for i in order {
            guard i >= 0, i < count, !seen[i] else { return false }
            seen[i] = true
        }
        return true
    }
}

extension DecoderBlockWeights {
    /// Reorders the MLP's intermediate channels: new channel p is old channel `order[p]`, i.e. gate and up
    /// (and their biases) take rows `order`, down takes columns `order`. The block computes the same function:
    /// act = silu(gate·h) ⊙ (up·h) is elementwise per channel, and down·act sums over the channels in any
    /// order (so outputs agree up to float rounding of that sum).
    public mutating func permuteIntermediateChannels(_ order: [Int]) {
        let f = gate.shape[0]
        precondition(ChannelPermutation.isPermutation(order, count: f) && up.shape[0] == f && down.shape[1] == f,
                     "permuteIntermediateChannels: \(order.count) channels for an MLP of \(f)")
        gate = Self.rows(gate, order)
        up = Self.rows(up, order)
        for kind in [LinearKind.gate, .up] where biases[kind.index] != nil {
            let b = biases[kind.index]!
            biases[kind.index] = Tensor(shape: b.shape, data: order.map { b.data[$0] })
        }
        let (rows, cols) = (down.shape[0], down.shape[1])
        var permuted = [Float](repeating: 0, count: rows * cols)
        down.data.withUnsafeBufferPointer { src in
            for r in 0..<rows {
                let base = r * cols
                for p in 0..<cols { permuted[base + p] = src[base + order[p]] }
            }
        }
        down = Tensor(shape: down.shape, data: permuted)
    }

    private static func rows(_ w: Tensor, _ order: [Int]) -> Tensor {
        let cols = w.shape[1]
        var out = [Float](repeating: 0, count: w.count)
        w.data.withUnsafeBufferPointer { src in
            for (p, r) in order.enumerated() {
                for j in 0..<cols { out[p * cols + j] = src[r * cols + j] }
            }
        }
        return Tensor(shape: w.shape, data: out)
    }
}
