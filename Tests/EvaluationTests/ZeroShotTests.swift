import Foundation
import Testing
import JSON
import Tokenizers
import Llama
import Evaluation
import Pruning
import Runs
import TestSupport

private let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
/// `../shared/data/zeroshot` (tests read the data there; nothing of it is copied into the repository).
private let zeroShotData = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/zeroshot")
private let stories260K = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/models/stories260K")
private let smolLM2 = packageRoot.deletingLastPathComponent()
    .appendingPathComponent("shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")

private func requireShared(_ url: URL) throws -> URL {
    try #require(FileManager.default.fileExists(atPath: url.path), "missing shared data \(url.path): tests need ../shared beside the repository")
    return url
}

/// A committed fixture of scripts/zeroshot_reference.py (transformers, float32); a missing one fails.
private func fixture(_ name: String) throws -> JSONValue {
    let url = packageRoot.appendingPathComponent("Fixtures/zeroshot/\(name)")
    try #require(FileManager.default.fileExists(atPath: url.path), "missing fixture \(url.path)")
    return try JSONValue.parse(try Data(contentsOf: url))
}

private func ints(_ v: JSONValue?) -> [Int] { v?.arrayValue?.compactMap(\.intValue) ?? [] }

private final class Stories {
    nonisolated(unsafe) static let shared = Stories()
    let model: LlamaModel
    let tokenizer: Tokenizer
    private init() {
        model = try! LlamaCheckpoint(directory: stories260K).loadModel()
        tokenizer = try! Tokenizer(directory: stories260K)
    }
}

/// Writes `files` (relative path → contents) into a fresh temporary data folder.
private func dataFolder(_ files: [String: String]) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zeroshot-\(UUID().uuidString)")
    for (path, text) in files {
        let url = dir.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
    return dir
}

private func loadError(_ task: any ZeroShotTask.Type, _ dir: URL) -> String? {
    do { _ = try task.load(dataDirectory: dir); return nil } catch { return String(describing: error) }
}

@Suite(.serialized) struct ZeroShotAgreementTests {
    /// Prompts, tokens, log-likelihoods, is-greedy and predictions against transformers on the first
    /// documents of every task, in three setups: lm-eval 0.4 (BOS), lm-eval 0.3 / Wanda (no special tokens),
    /// and a 64-token window (left truncation cuts every context and the shared prefix).
    @Test(arguments: ["stories260K.json", "stories260K-no-special-tokens.json", "stories260K-max-length-64.json"])
    func stories260KMatchesTransformers(name: String) throws {
        _ = try requireShared(zeroShotData)
        _ = try requireShared(stories260K)
        // A small budget so documents are split over several batches and padded.
        try expectAgreement(fixture: try fixture(name), model: Stories.shared.model, tokenizer: Stories.shared.tokenizer,
                            batchTokens: 700, minimumCompared: 30)
    }

    /// SmolLM2-135M read from the shared GGUF (our dequantization and GGUF tokenizer) against transformers on
    /// its float32 conversion of the same file: the first 2 documents of every task.
    @Test func smolLM2FromGGUFMatchesTransformers() throws {
        _ = try requireShared(zeroShotData)
        let (checkpoint, tokenizer) = try ModelInput.open(try requireShared(smolLM2))
        try expectAgreement(fixture: try fixture("SmolLM2-135M.json"), model: try checkpoint.loadModel(), tokenizer: tokenizer,
                            batchTokens: 2048, minimumCompared: 40)
    }

