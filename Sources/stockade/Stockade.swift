import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade`: run the actions of LLM agents inside a sandbox.
@main
struct Stockade: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stockade",
        abstract: "Run the actions of LLM agents in a sandbox that holds against hostile code.",
        version: Stockade.version,
        subcommands: [
            RunCommand.self, ShellCommand.self, MCPCommand.self, PolicyCommand.self, ToolsetCommand.self, AuditCommand.self,
            DoctorCommand.self, RecommendCommand.self,
        ]
    )

    /// The release this binary was built from.
    static let version = "0.1.0"

    /// Exit codes of stockade's own failures (the command's own code passes through).
    enum ExitStatus {
        static let startFailed: Int32 = 125
        static let notExecutable: Int32 = 126
        static let notFound: Int32 = 127
    }

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as StockadeError {
            StandardStreams.err("stockade: \(error.message)\n")
            Foundation.exit(exitStatus(for: error))
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            // Bad flags are stockade's own failure: 125, like the others, with the
            // parser's message and a pointer to the help.
            let verb = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") }
            let help = verb.flatMap { name in configuration.subcommands.contains { $0._commandName == name } ? "stockade \(name) --help" : nil }
            StandardStreams.err("stockade: \(message(for: error))\nSee '\(help ?? "stockade --help")'.\n")
            Foundation.exit(ExitStatus.startFailed)
        }
    }

    static func exitStatus(for error: StockadeError) -> Int32 {
        switch error.code {
        case .notFound: return ExitStatus.notFound
        case .notExecutable: return ExitStatus.notExecutable
        default: return ExitStatus.startFailed
        }
    }
}
