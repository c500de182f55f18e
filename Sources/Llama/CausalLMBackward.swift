import Foundation
import Tensor

/// The causal language-model loss of a whole model and its backward, with per-block recomputation.
///
/// For token rows (B, T) the loss is the mean next-token cross-entropy over the B·(T − 1) predicted
/// positions (transformers' `labels = input_ids`):
///
///     x₀ = embed(tokens)                      (N, C), N = B·T
///     x_{l+1} = block_l(x_l)                  l = 0..<L
///     xf = rmsnorm(x_L; w_final)              (N, C)
///     loss = mean_{b, t < T−1} CE(xf[b, t]·Hᵀ, tokens[b][t + 1])     H = lm_head or the embedding table
///
/// The backward runs that listing in reverse. The logits are formed `rowsPerChunk` rows at a time and
/// turned into their gradient in place, so no (N, V) matrix is ever held. The forward keeps only each
/// block's input x_l; the backward re-runs block l's forward (saving its activations in the one
/// `DecoderBlock`) right before its backward — gradient checkpointing at block granularity: memory is one
/// block's saved activations plus L inputs of (N, C).
///
/// Gradients are produced for the block matrices the caller names (handed over block by block, so they
/// never all exist at once), for an optional `BlockAdapter` per block, and for the embeddings' output x₀
/// (`inputGradient`). Norm weights, the head and the embedding table are frozen.
public final class CausalLMBackward {
    public let configuration: LlamaConfiguration
    public let batch: Int
    public let length: Int
    public let rowsPerChunk: Int
    /// One tape per distinct block geometry (layers differ by window and RoPE base at most).
    private var blocks: [BlockGeometry: DecoderBlock] = [:]
    private var layerGeometry: [BlockGeometry] = []
    private var inputs: [[Float]]
    private var xl: [Float], xf: [Float], rstdf: [Float], dxf: [Float], dy: [Float], dx: [Float]
    /// The head's slabs of `rowsPerChunk` rows, and (rowsPerChunk, C) dxf rows of one slab.
    private var slabs: HeadSlabs, chunkGradients: [Float]
    private var gradients: BlockGradients

    /// A backward for batches of `batch` sequences of `length` tokens.
    public init(configuration c: LlamaConfiguration, batch: Int, length: Int, rowsPerChunk: Int = 256,
                backend: any ComputeBackend = CPUBackend()) throws {
        guard batch > 0, length > 1, length <= c.maxPositionEmbeddings else {
            throw LlamaError.invalidInput("a training batch needs B ≥ 1 sequences of 2...\(c.maxPositionEmbeddings) tokens, got \(batch)×\(length)")
        }
        configuration = c
        self.batch = batch
        self.length = length
        self.rowsPerChunk = max(1, rowsPerChunk)
        let n = batch * length, C = c.hiddenSize
        inputs = Array(repeating: [Float](repeating: 0, count: n * C), count: c.numHiddenLayers)
        xf = [Float](repeating: 0, count: n * C)
        xl = xf
        rstdf = [Float](repeating: 0, count: n)
        dxf = xf; dy = xf; dx = xf
        let r = min(self.rowsPerChunk, n)
        slabs = HeadSlabs(rowsPerSlab: r, maxRows: r, channels: C, vocabulary: c.vocabSize,
                          softcap: c.architecture.finalLogitSoftcap)
        chunkGradients = [Float](repeating: 0, count: r * C)
        let g = BlockGeometry(configuration: c, layer: 0)
        gradients = BlockGradients(geometry: g, hasBias: LinearKind.allCases.map { $0.hasBias(c) })
        for layer in 0..<c.numHiddenLayers {
            let g = BlockGeometry(configuration: c, layer: layer)
            layerGeometry.append(g)
            if blocks[g] == nil {
                blocks[g] = try DecoderBlock(geometry: g, capacity: n, maxLength: length, backend: backend)
            }
        }
    }

    /// Bytes of the buffers (inputs of every block, one block, the logits chunk).
    public var bytes: Int {
        let floats = inputs.reduce(0) { $0 + $1.count } + xf.count * 5 + dx.count + rstdf.count
            + slabs.rowsPerSlab * (slabs.vocabulary + 2 * slabs.channels) + gradients.weights.reduce(0) { $0 + $1.count }
        return floats * 4 + blocks.values.reduce(0) { $0 + $1.bytes }
    }

    /// dL/dx₀ (N, C) of the last `run`: the gradient at the embeddings' output.
    public var inputGradient: [Float] { dx }

