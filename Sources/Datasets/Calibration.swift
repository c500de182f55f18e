import Foundation
import SafeTensors
import Tensor

/// A (rows, columns) matrix of token ids given from outside, e.g. the int64 tensor `input_ids` of a
/// calibration-tokens safetensors file, used as calibration samples as is.
///
/// The caller reads the file (the SafeTensors module) and hands over its shape and values; this type only
/// checks them. Ids must lie in 0...Int32.max (the calibration hash covers them as int32).
public struct TokenMatrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    /// Row-major ids, (rows, columns).
    public let values: [Int]
    /// Where the matrix came from, e.g. `"/path/calib.safetensors:input_ids"`.
    public let source: String

    /// - Throws: `DatasetError` when `shape` is not 2-D, does not match `values.count`, or an id is
    ///   negative or above Int32.max.
    public init<T: BinaryInteger>(shape: [Int], values: [T], source: String) throws {
        guard shape.count == 2 else {
            throw DatasetError(.badTokenMatrix, "\(source): token ids must be a 2-D (nsamples, seqlen) matrix, got shape \(shape)")
        }
        let product = shape[0].multipliedReportingOverflow(by: shape[1])
        guard shape[0] >= 0, shape[1] >= 0, !product.overflow, product.partialValue == values.count else {
            throw DatasetError(.badTokenMatrix, "\(source): shape \(shape) does not match \(formatCount(values.count)) values")
        }
        var ids = [Int]()
        ids.reserveCapacity(values.count)
        for (k, v) in values.enumerated() {
            guard v >= 0, v <= T(exactly: Int32.max) ?? v else {
                let (r, c) = shape[1] > 0 ? (k / shape[1], k % shape[1]) : (0, 0)
                throw DatasetError(.badTokenMatrix, "\(source): token id \(v) at row \(r), column \(c) is not in 0...\(Int32.max)")
            }
            ids.append(Int(v))
        }
        self.rows = shape[0]
        self.columns = shape[1]
        self.values = ids
        self.source = source
    }

    /// Row `i`, `columns` ids.
    public func row(_ i: Int) -> ArraySlice<Int> { values[(i * columns)..<((i + 1) * columns)] }
}

/// Where calibration samples come from; each case has its own sampling protocol (see `Calibration.sample`).
public enum CalibrationSource: Sendable {
    /// Separate documents (a C4 shard, a JSONL file): the C4 protocol.
    case documents([String], name: String)
    /// One continuous text (WikiText-2, PTB, any text file): the plain-text protocol.
    case text(String, name: String)
    /// A fixed matrix of token ids: used as is.
    case tokens(TokenMatrix)

    /// A C4-style shard (`.json` / `.json.gz`, JSON lines with a `text` field), sampled by the C4 protocol.
    public static func c4Shard(_ url: URL) throws -> CalibrationSource {
        .documents(try TextReader.c4Shard(at: url), name: "C4 shard \(url.path)")
    }

    /// The `field` strings of a JSON-lines file as documents, sampled by the C4 protocol.
    public static func jsonLines(_ url: URL, field: String = "text") throws -> CalibrationSource {
        .documents(try TextReader.jsonLines(at: url, field: field), name: "JSONL \(url.path) (field \"\(field)\")")
    }

    /// A whole text file, byte for byte, sampled by the plain-text protocol (tokenized once, as a whole).
    public static func plainText(_ url: URL) throws -> CalibrationSource {
        .text(try TextReader.plainText(at: url), name: "text \(url.path)")
    }

    /// A WikiText raw file as SparseGPT calibrates on it: its rows joined with `"\n\n"`
    /// (`TextReader.wikiTextEvaluationString`), sampled by the plain-text protocol.
    public static func wikiText(_ url: URL) throws -> CalibrationSource {
        .text(try TextReader.wikiTextEvaluationString(at: url), name: "WikiText \(url.path)")
    }

