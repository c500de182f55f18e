import Datasets
import Foundation
import Testing

@Suite struct EvaluationWindowsTests {
    @Test func countsAndRemainder() throws {
        // BOS + 10 tokens = 11; seqlen 4 → 2 windows, 3 tokens dropped.
        let w = try EvaluationWindows(text: numberText(10), source: "t", seqlen: 4, encode: numberEncoder, bosTokenID: 99)
        #expect(w.tokens == [99, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(w.count == 2)
        #expect(w.droppedTokenCount == 3)
        #expect(Array(w[0]) == [99, 0, 1, 2])
        #expect(Array(w[1]) == [3, 4, 5, 6])
        #expect(w.windows.map(Array.init) == [[99, 0, 1, 2], [3, 4, 5, 6]])

        let exact = try EvaluationWindows(tokens: Array(0..<12), seqlen: 4, source: "s")
        #expect(exact.count == 3 && exact.droppedTokenCount == 0)
        // The reference figures: 815,070 tokens at seqlen 512 are 1,591 windows; at 256, 3,183.
        let big = try EvaluationWindows(tokens: Array(repeating: 0, count: 815_070), seqlen: 512, source: "s")
        #expect(big.count == 1591 && big.droppedTokenCount == 815_070 - 1591 * 512)
        #expect(try EvaluationWindows(tokens: big.tokens, seqlen: 256, source: "s").count == 3183)
    }

    @Test func errors() throws {
        let short = try #require(datasetError {
            try EvaluationWindows(text: numberText(5), source: "text x.txt", seqlen: 512, encode: numberEncoder, bosTokenID: 1)
        })
        #expect(short.kind == "tooSmall")
        #expect(short.message == "text x.txt: 6 tokens, fewer than one evaluation window of 512")
        #expect(datasetError { try EvaluationWindows(tokens: [1, 2, 3], seqlen: 1, source: "s") }?.message
                == "s: evaluation seqlen must be at least 2, got 1")
        #expect(datasetError {
            try EvaluationWindows(text: "", source: "e", seqlen: 2, encode: numberEncoder, bosTokenID: 1)
        }?.message == "e: the evaluation text is empty")
    }

    @Test func textDatasetIsTheWholeFileWithOneBOS() throws {
        let dir = try TempDir()
        let url = try dir.write("eval.txt", "0 1 2\n3 4\n\n5 6 7 8 9")
        var seen: [String] = []
        let w = try EvaluationWindows(dataset: .text, file: url, seqlen: 3,
                                      encode: { seen.append($0); return $0.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { Int($0) ?? -1 } },
                                      bosTokenID: 42)
        #expect(seen == ["0 1 2\n3 4\n\n5 6 7 8 9"])  // tokenized once, whole
        #expect(w.tokens == [42, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(w.count == 3 && w.droppedTokenCount == 2)
        #expect(w.source == "text \(url.path)")
    }

    @Test func wikitextDatasetUsesTheEvaluationString() throws {
        let url = try fixture("wikitext-edge.raw")
        var seen: [String] = []
        let w = try EvaluationWindows(dataset: .wikitext2, file: url, seqlen: 2,
                                      encode: { seen.append($0); return Array(repeating: 7, count: $0.unicodeScalars.count) },
                                      bosTokenID: 1)
        #expect(seen == [try TextReader.wikiTextEvaluationString(at: url)])
        #expect(seen[0].hasPrefix("\n\n = Title = \n\n\n\n\n\n\na line with CRLF\n"))
        #expect(w.tokens.count == 1 + seen[0].unicodeScalars.count)
        #expect(EvaluationDataset(rawValue: "wikitext2") == .wikitext2 && EvaluationDataset(rawValue: "text") == .text)
    }
}
