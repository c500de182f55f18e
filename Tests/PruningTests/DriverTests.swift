import Datasets
import Foundation
import Llama
import Pruning
import SafeTensors
import Tensor
import Testing
import TestSupport

/// stories260K and the first `nsamples` rows of the shared calibration ids (seqlen 512).
func stories260K(nsamples: Int = 16) throws -> (LlamaCheckpoint, CalibrationSet) {
    let checkpoint = try LlamaCheckpoint(directory: try sharedPath("models/stories260K"))
    let file = try SafeTensorsFile(url: try sharedPath("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"))
    let matrix = try TokenMatrix(shape: try shape(file, "input_ids"), values: try file.int64s("input_ids"),
                                 source: "stories260K-wikitext2valid-128x512-seed0")
    return (checkpoint, try Calibration.takeRows(of: matrix, nsamples: nsamples, seqlen: 512))
}

/// The embedding rows of the given calibration samples, stacked as (samples.count, seqlen, hidden): the
/// inputs of block 0, built here from the table rather than by the driver.
func embeddedSamples(_ samples: [Int], of calibration: CalibrationSet, checkpoint: LlamaCheckpoint) throws -> Tensor {
    let c = checkpoint.configuration, t = calibration.seqlen
    let table = try checkpoint.loadEmbeddings()
    var x = Tensor(shape: [samples.count, t, c.hiddenSize])
    for (i, s) in samples.enumerated() {
        for (p, id) in calibration.samples[s].enumerated() {
            for j in 0..<c.hiddenSize { x.data[(i * t + p) * c.hiddenSize + j] = table.data[id * c.hiddenSize + j] }
        }
    }
    return x
}

/// Runs the driver and keeps the pruned blocks.
func pruneInMemory(_ checkpoint: LlamaCheckpoint, _ calibration: CalibrationSet?, _ method: PruningMethod,
                   _ options: PruningOptions, progress: ProgressHandler? = nil) throws -> (PruningSummary, [DecoderBlockWeights]) {
    var blocks: [DecoderBlockWeights] = []
    let summary = try BlockwisePruning.run(checkpoint: checkpoint, calibration: calibration, method: method,
                                           options: options, progress: progress) { blocks.append($0) }
    return (summary, blocks)
}

/// Whole-model runs against reference_prune.py on stories260K (16 calibration samples of 512 tokens):
/// every one of the 35 masks, and SparseGPT's block-0 weights.
@Suite struct EndToEndFixtureTests {
    @Test(arguments: ["magnitude-0.5", "wanda-0.5", "wanda-4of8", "sparsegpt-0.5", "sparsegpt-2of4"])
    func masksMatchTheReference(run: String) throws {
        let (checkpoint, calibration) = try stories260K()
        let parts = run.split(separator: "-").map(String.init)
        let pattern = try SparsityPattern(parsing: parts[1].replacingOccurrences(of: "of", with: ":"))
        let method: PruningMethod
        switch parts[0] {
        case "magnitude": method = MagnitudePruning()
        case "wanda": method = WandaPruning()
        default: method = SparseGPTPruning()
        }
        let (summary, blocks) = try pruneInMemory(checkpoint, calibration, method, PruningOptions(pattern: pattern))
        let ref = try pruningFixture("stories260K-\(run).safetensors")
        #expect(blocks.count == 5)
        // The reference reports no ties at any keep/prune boundary, so every mask must agree exactly.
        #expect(ref.metadata["ties"] == "{\"exact_groups\": 0, \"exact_entries\": 0, \"near_groups\": 0}")
        for block in blocks {
            for kind in LinearKind.allCases {
                let w = block[kind]
                let name = LlamaTensorNames.weight(kind, layer: block.layer)
                let kept = try unpackKept(ref, name, count: w.count)
                let mismatches = (0..<w.count).filter { (w.data[$0] != 0) != kept[$0] }.count
                #expect(mismatches == 0, "\(run) \(name): \(mismatches) of \(w.count) entries differ")
                // SparseGPT's updated weights (block 0): same tolerance as the per-layer fixtures.
                if ref.info("W." + name) != nil {
                    let rw = try ref.floats("W." + name)
                    let scale = rw.reduce(Float(0)) { maxOrNaN($0, abs($1)) }
                    let err = (0..<w.count).reduce(Float(0)) { maxOrNaN($0, abs(w.data[$1] - rw[$1]) / scale) }
                    #expect(err <= 2e-5, "\(run) \(name): max relative difference \(err)")
                }
            }
        }
        if let achieved = ref.metadata["sparsity_achieved"].flatMap(Double.init) {
            #expect(abs(summary.sparsity - achieved) < 1e-12)
        }
        #expect(summary.calibrationHash == (parts[0] == "magnitude" ? nil : calibration.hash))
    }
}

