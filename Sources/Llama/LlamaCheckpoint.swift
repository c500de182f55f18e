import Foundation
import Tensor

/// Where a checkpoint's tensors come from: a memory-mapped safetensors folder (`SafeTensorsCheckpoint`
/// conforms), or an in-memory table. Only `floats` reads data; names and shapes come from headers.
public protocol WeightSource {
    /// Every tensor name the checkpoint holds.
    var tensorNames: [String] { get }
    /// The shape of one tensor, without reading its data.
    func shape(of name: String) throws -> [Int]
    /// One tensor's elements converted to float32, row-major.
    func floats(_ name: String) throws -> [Float]
}

/// An in-memory `WeightSource` (tests, and checkpoints assembled in code).
public struct InMemoryWeights: WeightSource, Sendable {
    public var tensors: [String: Tensor]
    public init(_ tensors: [String: Tensor]) { self.tensors = tensors }
    public var tensorNames: [String] { tensors.keys.sorted() }
    public func shape(of name: String) throws -> [Int] {
        guard let t = tensors[name] else { throw LlamaError.missingTensor(name) }
        return t.shape
    }
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw LlamaError.missingTensor(name) }
        return t.data
    }
}

/// A LLaMA-family checkpoint whose tensor names and shapes have been checked strictly against its
/// configuration: every expected tensor is present with the expected shape, and every tensor present is
/// used (`*.rotary_emb.inv_freq` buffers are ignored). Tensors are read on demand, one block at a time,
/// so pruning keeps a single block resident; `loadModel()` reads everything for evaluation.
///
/// Tied embeddings (`tie_word_embeddings: true`): the head is `model.embed_tokens.weight` and the checkpoint
/// normally holds no `lm_head.weight`. If it does hold one anyway, that tensor is the head — what
/// transformers 5 does (it unties when the two differ, and when they are equal the choice changes nothing);
/// `headTensorName` tells which tensor the head comes from.
public struct LlamaCheckpoint {
    public let configuration: LlamaConfiguration
    public let source: WeightSource
    /// The tensor the output projection reads: `lm_head.weight` or, for tied heads, `model.embed_tokens.weight`.
    public let headTensorName: String

    /// Checks `source` against `configuration` (throws `missingTensor`, `shapeMismatch`, `unusedTensors`).
    public init(configuration c: LlamaConfiguration, source: WeightSource) throws {
        try c.architecture.checkSupported()
        configuration = c
        self.source = source
        let present = Set(source.tensorNames)
        // A config.json claiming more layers than the checkpoint has block tensors is refused before the
        // expected-name table (about 10 entries a layer) is built, so the table stays proportional to the
        // data present. (A layer missing only some tensors is reported below as the first missing tensor.)
        let blockTensors = present.filter { $0.hasPrefix("model.layers.") }.count
        if c.numHiddenLayers > blockTensors {
            throw LlamaError.invalidConfiguration(
                "num_hidden_layers is \(c.numHiddenLayers) but the checkpoint holds only \(blockTensors) block tensors")
        }
        var expected = LlamaTensorNames.all(configuration: c)
        if c.tieWordEmbeddings && present.contains(LlamaTensorNames.lmHead) {
            expected.append((LlamaTensorNames.lmHead, [c.vocabSize, c.hiddenSize]))
        }
        for (name, _) in expected where !present.contains(name) {
            throw LlamaError.missingTensor(name)
        }
        for (name, shape) in expected {
            let found = try source.shape(of: name)
            if found != shape { throw LlamaError.shapeMismatch(tensor: name, expected: shape, found: found) }
        }
        let used = Set(expected.map(\.name))
        let unused = present.filter { !used.contains($0) && !LlamaTensorNames.isIgnored($0) }.sorted()
        if !unused.isEmpty { throw LlamaError.unusedTensors(unused) }
        headTensorName = present.contains(LlamaTensorNames.lmHead) ? LlamaTensorNames.lmHead : LlamaTensorNames.embedTokens
    }

