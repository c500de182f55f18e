import Foundation
import JSON
import Testing
import Tokenizers

/// Test-side failures with a one-line description (missing shared data, malformed fixtures).
struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

enum Paths {
    /// The folder holding Package.swift, found by walking up from this source file.
    static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
            url.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: "/nonexistent-package-root")
    }()

    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    static let fixtures = packageRoot.appendingPathComponent("Fixtures/tokenizers")
    static let wikiTest = shared.appendingPathComponent("text/wikitext-2-raw/wiki.test.raw")

    /// A path relative to the package root (as in manifest.json).
    static func resolve(_ relative: String) -> URL {
        packageRoot.appendingPathComponent(relative).standardizedFileURL
    }

    /// Reads a file, failing with a clear message when it is missing.
    static func read(_ url: URL, what: String) throws -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw FixtureError("\(what) missing at \(url.path) (shared data lives in ../shared; fixtures come from scripts/make_tokenizer_fixtures.py)")
        }
        return try Data(contentsOf: url)
    }

    static func readText(_ url: URL, what: String) throws -> String {
        let data = try read(url, what: what)
        guard let s = String(data: data, encoding: .utf8) else { throw FixtureError("\(url.path) is not UTF-8") }
        return s
    }
}

/// CPU time consumed so far by the calling thread.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// 64-bit FNV-1a over the ids, each as 4 little-endian bytes (as the fixture script computes it).
func fnv1a64(ids: [Int]) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for id in ids {
        let v = UInt32(truncatingIfNeeded: id)
        for k in 0..<4 {
            h ^= UInt64((v >> (8 * UInt32(k))) & 0xFF)
            h = h &* 0x100_0000_01B3
        }
    }
    return hex16(h)
}

func fnv1a64<S: Sequence>(bytes: S) -> String where S.Element == UInt8 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01B3
    }
    return hex16(h)
}

private func hex16(_ h: UInt64) -> String {
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

enum WikiText {
    /// wiki.test.raw split on "\n" (without the empty piece after the final newline), loaded once.
    static func lines() throws -> [String] {
        let raw = try Paths.readText(Paths.wikiTest, what: "WikiText-2 test (wiki.test.raw)")
        var lines = raw.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// The evaluation string of ../shared/README.md: each line with its newline if it has a
    /// non-whitespace character, else the empty string; joined with "\n\n".
    static func evaluationString(_ lines: [String]) -> String {
        lines.map { line in
            line.unicodeScalars.contains { !$0.properties.isWhitespace } ? line + "\n" : ""
        }.joined(separator: "\n\n")
    }
}

/// A fixture JSON file as `JSONValue`.
func loadFixtureJSON(_ relative: String) throws -> JSONValue {
    let url = Paths.fixtures.appendingPathComponent(relative)
    return try JSONValue.parse(Paths.read(url, what: "fixture \(relative)"))
}

extension JSONValue {
    /// An array of integers, or nil.
    var intArray: [Int]? {
        guard let a = arrayValue else { return nil }
        let ints = a.compactMap { $0.intValue }
        return ints.count == a.count ? ints : nil
    }
    var stringArray: [String]? {
        guard let a = arrayValue else { return nil }
        let s = a.compactMap { $0.stringValue }
        return s.count == a.count ? s : nil
    }
}


/// Readable form of a string for failure messages (escapes control and non-ASCII scalars).
func visible(_ s: String, limit: Int = 160) -> String {
    var out = ""
    for u in s.unicodeScalars.prefix(limit) {
        if u.value >= 0x20 && u.value < 0x7F { out.unicodeScalars.append(u) } else { out += "\\u{\(String(u.value, radix: 16))}" }
    }
    return s.unicodeScalars.count > limit ? out + "…" : out
}

/// One tokenizer of manifest.json.
struct FixtureSubject: CustomStringConvertible, Sendable {
    let name: String
    let directory: String
    let tokenizerFNV: String
    let expected: String
    var description: String { name }

    static func all() throws -> [FixtureSubject] {
        guard let items = try loadFixtureJSON("manifest.json").arrayValue else { throw FixtureError("manifest.json is not an array") }
        return try items.map { item in
            guard let name = item["name"]?.stringValue, let dir = item["directory"]?.stringValue,
                  let fnv = item["tokenizer_fnv"]?.stringValue, let exp = item["expected"]?.stringValue else {
                throw FixtureError("manifest.json entry malformed")
            }
            return FixtureSubject(name: name, directory: dir, tokenizerFNV: fnv, expected: exp)
        }
    }

    static func named(_ name: String) throws -> FixtureSubject {
        guard let s = try all().first(where: { $0.name == name }) else { throw FixtureError("no \(name) in manifest.json") }
        return s
    }

    var url: URL { Paths.resolve(directory) }

    /// Loads the tokenizer after checking its tokenizer.json is the file the fixture was made from.
    func load() throws -> Tokenizer {
        let file = url.appendingPathComponent("tokenizer.json")
        let bytes = try Paths.read(file, what: "\(name) tokenizer.json")
        let actual = fnv1a64(bytes: bytes)
        guard actual == tokenizerFNV else {
            throw FixtureError("\(file.path) has FNV \(actual), fixtures were made from \(tokenizerFNV): rerun scripts/make_tokenizer_fixtures.py")
        }
        return try Tokenizer(directory: url)
    }
}
