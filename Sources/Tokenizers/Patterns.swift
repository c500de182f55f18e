import Foundation
import JSON

/// A pattern that finds non-overlapping matches, leftmost first, as scalar index ranges.
/// This is the `Pattern` of `tokenizers`: a literal string or an Oniguruma regex.
public protocol SplitPattern: Sendable {
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>]
}

/// The split pattern of GPT-2 (also the `ByteLevel` pre-tokenizer's):
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
public let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

/// The split pattern of LLaMA-3 (and, with `\p{N}` instead of `\p{N}{1,3}`, of Qwen2).
public let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

/// Qwen2's split pattern: LLaMA-3's with single digits.
public let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

public enum Patterns {
    /// A matcher for an Oniguruma regex. The GPT-2, LLaMA-3 and Qwen2 patterns get hand-written
    /// matchers (NSRegularExpression is several times slower); any other pattern, or any pattern when
    /// `specialized` is false, runs on ICU through NSRegularExpression.
    public static func regex(_ pattern: String, specialized: Bool = true) throws -> SplitPattern {
        if specialized {
            if pattern == gpt2Pattern { return GPT2Matcher() }
            if pattern == llama3Pattern { return LLaMA3Matcher(maxDigits: 3) }
            if pattern == qwen2Pattern { return LLaMA3Matcher(maxDigits: 1) }
        }
        return try ICURegexMatcher(onigurumaPattern: pattern)
    }

    /// A matcher for a literal string (`tokenizers` escapes it into a regex, which is the same thing).
    public static func literal(_ string: String) -> SplitPattern {
        LiteralMatcher(pattern: Array(string.unicodeScalars))
    }

    /// A pattern as `tokenizers` serializes it: `{"String": "..."}` or `{"Regex": "..."}`.
    static func fromJSON(_ json: JSONValue?, stage: String) throws -> SplitPattern {
        if let s = json?["String"]?.stringValue { return literal(s) }
        if let r = json?["Regex"]?.stringValue {
            do { return try regex(r) } catch { throw TokenizerError.invalid(stage, "bad regex \"\(r)\": \(error)") }
        }
        throw TokenizerError.invalid(stage, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}")
    }
}

struct LiteralMatcher: SplitPattern {
    let pattern: [Unicode.Scalar]
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] { findAll(pattern, in: text) }
}

/// Whether `s` is in `[^\s\p{L}\p{N}]`.
@inline(__always)
private func isOther(_ s: Unicode.Scalar) -> Bool {
    !CharacterClass.isWhitespace(s) && !CharacterClass.isLetter(s) && !CharacterClass.isNumber(s)
}

/// End of the whitespace run that starts at `i` (`\s+(?!\S)` then `\s+`): the whole run if it reaches
/// the end of the text, else the run minus its last scalar (which the next token takes as its prefix),
/// else (a run of one) that one scalar.
@inline(__always)
private func whitespaceRunMatchEnd(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int, _ runEnd: Int) -> Int {
    if runEnd == t.count { return runEnd }
    return runEnd - 1 > i ? runEnd - 1 : runEnd
}

@inline(__always)
private func runEnd(_ t: UnsafeBufferPointer<Unicode.Scalar>, from i: Int, _ pred: (Unicode.Scalar) -> Bool) -> Int {
    var j = i
    while j < t.count, pred(t[j]) { j += 1 }
    return j
}

/// A hand-written matcher: every scalar starts a match, so the matches tile the text, each one found from
/// where the previous ended.
protocol ScanningSplitPattern: SplitPattern {
    /// End of the match starting at `i` (> i).
    func matchEnd(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int) -> Int
}

extension ScanningSplitPattern {
    public func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        text.withUnsafeBufferPointer { t in
            var out: [Range<Int>] = []
            var i = 0
            while i < t.count {
                let end = matchEnd(t, i)
                out.append(i..<end)
                i = end
            }
            return out
        }
    }
}

/// Hand-written matcher equivalent to `gpt2Pattern` under Oniguruma's leftmost-first alternation.
public struct GPT2Matcher: ScanningSplitPattern {
    public init() {}

    /// End of the match starting at `i`; every scalar starts some alternative, so a match always exists.
    @inline(__always)
    func matchEnd(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int) -> Int {
        let n = t.count
        let c = t[i]
        if c == "'", i + 1 < n {
            let d = t[i + 1]
            if d == "s" || d == "t" || d == "m" || d == "d" { return i + 2 }
            if i + 2 < n {
                let e = t[i + 2]
                if (d == "r" && e == "e") || (d == "v" && e == "e") || (d == "l" && e == "l") { return i + 3 }
            }
        }
        // ` ?X+` for X in L, N, other: the optional space only helps when X follows it.
        let j = (c == " " && i + 1 < n) ? i + 1 : i
        let x = t[j]
        if CharacterClass.isLetter(x) { return runEnd(t, from: j + 1, CharacterClass.isLetter) }
        if CharacterClass.isNumber(x) { return runEnd(t, from: j + 1, CharacterClass.isNumber) }
        if isOther(x) { return runEnd(t, from: j + 1, isOther) }
        // Here c is whitespace (a space followed by whitespace, or other whitespace).
        return whitespaceRunMatchEnd(t, i, runEnd(t, from: i, CharacterClass.isWhitespace))
    }
}

