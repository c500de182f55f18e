import Foundation

/// RTE as lm-eval's `rte` (GLUE validation, `rte/glue_rte_validation.jsonl`): context
/// `sentence1\nQuestion: sentence2 True or False?\nAnswer:`, choices "True" / "False", gold = label
/// (0 = entailment → "True"); `acc`.
public enum RTE: ZeroShotTask {
    public static let name = "rte"
    public static let metrics: [ZeroShotMetric] = [.acc]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("rte/glue_rte_validation.jsonl", in: dataDirectory)
        let docs = try TaskFiles.jsonLines(url).map { _, o in
            let label = try o.int("label")
            guard label == 0 || label == 1 else { throw o.error("field \"label\" must be 0 or 1, got \(label)") }
            return MultipleChoiceDocument(
                context: try o.string("sentence1") + "\nQuestion: " + o.string("sentence2") + " True or False?\nAnswer:",
                choices: ["True", "False"], gold: label)
        }
        return (docs, false)
    }
}

/// lm-eval's `sglue_rte`: the same prompt on the SuperGLUE file (`rte/superglue_rte_val.jsonl`,
/// premise / hypothesis, label "entailment" | "not_entailment").
public enum SuperGLUERTE: ZeroShotTask {
    public static let name = "sglue_rte"
    public static let metrics: [ZeroShotMetric] = [.acc]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("rte/superglue_rte_val.jsonl", in: dataDirectory)
        let docs = try TaskFiles.jsonLines(url).map { _, o in
            let label = try o.string("label")
            guard let gold = ["entailment", "not_entailment"].firstIndex(of: label) else {
                throw o.error("field \"label\" must be \"entailment\" or \"not_entailment\", got \"\(label)\"")
            }
            return MultipleChoiceDocument(
                context: try o.string("premise") + "\nQuestion: " + o.string("hypothesis") + " True or False?\nAnswer:",
                choices: ["True", "False"], gold: gold)
        }
        return (docs, false)
    }
}
