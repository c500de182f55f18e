import CommandLineArguments
import Foundation
import Pruning
import Runs

enum CleanCommand {
    static let spec = CommandSpec(
        name: "clean",
        abstract: "Remove the work folders that killed runs left beside an output folder.",
        discussion: """
        A prune run writing --output DIR works in a hidden folder .DIR.partial-PID beside DIR. A run killed
        outright (SIGKILL, power loss) leaves it behind; 'prune --resume' would continue it. This removes every
        such folder whose process is gone and lists the ones that belong to a running process (kept).
        """,
        options: [
            OptionSpec(name: "output", valueName: "dir", help: "The --output folder of the interrupted run.", required: true),
        ],
        examples: ["llm-prune clean --output out/stories-wanda-2of4"])

    static func run(_ a: ParsedArguments) throws {
        let output = URL(fileURLWithPath: try a.requiredString("output"))
        let (removed, kept) = WorkFolders.clean(for: output)
        for f in removed {
            let done = f.finishedBlocks.map { ", \($0) blocks finished" } ?? ""
            print("removed \(f.url.path) (process \(f.pid) is gone\(done))")
        }
        for f in kept { print("kept \(f.url.path) (process \(f.pid) is still running)") }
        if removed.isEmpty && kept.isEmpty { print("nothing to clean beside \(output.standardizedFileURL.path)") }
    }
}
