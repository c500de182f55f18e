import Foundation
import Testing
import Datasets
import Tokenizers

/// The fuzz suite (issue 11): seeded corrupt inputs of every format, each of which must end in success
/// or a one-line error: no trap, no hang, no memory beyond a bound, nothing left on disk.
///
/// CI runs a few hundred library cases and a few dozen command-line cases. A longer campaign against the
/// binary: `scripts/fuzz_campaign.sh` (sets FUZZ_CLI_CASES, FUZZ_SEED, FUZZ_WORKERS).
@Suite(.serialized) struct FuzzTests {
    static func integer(_ name: String, default value: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) } ?? value
    }

    static var seed: UInt64 { UInt64(integer("FUZZ_SEED", default: 20261201)) }

    @Test func theGeneratorIsDeterministicAndCoversEveryFormat() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        var formats = Set<String>()
        for i in 0..<400 {
            let a = FuzzGenerator.generate(seed: 7, index: i, base: env.base)
            let b = FuzzGenerator.generate(seed: 7, index: i, base: env.base)
            #expect(a.mutation == b.mutation && a.files.count == b.files.count)
            formats.insert(a.format)
        }
        #expect(formats == Set(FuzzGenerator.formats.map(\.name)))
        // The stored gzip the generator writes is real gzip.
        let gz = FuzzGenerator.gzipStored(Array("hello, world\n".utf8))
        let url = env.work.appendingPathComponent("t.gz")
        try Data(gz).write(to: url)
        #expect(try TextReader.plainText(at: url) == "hello, world\n")
    }

    @Test func libraryCases() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        let tokenizer = try Tokenizer(directory: env.base.modelFolder)
        let count = Self.integer("FUZZ_LIBRARY_CASES", default: 300)
        let tally = FuzzTally()
        let start = Date()
        for i in 0..<count {
            let c = FuzzGenerator.generate(seed: Self.seed, index: i, base: env.base)
            tally.add(c, FuzzRunner.runLibrary(c, env: env, baseTokenizer: tokenizer))
        }
        print(tally.report + String(format: "\n  (library, seed %llu, %.1f s)", Self.seed, Date().timeIntervalSince(start)))
        #expect(tally.failures == 0, "bad outcomes: see the report above")
        // Both outcomes occur: the generator is neither all-valid nor all-broken.
        #expect(tally.counts[.ok, default: 0] > 0 && tally.counts[.error, default: 0] > count / 2)
    }

    @Test func commandLineCases() throws {
        let env = try FuzzEnvironment.make()
        defer { try? FileManager.default.removeItem(at: env.work) }
        guard FileManager.default.isExecutableFile(atPath: env.binary.path) else {
            throw FuzzSetupError("\(env.binary.path) is missing: build it with swift build -c release (or set LLM_PRUNE_BINARY)")
        }
        let count = Self.integer("FUZZ_CLI_CASES", default: 40)
        let workers = max(1, Self.integer("FUZZ_WORKERS", default: 2))
        let first = Self.integer("FUZZ_FIRST_CASE", default: 0)
        let tally = FuzzTally()
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var i = first + w
            while i < first + count {
                let c = FuzzGenerator.generate(seed: Self.seed, index: i, base: env.base)
                let r = FuzzRunner.runCLI(c, env: env)
                if ProcessInfo.processInfo.environment["FUZZ_SHOW"] != nil {
                    print("\(c) → \(r.outcome.rawValue): \(r.detail.split(whereSeparator: \.isNewline).first ?? "")")
                }
                tally.add(c, r)
                i += workers
            }
        }
        print(tally.report + String(format: "\n  (command line, seed %llu, cases %d..<%d, %.1f s)", Self.seed, first, first + count,
                                    Date().timeIntervalSince(start)))
        #expect(tally.failures == 0, "bad outcomes: see the report above")
        #expect(tally.counts[.error, default: 0] > 0)
    }
}
