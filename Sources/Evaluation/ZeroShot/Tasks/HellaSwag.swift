import Foundation

/// HellaSwag (validation). lm-eval reads rowanz's `hellaswag_val.jsonl`; when `hellaswag/hellaswag_val.jsonl`
/// is in the data folder it is used with lm-eval's exact preprocessing:
///
///     context = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
///     choices = [preprocess(e) for e in endings], gold = int(label)
///
/// Otherwise the derived klosax copy (`hellaswag/klosax_hellaswag_val_full.txt.bz2`: 6 lines per document —
/// context, gold, four endings — already passed through klosax's own, different cleaning, with ctx_b not
/// capitalized) is read and lm-eval's `preprocess` applied on top. Scores on that copy are *approximate*
/// (`isApproximate`), not comparable to lm-eval's to the decimal. `acc`, `acc_norm`.
public enum HellaSwag: ZeroShotTask {
    public static let name = "hellaswag"
    public static let metrics: [ZeroShotMetric] = [.acc, .accNorm]
    public static let exactFile = "hellaswag/hellaswag_val.jsonl"
    public static let derivedFile = "hellaswag/klosax_hellaswag_val_full.txt.bz2"

    public static func load(dataDirectory: URL) throws -> (documents: [MultipleChoiceDocument], isApproximate: Bool) {
        if FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent(exactFile).path) {
            return (try loadOriginal(try TaskFiles.locate(exactFile, in: dataDirectory)), false)
        }
        return (try loadDerived(try TaskFiles.locate(derivedFile, in: dataDirectory)), true)
    }

    static func loadOriginal(_ url: URL) throws -> [MultipleChoiceDocument] {
        try TaskFiles.jsonLines(url).map { _, o in
            let endings = try o.array("endings").map { e -> String in
                guard let s = e.stringValue else { throw o.error("an ending is not a string: \(e.rendered())") }
                return preprocess(s)
            }
            guard endings.count >= 2 else { throw o.error("\"endings\" has \(endings.count) entries") }
            let labelValue = try o.field("label")
            guard let gold = labelValue.intValue ?? labelValue.stringValue.flatMap({ Int($0) }), endings.indices.contains(gold) else {
                throw o.error("field \"label\" is not an ending index: \(labelValue.rendered())")
            }
            let ctx = try o.string("ctx_a") + " " + pythonCapitalize(try o.string("ctx_b"))
            return MultipleChoiceDocument(context: preprocess(try o.string("activity_label") + ": " + ctx),
                                          choices: endings, gold: gold)
        }
    }

    static func loadDerived(_ url: URL) throws -> [MultipleChoiceDocument] {
        let lines = try TaskFiles.lines(url)
        guard !lines.isEmpty, lines.count % 6 == 0 else {
            throw ZeroShotDataError(file: url.path, line: lines.count, "\(lines.count) lines: expected 6 per document (context, label, 4 endings)")
        }
        return try stride(from: 0, to: lines.count, by: 6).map { i in
            guard let gold = Int(lines[i + 1]), (0..<4).contains(gold) else {
                throw ZeroShotDataError(file: url.path, line: i + 2, "expected the gold ending 0-3, got \"\(lines[i + 1].prefix(40))\"")
            }
            return MultipleChoiceDocument(context: preprocess(lines[i]),
                                          choices: lines[(i + 2)..<(i + 6)].map(preprocess), gold: gold)
        }
    }

    /// lm-eval's `preprocess`: strip; " [title]" → ". "; remove `\[.*?\]` (non-greedy, no newline inside);
    /// one left-to-right pass of "  " → " ".
    public static func preprocess(_ text: String) -> String {
        let t = pythonStrip(text).replacingOccurrences(of: " [title]", with: ". ", options: .literal)
        var out = String.UnicodeScalarView()
        let s = Array(t.unicodeScalars)
        var i = 0
        while i < s.count {
            if s[i] == "[" {
                var j = i + 1
                while j < s.count && s[j] != "]" && s[j] != "\n" { j += 1 }
                if j < s.count && s[j] == "]" { i = j + 1; continue }
            }
            out.append(s[i])
            i += 1
        }
        return String(out).replacingOccurrences(of: "  ", with: " ", options: .literal)
    }

    /// Python's `str.capitalize()`: the first character upper-cased, all the rest lower-cased.
    public static func pythonCapitalize(_ s: String) -> String {
        guard let first = s.first else { return s }
        return first.uppercased() + s.dropFirst().lowercased()
    }
}
