import Tensor

/// Generation's forward pass: a model run over one sequence a few tokens at a time, each pass continuing
/// the keys and values the earlier ones left in a `KeyValueCache`, and giving the next-token logits of its
/// last position only.
///
/// A pass of T tokens at position p (T = the prompt's length for the prefill, 1 per generated token):
///
///     x (T, C) = embedding rows (× √C for Gemma)
///     per layer: x = DecoderBlock(x) at positions p..<p+T over the cached keys/values 0..<p
///                (`BlockContinuation`); the layer's new keys and values are stored at p..<p+T
///     logits (V) = head(final_norm(x[T − 1]))   (Gemma 2: soft-capped)
///
/// The block listing is the one every other pass runs (`DecoderBlock.run`), so every architecture it
/// computes (GQA, biases, QK-norm, sandwich norms, sliding windows per layer, RoPE bases per layer,
/// soft-caps) decodes the same way; the logits at each position equal `LlamaModel.logits` of the whole
/// sequence up to float32 rounding. Every product (the seven projections, attention's and the head's)
/// goes through the model's `ComputeBackend`; the block weights are read where the block reads them
/// (`DecoderBlockWeights`) and the head's through `headWeight`, the one place a packed storage type
/// replaces.
///
/// All buffers (cache, blocks, hidden states, logits, the cached-prefix attention's scores) are sized at
/// init for `capacity` positions; a pass of one token allocates nothing of its own. Not thread-safe: one
/// decoder per sequence.
public final class IncrementalDecoder {
    public let model: LlamaModel
    /// The most positions the sequence may reach (prompt + generated tokens).
    public let capacity: Int
    /// The keys and values of the positions run so far.
    public let cache: KeyValueCache
    /// Tokens run so far (the next pass starts at this position).
    public var position: Int { cache.count }

    private let rope: RoPE
    private let pool: DecoderBlockPool
    private let geometries: [BlockGeometry]
    /// The configuration's architecture, computed once (the configuration derives it on each read).
    private let architecture: Architecture
    /// (capacity, C): the pass's hidden states.
    private let hidden: UnsafeMutablePointer<Float>
    /// (C): the last position's state after the final norm; (V): its logits.
    private let normed: UnsafeMutablePointer<Float>
    private let logitsBuffer: UnsafeMutablePointer<Float>
    /// The cached-prefix attention's work memory for one-token passes at any position.
    private let attentionScratch: UnsafeMutableBufferPointer<Float>
    // One-sequence continuation arguments, mutated in place so a pass allocates no arrays.
    private var offsets = [0]
    private var prefixRows = [-1]

    /// A decoder for sequences of up to `capacity` positions (at most the model's
    /// `max_position_embeddings`).
    public init(model: LlamaModel, capacity: Int) throws {
        let c = model.configuration
        guard capacity > 0 else { throw LlamaError.invalidInput("a decoder needs room for at least one position") }
        guard capacity <= c.maxPositionEmbeddings else {
            throw LlamaError.invalidInput(
                "\(capacity) positions exceed the model's max_position_embeddings \(c.maxPositionEmbeddings)")
        }
        self.model = model
        self.capacity = capacity
        let geometries = (0..<c.numHiddenLayers).map { BlockGeometry(configuration: c, layer: $0) }
        self.geometries = geometries
        architecture = c.architecture
        cache = KeyValueCache(capacity: capacity, widths: geometries.map(\.kvWidth))
        rope = RoPE(configuration: c, positions: capacity)
        pool = DecoderBlockPool(backend: model.backend)
        hidden = .allocate(capacity: capacity * c.hiddenSize)
        hidden.initialize(repeating: 0, count: capacity * c.hiddenSize)
        normed = .allocate(capacity: c.hiddenSize)
        normed.initialize(repeating: 0, count: c.hiddenSize)
        logitsBuffer = .allocate(capacity: c.vocabSize)
        logitsBuffer.initialize(repeating: 0, count: c.vocabSize)
        let heads = geometries.map(\.heads).max() ?? 1
        attentionScratch = .allocate(capacity: Attention.continuationScratchFloats(batch: 1, length: 1, heads: heads,
                                                                                   longestPrefix: capacity))
        attentionScratch.initialize(repeating: 0)
        // One-token blocks made now: the first generated token then finds them in the pool.
        for g in Set(geometries) { _ = try pool.block(geometry: g, rows: 1, length: 1) }
    }