    /// Prompts, tokens, log-likelihoods (within 1e-3 absolute), is-greedy and predictions of `model` against a
    /// fixture of scripts/zeroshot_reference.py.
    private func expectAgreement(fixture f: JSONValue, model: LlamaModel, tokenizer: Tokenizer, batchTokens: Int,
                                 minimumCompared: Int) throws {
        let specialValue: Bool? = f["special_tokens"]?.boolValue
        let special = try #require(specialValue as Bool?)
        let maxLength = try #require(f["max_length"]?.intValue)
        let encoder = RequestEncoder(tokenizer: tokenizer, addSpecialTokens: special)
        let scorer = LogLikelihoodScorer(model: model, maxLength: maxLength, batchTokens: batchTokens)
        let tasks = try #require(f["tasks"]?.objectValue)
        #expect(tasks.count >= 4)
        var compared = 0
        for (taskName, docsValue) in tasks {
            let task = try #require(ZeroShotTasks.named(taskName), "unknown task \(taskName) in fixture")
            let refDocs = try #require(docsValue.arrayValue)
            let docs = Array(try task.load(dataDirectory: zeroShotData).documents.prefix(refDocs.count))
            #expect(docs.count == refDocs.count)
            let encoded = try docs.map { try $0.requests.map(encoder.encode) }
            let scores = try scorer.score(encoded)
            for (d, ref) in refDocs.enumerated() {
                let reqs = try #require(ref["requests"]?.arrayValue)
                #expect(ref["gold"]?.intValue == docs[d].gold, "\(taskName) doc \(d): gold")
                #expect(reqs.count == docs[d].requests.count)
                var refLL: [Double] = []
                for (c, r) in reqs.enumerated() where c < docs[d].requests.count {
                    #expect(r["context"]?.stringValue == docs[d].requests[c].context, "\(taskName) doc \(d) choice \(c): context")
                    #expect(r["continuation"]?.stringValue == docs[d].requests[c].continuation, "\(taskName) doc \(d) choice \(c): continuation")
                    #expect(ints(r["context_tokens"]) == encoded[d][c].context, "\(taskName) doc \(d) choice \(c): context tokens")
                    #expect(ints(r["continuation_tokens"]) == encoded[d][c].continuation, "\(taskName) doc \(d) choice \(c): continuation tokens")
                    let want = try #require(r["loglikelihood"]?.doubleValue)
                    let got = scores[d][c].value
                    // abs(NaN − x) < tol is false, so a NaN fails here.
                    #expect(abs(got - want) < 1e-3, "\(taskName) doc \(d) choice \(c): \(got) vs \(want)")
                    #expect(scores[d][c].isGreedy == r["is_greedy"]?.boolValue, "\(taskName) doc \(d) choice \(c): is_greedy")
                    refLL.append(want)
                    compared += 1
                }
                #expect(ZeroShotScoring.argmax(scores[d].map(\.value)) == ZeroShotScoring.argmax(refLL), "\(taskName) doc \(d): prediction")
            }
        }
        #expect(compared >= minimumCompared)
    }

    /// The shared-prefix forward equals the plain full-sequence forward at every continuation position.
    @Test func prefixCachedHiddenStatesEqualFullForward() throws {
        _ = try requireShared(stories260K)
        let m = Stories.shared.model
        let prefixes = [[1, 5, 9, 200, 31, 7, 7], [1, 44, 3]]
        let rows = [[12, 13, 14], [15], [16, 17, 18, 19], [20, 21]]
        let owner: [Int?] = [0, 0, 1, nil]
        let rope = m.rope(length: 16)
        let kv = try m.keyValuePrefix(prefixes, rope: rope)
        let h = try m.hiddenStates(continuing: rows, prefixRows: owner, prefix: kv, rope: rope)
        let c = m.configuration.hiddenSize, s = 4
        var worst: Float = 0
        for (r, row) in rows.enumerated() {
            let full = (owner[r].map { prefixes[$0] } ?? []) + row
            let ref = try m.hiddenStates([full])
            let offset = full.count - row.count
            for i in 0..<row.count {
                for j in 0..<c {
                    let a = h.data[(r * s + i) * c + j], b = ref.data[(offset + i) * c + j]
                    let d = abs(a - b)
                    worst = maxOrNaN(worst, d)
                }
            }
        }
        #expect(worst < 1e-4, "max |difference| \(worst)")
    }

