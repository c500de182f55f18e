import Tensor

/// The activation-aware scores the methods share, computed over a row-major (rows, cols) weight with the
/// rows split across the cores. Each entry is one float32 expression, so the scores are the same bits
/// whoever computes them and however the rows are split.
enum Scores {
    /// Wanda: score_ij = |W_ij| · ‖X_j‖.
    static func wanda(weight w: UnsafePointer<Float>, norms x: UnsafePointer<Float>, rows: Int, cols: Int,
                      into s: UnsafeMutablePointer<Float>) {
        parallelChunks(rows, minimumPerThread: max(1, (1 << 16) / max(1, cols))) { range in
            for r in range {
                let row = r * cols
                for j in 0..<cols { s[row + j] = abs(w[row + j]) * x[j] }
            }
        }
    }

    /// Wanda++'s regional gradient score: score_ij = (α · G_ij + ‖X_j‖) · |W_ij|.
    static func regionalGradient(weight w: UnsafePointer<Float>, gradient g: UnsafePointer<Float>, alpha: Float,
                                 norms x: UnsafePointer<Float>, rows: Int, cols: Int, into s: UnsafeMutablePointer<Float>) {
        parallelChunks(rows, minimumPerThread: max(1, (1 << 16) / max(1, cols))) { range in
            for r in range {
                let row = r * cols
                for j in 0..<cols { s[row + j] = (alpha * g[row + j] + x[j]) * abs(w[row + j]) }
            }
        }
    }
}
