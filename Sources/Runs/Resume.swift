import Foundation
import JSON
import Pruning
import Tensor
#if canImport(Glibc)
import Glibc
#endif

/// Everything that decides a run's pruned weights; `prune --resume` continues a work folder only when its
/// identity equals the new run's, field by field.
///
/// The model is identified by its path, the bytes of its config.json and the names and sizes of its
/// safetensors files (hashing the weights themselves would cost a full read); the calibration by the
/// hash of its token ids. Evaluation options, `--quiet`/`--json` and the like are not part of it: they do
/// not change the weights.
public struct RunIdentity: Codable, Sendable, Equatable {
    public var toolVersion: String
    public var model: String
    /// FNV-1a 64 of config.json.
    public var modelConfig: String
    /// "name:bytes" of every safetensors file and index, sorted.
    public var modelFiles: [String]
    public var method: String
    /// The method's settings (`PruningJobOptions.settings`).
    public var settings: [String: String]
    public var pattern: String
    public var seed: UInt64
    public var nsamples: Int
    public var seqlen: Int
    public var samplesPerForward: Int
    public var calibrationHash: String?
    public var output: String

    public init(toolVersion: String, model: URL, method: String, settings: [String: String], pattern: String,
                seed: UInt64, nsamples: Int, seqlen: Int, samplesPerForward: Int, calibrationHash: String?,
                output: URL) {
        self.toolVersion = toolVersion
        self.model = WorkFolders.realPath(model.standardizedFileURL)
        let config = (try? Data(contentsOf: model.appendingPathComponent("config.json"))) ?? Data()
        modelConfig = Calibration64.fnv(config)
        let fm = FileManager.default
        let names = ((try? fm.contentsOfDirectory(atPath: model.path)) ?? []).filter {
            $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json")
        }.sorted()
        modelFiles = names.map { name in
            let attributes = try? fm.attributesOfItem(atPath: model.appendingPathComponent(name).path)
            let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
            return "\(name):\(size)"
        }
        self.method = method; self.settings = settings; self.pattern = pattern; self.seed = seed
        self.nsamples = nsamples; self.seqlen = seqlen; self.samplesPerForward = samplesPerForward
        self.calibrationHash = calibrationHash
        self.output = WorkFolders.realPath(output.standardizedFileURL)
    }

    /// The first field that differs, as "seed 1 there, 0 here"; nil when equal.
    public func difference(from other: RunIdentity) -> String? {
        var found: String? = nil
        func d<T: Equatable>(_ name: String, _ a: T, _ b: T, _ show: (T) -> String) {
            if found == nil && a != b { found = "\(name) \(show(b)) there, \(show(a)) here" }
        }
        func text(_ s: String) -> String { s }
        func number<T: BinaryInteger>(_ x: T) -> String { String(x) }
        d("tool version", toolVersion, other.toolVersion, text)
        d("model", model, other.model, text)
        d("model config.json", modelConfig, other.modelConfig, text)
        d("model files", modelFiles, other.modelFiles) { $0.joined(separator: " ") }
        d("method", method, other.method, text)
        d("method settings", settings, other.settings) { s in
            s.keys.sorted().map { "\($0)=\(s[$0]!)" }.joined(separator: " ")
        }
        d("sparsity", pattern, other.pattern, text)
        d("seed", seed, other.seed, number)
        d("nsamples", nsamples, other.nsamples, number)
        d("seqlen", seqlen, other.seqlen, number)
        d("samples per forward", samplesPerForward, other.samplesPerForward, number)
        d("calibration hash", calibrationHash, other.calibrationHash) { $0 ?? "none" }
        d("output", output, other.output, text)
        return found
    }
}

