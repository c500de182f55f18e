import Foundation

/// WinoGrande (winogrande_xl validation, `winogrande/winogrande_xl_validation.jsonl`) with lm-eval's
/// partial scoring: with i the position of "_" in the sentence, the two contexts are
/// `sentence[:i] + option1` and `sentence[:i] + option2`, and the one continuation
/// `" " + sentence[i+1:].strip()` is scored after each; gold = answer − 1; `acc` only (both continuations
/// are the same string, so there is no `acc_norm`).
public enum WinoGrande: ZeroShotTask {
    public static let name = "winogrande"
    public static let metrics: [ZeroShotMetric] = [.acc]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("winogrande/winogrande_xl_validation.jsonl", in: dataDirectory)
        let docs = try TaskFiles.jsonLines(url).map { _, o in
            let sentence = try o.string("sentence")
            let scalars = Array(sentence.unicodeScalars)
            guard let i = scalars.firstIndex(of: "_") else { throw o.error("the sentence has no \"_\" blank") }
            var head = String.UnicodeScalarView(), tail = String.UnicodeScalarView()
            head.append(contentsOf: scalars[..<i])
            tail.append(contentsOf: scalars[(i + 1)...])
            let continuation = " " + pythonStrip(String(tail))
            let options = [try o.string("option1"), try o.string("option2")]
            let answer = try o.string("answer")
            guard answer == "1" || answer == "2" else { throw o.error("field \"answer\" must be \"1\" or \"2\", got \"\(answer)\"") }
            return MultipleChoiceDocument(
                requests: options.map { LogLikelihoodRequest(context: String(head) + $0, continuation: continuation) },
                choices: options, gold: Int(answer)! - 1)
        }
        return (docs, false)
    }
}
