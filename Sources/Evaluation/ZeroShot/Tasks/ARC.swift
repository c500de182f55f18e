import Foundation

/// The AI2 question format shared by ARC and OpenBookQA:
/// `{"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}`; gold = the position of
/// `answerKey` (stripped) among the choices' labels.
enum AI2Questions {
    static func read(_ url: URL, context: (String) -> String) throws -> [MultipleChoiceDocument] {
        try TaskFiles.jsonLines(url).map { _, o in
            let question = try o.field("question")
            let stem = try o.string("stem", in: question)
            let choices = try o.array("choices", in: question)
            guard choices.count >= 2 else { throw o.error("\"choices\" has \(choices.count) entries, needs at least 2") }
            let texts = try choices.map { try o.string("text", in: $0) }
            let labels = try choices.map { try o.string("label", in: $0) }
            let key = pythonStrip(try o.string("answerKey"))
            guard let gold = labels.firstIndex(of: key) else {
                throw o.error("answerKey \"\(key)\" is not one of the labels \(labels)")
            }
            return MultipleChoiceDocument(context: context(stem), choices: texts, gold: gold)
        }
    }
}

/// ARC-Easy (test, `arc_easy/ARC-Easy-Test.jsonl`): context `Question: stem\nAnswer:`; `acc`, `acc_norm`.
public enum ARCEasy: ZeroShotTask {
    public static let name = "arc_easy"
    public static let metrics: [ZeroShotMetric] = [.acc, .accNorm]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("arc_easy/ARC-Easy-Test.jsonl", in: dataDirectory)
        return (try AI2Questions.read(url) { "Question: " + $0 + "\nAnswer:" }, false)
    }
}

/// ARC-Challenge (test, `arc_challenge/ARC-Challenge-Test.jsonl`): as ARC-Easy.
public enum ARCChallenge: ZeroShotTask {
    public static let name = "arc_challenge"
    public static let metrics: [ZeroShotMetric] = [.acc, .accNorm]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("arc_challenge/ARC-Challenge-Test.jsonl", in: dataDirectory)
        return (try AI2Questions.read(url) { "Question: " + $0 + "\nAnswer:" }, false)
    }
}
