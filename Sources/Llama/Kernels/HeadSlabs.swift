import Tensor

/// The language-model head over chosen rows of the hidden states, a slab of rows at a time: gather the rows,
/// one GEMM for their logits (rows, V) = rows · headᵀ, hand the slab to the caller while it is in cache. The
/// one loop behind the evaluation NLL, zero-shot scoring and the fine-tuning loss, so that no caller ever
/// holds (tokens × V) logits beyond one slab.
public struct HeadSlabs {
    public let rowsPerSlab: Int
    public let channels: Int
    public let vocabulary: Int
    /// The number format of the head GEMM; with bfloat16 the head is rounded once per `forEach`.
    public let precision: ComputePrecision
    /// Gemma 2's final soft-cap: the slab's logits are cap · tanh(z / cap); nil for none.
    public let softcap: Float?
    /// (rowsPerSlab, C) gathered inputs and (rowsPerSlab, V) logits, allocated once.
    private var inputs: [Float]
    private var logits: [Float]

    /// Buffers for slabs of up to `rowsPerSlab` rows (at least 1; fewer when `maxRows` is smaller).
    public init(rowsPerSlab: Int, maxRows: Int, channels: Int, vocabulary: Int, precision: ComputePrecision = .float32,
                softcap: Float? = nil) {
        self.precision = precision
        self.softcap = softcap
        self.rowsPerSlab = max(1, min(rowsPerSlab, max(maxRows, 1)))
        self.channels = channels
        self.vocabulary = vocabulary
        inputs = [Float](repeating: 0, count: self.rowsPerSlab * channels)
        logits = [Float](repeating: 0, count: self.rowsPerSlab * vocabulary)
    }

    /// Whether these buffers give the slabs that `init(rowsPerSlab:maxRows:...)` with these arguments would:
    /// the same slab height (the head GEMM's rows, on which its bits depend), width, vocabulary and format.
    public func matches(rowsPerSlab: Int, maxRows: Int, channels c: Int, vocabulary v: Int, precision p: ComputePrecision,
                        softcap cap: Float? = nil) -> Bool {
        self.rowsPerSlab == max(1, min(rowsPerSlab, max(maxRows, 1))) && channels == c && vocabulary == v && precision == p
            && softcap == cap
    }

    /// For rows 0..<rows, whose hidden state is row `source(r)` of `hidden` (N, C), and head (V, C):
    /// `body(start, count, logits)` once per slab, logits (count, V) for rows start..<start+count. The body
    /// may overwrite the logits (e.g. with their gradient).
    public mutating func forEach(
        hidden: UnsafePointer<Float>, head: UnsafePointer<Float>, rows: Int, source: (Int) -> Int,
        body: (_ start: Int, _ count: Int, _ logits: UnsafeMutablePointer<Float>) -> Void
    ) {
        let c = channels, v = vocabulary, slab = rowsPerSlab
        let roundedHead = precision == .bfloat16 && rows > 0 ? BFloat16Matrix(head, rows: v, columns: c) : nil
        inputs.withUnsafeMutableBufferPointer { ip in
            logits.withUnsafeMutableBufferPointer { lp in
                var start = 0
                while start < rows {
                    let count = min(slab, rows - start)
                    for r in 0..<count {
                        (ip.baseAddress! + r * c).update(from: hidden + source(start + r) * c, count: c)
                    }
                    if let roundedHead {
                        BLAS.gemm(transB: true, m: count, n: v, k: c, a: ip.baseAddress!, b: roundedHead, c: lp.baseAddress!)
                    } else {
                        Linear.forward(out: lp.baseAddress!, inp: ip.baseAddress!, weight: head, bias: nil,
                                       rows: count, inFeatures: c, outFeatures: v)
                    }
                    if let softcap {
                        let z = lp.baseAddress!
                        parallelChunks(count * v, minimumPerThread: 1 << 16) { r in
                            Attention.capScores(z + r.lowerBound, count: r.count, cap: softcap)
                        }
                    }
                    body(start, count, lp.baseAddress!)
                    start += count
                }
            }
        }
    }
}