    /// A calibration-tokens file: a safetensors file holding an integer tensor `tensor` of shape
    /// (nsamples, seqlen), used as is, so a run can use exactly the token ids another tool used.
    public static func tokensFile(_ url: URL, tensor: String = "input_ids") throws -> CalibrationSource {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch let e as SafeTensorsError {
            throw DatasetError(.badTokenMatrix, e.description)
        }
        guard let info = file.info(tensor) else {
            throw DatasetError(.badTokenMatrix, "\(url.path): no tensor '\(tensor)' (has \(file.tensorNames.joined(separator: ", ")))")
        }
        guard !info.dtype.isFloatingPoint else {
            throw DatasetError(.badTokenMatrix, "\(url.path): tensor '\(tensor)' is \(info.dtype.rawValue), token ids must be integers")
        }
        return .tokens(try TokenMatrix(shape: info.shape, values: try file.int64s(tensor), source: "\(url.path):\(tensor)"))
    }

    /// A short name of the source for messages.
    public var name: String {
        switch self {
        case .documents(_, let name), .text(_, let name): return name
        case .tokens(let m): return m.source
        }
    }
}

/// The calibration samples of a run, with what the run record needs to identify them.
public struct CalibrationSet: Sendable, Equatable {
    /// (nsamples, seqlen) token ids.
    public let samples: [[Int]]
    /// How the samples were drawn: protocol, source, counts and seed, one line.
    public let source: String
    /// `Calibration.fingerprint(samples)`: FNV-1a 64 of the ids, 16 lowercase hex digits.
    public let hash: String

    public init(samples: [[Int]], source: String) {
        self.samples = samples
        self.source = source
        self.hash = Calibration.fingerprint(samples)
    }

    public var nsamples: Int { samples.count }
    public var seqlen: Int { samples.first?.count ?? 0 }
    /// The samples concatenated row after row, (nsamples · seqlen,).
    public var flatTokens: [Int] { samples.flatMap { $0 } }
}

/// The seeded calibration sampler.
///
/// Defaults (as in Wanda and SparseGPT): `nsamples` = 128, `seqlen` = min(2048, max_position_embeddings)
/// (never the full context blindly: 131,072 for LLaMA-3 would need tens of GiB of activations), seed 0.
/// Every random draw goes through `SeededGenerator`, so the same source, sizes, seed and tokenizer give the
/// same samples on every machine; they cannot equal Python's `random` draws, so to compare with a PyTorch
/// reference exactly, feed both the same ids (`CalibrationSource.tokens`).
public enum Calibration {
    public static let defaultSampleCount = 128
    public static let defaultSeed: UInt64 = 0
    /// How many documents the C4 protocol may draw for one sample before it gives up.
    public static let defaultMaxDrawsPerSample = 10_000

    /// min(2048, `maxPositionEmbeddings`).
    public static func defaultSequenceLength(maxPositionEmbeddings: Int) -> Int {
        min(2048, maxPositionEmbeddings)
    }

    /// Draws `nsamples` windows of `seqlen` tokens from `source` by its protocol:
    /// - `.documents`: `sampleDocuments` (C4 protocol);
    /// - `.text`: `sampleText` (plain-text protocol);
    /// - `.tokens`: `takeRows` (used as is; `seed`, `encode` and `bosTokenID` are not used).
    /// - Parameters:
    ///   - encode: text → the token ids the model sees, as transformers' `tokenizer(text)` gives them
    ///     (the special tokens the tokenizer's post-processor adds, e.g. the LLaMA-2 family's BOS, and
    ///     no others: SmolLM2's adds none).
    ///   - bosTokenID: an extra id put before every tokenized document or text; nil (what llm-prune
    ///     passes) when `encode` already adds what the tokenizer adds.
    public static func sample(_ source: CalibrationSource,
                              nsamples: Int = defaultSampleCount, seqlen: Int, seed: UInt64 = defaultSeed,
                              encode: (String) throws -> [Int], bosTokenID: Int?) throws -> CalibrationSet {
        switch source {
        case .documents(let documents, let name):
            return try sampleDocuments(documents, name: name, nsamples: nsamples, seqlen: seqlen, seed: seed,
                                       encode: encode, bosTokenID: bosTokenID)
        case .text(let text, let name):
            return try sampleText(text, name: name, nsamples: nsamples, seqlen: seqlen, seed: seed,
                                  encode: encode, bosTokenID: bosTokenID)
        case .tokens(let matrix):
            return try takeRows(of: matrix, nsamples: nsamples, seqlen: seqlen)
        }
    }

