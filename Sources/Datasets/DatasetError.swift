// The Datasets module: local text sources (C4-style JSON lines, JSONL, plain text, WikiText raw), the seeded
// calibration sampler and evaluation windows. Tokenization is supplied by the caller as a closure, so this
// module reads and slices text but never depends on a particular tokenizer.

/// Why reading a text source, sampling calibration windows or cutting evaluation windows failed.
///
/// `description` is always one line naming the file (or source) and the problem, ready to print.
public struct DatasetError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The broad class of the failure, for callers that branch on it (tests, exit codes).
    public enum Kind: String, Sendable {
        case fileNotFound, unreadable, badGzip, invalidUTF8, badJSON, missingField
        case emptySource, tooSmall, badTokenMatrix, invalidArgument
        /// More bytes than `TextReader.maxBytes` (or the limit given).
        case tooLarge
    }

    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        // One line, whatever the underlying system or parser message held.
        self.description = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// `1234567` → `"1,234,567"`: counts in error messages and descriptions, independent of the locale.
func formatCount(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return n < 0 ? "-" + out : out
}