enum Calibration64 {
    static func fnv(_ data: Data) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in data { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01B3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// The resume state in a work folder: `resume/state.json` (the identity, the next block, the generator's
/// state and the finished blocks' reports) and `resume/inputs-<next>.f32` (the next block's inputs, raw
/// little-endian float32). Each file is written to a temporary name, fsynced and renamed; state.json is
/// renamed last, so it is the commit point of a block: a run killed at any moment resumes from the last
/// block whose state.json was renamed. The pruned weights themselves are the writer's staging files.
public final class RunCheckpoint: BlockCheckpointing {
    struct State: Codable {
        var identity: RunIdentity
        var nextBlock: Int
        /// The generator's four words, as hex (JSON numbers lose 64-bit precision in some readers).
        var generator: [String]
        var inputsFile: String?
        var inputsBytes: Int
        var blocks: [BlockPruningReport]
        /// The plan's exceptions ("layer.kind" → pattern) when a planner set them; the base is the identity's.
        var plan: [String: String]?
    }

    public let folder: URL
    public let identity: RunIdentity
    let resumeFolder: URL

    public init(folder: URL, identity: RunIdentity) throws {
        self.folder = folder
        self.identity = identity
        resumeFolder = folder.appendingPathComponent("resume")
        try WorkFolderRegistry.shared.whileHeld {
            if !FileManager.default.fileExists(atPath: resumeFolder.path) {
                do {
                    try FileManager.default.createDirectory(at: resumeFolder, withIntermediateDirectories: false)
                } catch {
                    throw PruningError("cannot create \(resumeFolder.path): \(error.localizedDescription)")
                }
            }
        }
    }

    static func stateURL(_ folder: URL) -> URL { folder.appendingPathComponent("resume/state.json") }

    static func readState(_ folder: URL) -> State? {
        guard let data = try? Data(contentsOf: stateURL(folder)) else { return nil }
        return try? JSONValueDecoder().decode(State.self, from: try JSONValue.parse(data))
    }

    /// The identity saved in a work folder (nil: no readable state).
    public static func identity(in folder: URL) -> RunIdentity? { readState(folder)?.identity }

    /// Blocks finished in a work folder (nil: no readable state).
    public static func finishedBlocks(in folder: URL) -> Int? { readState(folder)?.nextBlock }

    public func resumePoint() throws -> ResumePoint? {
        guard FileManager.default.fileExists(atPath: Self.stateURL(folder).path) else { return nil }
        guard let state = Self.readState(folder) else {
            throw PruningError("the resume state \(Self.stateURL(folder).path) cannot be read; remove the work folder with llm-prune clean")
        }
        if let diff = identity.difference(from: state.identity) {
            throw PruningError("the work folder \(folder.path) belongs to a different run (\(diff))")
        }
        let words = state.generator.compactMap { UInt64($0, radix: 16) }
        guard let generator = SeededGenerator(state: words), words.count == state.generator.count,
              state.blocks.count == state.nextBlock, state.blocks.enumerated().allSatisfy({ $0.element.layer == $0.offset }) else {
            throw PruningError("the resume state \(Self.stateURL(folder).path) is damaged; remove the work folder with llm-prune clean")
        }
        var plan: SparsityPlan? = nil
        if let exceptions = state.plan {
            do {
                plan = try SparsityPlan(base: try SparsityPattern(parsing: state.identity.pattern), exceptionsByKey: exceptions)
            } catch {
                throw PruningError("the resume state \(Self.stateURL(folder).path) holds a damaged sparsity plan (\(error)); remove the work folder with llm-prune clean")
            }
        }
        let inputs = state.inputsFile.map { resumeFolder.appendingPathComponent($0) }
        let expected = state.inputsBytes
        return ResumePoint(nextBlock: state.nextBlock, generator: generator, blocks: state.blocks, plan: plan) { buffer in
            guard let inputs else { return }
            guard buffer.count * 4 == expected else {
                throw PruningError("the saved inputs \(inputs.path) hold \(expected) bytes; this run needs \(buffer.count * 4)")
            }
            let fd = open(inputs.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw PruningError("cannot open \(inputs.path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, Int(st.st_size) == expected else {
                throw PruningError("the saved inputs \(inputs.path) are damaged (size \(st.st_size), expected \(expected))")
            }
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var done = 0
            while done < expected {
                let n = read(fd, raw.baseAddress! + done, min(expected - done, 1 << 30))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw PruningError("cannot read \(inputs.path): \(n == 0 ? "unexpected end" : String(cString: strerror(errno)))") }
                done += n
            }
        }
    }

    public func blockFinished(layer: Int, nextInputs: UnsafeBufferPointer<Float>?, generator: SeededGenerator,
                              plan: SparsityPlan, blocks: [BlockPruningReport]) throws {
        let previous = Self.readState(folder)?.inputsFile
        var inputsFile: String? = nil
        var bytes = 0
        if let nextInputs {
            inputsFile = "inputs-\(layer + 1).f32"
            bytes = nextInputs.count * 4
            try writeDurably(resumeFolder.appendingPathComponent(inputsFile!), UnsafeRawBufferPointer(nextInputs))
        }
        let state = State(identity: identity, nextBlock: layer + 1,
                          generator: generator.state.map { String($0, radix: 16) },
                          inputsFile: inputsFile, inputsBytes: bytes, blocks: blocks,
                          plan: plan.isUniform ? nil : plan.exceptionsByKey)
        let data = Data(try JSONValueEncoder().encode(state).text(.sortedKeys).utf8)
        Durable.sync(folder.appendingPathComponent(".staging").path)
        try data.withUnsafeBytes { try writeDurably(Self.stateURL(folder), $0) }
        Durable.sync(resumeFolder.path)
        if let previous, previous != inputsFile { unlink(resumeFolder.appendingPathComponent(previous).path) }
    }

    /// Writes `bytes` to a temporary file beside `url`, fsyncs it and renames it to `url`.
    private func writeDurably(_ url: URL, _ bytes: UnsafeRawBufferPointer) throws {
        let temp = url.path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PruningError("cannot save the resume state to \(temp): \(String(cString: strerror(errno)))") }
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, min(bytes.count - done, 1 << 30))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd); unlink(temp)
                throw PruningError("cannot save the resume state to \(temp): \(reason)")
            }
            done += n
        }
        let synced = fsync(fd) == 0
        let closed = close(fd) == 0
        guard synced, closed, rename(temp, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw PruningError("cannot save the resume state to \(url.path): \(reason)")
        }
    }
}