    deinit {
        let c = model.configuration
        hidden.deinitialize(count: capacity * c.hiddenSize); hidden.deallocate()
        normed.deinitialize(count: c.hiddenSize); normed.deallocate()
        logitsBuffer.deinitialize(count: c.vocabSize); logitsBuffer.deallocate()
        attentionScratch.deallocate()
    }

    /// The (V, C) matrix of the head: `lm_head.weight`, or the embedding table when tied.
    public var headWeight: Tensor { model.head ?? model.embeddings }

    /// The next-token logits (V) of the last pass's last position (valid until the next pass).
    public var logits: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: logitsBuffer, count: model.vocabularySize) }

    /// Starts a new sequence (the buffers are kept).
    public func reset() { cache.reset() }

    /// Runs `tokens` at positions `position`..<`position` + count, continuing the cached sequence, and
    /// returns the next-token logits of the last of them (V).
    @discardableResult
    public func append<Tokens: Collection<Int>>(_ tokens: Tokens) throws -> UnsafeBufferPointer<Float> {
        let c = model.configuration
        guard !tokens.isEmpty else { throw LlamaError.invalidInput("no tokens to run") }
        guard position + tokens.count <= capacity else {
            throw LlamaError.invalidInput(
                "\(position + tokens.count) positions exceed the decoder's \(capacity) (prompt + new tokens)")
        }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw LlamaError.invalidInput("token id \(bad) is outside 0..<\(c.vocabSize)")
        }
        let n = tokens.count, width = c.hiddenSize, start = position
        model.embeddings.data.withUnsafeBufferPointer { table in
            for (i, id) in tokens.enumerated() {
                (hidden + i * width).update(from: table.baseAddress! + id * width, count: width)
            }
        }
        if let scale = architecture.embeddingScale {
            for i in 0..<(n * width) { hidden[i] *= scale }
        }
        offsets[0] = start
        prefixRows[0] = start > 0 ? 0 : -1
        for weights in model.blocks {
            let layer = weights.layer
            // Layers of one geometry share a block (each is done with it before the next starts); blocks
            // sized for a longer pass (the prompt's) serve the shorter ones.
            let block = try pool.block(geometry: geometries[layer], rows: n, length: n)
            block.precision = model.computePrecision
            let continuation = BlockContinuation(offsets: offsets, prefixRows: prefixRows, keys: cache.keys(layer: layer),
                                                 values: cache.values(layer: layer), stride: capacity,
                                                 scratch: attentionScratch)
            block.forward(hidden, batch: 1, tokens: n, parameters: weights, rope: rope, continuing: continuation)
            cache.store(layer: layer, keys: block.keys, values: block.values, rows: n)
            hidden.update(from: block.output.baseAddress!, count: n * width)
        }
        cache.advance(by: n)
        head(of: hidden + (n - 1) * width)
        return logits
    }

    /// Runs one token (`append([token])` without the array).
    @discardableResult
    public func step(_ token: Int) throws -> UnsafeBufferPointer<Float> {
        try append(CollectionOfOne(token))
    }

    /// logits (V) = head(final_norm(x)) for one hidden state x (C), soft-capped where the architecture says.
    private func head(of x: UnsafePointer<Float>) {
        let c = model.configuration, a = architecture, backend = model.backend
        model.finalNorm.data.withUnsafeBufferPointer { w in
            backend.rmsNorm(out: normed, rstd: nil, inp: x, weight: w.baseAddress!, rows: 1, channels: c.hiddenSize,
                            eps: Float(c.rmsNormEps), weightOffset: a.normWeightOffset)
        }
        headWeight.data.withUnsafeBufferPointer { w in
            backend.linear(out: logitsBuffer, inp: normed, weight: w.baseAddress!, bias: nil, rows: 1,
                           inFeatures: c.hiddenSize, outFeatures: c.vocabSize, accumulate: false,
                           precision: model.computePrecision)
        }
        if let cap = a.finalLogitSoftcap { Attention.capScores(logitsBuffer, count: c.vocabSize, cap: cap) }
    }
}
