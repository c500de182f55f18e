import Tensor

/// A whole LLaMA-family causal language model in memory (float32):
///
///     tokens (B, T) → embeddings (B, T, C) → blocks → final RMSNorm → head → logits (B, T, V)
///
/// The head is `lm_head.weight` when present, otherwise the (tied) embedding table.
public struct LlamaModel: Sendable {
    public let configuration: LlamaConfiguration
    /// (V, C)
    public var embeddings: Tensor
    public var blocks: [DecoderBlockWeights]
    /// (C)
    public var finalNorm: Tensor
    /// (V, C), or nil when the head is the embedding table.
    public var head: Tensor?
    /// The number format of the forward's GEMMs (block projections and head): float32, or bfloat16
    /// inputs with float32 accumulation (`ComputePrecision`), which then also applies to attention's QKᵀ
    /// and PV products. Norms, softmax and every sum stay float32.
    public var computePrecision: ComputePrecision = .float32
    /// The forward block and the head's slab buffers, lent from one evaluation batch to the next (copies
    /// of the model share them; a concurrent caller gets its own). At SmolLM2's 2048-token windows they are
    /// ~150 MiB, whose allocation and first touch took 7 % of each window's evaluation.
    public let reusedBuffers = ForwardBuffers()
    /// Where the blocks' math runs.
    public var backend: any ComputeBackend = CPUBackend()

    /// Checks every shape against the configuration.
    public init(configuration c: LlamaConfiguration, embeddings: Tensor, blocks: [DecoderBlockWeights],
                finalNorm: Tensor, head: Tensor?) throws {
        let vc = [c.vocabSize, c.hiddenSize]
        if embeddings.shape != vc {
            throw LlamaError.shapeMismatch(tensor: LlamaTensorNames.embedTokens, expected: vc, found: embeddings.shape)
        }
        if finalNorm.shape != [c.hiddenSize] {
            throw LlamaError.shapeMismatch(tensor: LlamaTensorNames.finalNorm, expected: [c.hiddenSize], found: finalNorm.shape)
        }
        if let head, head.shape != vc {
            throw LlamaError.shapeMismatch(tensor: LlamaTensorNames.lmHead, expected: vc, found: head.shape)
        }
        if head == nil && !c.tieWordEmbeddings { throw LlamaError.missingTensor(LlamaTensorNames.lmHead) }
        guard blocks.count == c.numHiddenLayers else {
            throw LlamaError.invalidConfiguration("\(blocks.count) blocks for num_hidden_layers \(c.numHiddenLayers)")
        }
        for (i, block) in blocks.enumerated() {
            guard block.layer == i else { throw LlamaError.invalidInput("block \(i) is labelled layer \(block.layer)") }
            try block.validate(configuration: c)
        }
        configuration = c
        self.embeddings = embeddings
        self.blocks = blocks
        self.finalNorm = finalNorm
        self.head = head
    }

    /// Checks a batch of token ids: non-empty, equal lengths, ids in 0..<V. Returns (B, T).
    public func checkTokens(_ tokens: [[Int]]) throws -> (batch: Int, length: Int) {
        guard let t = tokens.first?.count, t > 0 else { throw LlamaError.invalidInput("empty token batch") }
        for (i, row) in tokens.enumerated() {
            guard row.count == t else {
                throw LlamaError.invalidInput("sequence \(i) has \(row.count) tokens, sequence 0 has \(t)")
            }
            if let bad = row.first(where: { $0 < 0 || $0 >= configuration.vocabSize }) {
                throw LlamaError.invalidInput("token id \(bad) in sequence \(i) is outside 0..<\(configuration.vocabSize)")
            }
        }
        return (tokens.count, t)
    }

    /// (B, T, C): the embedding rows of the tokens.
    public func embed(_ tokens: [[Int]]) throws -> Tensor {
        let (b, t) = try checkTokens(tokens)
        return Self.embed(tokens, table: embeddings, batch: b, length: t, scale: configuration.architecture.embeddingScale)
    }

    /// The rows of `table` for the tokens, each times `scale` when there is one (Gemma's √hidden).
    static func embed(_ tokens: [[Int]], table: Tensor, batch b: Int, length t: Int, scale: Float?) -> Tensor {
        let c = table.shape[1]
        var out = Tensor.uninitialized([b, t, c])
        out.data.withUnsafeMutableBufferPointer { op in
            table.data.withUnsafeBufferPointer { ep in
                for (i, row) in tokens.enumerated() {
                    for (j, id) in row.enumerated() {
                        (op.baseAddress! + (i * t + j) * c).update(from: ep.baseAddress! + id * c, count: c)
                    }
                }
                if let scale { for i in 0..<op.count { op[i] *= scale } }
            }
        }
        return out
    }