    func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
        let data: [Float]
        do {
            data = try source.floats(name)
        } catch let error as LlamaError {
            throw error
        } catch {
            throw LlamaError.checkpoint("\(name): \(String(describing: error))")
        }
        guard data.count == shape.reduce(1, *) else {
            throw LlamaError.checkpoint("\(name): read \(data.count) values for shape \(shape)")
        }
        // A corrupt checkpoint must not surface later as a NaN perplexity.
        if let bad = data.withUnsafeBufferPointer({ FloatScan.firstNonFinite($0) }) {
            throw LlamaError.checkpoint("tensor \(name) holds a non-finite value (\(data[bad]) at element \(bad))")
        }
        return Tensor(shape: shape, data: data)
    }

    /// (V, C): the token embedding table.
    public func loadEmbeddings() throws -> Tensor {
        try tensor(LlamaTensorNames.embedTokens, [configuration.vocabSize, configuration.hiddenSize])
    }

    /// (C): the final RMSNorm weight.
    public func loadFinalNorm() throws -> Tensor {
        try tensor(LlamaTensorNames.finalNorm, [configuration.hiddenSize])
    }

    /// (V, C): the output projection, nil when it is the embedding table (tied, and no lm_head.weight stored).
    public func loadHead() throws -> Tensor? {
        headTensorName == LlamaTensorNames.lmHead
            ? try tensor(LlamaTensorNames.lmHead, [configuration.vocabSize, configuration.hiddenSize]) : nil
    }

    /// The weights of block `layer` (0..<num_hidden_layers), read from the source now.
    public func loadBlock(_ layer: Int) throws -> DecoderBlockWeights {
        let c = configuration
        guard (0..<c.numHiddenLayers).contains(layer) else {
            throw LlamaError.invalidInput("layer \(layer) outside 0..<\(c.numHiddenLayers)")
        }
        func weight(_ kind: LinearKind) throws -> Tensor { try tensor(LlamaTensorNames.weight(kind, layer: layer), kind.shape(c)) }
        func bias(_ kind: LinearKind) throws -> Tensor? {
            kind.hasBias(c) ? try tensor(LlamaTensorNames.bias(kind, layer: layer), [kind.shape(c)[0]]) : nil
        }
        let a = c.architecture
        func norm(_ role: BlockNorm) throws -> Tensor {
            try tensor(LlamaTensorNames.norm(role, layer: layer, architecture: a), [role.width(c)])
        }
        func optionalNorm(_ role: BlockNorm) throws -> Tensor? { role.isPresent(in: a) ? try norm(role) : nil }
        return try DecoderBlockWeights(
            layer: layer, configuration: c,
            q: weight(.q), k: weight(.k), v: weight(.v), o: weight(.o),
            gate: weight(.gate), up: weight(.up), down: weight(.down),
            qBias: bias(.q), kBias: bias(.k), vBias: bias(.v), oBias: bias(.o),
            inputNorm: norm(.input), postAttentionNorm: norm(.mlpInput), queryNorm: optionalNorm(.query),
            keyNorm: optionalNorm(.key), attentionOutputNorm: optionalNorm(.attentionOutput), mlpOutputNorm: optionalNorm(.mlpOutput))
    }

    /// Reads the embedding table, the final norm and the head (when not tied) one at a time and throws
    /// if any holds a NaN or an infinity: the tensors outside the blocks, which pruning copies unread.
    public func checkNonBlockTensorsFinite() throws {
        _ = try loadEmbeddings()
        _ = try loadFinalNorm()
        _ = try loadHead()
    }

    /// The whole model in memory.
    public func loadModel() throws -> LlamaModel {
        try LlamaModel(
            configuration: configuration, embeddings: loadEmbeddings(),
            blocks: (0..<configuration.numHiddenLayers).map(loadBlock),
            finalNorm: loadFinalNorm(), head: loadHead())
    }
}
