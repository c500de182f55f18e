import CommandLineArguments
import Testing

private enum Mode: String, CaseIterable { case masked, plain }

private let spec = CommandSpec(
    name: "demo", abstract: "A command for the parser's tests.",
    options: [
        OptionSpec(name: "model", valueName: "path", help: "The model.", required: true),
        OptionSpec(name: "steps", valueName: "n", help: "Steps.", defaultValue: "5"),
        OptionSpec(name: "lr", valueName: "x", help: "Learning rate.", defaultValue: "1e-4"),
        OptionSpec(name: "mode", valueName: "mode", help: "masked or plain.", defaultValue: "masked"),
        OptionSpec(name: "seqlen", valueName: "n", help: "Tokens.", computedDefault: "the model's"),
        OptionSpec(name: "quiet", valueName: nil, help: "No progress."),
    ])

@Suite struct ArgumentsTests {
    @Test func valuesFlagsAndDefaults() throws {
        let a = try spec.parse(["--model", "m", "--steps=7", "--quiet", "--mode", "plain"])
        #expect(try a.requiredString("model") == "m")
        #expect(try a.requiredInt("steps", range: 1...100) == 7)
        #expect(try a.requiredDouble("lr") == 1e-4)                  // the default
        #expect(try a.requiredChoice("mode", of: Mode.self) == .plain)
        #expect(try a.int("seqlen") == nil)                            // a computed default: absent
        #expect(a.flag("quiet") && !a.flag("help"))
        #expect(try spec.parse(["--help"]).helpRequested)             // --help skips the required check
    }

    @Test func usageErrorsNameTheOption() throws {
        func message(_ words: [String], _ read: (ParsedArguments) throws -> Void = { _ in }) -> String? {
            do { try read(try spec.parse(words)); return nil } catch let e as UsageError { return e.description } catch { return "\(error)" }
        }
        #expect(message([]) == "missing required option '--model <path>'")
        #expect(message(["--model", "m", "--stesp", "3"]) == "unknown option '--stesp' for 'demo' (did you mean --steps?)")
        #expect(message(["--model", "m", "extra"]) == "unexpected argument 'extra' (options start with --)")
        #expect(message(["--model"]) == "option '--model' needs a value <path>")
        #expect(message(["--model", "m", "--quiet=1"]) == "option '--quiet' takes no value")
        #expect(message(["--model", "m", "--steps", "0"]) { _ = try $0.requiredInt("steps", range: 1...100) }
                == "option '--steps' needs an integer in 1...100, got '0'")
        #expect(message(["--model", "m", "--steps", "9"]) { _ = try $0.requiredInt("steps", range: 1...Int.max) } == nil)
        #expect(message(["--model", "m", "--lr", "inf"]) { _ = try $0.requiredDouble("lr") } == "option '--lr' needs a number, got 'inf'")
        #expect(message(["--model", "m", "--mode", "dense"]) { _ = try $0.requiredChoice("mode", of: Mode.self) }
                == "option '--mode' must be one of masked, plain, got 'dense'")
        #expect(message(["--model", "m"]) { _ = try $0.requiredInt("seqlen") } == "missing required option '--seqlen'")
    }

    @Test func helpListsEveryOptionWithItsDefault() {
        let help = spec.help
        #expect(help.contains("USAGE: llm-prune demo --model <path> [--steps <n>]"))
        #expect(help.contains("--steps <n>") && help.contains("Steps. (default: 5)"))
        #expect(help.contains("Tokens. (default: the model's)") && help.contains("The model. (required)"))
        #expect(help.contains("--help") && help.contains("Show this help and exit."))
    }

    @Test func editDistanceCountsEdits() {
        #expect(editDistance("steps", "stesp") == 2 && editDistance("", "abc") == 3 && editDistance("same", "same") == 0)
    }
}