/// Hand-written matcher equivalent to `llama3Pattern` (maxDigits 3) or `qwen2Pattern` (maxDigits 1).
public struct LLaMA3Matcher: ScanningSplitPattern {
    public let maxDigits: Int

    public init(maxDigits: Int) { self.maxDigits = maxDigits }

    /// Simple case folding of the letters in the contractions: ASCII, plus U+017F LONG S, which folds to s.
    @inline(__always)
    private func fold(_ s: Unicode.Scalar) -> Unicode.Scalar {
        if s.value >= 0x41, s.value <= 0x5A { return Unicode.Scalar(UInt8(s.value + 32)) }
        if s.value == 0x17F { return "s" }
        return s
    }

    @inline(__always)
    func matchEnd(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int) -> Int {
        let n = t.count
        let c = t[i]
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == "'", i + 1 < n {
            let d = fold(t[i + 1])
            if d == "s" || d == "t" || d == "m" || d == "d" { return i + 2 }
            if i + 2 < n {
                let e = fold(t[i + 2])
                if (d == "r" && e == "e") || (d == "v" && e == "e") || (d == "l" && e == "l") { return i + 3 }
            }
        }
        let cIsLetter = CharacterClass.isLetter(c)
        let cIsNumber = CharacterClass.isNumber(c)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !cIsLetter, !cIsNumber, c != "\r", c != "\n", i + 1 < n, CharacterClass.isLetter(t[i + 1]) {
            return runEnd(t, from: i + 2, CharacterClass.isLetter)
        }
        if cIsLetter { return runEnd(t, from: i + 1, CharacterClass.isLetter) }
        // \p{N}{1,3}
        if cIsNumber {
            var j = i + 1
            while j < n, j - i < maxDigits, CharacterClass.isNumber(t[j]) { j += 1 }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let j = (c == " " && i + 1 < n && isOther(t[i + 1])) ? i + 1 : i
        if isOther(t[j]) {
            let k = runEnd(t, from: j + 1, isOther)
            return runEnd(t, from: k) { $0 == "\r" || $0 == "\n" }
        }
        // c is whitespace. `\s*[\r\n]+`: backtracking from the whole run ends the match just after the
        // run's last \r or \n.
        let e = runEnd(t, from: i, CharacterClass.isWhitespace)
        var p = e - 1
        while p >= i {
            if t[p] == "\r" || t[p] == "\n" { return p + 1 }
            p -= 1
        }
        return whitespaceRunMatchEnd(t, i, e)
    }
}

/// Any other Oniguruma pattern, run on ICU. The two engines agree on the syntax these patterns use
/// (`\p{..}`, `(?i:..)`, lookahead, possessive quantifiers) except `\s`, which ICU defines as
/// `[\t\n\f\r\p{Z}]` and Oniguruma as White_Space (adding U+000B and U+0085): `\s`/`\S` are rewritten to
/// `\p{White_Space}`/`\P{White_Space}`.
public final class ICURegexMatcher: SplitPattern, @unchecked Sendable {
    // NSRegularExpression is immutable and documented thread-safe for matching.
    let regex: NSRegularExpression

    public init(onigurumaPattern pattern: String) throws {
        regex = try NSRegularExpression(pattern: ICURegexMatcher.translate(pattern), options: [])
    }

    static func translate(_ pattern: String) -> String {
        var out = ""
        var it = pattern.unicodeScalars.makeIterator()
        while let c = it.next() {
            guard c == "\\" else { out.unicodeScalars.append(c); continue }
            guard let d = it.next() else { out.unicodeScalars.append(c); break }
            switch d {
            case "s": out += #"\p{White_Space}"#
            case "S": out += #"\P{White_Space}"#
            default: out.unicodeScalars.append(c); out.unicodeScalars.append(d)
            }
        }
        return out
    }

    public func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        if text.isEmpty { return [] }
        let string = makeString(text)
        // scalarAt[u] = index of the scalar that starts at UTF-16 offset u.
        var scalarAt = [Int](repeating: 0, count: string.utf16.count + 1)
        var u = 0
        for (k, s) in text.enumerated() {
            scalarAt[u] = k
            u += s.value > 0xFFFF ? 2 : 1
            if s.value > 0xFFFF { scalarAt[u - 1] = k }
        }
        scalarAt[u] = text.count
        var out: [Range<Int>] = []
        for m in regex.matches(in: string, options: [], range: NSRange(location: 0, length: u)) {
            let r = m.range
            if r.location == NSNotFound || r.length == 0 { continue }
            out.append(scalarAt[r.location]..<scalarAt[r.location + r.length])
        }
        return out
    }
}
