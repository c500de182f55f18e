import SafeTensors
import Datasets
import Foundation
import Testing

@Suite struct CalibrationTests {
    static let bos = 1_000_000

    @Test func defaults() {
        #expect(Calibration.defaultSampleCount == 128)
        #expect(Calibration.defaultSeed == 0)
        #expect(Calibration.defaultSequenceLength(maxPositionEmbeddings: 512) == 512)
        #expect(Calibration.defaultSequenceLength(maxPositionEmbeddings: 131_072) == 2048)
    }

    /// Expected values: FNV-1a 64 over int32 little-endian, computed by scripts/make_datasets_fixtures.py.
    @Test func fingerprintMatchesPython() {
        #expect(Calibration.fingerprint([]) == "cbf29ce484222325")
        #expect(Calibration.fingerprint([[1, 2, 3]]) == "fd1f0f4381eb0395")
        #expect(Calibration.fingerprint([[1], [2, 3]]) == "fd1f0f4381eb0395")
        #expect(Calibration.fingerprint([[0, 511], [65536, 2_147_483_647]]) == "09fe47334a8f3598")
        #expect(CalibrationSet(samples: [[1, 2, 3]], source: "x").hash == "fd1f0f4381eb0395")
    }

    // MARK: tokens file

    @Test func sharedCalibrationTokensFile() throws {
        let url = try sharedFile("calibration/stories260K-wikitext2valid-128x512-seed0.safetensors")
        guard case .tokens(let matrix) = try CalibrationSource.tokensFile(url) else {
            Issue.record("tokensFile did not give a token matrix"); return
        }
        #expect(matrix.rows == 128 && matrix.columns == 512)

        let all = try Calibration.sample(.tokens(matrix), nsamples: 128, seqlen: 512, encode: { _ in [] }, bosTokenID: nil)
        #expect(all.nsamples == 128 && all.seqlen == 512)
        #expect(all.hash == "ba59b60838c63217")
        #expect(Array(all.samples[0].prefix(8)) == [419, 358, 286, 278, 294, 285, 282, 412])
        #expect(all.flatTokens == matrix.values)

        let part = try Calibration.takeRows(of: matrix, nsamples: 4, seqlen: 100, vocabularySize: 512)
        #expect(part.hash == "18309fbc1479c653")
        #expect(part.samples.allSatisfy { $0.count == 100 })

        #expect(datasetError { try Calibration.takeRows(of: matrix, nsamples: 129, seqlen: 512) }?.message
                == "\(url.path):input_ids: 128 rows of token ids, 129 samples requested")
        #expect(datasetError { try Calibration.takeRows(of: matrix, nsamples: 8, seqlen: 1024) }?.message
                == "\(url.path):input_ids: rows of 512 token ids, seqlen 1,024 requested")
        let vocab = try #require(datasetError { try Calibration.takeRows(of: matrix, nsamples: 128, seqlen: 512, vocabularySize: 300) })
        #expect(vocab.kind == "badTokenMatrix")
        #expect(vocab.message == "\(url.path):input_ids: token id 419 at row 0, column 0 is outside the vocabulary of 300")
    }

    @Test func tokenMatrixValidation() throws {
        #expect(datasetError { try TokenMatrix(shape: [2, 2, 1], values: [1, 2, 3, 4], source: "m") }?.message
                == "m: token ids must be a 2-D (nsamples, seqlen) matrix, got shape [2, 2, 1]")
        #expect(datasetError { try TokenMatrix(shape: [2, 3], values: [1, 2, 3, 4], source: "m") }?.message
                == "m: shape [2, 3] does not match 4 values")
        #expect(datasetError { try TokenMatrix(shape: [2, 2], values: [Int64(1), 2, -100, 4], source: "m") }?.message
                == "m: token id -100 at row 1, column 0 is not in 0...2147483647")
        #expect(datasetError { try TokenMatrix(shape: [1, 1], values: [Int64(1) << 40], source: "m") }?.kind == "badTokenMatrix")
        let m = try TokenMatrix(shape: [2, 3], values: [Int32(1), 2, 3, 4, 5, 6], source: "m")
        #expect(Array(m.row(1)) == [4, 5, 6])
        #expect(try Calibration.takeRows(of: m, nsamples: 1, seqlen: 2).samples == [[1, 2]])
    }

    // MARK: plain-text protocol

    @Test func textProtocolIsSeededAndWindowsAreInBounds() throws {
        // Tokens are [BOS, 0, 1, …, 999]: a window's content tells exactly where it starts.
        let text = numberText(1000)
        let a = try Calibration.sample(.text(text, name: "numbers"), nsamples: 64, seqlen: 100, seed: 7,
                                       encode: numberEncoder, bosTokenID: Self.bos)
        let b = try Calibration.sample(.text(text, name: "numbers"), nsamples: 64, seqlen: 100, seed: 7,
                                       encode: numberEncoder, bosTokenID: Self.bos)
        let c = try Calibration.sample(.text(text, name: "numbers"), nsamples: 64, seqlen: 100, seed: 8,
                                       encode: numberEncoder, bosTokenID: Self.bos)
        #expect(a == b)
        #expect(a.samples != c.samples)
        #expect(a.hash != c.hash)
        #expect(a.source == "text protocol: 64 × 100 tokens from 1,001 tokens of numbers, seed 7")
        for w in a.samples {
            #expect(w.count == 100)
            // Position in the stream: BOS is 0, number k is k + 1.
            let start = w[0] == Self.bos ? 0 : w[0] + 1
            #expect(start >= 0 && start <= 1001 - 100 - 1)
            let stream = [Self.bos] + Array(0..<1000)
            #expect(w == Array(stream[start..<(start + 100)]))
        }
    }

    @Test func textProtocolStartRangeIsSparseGPTs() throws {
        // 13 tokens, seqlen 10: starts in [0, 13 − 10 − 1] = {0, 1, 2}; the last window (start 3) never.
        let set = try Calibration.sampleText(numberText(12), name: "t", nsamples: 400, seqlen: 10, seed: 1,
                                             encode: numberEncoder, bosTokenID: Self.bos)
        let starts = Set(set.samples.map { $0[0] == Self.bos ? 0 : $0[0] + 1 })
        #expect(starts == [0, 1, 2])
        // Exactly seqlen + 1 tokens: the one window at 0.
        let one = try Calibration.sampleText(numberText(10), name: "t", nsamples: 5, seqlen: 10, seed: 3,
                                             encode: numberEncoder, bosTokenID: Self.bos)
        #expect(one.samples == Array(repeating: [Self.bos] + Array(0..<9), count: 5))
        // Without a BOS the stream is the encoder's output alone.
        let noBOS = try Calibration.sampleText(numberText(11), name: "t", nsamples: 3, seqlen: 10, seed: 3,
                                               encode: numberEncoder, bosTokenID: nil)
        #expect(noBOS.samples == Array(repeating: Array(0..<10), count: 3))
    }

    @Test func textProtocolErrors() throws {
        let short = try #require(datasetError {
            try Calibration.sampleText(numberText(1233), name: "text data/small.txt", nsamples: 128, seqlen: 1234,
                                       encode: numberEncoder, bosTokenID: Self.bos)
        })
        #expect(short.kind == "tooSmall")
        #expect(short.message == "text data/small.txt: calibration text has 1,234 tokens; a window of 1,234 needs at least 1,235 (0 windows possible, 128 requested)")
        let empty = try #require(datasetError {
            try Calibration.sampleText("", name: "text e", seqlen: 4, encode: numberEncoder, bosTokenID: Self.bos)
        })
        #expect(empty.kind == "emptySource")
        #expect(empty.message == "text e: the calibration text is empty")
        #expect(datasetError { try Calibration.sampleTokenStream([1, 2, 3], name: "s", nsamples: 0, seqlen: 1) }?.message
                == "s: nsamples must be at least 1, got 0")
        #expect(datasetError { try Calibration.sampleTokenStream([1, 2, 3], name: "s", nsamples: 1, seqlen: 0) }?.kind
                == "invalidArgument")
    }

    @Test func plainTextFileSource() throws {
        let dir = try TempDir()
        let url = try dir.write("n.txt", numberText(50))
        let source = try CalibrationSource.plainText(url)
        #expect(source.name == "text \(url.path)")
        let set = try Calibration.sample(source, nsamples: 3, seqlen: 50, seed: 0, encode: numberEncoder, bosTokenID: Self.bos)
        #expect(set.samples == Array(repeating: [Self.bos] + Array(0..<49), count: 3))
    }

    // MARK: C4 protocol

    /// Document d of `docs` is "d·1000 … d·1000 + len(d) − 1", so a window tells which document it came from.
    static func documents(_ lengths: [Int]) -> [String] {
        lengths.enumerated().map { numberText($0.element, from: $0.offset * 1000) }
    }

    @Test func c4ProtocolTakesWindowsOfLongEnoughDocuments() throws {
        let lengths = [3, 40, 9, 25, 10, 60, 1, 0, 11]
        let docs = Self.documents(lengths)
        let seqlen = 10
        let a = try Calibration.sample(.documents(docs, name: "toy"), nsamples: 50, seqlen: seqlen, seed: 11,
                                       encode: numberEncoder, bosTokenID: Self.bos)
        let b = try Calibration.sampleDocuments(docs, name: "toy", nsamples: 50, seqlen: seqlen, seed: 11,
                                                encode: numberEncoder, bosTokenID: Self.bos)
        let c = try Calibration.sampleDocuments(docs, name: "toy", nsamples: 50, seqlen: seqlen, seed: 12,
                                                encode: numberEncoder, bosTokenID: Self.bos)
        #expect(a == b)
        #expect(a.samples != c.samples)
        #expect(a.source == "C4 protocol: 50 × 10 tokens from 9 documents of toy, seed 11")
        var used = Set<Int>()
        var starts = Set<Int>()
        for w in a.samples {
            #expect(w.count == seqlen)
            let firstNumber = try #require(w.first(where: { $0 != Self.bos }))
            let d = firstNumber / 1000
            used.insert(d)
            // [BOS] + encode(doc) must be MORE than seqlen tokens: lengths 10 (11 tokens) qualifies, 9 does not.
            #expect(lengths[d] + 1 > seqlen)
            let stream = [Self.bos] + Array((d * 1000)..<(d * 1000 + lengths[d]))
            let start = w[0] == Self.bos ? 0 : w[0] - d * 1000 + 1
            #expect(start <= stream.count - seqlen - 1)
            #expect(w == Array(stream[start..<(start + seqlen)]))
            if d == 4 { starts.insert(start) }
        }
        #expect(used == [1, 3, 4, 5, 8])
        // Document 4 has 11 tokens with BOS: its only start is 0.
        #expect(starts.isSubset(of: [0]))
    }

    @Test func c4ProtocolWithoutLongEnoughDocument() throws {
        let docs = Self.documents([3, 9, 5, 0])
        let e = try #require(datasetError {
            try Calibration.sampleDocuments(docs, name: "C4 shard data/tiny.json.gz", nsamples: 4, seqlen: 10,
                                            encode: numberEncoder, bosTokenID: Self.bos)
        })
        #expect(e.kind == "tooSmall")
        #expect(e.message == "C4 shard data/tiny.json.gz: none of its 4 documents tokenizes to more than 10 tokens (longest: 10)")
        // Without BOS, 10 words are 10 tokens: still not more than 10.
        #expect(datasetError {
            try Calibration.sampleDocuments(Self.documents([10]), name: "one", nsamples: 1, seqlen: 10,
                                            encode: numberEncoder, bosTokenID: nil)
        }?.message == "one: none of its 1 documents tokenizes to more than 10 tokens (longest: 10)")
        let none = try #require(datasetError {
            try Calibration.sampleDocuments([], name: "empty", seqlen: 10, encode: numberEncoder, bosTokenID: Self.bos)
        })
        #expect(none.kind == "emptySource")
        #expect(none.message == "empty: no documents")
    }

    @Test func c4ProtocolDrawBound() throws {
        // One long document among 2,000 short ones, and at most 2 draws per sample.
        let docs = Self.documents(Array(repeating: 2, count: 2000) + [50])
        var calls = 0
        let e = try #require(datasetError {
            try Calibration.sampleDocuments(docs, name: "sparse", nsamples: 1, seqlen: 10, seed: 0,
                                            encode: { calls += 1; return numberEncoder($0) }, bosTokenID: Self.bos,
                                            maxDrawsPerSample: 2)
        })
        #expect(e.kind == "tooSmall")
        #expect(e.message == "sparse: 2 random draws for sample 1 found no document of more than 10 tokens (2 of 2,001 documents are shorter)")
        #expect(calls == 2)
    }

    @Test func c4ProtocolFromShardFile() throws {
        // Toy tokenizer: one token per space-separated word, its id the word's length in characters.
        func wordLengths(_ s: String) -> [Int] {
            let words: [Substring] = s.split(separator: " ")
            return words.map { $0.count }
        }
        let set = try Calibration.sample(try CalibrationSource.c4Shard(try fixture("c4-mini.json.gz")), nsamples: 6,
                                         seqlen: 6, seed: 0, encode: wordLengths, bosTokenID: 0)
        // With BOS the documents are 4, 6, 8, 1 and 3 tokens: only the third is more than 6,
        // [0, 4, 8, 8, 3, 8, 1, 9], with starts 0 or 1.
        for w in set.samples {
            #expect([[0, 4, 8, 8, 3, 8], [4, 8, 8, 3, 8, 1]].contains(w))
        }
        #expect(set.source.hasPrefix("C4 protocol: 6 × 6 tokens from 5 documents of C4 shard "))
    }

    @Test func jsonlSourceUsesTheChosenField() throws {
        let dir = try TempDir()
        let url = try dir.write("d.jsonl", "{\"body\": \"\(numberText(30))\", \"text\": \"0\"}\n")
        let source = try CalibrationSource.jsonLines(url, field: "body")
        let set = try Calibration.sample(source, nsamples: 2, seqlen: 20, seed: 5, encode: numberEncoder, bosTokenID: nil)
        #expect(set.samples.allSatisfy { w in w == Array(w[0]..<(w[0] + 20)) && w[0] <= 30 - 20 - 1 })
        #expect(datasetError {
            try Calibration.sample(try CalibrationSource.jsonLines(url), nsamples: 1, seqlen: 20, encode: numberEncoder, bosTokenID: nil)
        }?.kind == "tooSmall")
    }
}

@Suite struct TokensFileTests {
    @Test func floatTensorIsRefusedByName() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("ids.safetensors")
        try SafeTensorsWriter.write([TensorEntry(name: "input_ids", dtype: .F32, shape: [1, 2], data: .floats([1, 2]))], to: url)
        #expect(throws: DatasetError.self) { try CalibrationSource.tokensFile(url) }
        let e = #expect(throws: DatasetError.self) { try CalibrationSource.tokensFile(url, tensor: "ids") }
        #expect(e?.description.contains("no tensor 'ids'") == true)
    }
}
