import Foundation

/// PIQA (validation, `piqa/valid.jsonl` + `piqa/valid-labels.lst`, aligned by line): context
/// `Question: goal\nAnswer:`, choices sol1 / sol2 (whitespace kept), gold = the label; `acc`, `acc_norm`.
public enum PIQA: ZeroShotTask {
    public static let name = "piqa"
    public static let metrics: [ZeroShotMetric] = [.acc, .accNorm]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("piqa/valid.jsonl", in: dataDirectory)
        let labelsURL = try TaskFiles.locate("piqa/valid-labels.lst", in: dataDirectory)
        let rows = try TaskFiles.jsonLines(url)
        let labels = try TaskFiles.lines(labelsURL)
        guard labels.count == rows.count else {
            throw ZeroShotDataError(file: labelsURL.path, "\(labels.count) labels for the \(rows.count) documents of \(url.lastPathComponent)")
        }
        let docs = try zip(rows, labels.enumerated()).map { row, label -> MultipleChoiceDocument in
            guard let gold = Int(pythonStrip(label.element)), gold == 0 || gold == 1 else {
                throw ZeroShotDataError(file: labelsURL.path, line: label.offset + 1, "label must be 0 or 1, got \"\(label.element)\"")
            }
            let o = row.object
            return MultipleChoiceDocument(context: "Question: " + (try o.string("goal")) + "\nAnswer:",
                                          choices: [try o.string("sol1"), try o.string("sol2")], gold: gold)
        }
        return (docs, false)
    }
}