    /// The C4 protocol (Wanda's and SparseGPT's `get_c4`): for each sample, draw a document uniformly at
    /// random until one tokenizes ([bosTokenID] + encode(document)) to more than `seqlen` tokens, then take the
    /// window of `seqlen` tokens at a start drawn uniformly from [0, count − seqlen − 1]. One generator
    /// seeded with `seed` makes all draws, in that order.
    ///
    /// A document found too short is remembered and not tokenized again (its draws still count, so the
    /// sequence of draws is unchanged).
    /// - Throws: `DatasetError` when there are no documents, when every document is too short, or when
    ///   `maxDrawsPerSample` draws for one sample found no long enough document.
    public static func sampleDocuments(_ documents: [String], name: String,
                                       nsamples: Int = defaultSampleCount, seqlen: Int, seed: UInt64 = defaultSeed,
                                       encode: (String) throws -> [Int], bosTokenID: Int?,
                                       maxDrawsPerSample: Int = defaultMaxDrawsPerSample) throws -> CalibrationSet {
        try checkSizes(name: name, nsamples: nsamples, seqlen: seqlen)
        guard maxDrawsPerSample >= 1 else {
            throw DatasetError(.invalidArgument, "\(name): maxDrawsPerSample must be at least 1, got \(maxDrawsPerSample)")
        }
        guard !documents.isEmpty else { throw DatasetError(.emptySource, "\(name): no documents") }
        var rng = SeededGenerator(seed: seed)
        var tooShort = [Bool](repeating: false, count: documents.count)
        var tooShortCount = 0
        var longestShort = 0
        var samples: [[Int]] = []
        samples.reserveCapacity(nsamples)
        for s in 0..<nsamples {
            var draws = 0
            while true {
                if tooShortCount == documents.count {
                    throw DatasetError(.tooSmall,
                        "\(name): none of its \(formatCount(documents.count)) documents tokenizes to more than \(formatCount(seqlen)) tokens " +
                        "(longest: \(formatCount(longestShort)))")
                }
                if draws == maxDrawsPerSample {
                    throw DatasetError(.tooSmall,
                        "\(name): \(formatCount(draws)) random draws for sample \(s + 1) found no document of more than " +
                        "\(formatCount(seqlen)) tokens (\(formatCount(tooShortCount)) of \(formatCount(documents.count)) documents are shorter)")
                }
                let d = rng.nextInt(below: documents.count)
                draws += 1
                if tooShort[d] { continue }
                var ids: [Int] = []
                if let bosTokenID { ids.append(bosTokenID) }
                ids.append(contentsOf: try encode(documents[d]))
                if ids.count > seqlen {
                    let start = rng.nextInt(below: ids.count - seqlen)
                    samples.append(Array(ids[start..<(start + seqlen)]))
                    break
                }
                tooShort[d] = true
                tooShortCount += 1
                longestShort = max(longestShort, ids.count)
            }
        }
        let description = "C4 protocol: \(nsamples) × \(seqlen) tokens from \(formatCount(documents.count)) documents of \(name), seed \(seed)"
        return CalibrationSet(samples: samples, source: description)
    }

    /// The plain-text protocol (SparseGPT's for WikiText-2 and PTB): tokenize the whole text once
    /// ([bosTokenID] + encode(text)), then `sampleTokenStream`.
    public static func sampleText(_ text: String, name: String,
                                  nsamples: Int = defaultSampleCount, seqlen: Int, seed: UInt64 = defaultSeed,
                                  encode: (String) throws -> [Int], bosTokenID: Int?) throws -> CalibrationSet {
        try checkSizes(name: name, nsamples: nsamples, seqlen: seqlen)
        guard !text.isEmpty else { throw DatasetError(.emptySource, "\(name): the calibration text is empty") }
        var ids: [Int] = []
        if let bosTokenID { ids.append(bosTokenID) }
        ids.append(contentsOf: try encode(text))
        return try sampleTokenStream(ids, name: name, nsamples: nsamples, seqlen: seqlen, seed: seed)
    }

