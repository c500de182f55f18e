import Foundation
import JSON

/// Readers for the local text sources the project uses. Every reader accepts a plain or a gzip-compressed
/// file (detected by its first bytes, not its name) and requires UTF-8.
public enum TextReader {
    /// The most content bytes (after decompression) any reader accepts from one file: 1 GiB, twice the
    /// largest text the protocols use (WikiText-103 train, a decompressed C4 shard). More is refused with
    /// an error instead of being read into memory.
    public static let maxBytes = 1 << 30

    /// The documents of a JSON-lines file: for each non-blank line, which must hold one JSON object, the
    /// string value of `field`. Blank lines (only spaces, tabs, CR) are skipped; line numbers in errors count
    /// every physical line from 1. The file is streamed, so only the extracted strings stay in memory.
    ///
    /// - Throws: `DatasetError` for a missing or unreadable file, corrupt gzip data, invalid UTF-8, a line
    ///   that is not a JSON object, or an object without `field` or whose `field` is not a string.
    public static func jsonLines(at url: URL, field: String = "text", maxBytes: Int = maxBytes) throws -> [String] {
        let stream = try ByteStream(url: url, limit: maxBytes)
        let path = stream.path
        var documents: [String] = []
        try forEachLine(in: stream) { lineNumber, line in
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
            // Decoding first gives a precise message for bad bytes; the JSON parser's would be vague.
            _ = try decodeUTF8(line, path: path, firstLine: lineNumber)
            let object: JSONValue
            do {
                object = try line.withUnsafeBytes { try JSONValue.parse($0) }
            } catch let e as JSONSyntaxError {
                throw DatasetError(.badJSON, "\(path): line \(lineNumber): invalid JSON: \(e.reason) at byte \(e.offset) of the line")
            }
            guard case .object(let members) = object else {
                throw DatasetError(.badJSON, "\(path): line \(lineNumber): expected a JSON object, found \(object.kindDescription)")
            }
            guard let value = object[field] else {
                let keys = Set(members.map(\.key)).sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                throw DatasetError(.missingField,
                    "\(path): line \(lineNumber): no field \"\(field)\" (the object has \(keys.isEmpty ? "no fields" : keys))")
            }
            guard case .string(let text) = value else {
                throw DatasetError(.missingField,
                    "\(path): line \(lineNumber): field \"\(field)\" is \(value.kindDescription), not a string")
            }
            documents.append(text)
        }
        return documents
    }

    /// The documents of a C4-style shard (`c4-train.00000-of-01024.json.gz` and the like): JSON lines whose
    /// `text` field is the document. Same rules as `jsonLines(at:field:)` with `field` = `"text"`.
    public static func c4Shard(at url: URL) throws -> [String] {
        try jsonLines(at: url, field: "text")
    }

    /// A whole file as text, byte for byte: no newline translation, a UTF-8 byte-order mark (if any) kept.
    public static func plainText(at url: URL, maxBytes: Int = maxBytes) throws -> String {
        let stream = try ByteStream(url: url, limit: maxBytes)
        let bytes = try stream.readAll()
        return try decodeUTF8(bytes[...], path: stream.path)
    }

    /// The rows of a WikiText raw file (`wiki.test.raw` and its siblings) exactly as the Hugging Face
    /// `wikitext` dataset (`wikitext-2-raw-v1`, `wikitext-103-raw-v1`) holds them.
    ///
    /// Definition (the dataset's loader iterates over the file opened as UTF-8 text in Python's universal-
    /// newline mode): the file is split into lines after `\r\n` and `\r` are translated to `\n`; every line
    /// is one row; a row keeps its line including the trailing `\n` when the line has at least one character
    /// that is not whitespace by Python's `str.isspace`, and is the empty string otherwise. A last line
    /// without a terminator is a row too; an empty file has no rows.
    public static func wikiTextRows(at url: URL, maxBytes: Int = maxBytes) throws -> [String] {
        let stream = try ByteStream(url: url, limit: maxBytes)
        let bytes = try stream.readAll()
        // Validate once for a precise error; the per-line conversions below then cannot fail.
        _ = try decodeUTF8(bytes[...], path: stream.path)
        var rows: [String] = []
        var line: [UInt8] = []
        var i = 0
        func emit() {
            let text = String(decoding: line, as: UTF8.self)
            rows.append(text.unicodeScalars.allSatisfy(isPythonWhitespace) ? "" : text)
            line.removeAll(keepingCapacity: true)
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x0A || b == 0x0D {
                line.append(0x0A)
                emit()
                i += (b == 0x0D && i + 1 < bytes.count && bytes[i + 1] == 0x0A) ? 2 : 1
            } else {
                line.append(b)
                i += 1
            }
        }
        if !line.isEmpty { emit() }
        return rows
    }

    /// The WikiText evaluation string (the Wanda / SparseGPT perplexity protocol): `wikiTextRows(at:)`
    /// joined with `"\n\n"`, as `"\n\n".join(dataset["text"])` builds it.
    public static func wikiTextEvaluationString(at url: URL) throws -> String {
        try wikiTextRows(at: url).joined(separator: "\n\n")
    }
}

/// Python's `str.isspace` for one character: bidirectional class WS, B or S, or general category Zs.
/// (Swift's `Character.isWhitespace` differs: it excludes U+001C–U+001F, which Python counts as space.)
func isPythonWhitespace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
        return true
    default:
        return false
    }
}