/// A method that prunes like Wanda through the default block step and keeps a copy of the block inputs
/// X̂ₗ it was given, to check the pipeline's plumbing.
private final class InputProbe: LayerPruningMethod {
    var name: String { "probe" }
    var statistics: InputStatistics.Kind { .columnSquares }
    let samples: [Int]
    var seen: [Tensor] = []
    var draws: [Int] = []
    init(samples: [Int]) { self.samples = samples }
    func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        try WandaPruning().compress(weight, statistics: statistics, pattern: pattern)
    }
    func prune(_ context: BlockPruningContext) throws -> BlockMethodReport {
        seen.append(context.inputs(samples: samples))
        draws.append(context.generator.nextInt(below: 1_000_000))
        return try context.defaultPruneBlock(self)
    }
}

/// A method that checks, at every block, `BlockPruningContext.forward` on consecutive and scattered samples
/// against the Tensor forward of the same inputs, then prunes like Wanda.
private final class ForwardProbe: LayerPruningMethod {
    var name: String { "forward-probe" }
    var statistics: InputStatistics.Kind { .columnSquares }
    var mismatches: [String] = []
    var checked = 0
    func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {
        try WandaPruning().compress(weight, statistics: statistics, pattern: pattern)
    }
    func prune(_ context: BlockPruningContext) throws -> BlockMethodReport {
        for samples in [[1, 2, 3], [4, 0], [2]] {
            // Chunks of samplesPerForward, as the context cuts them (a GEMM's bits may depend on its rows).
            var expected: [Float] = []
            for start in stride(from: 0, to: samples.count, by: context.samplesPerForward) {
                let chunk = Array(samples[start..<min(samples.count, start + context.samplesPerForward)])
                expected += DecoderBlock.forward(context.inputs(samples: chunk), weights: context.weights,
                                                 configuration: context.configuration, rope: context.rope).data
            }
            var got: [Float] = []
            var seen: [Int] = []
            context.forward(samples: samples) { chunk, y in seen += chunk; got += Array(y) }
            if seen != samples || got.count != expected.count || !got.allSatisfy(\.isFinite) || !zip(got, expected).allSatisfy({ $0.bitPattern == $1.bitPattern }) {
                mismatches.append("block \(context.layer) samples \(samples)")
            }
            checked += 1
        }
        return try context.defaultPruneBlock(self)
    }
}

