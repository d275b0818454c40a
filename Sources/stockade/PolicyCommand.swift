import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade policy`: check a policy, explain a decision.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check a policy file, or explain the decision for an action.",
        subcommands: [PolicyCheckCommand.self, PolicyExplainCommand.self]
    )
}

/// `stockade policy check FILE`.
struct PolicyCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a policy, prove its invariants over every reachable label state, and report risky rules and tools.",
        discussion: """
            Exits 0 when the policy is clean, 1 when there are findings (each with the actions \
            that reach it), and 125 when the file is not a valid policy.
            """
    )

    @Argument(help: ArgumentHelp("The policy file (YAML, version 1).", valueName: "file"))
    var file: String

    @Flag(name: .long, help: "Print the report as one JSON object.")
    var json = false

    func run() throws {
        let document = try PolicyLoader.load(contentsOf: file)
        let report = PolicyChecker(try PolicyGuard(document)).run()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var data = try encoder.encode(report)
            data.append(contentsOf: "\n".utf8)
            StandardStreams.out(data)
        } else {
            var text = ""
            if report.isClean {
                text += "\(file): clean\n"
            } else {
                text += "\(file): \(report.findings.count) finding\(report.findings.count == 1 ? "" : "s")\n"
                for finding in report.findings {
                    text += "\n  \(finding.kind.rawValue): \(finding.message)\n"
                    for (index, step) in finding.trace.enumerated() {
                        text += "    \(index + 1). \(step)\n"
                    }
                }
            }
            text += "\nreachable label states:\n"
            for state in report.states {
                let name = state.labels.isEmpty ? "public, trusted" : state.labels.joined(separator: ", ")
                text += "  \(name)\(state.trace.isEmpty ? " (start)" : ": " + state.trace.joined(separator: "; "))\n"
            }
            StandardStreams.out(Data(text.utf8))
        }
        if !report.isClean { throw ExitCode(1) }
    }
}

/// `stockade policy explain FILE -- ACTION`.
struct PolicyExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show the decision for one action and the rule that made it.",
        discussion: """
            ACTION is one of: exec ARGV..., read_file PATH, write_file PATH, list_files PATH, \
            http METHOD URL, declassify RULE. Paths are sandbox paths; relative ones are \
            relative to /workspace. Example: stockade policy explain policy.yaml -- exec git push
            """
    )

    @Argument(help: ArgumentHelp("The policy file (YAML, version 1).", valueName: "file"))
    var file: String

    @Option(name: .long, help: ArgumentHelp("A label the session already carries: secret or untrusted (repeatable).", valueName: "label"))
    var label: [String] = []

    @Flag(name: .long, help: "Print the decision as one JSON object.")
    var json = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The action, after '--'.", valueName: "action"))
    var action: [String] = []

    func run() throws {
        let parsed = try Self.action(from: action)
        var labels = Set<Label>()
        for name in label {
            guard let value = Label(rawValue: name) else {
                throw StockadeError(.invalidArgument, "failed to read --label '\(name)': expected secret or untrusted")
            }
            labels.insert(value)
        }
        let policyGuard = try PolicyGuard(try PolicyLoader.load(contentsOf: file))
        let session = SessionLabel(labels)
        let verdict = policyGuard.decide(parsed, label: session)
        let after = policyGuard.label(after: parsed, from: session)
        if json {
            let object: [String: Any] = [
                "action": parsed.description, "digest": parsed.digest, "decision": verdict.decision.rawValue,
                "basis": verdict.basis.rawValue, "rule": verdict.ruleID as Any? ?? NSNull(), "reason": verdict.reason,
                "labels_before": Label.allCases.filter(session.contains).map(\.rawValue),
                "labels_after": Label.allCases.filter(after.contains).map(\.rawValue),
            ]
            var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            data.append(contentsOf: "\n".utf8)
            StandardStreams.out(data)
        } else {
            var text = "\(parsed)\n  \(verdict)\n"
            if after != session { text += "  labels after it runs: \(after)\n" }
            StandardStreams.out(Data(text.utf8))
        }
    }

    static func action(from words: [String]) throws -> Action {
        let usage = "Write it after '--', as in: exec git push, read_file src/main.c, http GET https://pypi.org/simple/, declassify RULE"
        guard let verb = words.first else {
            throw StockadeError(.invalidArgument, "failed to read the action: none given. \(usage)")
        }
        let rest = Array(words.dropFirst())
        func one(_ what: String) throws -> String {
            guard rest.count == 1 else {
                throw StockadeError(.invalidArgument, "failed to read the action: \(verb) takes one \(what), got \(rest.count). \(usage)")
            }
            return rest[0]
        }
        switch Tool(policyName: verb) {
        case .exec?:
            guard !rest.isEmpty else { throw StockadeError(.invalidArgument, "failed to read the action: exec needs a command. \(usage)") }
            return .exec(argv: rest)
        case .readFile?: return .readFile(path: try one("path"))
        case .writeFile?: return .writeFile(path: try one("path"))
        case .listFiles?: return .listFiles(path: try one("path"))
        case .http?:
            guard rest.count == 2 else { throw StockadeError(.invalidArgument, "failed to read the action: http takes a method and a URL. \(usage)") }
            return .http(method: rest[0].uppercased(), url: rest[1])
        case .declassify?: return .declassify(rule: try one("rule id"))
        case nil:
            throw StockadeError(.invalidArgument, "failed to read the action: unknown tool '\(verb)'. \(usage)")
        }
    }
}
