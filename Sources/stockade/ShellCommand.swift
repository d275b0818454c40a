import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade shell`: a person's look at what an agent's session sees.
struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Type commands into a session, as an agent would run them.",
        discussion: """
            Each line runs as one action of a session under the policy: plain words as they \
            are, a line with shell syntax through sh -c. Files and background processes persist \
            between lines; 'cd DIR' changes the directory later lines run in. A refused line \
            says which rule refused it. Output appears when the line's command ends. \
            'exit' or end of input ends the session and every process in it.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Policy file (YAML, version 1).", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: ArgumentHelp("The workspace (default: the policy's, else the current directory).", valueName: "dir"))
    var workspace: String?

    @Option(name: .long, help: ArgumentHelp("Isolation tier: namespaces, gvisor or auto (default: the policy's isolation.tier, else namespaces).", valueName: "tier"))
    var tier: IsolationSettings.Tier?

    func run() throws {
        let document = try policy.map { try PolicyLoader.load(contentsOf: $0) } ?? .default
        let session = try Blocking.run { try await Session.start(policy: document, options: SessionOptions(workspace: workspace, tier: tier)) }
        defer { session.close() }
        var directory = "/workspace"
        let interactive = isatty(STDIN_FILENO) == 1
        if interactive {
            StandardStreams.err("stockade shell: session \(session.id) on the \(session.tier.tier.rawValue) tier; 'exit' ends it.\n")
        }
        while true {
            if interactive { StandardStreams.err("stockade:\(directory)$ ") }
            guard let line = readLine(strippingNewline: true) else { break }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            if trimmed == "exit" || trimmed == "quit" { break }
            var argv = ShellWords.argv(for: trimmed)
            var changesDirectory = false
            if argv.first == "cd" && argv.count <= 2 {
                // The shell's own 'cd' would change nothing for the next line: ask the
                // sandbox where it leads, and keep that.
                argv = ["/bin/sh", "-c", "cd \"$1\" && pwd", "cd", argv.count == 2 ? argv[1] : "/workspace"]
                changesDirectory = true
            }
            let result: ActionResult
            do {
                let action = SessionAction.exec(argv, workingDirectory: directory)
                result = try Blocking.run { try await session.perform(action) }
            } catch let error as StockadeError {
                StandardStreams.err("stockade: \(error.message)\n")
                if session.endReason != nil { break }
                continue
            }
            guard result.performed else {
                StandardStreams.err("stockade: \(result.message)\n")
                continue
            }
            if changesDirectory, result.exitCode == 0 {
                directory = String(decoding: result.stdout, as: UTF8.self).trimmingCharacters(in: .newlines)
            } else {
                StandardStreams.out(Data(result.stdout))
            }
            StandardStreams.err(String(decoding: result.stderr, as: UTF8.self))
            if let limit = result.limitDescription { StandardStreams.err("stockade: limit exceeded: \(limit)\n") }
        }
    }
}
