import CommandLineArguments
import Foundation
import Pruning
import Runs

// The llm-prune command line: parses arguments, calls the library, prints. No pruning logic here.

let toolVersion = "0.1.0"

let commands: [String: (CommandSpec, (ParsedArguments) throws -> Void)] = [
    "convert": (ConvertCommand.spec, ConvertCommand.run),
    "bench-gemm": (BenchGEMMCommand.spec, BenchGEMMCommand.run),
    "eval": (EvalCommand.spec, EvalCommand.run),
    "finetune": (FinetuneCommand.spec, FinetuneCommand.run),
    "generate": (GenerateCommand.spec, GenerateCommand.run),
    "inspect": (InspectCommand.spec, InspectCommand.run),
    "prune": (PruneCommand.spec, PruneCommand.run),
    "clean": (CleanCommand.spec, CleanCommand.run),
]

func topLevelHelp() -> String {
    let width = (commands.keys.map(\.count).max() ?? 0) + 2
    return """
    OVERVIEW: llm-prune \(toolVersion): prune LLaMA-family language models after training
    (Wanda++, Wanda, SparseGPT, magnitude), evaluate them, and export standard checkpoints.

    USAGE: llm-prune <command> [options]

    COMMANDS:
    \(commands.keys.sorted().map { "  \($0.padding(toLength: width, withPad: " ", startingAt: 0))\(commands[$0]!.0.abstract)" }.joined(separator: "\n"))

    Run 'llm-prune <command> --help' for a command's options.
    """
}

// Every terminating signal removes the run's work folder before the process ends (see Signals).
Signals.install()
if TestPauses.withoutRenameAt2 { WorkFolders.usesRenameNoReplace = false }

var argv = Array(CommandLine.arguments.dropFirst())
guard let first = argv.first else {
    print(topLevelHelp())
    exit(64)
}
if first == "--help" || first == "-h" || first == "help" {
    if argv.count > 1, let c = commands[argv[1]] { print(c.0.help) } else { print(topLevelHelp()) }
    exit(0)
}
if first == "--version" {
    print(toolVersion)
    exit(0)
}
guard let (spec, run) = commands[first] else {
    printError("error: unknown command '\(first)' (commands: \(commands.keys.sorted().joined(separator: ", ")))")
    printError("Run 'llm-prune --help' for usage.")
    exit(64)
}
do {
    let parsed = try spec.parse(Array(argv.dropFirst()))
    if parsed.helpRequested {
        print(spec.help)
        exit(0)
    }
    try run(parsed)
} catch let e as UsageError {
    printError("error: \(e.description)")
    printError("Usage: \(spec.usage)\nRun 'llm-prune \(spec.name) --help' for details.")
    exit(64)
} catch {
    printError("error: \(String(describing: error))")
    exit(1)
}
