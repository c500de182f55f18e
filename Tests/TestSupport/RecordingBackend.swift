import Foundation
import Llama
import Tensor

/// A backend that hands every op to the CPU backend and records its name: proves that a block's forward
/// and backward reach the math only through the backend (a second backend sees every op).
public final class RecordingBackend: ComputeBackend, @unchecked Sendable {
    private let cpu = CPUBackend()
    private let lock = NSLock()
    public private(set) var ops: [String] = []
    public var name: String { "recording" }

    public init() {}

    private func record(_ op: String) { lock.lock(); ops.append(op); lock.unlock() }

    public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int?,
              b: UnsafePointer<Float>, ldb: Int?, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int?,
              precision: ComputePrecision) {
        record("gemm")
        cpu.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
                 c: c, ldc: ldc, precision: precision)
    }
    public func gramMatrix(n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int?, beta: Double,
                    c: UnsafeMutablePointer<Double>, triangle: Triangle) {
        record("gramMatrix")
        cpu.gramMatrix(n: n, k: k, alpha: alpha, a: a, lda: lda, beta: beta, c: c, triangle: triangle)
    }
    public func upperCholeskyOfInverse(_ a: UnsafeMutablePointer<Float>, n: Int) throws {
        record("upperCholeskyOfInverse")
        try cpu.upperCholeskyOfInverse(a, n: n)
    }
    public func upperCholeskyOfInverse(_ a: UnsafeMutablePointer<Double>, n: Int) throws {
        record("upperCholeskyOfInverse")
        try cpu.upperCholeskyOfInverse(a, n: n)
    }
    public func rmsNorm(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, inp: UnsafePointer<Float>,
                 weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float, weightOffset: Float) {
        record("rmsNorm")
        cpu.rmsNorm(out: out, rstd: rstd, inp: inp, weight: weight, rows: rows, channels: channels, eps: eps, weightOffset: weightOffset)
    }
    public func rmsNormBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                         rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, channels: Int,
                         accumulate: Bool, weightOffset: Float) {
        record("rmsNormBackward")
        cpu.rmsNormBackward(dx: dx, dy: dy, inp: inp, rstd: rstd, weight: weight, rows: rows, channels: channels,
                            accumulate: accumulate, weightOffset: weightOffset)
    }
    public func linear(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                bias: UnsafePointer<Float>?, rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool,
                precision: ComputePrecision) {
        record("linear")
        cpu.linear(out: out, inp: inp, weight: weight, bias: bias, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures,
                   accumulate: accumulate, precision: precision)
    }
    public func linearBackward(dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
                        dy: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int,
                        inFeatures: Int, outFeatures: Int, accumulateDx: Bool) {
        record("linearBackward")
        cpu.linearBackward(dx: dx, dWeight: dWeight, dBias: dBias, dy: dy, inp: inp, weight: weight, rows: rows,
                           inFeatures: inFeatures, outFeatures: outFeatures, accumulateDx: accumulateDx)
    }
    public func rope(_ x: UnsafeMutablePointer<Float>, table: RoPE, batch: Int, length: Int, heads: Int, sign: Float, offsets: [Int]?) {
        record(sign < 0 ? "ropeBackward" : "rope")
        cpu.rope(x, table: table, batch: batch, length: length, heads: heads, sign: sign, offsets: offsets)
    }
    public func attention(out: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>?, q: UnsafePointer<Float>,
                   k: UnsafePointer<Float>, v: UnsafePointer<Float>, batch: Int, length: Int, heads: Int, kvHeads: Int,
                   headDim: Int, window: Int?, scale: Float, softcap: Float?, precision: ComputePrecision) {
        record("attention")
        cpu.attention(out: out, logSumExp: logSumExp, q: q, k: k, v: v, batch: batch, length: length, heads: heads,
                      kvHeads: kvHeads, headDim: headDim, window: window, scale: scale, softcap: softcap, precision: precision)
    }
    public func attention(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                   continuing: BlockContinuation, batch: Int, length: Int, heads: Int, kvHeads: Int, headDim: Int,
                   window: Int?, scale: Float, softcap: Float?, precision: ComputePrecision) {
        record("attentionContinuing")
        cpu.attention(out: out, q: q, k: k, v: v, continuing: continuing, batch: batch, length: length, heads: heads,
                      kvHeads: kvHeads, headDim: headDim, window: window, scale: scale, softcap: softcap, precision: precision)
    }
    public func attentionWorkspace(capacity: Int, kvWidth: Int) -> any AttentionWorkspace {
        record("attentionWorkspace")
        return cpu.attentionWorkspace(capacity: capacity, kvWidth: kvWidth)
    }
    public func attentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                           dout: UnsafePointer<Float>, out: UnsafePointer<Float>, logSumExp: UnsafePointer<Float>,
                           q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, length: Int,
                           heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float, softcap: Float?,
                           workspace: any AttentionWorkspace) {
        record("attentionBackward")
        cpu.attentionBackward(dq: dq, dk: dk, dv: dv, dout: dout, out: out, logSumExp: logSumExp, q: q, k: k, v: v,
                              length: length, heads: heads, kvHeads: kvHeads, headDim: headDim, window: window,
                              scale: scale, softcap: softcap, workspace: workspace)
    }
    public func gatedActivation(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                         count: Int, activation: Architecture.Activation) {
        record("gatedActivation")
        cpu.gatedActivation(out: out, gate: gate, up: up, count: count, activation: activation)
    }
    public func gatedActivationBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dact: UnsafePointer<Float>,
                                 gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                                 activation: Architecture.Activation) {
        record("gatedActivationBackward")
        cpu.gatedActivationBackward(dgate: dgate, dup: dup, dact: dact, gate: gate, up: up, count: count, activation: activation)
    }
}
