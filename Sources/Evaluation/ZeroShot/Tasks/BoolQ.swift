import Foundation

/// BoolQ (SuperGLUE validation, `boolq/val.jsonl`): context `passage\nQuestion: question?\nAnswer:`,
/// choices "no" / "yes", gold "yes" when `label` is true; `acc`.
public enum BoolQ: ZeroShotTask {
    public static let name = "boolq"
    public static let metrics: [ZeroShotMetric] = [.acc]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("boolq/val.jsonl", in: dataDirectory)
        let docs = try TaskFiles.jsonLines(url).map { _, o in
            MultipleChoiceDocument(
                context: try o.string("passage") + "\nQuestion: " + o.string("question") + "?\nAnswer:",
                choices: ["no", "yes"], gold: try o.bool("label") ? 1 : 0)
        }
        return (docs, false)
    }
}