    /// `computePrecision = .bfloat16` reaches every forward the evaluation runs (full hidden states, the
    /// prefix-cached path of zero-shot scoring, the fused NLL): each moves by bf16's rounding, and the
    /// prefix path agrees with the full bf16 forward far more closely than either agrees with float32.
    @Test func bfloat16ComputeReachesEveryEvaluationForward() throws {
        _ = try requireShared(stories260K)
        let m32 = Stories.shared.model
        var m16 = m32
        m16.computePrecision = .bfloat16
        let prefix = [1, 5, 9, 200, 31, 7, 7], row = [12, 13, 14, 15]
        let full = prefix + row
        let h32 = try m32.hiddenStates([full]), h16 = try m16.hiddenStates([full])
        let rope = m16.rope(length: 16)
        let kv = try m16.keyValuePrefix([prefix], rope: rope)
        let p16 = try m16.hiddenStates(continuing: [row], prefixRows: [0], prefix: kv, rope: rope)
        let c = m16.configuration.hiddenSize
        var scale: Float = 0, bf16Shift: Float = 0, prefixGap: Float = 0
        for i in 0..<row.count {
            for j in 0..<c {
                let r = (prefix.count + i) * c + j
                scale = maxOrNaN(scale, abs(h32.data[r]))
                let d = abs(h16.data[r] - h32.data[r]), g = abs(p16.data[i * c + j] - h16.data[r])
                bf16Shift = maxOrNaN(bf16Shift, d)
                prefixGap = maxOrNaN(prefixGap, g)
            }
        }
        #expect(bf16Shift > 1e-4 * scale && bf16Shift < 5e-2 * scale, "bf16 moved hidden states by \(bf16Shift) (scale \(scale))")
        #expect(prefixGap < 0.1 * bf16Shift, "prefix path \(prefixGap) from the full bf16 forward, bf16 shift \(bf16Shift)")
        let nll32 = try m32.negativeLogLikelihood([full]), nll16 = try m16.negativeLogLikelihood([full])
        #expect(nll16 != nll32 && abs(nll16 - nll32) < 1e-2 * abs(nll32), "NLL \(nll16) in bf16, \(nll32) in float32")
    }

    /// Batch size changes padding and grouping only: the scores agree to float32 rounding.
    @Test func scoresDoNotDependOnBatching() throws {
        _ = try requireShared(zeroShotData)
        let docs = Array(try WinoGrande.load(dataDirectory: zeroShotData).documents.prefix(6))
            + Array(try ARCEasy.load(dataDirectory: zeroShotData).documents.prefix(4))
        let encoder = RequestEncoder(tokenizer: Stories.shared.tokenizer)
        let encoded = try docs.map { try $0.requests.map(encoder.encode) }
        let one = try LogLikelihoodScorer(model: Stories.shared.model, batchTokens: 1).score(encoded)
        let many = try LogLikelihoodScorer(model: Stories.shared.model, batchTokens: 100_000).score(encoded)
        for (a, b) in zip(one.joined(), many.joined()) {
            #expect(abs(a.value - b.value) < 1e-4)
            #expect(a.isGreedy == b.isGreedy)
        }
        #expect(one.joined().count == many.joined().count && one.joined().count > 6 * 2)
    }
}

@Suite struct ZeroShotRequestTests {
    @Test func trailingSpacesOfTheContextMoveToTheContinuation() throws {
        _ = try requireShared(stories260K)
        let e = RequestEncoder(tokenizer: Stories.shared.tokenizer)
        let moved = try e.encode(LogLikelihoodRequest(context: "Answer: ", continuation: "yes"))
        let plain = try e.encode(LogLikelihoodRequest(context: "Answer:", continuation: " yes"))
        #expect(moved == plain)
        // The continuation's tokens are the whole string's beyond the context's count (here with BOS first).
        let t = Stories.shared.tokenizer
        #expect(plain.context == t.encode("Answer:"))
        #expect(plain.continuation == Array(t.encode("Answer: yes").dropFirst(plain.context.count)))
        #expect(plain.context.first == t.bosTokenID)
        let bare = try RequestEncoder(tokenizer: t, addSpecialTokens: false).encode(LogLikelihoodRequest(context: "Answer:", continuation: " yes"))
        #expect(bare.context == Array(plain.context.dropFirst()))
    }