@Suite struct DriverTests {
    /// The context's forward reads consecutive samples in place and gathers scattered ones; both hand out
    /// the same floats as the Tensor forward of the gathered inputs, chunk by chunk in sample order.
    @Test func contextForwardMatchesTheTensorForward() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 5)
        let probe = ForwardProbe()
        _ = try pruneInMemory(checkpoint, calibration, probe, PruningOptions(pattern: .nm(n: 2, m: 4), samplesPerForward: 2))
        #expect(probe.checked == 15)
        #expect(probe.mismatches.isEmpty, "\(probe.mismatches)")
    }

    /// Block l must see the outputs of the already pruned blocks 0..<l on its samples: recomputed here
    /// one sample batch at a time from the embeddings and the returned pruned blocks.
    @Test func eachBlockSeesThePrunedPrefixOutputs() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 7)
        let probe = InputProbe(samples: [0, 4, 6])
        // 3 samples per forward: chunks 0..<3, 3..<6, 6..<7.
        let (_, blocks) = try pruneInMemory(checkpoint, calibration, probe,
                                            PruningOptions(pattern: .unstructured(0.5), seed: 3, samplesPerForward: 3))
        let c = checkpoint.configuration
        var x = try embeddedSamples(probe.samples, of: calibration, checkpoint: checkpoint)
        let rope = RoPE(configuration: c, positions: 512)
        #expect(probe.seen.count == 5)
        for l in 0..<5 {
            let scale = x.data.reduce(Float(0)) { maxOrNaN($0, abs($1)) }
            #expect(probe.seen[l].maxAbsDifference(x) <= 1e-5 * scale, "block \(l)")
            x = DecoderBlock.forward(x, weights: blocks[l], configuration: c, rope: rope)
        }
        // One generator for the whole run, seeded by the options, advanced across blocks.
        var g = SeededGenerator(seed: 3)
        #expect(probe.draws == (0..<5).map { _ in g.nextInt(below: 1_000_000) })
    }

    @Test func chunkingDoesNotChangeTheResult() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 5)
        let (_, a) = try pruneInMemory(checkpoint, calibration, WandaPruning(), PruningOptions(pattern: .nm(n: 2, m: 4), samplesPerForward: 2))
        let (_, b) = try pruneInMemory(checkpoint, calibration, WandaPruning(), PruningOptions(pattern: .nm(n: 2, m: 4), samplesPerForward: 5))
        for l in 0..<5 { for kind in LinearKind.allCases {
            #expect(a[l][kind].data.map { $0 == 0 } == b[l][kind].data.map { $0 == 0 }, "block \(l) \(kind)")
        } }
    }

    @Test func progressReportsEveryBlockAndTheSummaryCountsZeros() throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 2)
        var updates: [ProgressUpdate] = []
        let (summary, blocks) = try pruneInMemory(checkpoint, calibration, WandaPruning(), PruningOptions(pattern: .nm(n: 4, m: 8)),
                                                  progress: { updates.append($0) })
        #expect(updates.allSatisfy { $0.stage == "prune" && $0.total == 5 && $0.unit == "blocks" })
        #expect(updates.last?.completed == 5)
        #expect(zip(updates, updates.dropFirst()).allSatisfy { $0.completed <= $1.completed })
        #expect(updates.contains { $0.detail.hasPrefix("block 3/5 mlp.down_proj") })
        var zeros = 0, params = 0
        for b in blocks { for k in LinearKind.allCases { zeros += SparsityCheck.zeroCount(b[k].data); params += b[k].count } }
        #expect(summary.zeros == zeros && summary.parameters == params)
        #expect(summary.blocks.count == 5 && summary.blocks.allSatisfy { $0.layers.count == 7 })
        // 4:8 on width 172: the partial group of 4 keeps all four.
        let down = try #require(summary.blocks[0].layers.first { $0.kind == .down })
        #expect(down.zeros == 64 * 21 * 4)
        #expect(down.sparsity == SparsityPattern.nm(n: 4, m: 8).prunedFraction(inFeatures: 172))
    }

    @Test func magnitudeNeedsNoCalibration() throws {
        let (checkpoint, _) = try stories260K(nsamples: 1)
        let (summary, _) = try pruneInMemory(checkpoint, nil, MagnitudePruning(), PruningOptions(pattern: .unstructured(0.5)))
        #expect(summary.calibrationSource == nil && summary.sampleCount == 0)
        #expect(summary.sparsity == 0.5)
    }

    @Test func badCalibrationIsAOneLineError() throws {
        let (checkpoint, _) = try stories260K(nsamples: 1)
        let options = PruningOptions(pattern: .unstructured(0.5))
        #expect(throws: PruningError("wanda needs calibration data, but none was given")) {
            _ = try pruneInMemory(checkpoint, nil, WandaPruning(), options)
        }
        let badId = CalibrationSet(samples: [[1, 2, 999]], source: "test")
        #expect(throws: PruningError("calibration sample 0 holds token id 999, outside the vocabulary 0..<512")) {
            _ = try pruneInMemory(checkpoint, badId, WandaPruning(), options)
        }
        let long = CalibrationSet(samples: [[Int](repeating: 1, count: 600)], source: "test")
        #expect(throws: PruningError("calibration seqlen 600 exceeds the model's max_position_embeddings 512")) {
            _ = try pruneInMemory(checkpoint, long, WandaPruning(), options)
        }
    }

    /// A method that breaks the pattern is caught by the driver's N:M validator.
    @Test func driverValidatesNM() throws {
        struct Lazy: LayerPruningMethod {
            var name: String { "lazy" }
            var statistics: InputStatistics.Kind { [] }
            func compress(_ weight: LayerWeight, statistics: InputStatistics?, pattern: SparsityPattern) throws {}
        }
        let (checkpoint, _) = try stories260K(nsamples: 1)
        do {
            _ = try pruneInMemory(checkpoint, nil, Lazy(), PruningOptions(pattern: .nm(n: 2, m: 4)))
            Issue.record("an unpruned block passed the 2:4 check")
        } catch let e as PruningError {
            #expect(e.description.hasPrefix("model.layers.0.self_attn.q_proj.weight violates 2:4: row 0, columns 0..<4 hold"))
        }
    }
}

