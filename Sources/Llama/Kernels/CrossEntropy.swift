import Foundation
import Tensor

/// Next-token cross-entropy from logits: for a row of V logits z and a target y,
///
///     loss = −log softmax(z)[y] = logsumexp(z) − z[y]   (logsumexp accumulated in double).
///
/// The forward pass needs nothing kept beyond the logits; backward is softmax(z) − onehot(y).
public enum CrossEntropy {
    /// Pointer form. logits: (N, V); targets: N ids in 0..<V; losses: (N).
    public static func forward(
        losses: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, targets: UnsafePointer<Int>,
        rows n: Int, vocab v: Int
    ) {
        parallelChunks(n, minimumPerThread: max(1, 65_536 / max(v, 1))) { rows in
            for r in rows {
                losses[r] = Float(logSumExp(logits + r * v, count: v) - Double(logits[r * v + targets[r]]))
            }
        }
    }

    /// log Σ exp(z[i]) over one row, shifted by its maximum and summed in double.
    public static func logSumExp(_ z: UnsafePointer<Float>, count v: Int) -> Double {
        let m = VectorMath.maximum(z, count: v)
        let sum = VectorMath.expShiftedSum(z, count: v, shift: m)
        return Double(m) + Foundation.log(sum)
    }

    /// logits: (..., V) with N rows, targets: N ids → losses (N). Targets must lie in 0..<V.
    public static func forward(logits: Tensor, targets: [Int]) -> Tensor {
        let v = logits.shape.last ?? 0
        let n = v == 0 ? 0 : logits.count / v
        precondition(targets.count == n, "CrossEntropy: \(targets.count) targets for \(n) rows")
        precondition(targets.allSatisfy { $0 >= 0 && $0 < v }, "CrossEntropy: target outside 0..<\(v)")
        var losses = Tensor.uninitialized([n])
        logits.data.withUnsafeBufferPointer { lp in
            targets.withUnsafeBufferPointer { tp in
                losses.data.withUnsafeMutableBufferPointer { op in
                    forward(losses: op.baseAddress!, logits: lp.baseAddress!, targets: tp.baseAddress!, rows: n, vocab: v)
                }
            }
        }
        return losses
    }

    /// For `rows` logit rows (row i predicts targets[from + i]): returns Σ CE (float64) and overwrites
    /// each row with scale · (softmax − onehot).
    ///
    /// With `softcap`, the rows hold capped logits z = cap · tanh(z₀ / cap) and become the gradient w.r.t. z₀:
    /// scale · (softmax − onehot) · (1 − (z / cap)²).
    public static func backward(_ z: UnsafeMutablePointer<Float>, targets: [Int], from: Int, rows: Int, vocab v: Int,
                                     scale: Float, softcap: Float? = nil) -> Double {
        var losses = [Double](repeating: 0, count: rows)
        losses.withUnsafeMutableBufferPointer { lp in
            targets.withUnsafeBufferPointer { tp in
                let l = lp.baseAddress!, tg = tp.baseAddress! + from
                parallelFor(rows, minimumPerThread: max(1, 65_536 / max(v, 1))) { r in
                    let row = z + r * v
                    let lse = CrossEntropy.logSumExp(row, count: v)
                    l[r] = lse - Double(row[tg[r]])
                    let shift = Float(lse)
                    if let cap = softcap {
                        for j in 0..<v {
                            let c = row[j]
                            let d = Foundation.exp(c - shift) * scale - (j == tg[r] ? scale : 0)
                            row[j] = d * (1 - (c / cap) * (c / cap))
                        }
                        return
                    }
                    _ = VectorMath.expShifted(row, count: v, shift: shift)
                    VectorMath.scale(row, count: v, by: scale)
                    row[tg[r]] -= scale
                }
            }
        }
        return losses.reduce(0, +)
    }
}