    /// The README's worked examples (../shared/data/zeroshot/README.md §2-§7).
    @Test func workedExamplesOfTheSpecification() throws {
        _ = try requireShared(zeroShotData)
        let boolq = try BoolQ.load(dataDirectory: zeroShotData).documents
        #expect(boolq.count == 3270)
        #expect(boolq[0].requests[0].context.hasPrefix("Ethanol fuel -- All biomass goes through"))
        #expect(boolq[0].requests[0].context.hasSuffix("than producing gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:"))
        #expect(boolq[0].requests.map(\.continuation) == [" no", " yes"] && boolq[0].gold == 0)

        let rte = try RTE.load(dataDirectory: zeroShotData).documents
        #expect(rte.count == 277)
        #expect(rte[0].requests[0].context == "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.\nQuestion: Christopher Reeve had an accident. True or False?\nAnswer:")
        #expect(rte[0].requests.map(\.continuation) == [" True", " False"] && rte[0].gold == 1)
        #expect(try SuperGLUERTE.load(dataDirectory: zeroShotData).documents.map(\.gold) == rte.map(\.gold))

        let (hella, approximate) = try HellaSwag.load(dataDirectory: zeroShotData)
        #expect(approximate)
        #expect(hella.count == 10042)
        #expect(hella[0].requests[0].context == "Roof shingle removal: A man is sitting on a roof. he")
        #expect(hella[0].choices == ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."])
        #expect(hella[0].gold == 3)
        #expect([0, 1, 2, 3].map { g in hella.filter { $0.gold == g }.count } == [2515, 2485, 2584, 2458])

        let wino = try WinoGrande.load(dataDirectory: zeroShotData).documents
        #expect(wino.count == 1267)
        #expect(wino[0].requests.map(\.context) == ["Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria"])
        #expect(wino[0].requests.map(\.continuation) == [" always got the easier cases.", " always got the easier cases."])
        #expect(wino[0].gold == 1)

        let arc = try ARCEasy.load(dataDirectory: zeroShotData).documents
        #expect(arc.count == 2376)
        #expect(arc[0].requests[0].context == "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:")
        #expect(arc[0].choices.map(\.unicodeScalars.count) == [59, 54, 50, 43] && arc[0].gold == 0)
        #expect(try ARCChallenge.load(dataDirectory: zeroShotData).documents.count == 1172)

        let obqa = try OpenBookQA.load(dataDirectory: zeroShotData).documents
        #expect(obqa.count == 500)
        #expect(obqa[0].requests[0].context == "A person wants to start saving money so that they can afford a nice vacation at the end of the year. After looking over their budget and expenses, they decide the best way to save money is to")
        #expect(obqa[0].requests.map(\.continuation) == [" make more phone calls", " quit eating lunch out", " buy less with monopoly money", " have lunch with friends"])
        #expect(obqa[0].gold == 1)

        let piqa = try PIQA.load(dataDirectory: zeroShotData).documents
        #expect(piqa.count == 1838)
        #expect(piqa[1].choices.contains("replace drawer with bobby pin "))
        #expect(piqa.filter { $0.gold == 1 }.count == 928)
    }

    @Test func hellaSwagPreprocessingIsLmEvals() {
        // strip → " [title]" → ". " → remove [header] → one pass of "  " → " " (three spaces become two).
        #expect(HellaSwag.preprocess("  A [header] b [title]c   d \n") == "A b. c  d")
        #expect(HellaSwag.preprocess("keep [open\nbracket]") == "keep [open\nbracket]")
        #expect(HellaSwag.preprocess("x [a [b] y") == "x y")
        #expect(HellaSwag.pythonCapitalize("hELLO wORLD") == "Hello world")
    }

    @Test func originalHellaSwagFileIsReadExactly() throws {
        let line = #"{"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain", "label": 3, "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."], "source_id": "activitynet~v_-JhWjGDPHMY"}"#
        let dir = try dataFolder(["hellaswag/hellaswag_val.jsonl": line + "\n"])
        let (docs, approximate) = try HellaSwag.load(dataDirectory: dir)
        #expect(!approximate)
        #expect(docs.count == 1 && docs[0].gold == 3)
        #expect(docs[0].requests[0].context == "Roof shingle removal: A man is sitting on a roof. He")
        #expect(docs[0].requests[3].continuation == " starts pulling up roofing on a roof.")
    }
}

@Suite struct ZeroShotMetricTests {
    @Test func accAndAccNormPickTheFirstMaximumAndNormalizeByCharacters() {
        let docs = [
            MultipleChoiceDocument(context: "c", choices: ["ab", "abcd"], gold: 1),      // ll −2, −3: acc picks 0; per char −1, −0.75: 1
            MultipleChoiceDocument(context: "c", choices: ["x", "y"], gold: 0),          // tie −1, −1: first index wins
            // "é" (U+00E9) is one code point, two UTF-8 bytes: per character −1/1 < −1.5/2 picks 1 (per byte it would pick 0).
            MultipleChoiceDocument(context: "c", choices: ["\u{E9}", "ee"], gold: 1),
        ]
        let ll = [[-2.0, -3.0], [-1.0, -1.0], [-1.0, -1.5]].map { $0.map { LogLikelihood(value: $0, isGreedy: false) } }
        let r = ZeroShotScoring.result(task: "t", metrics: [.acc, .accNorm], documents: docs, scores: ll, isApproximate: false, seconds: 0)
        #expect(r.value(.acc) == 1.0 / 3.0)
        #expect(r.value(.accNorm) == 1.0)
        #expect(r.details.map(\.prediction) == [0, 0, 0])
    }