@Suite struct MemoryEstimateTests {
    @Test func partsOfStories260K() throws {
        let (checkpoint, _) = try stories260K(nsamples: 1)
        let c = checkpoint.configuration
        let e = MemoryEstimate.estimate(configuration: c, method: SparseGPTPruning(), sampleCount: 128, sequenceLength: 512)
        // q 64×64, k and v 32×64, o 64×64, gate and up 172×64, down 64×172, two norms of 64.
        #expect(e.blockBytes == 4 * (4096 + 2048 + 2048 + 4096 + 3 * 11008 + 128))
        #expect(e.activationBytes == 2 * 128 * 512 * 64 * 4)
        #expect(e.embeddingBytes == 512 * 64 * 4)
        // XᵀX (float64 sum + a float64 chunk of gramRows tokens) and column sums for inputs of width 64, 64, 64
        // and 172.
        let r = InputStatistics.gramRows
        #expect(e.statisticsBytes == 3 * (8 * 64 * 64 + 8 * r * 64 + 8 * 64) + 8 * 172 * 172 + 8 * r * 172 + 8 * 172)
        #expect(e.totalBytes == e.blockBytes + e.activationBytes
                + max(e.embeddingBytes, e.statisticsBytes + e.forwardBytes + e.compressionBytes))
        let magnitude = MemoryEstimate.estimate(configuration: c, method: MagnitudePruning(), sampleCount: 128, sequenceLength: 512)
        #expect(magnitude.activationBytes == 0 && magnitude.statisticsBytes == 0)
    }

    @Test func checkNamesNeedAndAvailability() throws {
        let (checkpoint, _) = try stories260K(nsamples: 1)
        let e = MemoryEstimate.estimate(configuration: checkpoint.configuration, method: WandaPruning(),
                                        sampleCount: 128, sequenceLength: 512)
        try e.check(availableBytes: nil)
        try e.check(availableBytes: e.totalBytes)
        do {
            try e.check(availableBytes: 1 << 20)
            Issue.record("1 MiB was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.hasPrefix("pruning needs 0.0"))
            #expect(text.contains(" GiB, 0.00 GiB available (block 0.00, activations 0.03"))
            #expect(!text.contains("\n"))
        }
        #expect((MemoryEstimate.availableBytes() ?? 0) > 0)
    }

    /// LLaMA-1 7B shapes at the default 128 × 2048: the activations alone are 8 GiB.
    @Test func sevenBillionShapes() throws {
        let json = """
        {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
         "num_attention_heads": 32, "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
        """
        let c = try LlamaConfiguration(jsonData: Data(json.utf8))
        let e = MemoryEstimate.estimate(configuration: c, method: WandaPruning(), sampleCount: 128, sequenceLength: 2048)
        #expect(e.activationBytes == 8 << 30)
        #expect(e.blockBytes == 4 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096))
        #expect(e.description.hasPrefix("9."))
    }
}

/// The driver's backend (`PruningOptions.backend`) is where every method's math runs: the calibration
/// forwards, the statistics, SparseGPT's Gram matrix and factor, Wanda++'s gradient and RO passes. A
/// recording backend over the CPU one sees those ops and changes no bit of the result.
@Suite struct DriverBackendTests {
    @Test(arguments: ["wanda", "sparsegpt", "wanda++"])
    func methodsRunThroughTheDriversBackend(_ name: String) throws {
        let (checkpoint, calibration) = try stories260K(nsamples: 2)
        let values = name == "wanda++" ? ["ro-rounds": "1", "ro-samples": "1"] : [:]
        let method = try PruningMethods.make(name, MethodArguments(values: values, sampleCount: 2))
        var options = PruningOptions(pattern: .nm(n: 2, m: 4))
        let (_, plain) = try pruneInMemory(checkpoint, calibration, method, options)
        let recording = RecordingBackend()
        options.backend = recording
        let (_, recorded) = try pruneInMemory(checkpoint, calibration, method, options)
        for (a, b) in zip(plain, recorded) { #expect(a.weights == b.weights, "block \(a.layer)") }
        let ops = Set(recording.ops)
        #expect(ops.isSuperset(of: ["rmsNorm", "linear", "attention", "gatedActivation"]))
        switch name {
        case "sparsegpt": #expect(ops.isSuperset(of: ["gramMatrix", "upperCholeskyOfInverse", "gemm"]))
        case "wanda++": #expect(ops.isSuperset(of: ["attentionBackward", "linearBackward", "rmsNormBackward", "gatedActivationBackward"]))
        default: #expect(!ops.contains("gramMatrix"))
        }
    }
}
