import Llama
import Tensor

/// Statistics of one linear layer's input over the calibration tokens: the "calibrate" half of a method.
///
/// The linears that read the same tensor (q, k, v; gate, up) share one instance, so each Gram matrix is
/// computed once per distinct input. Sums are kept in float64 like the project's PyTorch reference, and the
/// Gram matrix is formed in float64 too (`cblas_dsyrk` over chunks of `gramRows` tokens converted to
/// float64): a float32 Gram batch lost digits to cancellation in the off-diagonal sums, which SparseGPT's
/// H⁻¹ amplifies (on SmolLM2-135M it alone flipped 0.006 % of block 0's down_proj decisions against the
/// reference, which sums in float64).
public final class InputStatistics {
    /// Which statistics to accumulate.
    public struct Kind: OptionSet, Sendable, Hashable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Σₜ x_tj² per input feature j (Wanda's ‖X_j‖², the Hessian's diagonal).
        public static let columnSquares = Kind(rawValue: 1)
        /// XᵀX (in, in) (SparseGPT's Hessian); implies `columnSquares`.
        public static let gram = Kind(rawValue: 2)
    }

    /// Tokens converted to float64 per Gram update (bounds the conversion buffer to 8 · gramRows · in bytes).
    public static let gramRows = 256

    public let inFeatures: Int
    public let kind: Kind
    /// Tokens seen so far.
    public private(set) var tokenCount = 0
    /// Σₜ x_tj², float64, (in,).
    public private(set) var columnSquares: [Double]
    /// Σₜ x_t x_tᵀ, float64 (in, in) row-major; only the lower triangle is kept up to date.
    private var gramLower: [Double]
    /// One chunk of inputs converted to float64 for the Gram update, (gramRows, in).
    private var chunk: [Double]

    /// Where the Gram matrix is formed, and where SparseGPT factors it.
    public let backend: any ComputeBackend

    public init(inFeatures: Int, kind: Kind, backend: any ComputeBackend = CPUBackend()) {
        self.backend = backend
        var kind = kind
        if kind.contains(.gram) { kind.insert(.columnSquares) }
        self.inFeatures = inFeatures
        self.kind = kind
        columnSquares = [Double](repeating: 0, count: kind.contains(.columnSquares) ? inFeatures : 0)
        gramLower = [Double](repeating: 0, count: kind.contains(.gram) ? inFeatures * inFeatures : 0)
        chunk = [Double](repeating: 0, count: kind.contains(.gram) ? Self.gramRows * inFeatures : 0)
    }

    /// Bytes this instance holds for a layer input of `inFeatures` features.
    public static func bytes(inFeatures: Int, kind: Kind) -> Int {
        var b = kind.isEmpty ? 0 : 8 * inFeatures
        if kind.contains(.gram) { b += 8 * inFeatures * inFeatures + 8 * gramRows * inFeatures }
        return b
    }

    /// Values derived from the statistics that every layer sharing them needs (SparseGPT's factor of the
    /// damped inverse Hessian: q, k, v share one, gate and up another), made once per key; cleared when
    /// more tokens arrive.
    public func derived<T>(_ key: String, _ make: () throws -> T) rethrows -> T {
        if let v = derivedValues[key] as? T { return v }
        let v = try make()
        derivedValues[key] = v
        return v
    }
    private var derivedValues: [String: Any] = [:]

    /// Adds a chunk of inputs `x` (rows, inFeatures), row-major float32.
    public func calibrate(_ x: UnsafeBufferPointer<Float>, rows: Int) {
        precondition(x.count >= rows * inFeatures, "calibrate: \(x.count) values for (\(rows), \(inFeatures))")
        if rows == 0 { return }
        derivedValues.removeAll()
        tokenCount += rows
        let c = inFeatures
        if kind.contains(.columnSquares) {
            // Columns split across the cores; each thread walks all rows of its column range.
            columnSquares.withUnsafeMutableBufferPointer { acc in
                parallelChunks(c, minimumPerThread: max(1, 32_768 / rows)) { cols in
                    for r in 0..<rows {
                        VectorMath.addSquares(into: acc.baseAddress! + cols.lowerBound, x.baseAddress! + r * c + cols.lowerBound,
                                              count: cols.count)
                    }
                }
            }
        }
        if kind.contains(.gram) {
            var start = 0
            while start < rows {
                let take = min(rows - start, Self.gramRows)
                chunk.withUnsafeMutableBufferPointer { d in
                    let src = x.baseAddress! + start * c
                    for i in 0..<(take * c) { d[i] = Double(src[i]) }
                    gramLower.withUnsafeMutableBufferPointer { g in
                        backend.gramMatrix(n: c, k: take, alpha: 1, a: UnsafePointer(d.baseAddress!), lda: nil, beta: 1,
                                           c: g.baseAddress!, triangle: .lower)
                    }
                }
                start += take
            }
        }
    }

    /// ‖X_j‖₂ = sqrt(Σₜ x_tj²) per input feature, rounded to float32 after the float64 square root.
    public var columnNorms: [Float] { columnSquares.map { Float($0.squareRoot()) } }

    /// Whether every accumulated statistic is finite (a NaN or infinity in the activations shows here).
    public var isFinite: Bool {
        if !columnSquares.allSatisfy({ $0.isFinite }) { return false }
        if kind.contains(.gram) { return gramLower.allSatisfy { $0.isFinite } }
        return true
    }

    /// SparseGPT's Hessian H = 2/n · XᵀX (n = token count) in float32, (in, in) row-major with both
    /// triangles filled. The diagonal comes from the float64 column sums, so H_jj is exactly 0 only when
    /// feature j was 0 on every token.
    public func hessian() -> [Float] {
        precondition(kind.contains(.gram), "hessian() needs .gram statistics")
        let c = inFeatures
        let scale = 2.0 / Double(max(tokenCount, 1))
        var h = [Float](repeating: 0, count: c * c)
        h.withUnsafeMutableBufferPointer { hp in
            gramLower.withUnsafeBufferPointer { g in
                for i in 0..<c {
                    for j in 0..<i {
                        let v = Float(g[i * c + j] * scale)
                        hp[i * c + j] = v
                        hp[j * c + i] = v
                    }
                    hp[i * c + i] = Float(columnSquares[i] * scale)
                }
            }
        }
        return h
    }
}