    @Test func standardErrorIsSampleStdOverRootN() throws {
        // [1, 0, 1, 1]: mean 0.75, sample variance 0.25 (= 0.75 / 3), stderr sqrt(0.25 / 4) = 0.25.
        let s = try #require(ZeroShotScoring.meanStandardError([1, 0, 1, 1]))
        #expect(abs(s - 0.25) < 1e-12)
        #expect(ZeroShotScoring.meanStandardError([1]) == nil)
    }
}

@Suite struct ZeroShotDataErrorTests {
    @Test func malformedLineIsNamedByFileAndLine() throws {
        let good = #"{"question": "q", "passage": "p", "idx": 0, "label": true}"#
        let dir = try dataFolder(["boolq/val.jsonl": good + "\n" + #"{"question": "q", "passage": "p""# + "\n"])
        let e = try #require(loadError(BoolQ.self, dir))
        #expect(e.contains("boolq/val.jsonl:2:") && !e.contains("\n"), "\(e)")
        let dir2 = try dataFolder(["boolq/val.jsonl": good + "\n" + #"{"question": "q", "label": true}"# + "\n"])
        let e2 = try #require(loadError(BoolQ.self, dir2))
        #expect(e2.contains("val.jsonl:2:") && e2.contains("passage"), "\(e2)")
        let dir3 = try dataFolder(["boolq/val.jsonl": #"{"question": "q", "passage": "p", "label": "yes"}"# + "\n"])
        #expect(try #require(loadError(BoolQ.self, dir3)).contains("val.jsonl:1:"))
    }

    @Test func missingFileIsNamed() throws {
        let dir = try dataFolder(["readme.txt": "x"])
        for task in ZeroShotTasks.all {
            let e = try #require(loadError(task, dir), "\(task.name) loaded from an empty folder")
            #expect(e.contains(dir.path) && e.contains("no such file"), "\(e)")
        }
    }

    @Test func badLabelsAndCountsAreNamed() throws {
        let piqa = try dataFolder(["piqa/valid.jsonl": #"{"goal": "g", "sol1": "a", "sol2": "b"}"# + "\n", "piqa/valid-labels.lst": "0\n1\n"])
        #expect(try #require(loadError(PIQA.self, piqa)).contains("valid-labels.lst"))
        let piqa2 = try dataFolder(["piqa/valid.jsonl": #"{"goal": "g", "sol1": "a", "sol2": "b"}"# + "\n", "piqa/valid-labels.lst": "2\n"])
        #expect(try #require(loadError(PIQA.self, piqa2)).contains("valid-labels.lst:1:"))
        let arc = try dataFolder(["arc_easy/ARC-Easy-Test.jsonl": #"{"question": {"stem": "s", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]}, "answerKey": "E"}"# + "\n"])
        #expect(try #require(loadError(ARCEasy.self, arc)).contains("ARC-Easy-Test.jsonl:1: answerKey"))
        let hella = try dataFolder(["hellaswag/klosax_hellaswag_val_full.txt.bz2": "ctx\n1\na\nb\nc\n"])
        #expect(try #require(loadError(HellaSwag.self, hella)).contains("klosax_hellaswag_val_full.txt.bz2:5:"))
        let wino = try dataFolder(["winogrande/winogrande_xl_validation.jsonl": #"{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}"# + "\n"])
        #expect(try #require(loadError(WinoGrande.self, wino)).contains("winogrande_xl_validation.jsonl:1:"))
    }

    @Test func unknownTaskNamesAreListed() {
        #expect(throws: ZeroShotDataError.self) { try ZeroShotOptions.parseTasks("boolq,bogus") }
        #expect((try? ZeroShotOptions.parseTasks("all")) == ZeroShotTasks.paperTasks)
    }
}