    /// RoPE tables covering positions 0..<length.
    public func rope(length: Int) -> RoPE {
        RoPE(configuration: configuration, positions: length)
    }

    /// (B, T, C): the hidden states after the final RMSNorm, before the head.
    public func hiddenStates(_ tokens: [[Int]]) throws -> Tensor {
        let (b, t) = try checkTokens(tokens)
        let rope = rope(length: t)
        let a = configuration.architecture
        var x = Self.embed(tokens, table: embeddings, batch: b, length: t, scale: a.embeddingScale)
        reusedBuffers.blocks.borrow(make: { DecoderBlockPool(backend: backend) }) { pool in
            for block in blocks {
                x = DecoderBlock.forward(x, weights: block, configuration: configuration, rope: rope, precision: computePrecision,
                                         pool: pool)
            }
        }
        return RMSNorm.forward(x, weight: finalNorm, eps: Float(configuration.rmsNormEps), weightOffset: a.normWeightOffset).out
    }

    /// V: the vocabulary size (the last dimension of the logits).
    public var vocabularySize: Int { configuration.vocabSize }

    /// (B, T, V): next-token logits at every position. (The signature matches Evaluation's
    /// `CausalLanguageModel`, so `extension LlamaModel: CausalLanguageModel {}` is the whole conformance.)
    public func logits(_ tokens: [[Int]]) throws -> Tensor {
        let h = try hiddenStates(tokens)
        var logits = Linear.forward(h, weight: head ?? embeddings, precision: computePrecision)
        if let cap = configuration.architecture.finalLogitSoftcap {
            logits.data.withUnsafeMutableBufferPointer { Attention.capScores($0.baseAddress!, count: $0.count, cap: cap) }
        }
        return logits
    }

    /// (B, T − 1): the next-token negative log-likelihood −log p(tokens[b][t + 1] | tokens[b][...t]),
    /// computed a slab of rows at a time so the (B, T, V) logits are never held at once.
    public func nextTokenNLL(_ tokens: [[Int]], rowsPerSlab: Int = 512) throws -> Tensor {
        let h = try hiddenStates(tokens)        // (B, T, C)
        let b = tokens.count, t = tokens[0].count, c = configuration.hiddenSize, vocab = configuration.vocabSize
        let w = head ?? embeddings
        var targets = [Int]()                            // (B·(T−1)) next tokens, row r = (i, j) ↦ token[i][j+1]
        var sources = [Int]()                            // which hidden row predicts it
        targets.reserveCapacity(b * max(t - 1, 0))
        sources.reserveCapacity(b * max(t - 1, 0))
        for i in 0..<b where t > 1 {
            for j in 0..<(t - 1) { targets.append(tokens[i][j + 1]); sources.append(i * t + j) }
        }
        let rows = targets.count
        var nll = Tensor.uninitialized([b, max(t - 1, 0)])
        var slabs = HeadSlabs(rowsPerSlab: rowsPerSlab, maxRows: rows, channels: c, vocabulary: vocab, precision: computePrecision,
                              softcap: configuration.architecture.finalLogitSoftcap)
        h.data.withUnsafeBufferPointer { hp in
            w.data.withUnsafeBufferPointer { wp in
                nll.data.withUnsafeMutableBufferPointer { np in
                    targets.withUnsafeBufferPointer { tp in
                        slabs.forEach(hidden: hp.baseAddress!, head: wp.baseAddress!, rows: rows, source: { sources[$0] }) { start, count, logits in
                            CrossEntropy.forward(losses: np.baseAddress! + start, logits: logits,
                                                 targets: tp.baseAddress! + start, rows: count, vocab: vocab)
                        }
                    }
                }
            }
        }
        return nll
    }
}

/// Buffers a model's forward passes lend to each other (`LlamaModel.reusedBuffers`).
public final class ForwardBuffers: Sendable {
    /// The forward-only decoder block of the last batch (kept per geometry by the pool).
    public let blocks = Reusable<DecoderBlockPool>()
    /// The head's gathered-rows and logits slab of the last evaluation batch.
    public let headSlabs = Reusable<HeadSlabs>()

    public init() {}
}
