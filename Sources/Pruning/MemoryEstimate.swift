import Foundation
import Llama
import Tensor

/// The resident memory a pruning run needs, by part, in bytes (float32 everywhere).
///
/// Peak = block + activations + method extra + max(embedding table, statistics + forward + compression):
/// the embedding table is only resident before block 0; statistics live from the calibration pass until
/// the last layer of the block is compressed, beside the forward block the driver keeps for reuse
/// (`DecoderBlockPool`) and one layer's compression scratch. The checkpoint itself stays memory-mapped and
/// is not counted.
public struct MemoryEstimate: Codable, Sendable, Equatable, CustomStringConvertible {
    /// One decoder block in float32 (the seven linears, norms, biases).
    public var blockBytes: Int
    /// The two activation buffers, 2 × nsamples × seqlen × hidden floats (0 when the method reads none).
    public var activationBytes: Int
    /// The (V, C) embedding table while X̂₀ is built.
    public var embeddingBytes: Int
    /// Input statistics of one block's four distinct linear inputs (`InputStatistics.bytes`).
    public var statisticsBytes: Int
    /// The temporaries of one forward call over `samplesPerForward` samples.
    public var forwardBytes: Int
    /// The largest per-layer compression scratch (`MethodMemory.compressionBytes`).
    public var compressionBytes: Int
    /// `MethodMemory.extraBlockBytes` (e.g. Wanda++'s dense copy and gradients).
    public var methodExtraBytes: Int

    public var totalBytes: Int {
        blockBytes + activationBytes + methodExtraBytes
            + max(embeddingBytes, statisticsBytes + forwardBytes + compressionBytes)
    }

    /// Estimates a run of `method` on a model of `configuration` with nsamples × seqlen calibration tokens.
    public static func estimate(configuration c: LlamaConfiguration, method: PruningMethod, sampleCount: Int,
                                sequenceLength: Int, samplesPerForward: Int? = nil) -> MemoryEstimate {
        let f = MemoryLayout<Float>.size
        let qDim = c.numAttentionHeads * c.headDim, kvDim = c.numKeyValueHeads * c.headDim
        var blockParams = 2 * c.hiddenSize
        for kind in LinearKind.allCases {
            let s = kind.shape(c)
            blockParams += s[0] * s[1] + (kind.hasBias(c) ? s[0] : 0)
        }
        let own = method.memory(configuration: c, sampleCount: sampleCount, sequenceLength: sequenceLength)
        let uses = method.needsCalibrationInputs
        let tokensPerForward = PruningOptions(pattern: .unstructured(0), samplesPerForward: samplesPerForward)
            .resolvedSamplesPerForward(sampleCount: max(sampleCount, 1), sequenceLength: sequenceLength) * sequenceLength
        // Input copy, normed input, q, k, v, attention, residual, normed residual, gate, up, activation,
        // output; plus each attention worker's scratch (one KV head's query group over one 64-row block).
        let forwardFloats = tokensPerForward * (5 * c.hiddenSize + 2 * qDim + 2 * kvDim + 3 * c.intermediateSize)
            + workerCount * Attention.forwardScratchFloats(length: sequenceLength, heads: c.numAttentionHeads,
                                                           kvHeads: c.numKeyValueHeads, headDim: c.headDim)
        return MemoryEstimate(
            blockBytes: blockParams * f,
            activationBytes: uses ? 2 * sampleCount * sequenceLength * c.hiddenSize * f : 0,
            embeddingBytes: uses ? c.vocabSize * c.hiddenSize * f : 0,
            statisticsBytes: own.statisticsBytes,
            forwardBytes: uses ? forwardFloats * f : 0,
            compressionBytes: own.compressionBytes,
            methodExtraBytes: own.extraBlockBytes)
    }

    /// "2.31 GiB (block 0.10, activations 2.00, statistics 0.15, forward 0.05, compression 0.01 GiB)".
    public var description: String { "\(Self.gib(totalBytes)) GiB (\(breakdown))" }

    /// The parts: "block 0.10, activations 2.00, ..., compression 0.01 GiB".
    public var breakdown: String {
        var parts = ["block \(Self.gib(blockBytes))", "activations \(Self.gib(activationBytes))"]
        if methodExtraBytes > 0 { parts.append("method \(Self.gib(methodExtraBytes))") }
        if embeddingBytes > 0 { parts.append("embeddings \(Self.gib(embeddingBytes))") }
        if statisticsBytes > 0 { parts.append("statistics \(Self.gib(statisticsBytes))") }
        if forwardBytes > 0 { parts.append("forward \(Self.gib(forwardBytes))") }
        parts.append("compression \(Self.gib(compressionBytes))")
        return parts.joined(separator: ", ") + " GiB"
    }

    /// Throws when `availableBytes` is known and smaller than the estimate:
    /// "pruning needs 30.20 GiB, 23.10 GiB available (block ..., ...); lower --nsamples or --seqlen".
    public func check(availableBytes: Int?) throws {
        guard let availableBytes, totalBytes > availableBytes else { return }
        throw PruningError("pruning needs \(Self.gib(totalBytes)) GiB, \(Self.gib(availableBytes)) GiB available (\(breakdown)); lower --nsamples or --seqlen")
    }

    /// MemAvailable from /proc/meminfo (Linux), nil where it cannot be read.
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
        }
        return nil
    }

    /// `bytes` in GiB with two decimals, as the estimates print it.
    public static func gib(_ bytes: Int) -> String {
        let hundredths = (Double(bytes) / Double(1 << 30) * 100).rounded()
        let whole = Int(hundredths) / 100, frac = Int(hundredths) % 100
        return "\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }
}