    /// `nsamples` windows of `seqlen` tokens of `tokens`, each at a start drawn uniformly from
    /// [0, tokens.count − seqlen − 1] (SparseGPT's `random.randint(0, N - seqlen - 1)`). Windows may overlap
    /// and repeat; the stream needs at least seqlen + 1 tokens.
    public static func sampleTokenStream(_ tokens: [Int], name: String,
                                         nsamples: Int = defaultSampleCount, seqlen: Int,
                                         seed: UInt64 = defaultSeed) throws -> CalibrationSet {
        try checkSizes(name: name, nsamples: nsamples, seqlen: seqlen)
        guard tokens.count > seqlen else {
            throw DatasetError(.tooSmall,
                "\(name): calibration text has \(formatCount(tokens.count)) tokens; a window of \(formatCount(seqlen)) " +
                "needs at least \(formatCount(seqlen + 1)) (0 windows possible, \(nsamples) requested)")
        }
        var rng = SeededGenerator(seed: seed)
        var samples: [[Int]] = []
        samples.reserveCapacity(nsamples)
        for _ in 0..<nsamples {
            let start = rng.nextInt(below: tokens.count - seqlen)
            samples.append(Array(tokens[start..<(start + seqlen)]))
        }
        let description = "text protocol: \(nsamples) × \(seqlen) tokens from \(formatCount(tokens.count)) tokens of \(name), seed \(seed)"
        return CalibrationSet(samples: samples, source: description)
    }

    /// The first `nsamples` rows of `matrix`, each cut to its first `seqlen` columns.
    /// - Throws: `DatasetError` when the matrix has fewer rows or columns than requested, or (when
    ///   `vocabularySize` is given) holds an id ≥ `vocabularySize`.
    public static func takeRows(of matrix: TokenMatrix, nsamples: Int = defaultSampleCount, seqlen: Int,
                                vocabularySize: Int? = nil) throws -> CalibrationSet {
        let name = matrix.source
        try checkSizes(name: name, nsamples: nsamples, seqlen: seqlen)
        guard matrix.rows >= nsamples else {
            throw DatasetError(.tooSmall, "\(name): \(formatCount(matrix.rows)) rows of token ids, \(formatCount(nsamples)) samples requested")
        }
        guard matrix.columns >= seqlen else {
            throw DatasetError(.tooSmall, "\(name): rows of \(formatCount(matrix.columns)) token ids, seqlen \(formatCount(seqlen)) requested")
        }
        var samples: [[Int]] = []
        samples.reserveCapacity(nsamples)
        for r in 0..<nsamples {
            let row = matrix.row(r).prefix(seqlen)
            if let vocabularySize, let c = row.firstIndex(where: { $0 >= vocabularySize }) {
                throw DatasetError(.badTokenMatrix,
                    "\(name): token id \(row[c]) at row \(r), column \(c - row.startIndex) is outside the vocabulary of \(formatCount(vocabularySize))")
            }
            samples.append(Array(row))
        }
        let description = "tokens \(name): rows 0..<\(nsamples) of \(matrix.rows), columns 0..<\(seqlen) of \(matrix.columns)"
        return CalibrationSet(samples: samples, source: description)
    }

    /// The calibration hash: FNV-1a 64 over every id, in row-major order, as a 4-byte little-endian int32
    /// (ids above Int32.max are truncated to their low 32 bits), as 16 lowercase hex digits. It identifies
    /// the ids only; the shape is recorded separately.
    public static func fingerprint(_ samples: [[Int]]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for row in samples {
            for id in row {
                var v = UInt32(truncatingIfNeeded: id)
                for _ in 0..<4 {
                    h ^= UInt64(v & 0xFF)
                    h = h &* 0x0000_0100_0000_01B3
                    v >>= 8
                }
            }
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private static func checkSizes(name: String, nsamples: Int, seqlen: Int) throws {
        guard nsamples >= 1 else { throw DatasetError(.invalidArgument, "\(name): nsamples must be at least 1, got \(nsamples)") }
        guard seqlen >= 1 else { throw DatasetError(.invalidArgument, "\(name): seqlen must be at least 1, got \(seqlen)") }
    }
}