    /// Forward and backward on `tokens` (B rows of T ids, checked) through `model` with `blocks`
    /// (default the model's) and the optional adapters. `matrices` are the block matrices whose dL/dW
    /// `blockGradients(layer, gradients)` receives (none by default). Every gradient is of
    /// `lossScale` × the mean loss (1/K for K accumulated micro-batches). Returns the mean loss (float64
    /// sum of float32 terms) and the number of predicted tokens.
    @discardableResult
    public func run(
        model: LlamaModel, blocks weights: [DecoderBlockWeights]? = nil, tokens: [[Int]],
        matrices: Set<LinearKind> = [], adapter: (Int) -> BlockAdapter? = { _ in nil }, lossScale: Float = 1,
        blockGradients: (Int, BlockGradients) -> Void = { _, _ in }
    ) throws -> (loss: Double, tokens: Int) {
        let (b, t) = try model.checkTokens(tokens)
        guard b == batch, t == length else {
            throw LlamaError.invalidInput("batch is \(b)×\(t), the backward was built for \(batch)×\(length)")
        }
        let c = configuration, C = c.hiddenSize, V = c.vocabSize, n = b * t, L = c.numHiddenLayers
        let weights = weights ?? model.blocks
        precondition(weights.count == L)
        let rope = model.rope(length: t)
        let eps = Float(c.rmsNormEps), architecture = c.architecture

        // x₀ = embed(tokens); x_{l+1} = block_l(x_l), keeping only each block's input.
        let x0 = LlamaModel.embed(tokens, table: model.embeddings, batch: b, length: t,
                                  scale: architecture.embeddingScale)                          // (N, C)
        if L == 0 { xl = x0.data } else { inputs[0] = x0.data }
        for l in 0..<L {
            let block = blocks[layerGeometry[l]]!
            inputs[l].withUnsafeBufferPointer {
                block.forward($0.baseAddress!, batch: b, tokens: t, parameters: weights[l], rope: rope, adapter: adapter(l))
            }
            if l + 1 < L {
                inputs[l + 1].withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: block.output) }
            } else {
                xl.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: block.output) }
            }
        }
        let current = xl                                                                      // x_L (N, C)
        // xf = rmsnorm(x_L)                                                                  (N, C), rstdf (N)
        current.withUnsafeBufferPointer { xp in
            model.finalNorm.data.withUnsafeBufferPointer { wp in
                xf.withUnsafeMutableBufferPointer { op in
                    rstdf.withUnsafeMutableBufferPointer { rp in
                        RMSNorm.forward(out: op.baseAddress!, rstd: rp.baseAddress!, inp: xp.baseAddress!, weight: wp.baseAddress!,
                                        rows: n, channels: C, eps: eps, weightOffset: architecture.normWeightOffset)
                    }
                }
            }
        }

        // loss and dxf, a chunk of predicted rows at a time: logits (R, V) = xf·Hᵀ, dlogits in place,
        // dxf rows = dlogits·H.
        var sources: [Int] = [], targets: [Int] = []
        for i in 0..<b { for j in 0..<(t - 1) { sources.append(i * t + j); targets.append(tokens[i][j + 1]) } }
        let count = sources.count
        let scale = lossScale / Float(count)
        var total = 0.0
        for i in 0..<dxf.count { dxf[i] = 0 }
        let head = model.head ?? model.embeddings
        head.data.withUnsafeBufferPointer { hp in
            xf.withUnsafeBufferPointer { xp in
                dxf.withUnsafeMutableBufferPointer { dp in
                    chunkGradients.withUnsafeMutableBufferPointer { gp in
                        slabs.forEach(hidden: xp.baseAddress!, head: hp.baseAddress!, rows: count, source: { sources[$0] }) { start, r, lp in
                            total += CrossEntropy.backward(lp, targets: targets, from: start, rows: r, vocab: V, scale: scale,
                                                                   softcap: architecture.finalLogitSoftcap)
                            BLAS.gemm(m: r, n: C, k: V, a: lp, b: hp.baseAddress!, c: gp.baseAddress!)
                            for i in 0..<r {
                                let d = dp.baseAddress! + sources[start + i] * C, g = gp.baseAddress! + i * C
                                for j in 0..<C { d[j] += g[j] }
                            }
                        }
                    }
                }
            }
        }
        // dx_L = rmsnorm backward of dxf
        current.withUnsafeBufferPointer { xp in
            model.finalNorm.data.withUnsafeBufferPointer { wp in
                dy.withUnsafeMutableBufferPointer { op in
                    dxf.withUnsafeBufferPointer { dp in
                        rstdf.withUnsafeBufferPointer { rp in
                            RMSNorm.backward(op.baseAddress!, dp.baseAddress!, xp.baseAddress!, rstd: rp.baseAddress!,
                                             weight: wp.baseAddress!, T: n, C: C, accumulate: false,
                                             weightOffset: architecture.normWeightOffset)
                        }
                    }
                }
            }
        }
        // Blocks in reverse, each re-run forward (saving) right before its backward.
        for l in stride(from: L - 1, through: 0, by: -1) {
            let block = blocks[layerGeometry[l]]!
            let a = adapter(l)
            inputs[l].withUnsafeBufferPointer {
                block.forward($0.baseAddress!, batch: b, tokens: t, parameters: weights[l], rope: rope, adapter: a)
            }
            dy.withUnsafeBufferPointer { dyp in
                dx.withUnsafeMutableBufferPointer { dxp in
                    block.backward(outputGradient: dyp.baseAddress!, parameters: weights[l], rope: rope, gradients: &gradients,
                                   inputGradient: dxp.baseAddress!, matrices: matrices, adapter: a)
                }
            }
            if !matrices.isEmpty { blockGradients(l, gradients) }
            swap(&dy, &dx)
        }
        swap(&dy, &dx)   // dx = dL/dx₀
        return (total / Double(count), count)
    }
}
