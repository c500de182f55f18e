import Foundation
import Testing
import Tokenizers

/// The hand-written GPT-2 / LLaMA-3 / Qwen2 matchers against ICU (NSRegularExpression) running the same
/// Oniguruma patterns, on every WikiText-2 test line and on edge cases.
@Suite struct PatternTests {
    static let edgeCases = [
        "", " ", "   ", "a", "Hello world's  test\n\n  12345 ¿x", "I'M don'T  ſ 'll 'RE 'Ve 's", "'", "''s",
        "tab\there\r\nnext\r\n\r\n  line", "a\u{3000}b\u{85}c\u{0B}d\u{A0}e\u{200B}f", "emoji 😀👍🏽 done",
        "中文字符 and 日本語", "1234567 89 ٣٤٥ ½", "x!!!  ?? \n", "  \n  \n", " \r\n ", "\r\r\n\nabc",
        "a  b   c    ", " ?!x", "¿¡ ", "e\u{301}\u{301}x", "\u{1F600}\u{1F600} \u{1F600}", "don't\n\n'tis",
    ]

    static let patterns: [(String, String)] = [("gpt2", gpt2Pattern), ("llama3", llama3Pattern), ("qwen2", qwen2Pattern)]

    @Test func specializedMatchersAreUsedForKnownPatterns() throws {
        #expect(try Patterns.regex(gpt2Pattern) is GPT2Matcher)
        #expect(try Patterns.regex(llama3Pattern) is LLaMA3Matcher)
        #expect(try Patterns.regex(qwen2Pattern) is LLaMA3Matcher)
        #expect(try Patterns.regex(gpt2Pattern, specialized: false) is ICURegexMatcher)
    }

    @Test func icuFollowsOnigurumaWhitespace() throws {
        // Oniguruma's \s includes U+000B and U+0085 (White_Space); ICU's plain \s would not.
        let m = try ICURegexMatcher(onigurumaPattern: #"\s+"#)
        #expect(m.matches(in: Array("a\u{0B}\u{85}b\u{200B}c".unicodeScalars)) == [1..<3])
    }

    @Test func handWrittenMatchersEqualICU() throws {
        let lines = try WikiText.lines()
        let texts = PatternTests.edgeCases + lines
        for (name, pattern) in PatternTests.patterns {
            let fast = try Patterns.regex(pattern)
            let icu = try Patterns.regex(pattern, specialized: false)
            var fastTime = 0.0, icuTime = 0.0
            var mismatches = 0
            for text in texts {
                let scalars = Array(text.unicodeScalars)
                let t0 = DispatchTime.now().uptimeNanoseconds
                let a = fast.matches(in: scalars)
                let t1 = DispatchTime.now().uptimeNanoseconds
                let b = icu.matches(in: scalars)
                let t2 = DispatchTime.now().uptimeNanoseconds
                fastTime += Double(t1 - t0) / 1e9
                icuTime += Double(t2 - t1) / 1e9
                if a != b {
                    mismatches += 1
                    if mismatches <= 3 {
                        let pieces = { (r: [Range<Int>]) in r.map { visible(String(String.UnicodeScalarView(scalars[$0]))) } }
                        Issue.record("\(name) on \"\(visible(text))\": hand-written \(pieces(a)), ICU \(pieces(b))")
                    }
                }
            }
            #expect(mismatches == 0, "\(name): \(mismatches) texts split differently")
            print("[tokenizers] \(name) pattern over \(texts.count) texts: hand-written \(String(format: "%.3f", fastTime)) s, ICU \(String(format: "%.3f", icuTime)) s")
        }
    }
}
