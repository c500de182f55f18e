import Foundation
import Testing
import Llama
import Pruning
import Runs

@Suite struct RunMemoryEstimateTests {
    /// A model reached through symbolic links (a linked download) is measured by the files they point to.
    @Test func linkedFilesAreMeasuredByTheirTargets() throws {
        let real = sharedData("models/stories260K")
        let linked = FileManager.default.temporaryDirectory.appendingPathComponent("linked-\(getpid())")
        try FileManager.default.createDirectory(at: linked, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: linked) }
        for name in try FileManager.default.contentsOfDirectory(atPath: real.path) {
            try FileManager.default.createSymbolicLink(at: linked.appendingPathComponent(name), withDestinationURL: real.appendingPathComponent(name))
        }
        let a = RunMemoryEstimate.Inputs.measuring(model: real, calibrationFile: nil, calibrationIsText: false, evaluation: nil, writesOutput: false)
        let b = RunMemoryEstimate.Inputs.measuring(model: linked, calibrationFile: nil, calibrationIsText: false, evaluation: nil, writesOutput: false)
        #expect(a.checkpointBytes > 100_000 && b.checkpointBytes == a.checkpointBytes, "\(b.checkpointBytes) vs \(a.checkpointBytes)")
        #expect(a.tokenizerFileBytes == b.tokenizerFileBytes)
    }

    /// The parts appear only in the runs that have them, and the total follows the documented formula.
    @Test func partsFollowTheRun() throws {
        let c = try LlamaConfiguration(contentsOf: try sharedPath("models/stories260K/config.json"))
        let plain = RunMemoryEstimate.Inputs(checkpointBytes: 1_000_000, tokenizerFileBytes: 20_000,
                                             calibrationFileBytes: 1_000_000, calibrationIsText: true)
        let a = RunMemoryEstimate.estimate(configuration: c, method: WandaPruning(), sampleCount: 128, sequenceLength: 512, inputs: plain)
        #expect(a.evaluationBytes == 0 && a.keptBlocksBytes == 0)
        #expect(a.mappedBytes == 1_000_000)
        #expect(a.calibrationSampleBytes == 128 * 512 * 8)
        #expect(a.totalBytes == a.runtimeBytes + a.mappedBytes + a.tokenizerBytes + a.calibrationSampleBytes
                + max(a.calibrationReadBytes, a.pruning.totalBytes + a.keptBlocksBytes, a.exportBytes + a.evaluationBytes))
        #expect(a.exportBytes == 0)

        var evaluating = plain
        evaluating.evaluation = (fileBytes: 1_300_000, seqlen: 512)
        let b = RunMemoryEstimate.estimate(configuration: c, method: WandaPruning(), sampleCount: 128, sequenceLength: 512, inputs: evaluating)
        // The float32 model alone: embeddings (tied head), final norm, five blocks.
        #expect(b.evaluationBytes > 4 * (512 * 64 + 64 + 5 * b.pruning.blockBytes / 4))
        #expect(b.keptBlocksBytes == 5 * b.pruning.blockBytes)
        evaluating.writesOutput = true
        let d = RunMemoryEstimate.estimate(configuration: c, method: WandaPruning(), sampleCount: 128, sequenceLength: 512, inputs: evaluating)
        #expect(d.keptBlocksBytes == 0)
        // With --output the staged blocks count from the export on, beside the evaluation of the written model.
        #expect(d.mappedBytes == 1_000_000)
        #expect(d.exportBytes == 5 * (4096 + 2048 + 2048 + 4096 + 3 * 11008) * 4)
        #expect(d.totalBytes == d.runtimeBytes + d.mappedBytes + d.tokenizerBytes + d.calibrationSampleBytes
                + max(d.calibrationReadBytes, d.pruning.totalBytes, d.exportBytes + d.evaluationBytes))

        let magnitude = RunMemoryEstimate.estimate(configuration: c, method: MagnitudePruning(), sampleCount: 128, sequenceLength: 512, inputs: plain)
        #expect(magnitude.calibrationReadBytes == 0)
    }

    /// Full Wanda++ holds two G at once while it recomputes G after the rounds; RGS alone holds one. RO keeps
    /// the dense block's output of every sample its rounds draw (here all 8: 5 rounds of min(32, 8)).
    @Test func wandaPlusPlusCountsBothGradientBuffers() throws {
        let c = try LlamaConfiguration(contentsOf: try sharedPath("models/stories260K/config.json"))
        let p = LinearKind.allCases.reduce(0) { $0 + $1.shape(c)[0] * $1.shape(c)[1] }
        let full = try WandaPlusPlusMethod(name: "wanda++").extraBlockBytes(configuration: c, sampleCount: 8, sequenceLength: 64)
        let ro = try WandaPlusPlusMethod(name: "wanda++-ro").extraBlockBytes(configuration: c, sampleCount: 8, sequenceLength: 64)
        let rgs = try WandaPlusPlusMethod(name: "wanda++-rgs").extraBlockBytes(configuration: c, sampleCount: 8, sequenceLength: 64)
        #expect(full - ro == 2 * 4 * p)
        // RGS alone: no RMSprop averages (one copy less), one G less, and no dense targets.
        let targets = 4 * 8 * 64 * c.hiddenSize
        #expect(full - rgs == 2 * 4 * p + targets)
    }
}
