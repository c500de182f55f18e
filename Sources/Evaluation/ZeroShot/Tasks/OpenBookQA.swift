import Foundation

/// OpenBookQA main (test, `openbookqa/test.jsonl`): context = the bare question stem; `acc`, `acc_norm`.
public enum OpenBookQA: ZeroShotTask {
    public static let name = "openbookqa"
    public static let metrics: [ZeroShotMetric] = [.acc, .accNorm]

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        let url = try TaskFiles.locate("openbookqa/test.jsonl", in: dataDirectory)
        return (try AI2Questions.read(url) { $0 }, false)
    }
}
