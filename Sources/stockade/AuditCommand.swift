import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade audit`: keys for the log's checkpoints, and reading the log.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Keys for the audit log, and checking and reading it.",
        subcommands: [AuditKeygenCommand.self, AuditVerifyCommand.self, AuditShowCommand.self, AuditExportCommand.self]
    )
}

struct AuditKeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make an Ed25519 key pair for signing checkpoints: FILE (private, 0600) and FILE.pub.",
        discussion: "Keep the private key where only stockade's user can read it, outside every workspace; name it in the policy's audit.signing_key. Give FILE.pub to whoever verifies the log."
    )

    @Option(name: .long, help: ArgumentHelp("Where to write the private key.", valueName: "file"))
    var out: String

    func run() throws {
        let key = try AuditKeys.generate(path: out)
        StandardStreams.out(Data("wrote \(out) and \(out).pub (key \(AuditKeys.keyID(key)))\n".utf8))
    }
}

struct AuditVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check an audit log's hash chain and checkpoint signatures; name the first bad entry.",
        discussion: "Exit 0 when the log holds, 1 when it does not. Keep the printed head elsewhere: a later verify that ends at another head shows what was added or cut since."
    )

    @Option(name: .long, help: ArgumentHelp("The public key (from 'stockade audit keygen') the checkpoints must be signed by.", valueName: "file"))
    var key: String?

    @Flag(name: .long, help: "Fail unless the log ends in a checkpoint signed by the key (entries after the last one could have been forged by anyone who can write the file).")
    var strict = false

    @Option(name: .long, help: ArgumentHelp("A head printed by an earlier verify: fail unless that entry is still in the log, unchanged (proves nothing before it was cut or rewritten).", valueName: "sha256"))
    var head: String?

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Argument(help: ArgumentHelp("The audit log (JSON Lines).", valueName: "file"))
    var file: String

    func validate() throws {
        if strict && key == nil { throw ValidationError("--strict needs --key: only signatures can vouch for the end of the log") }
    }

    func run() throws {
        let publicKey = try key.map(AuditKeys.publicKey(at:))
        var result = try AuditVerifier.verify(path: file, key: publicKey, knownHead: head)
        if result.valid && strict && result.unsignedTail > 0 {
            result.problem = "the last \(result.unsignedTail) entries come after the last signed checkpoint (--strict)"
        }
        if json {
            let object: [String: Any] = [
                "valid": result.valid, "problem": result.problem as Any? ?? NSNull(), "entries": result.entries,
                "checkpoints": result.checkpoints, "verified_signatures": result.verifiedSignatures,
                "unchecked_checkpoints": result.uncheckedCheckpoints, "open_sessions": result.openSessions,
                "torn_tail": result.tornTail, "head": result.head, "entries_after_last_signature": result.unsignedTail,
            ]
            StandardStreams.out(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) + Data("\n".utf8))
        } else {
            var lines: [String] = []
            if let problem = result.problem {
                lines.append("stockade: audit log \(file) does NOT verify: \(problem)")
                lines.append("the \(result.entries) entries before it verify")
            } else {
                lines.append("\(file): \(result.entries) entries, chain intact; head \(result.head)")
                lines.append("checkpoints: \(result.checkpoints), \(result.verifiedSignatures) signatures verified\(publicKey == nil && result.checkpoints > 0 ? " (give --key to check them)" : "")")
                if result.unsignedTail > 0 {
                    lines.append("note: \(publicKey == nil ? "without --key nothing is vouched for by a signature" : "the last \(result.unsignedTail) entries come after the last signed checkpoint; anyone who can write the file could have written them (--strict fails on this)")")
                }
            }
            if result.tornTail { lines.append("note: the last line is torn (a writer was killed while writing it); it is ignored") }
            if !result.openSessions.isEmpty {
                lines.append("note: sessions without an end: \(result.openSessions.joined(separator: ", ")) (still running, killed, or the log was cut after them)")
            }
            let text = lines.joined(separator: "\n") + "\n"
            if result.valid { StandardStreams.out(Data(text.utf8)) } else { StandardStreams.err(text) }
        }
        if !result.valid { throw ExitCode(1) }
    }
}

/// Entries of a log, filtered.
struct AuditFilter: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Only this session.", valueName: "id"))
    var session: String?

    @Option(name: .long, help: ArgumentHelp("Only this decision (allow, deny, ask).", valueName: "decision"))
    var decision: String?

    @Option(name: .long, help: ArgumentHelp("Only this tool (exec, read_file, write_file, list_files, http, egress).", valueName: "tool"))
    var tool: String?

    @Argument(help: ArgumentHelp("The audit log (JSON Lines).", valueName: "file"))
    var file: String

    func entries() throws -> [AuditEntry] {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw StockadeError(.invalidArgument, "failed to read the audit log \(file): it does not exist or cannot be read")
        }
        let decoder = JSONDecoder()
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(AuditEntry.self, from: Data($0)) }.filter { entry in
            (session == nil || entry.session == session)
                && (decision == nil || entry.decision == decision)
                && (tool == nil || entry.tool == tool || (tool == "egress" && entry.kind == .egress))
        }
    }
}

struct AuditShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print an audit log as a table (it is not verified; use 'stockade audit verify')."
    )

    @OptionGroup var filter: AuditFilter

    func run() throws {
        var rows = [["SEQ", "TIME", "SESSION", "KIND", "DECISION", "RULE", "ACTION / RESULT"]]
        for entry in try filter.entries() {
            rows.append([
                String(entry.seq), entry.time, entry.session, entry.kind.rawValue, entry.decision ?? "", entry.rule ?? "",
                AuditExport.summary(entry),
            ])
        }
        let widths = (0..<6).map { column in rows.map { $0[column].count }.max() ?? 0 }
        let text = rows.map { row in
            row.enumerated().map { index, cell in index < 6 ? cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) : cell }.joined(separator: "  ")
        }.joined(separator: "\n")
        StandardStreams.out(Data((text + "\n").utf8))
    }
}

struct AuditExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write an audit log's entries as one JSON array or as CSV."
    )

    @Option(name: .long, help: ArgumentHelp("json or csv.", valueName: "format"))
    var format: String = "json"

    @OptionGroup var filter: AuditFilter

    func validate() throws {
        guard ["json", "csv"].contains(format) else { throw ValidationError("--format must be json or csv, got '\(format)'") }
    }

    func run() throws {
        let entries = try filter.entries()
        if format == "json" {
            try StandardStreams.json(entries)
            return
        }
        let header = ["seq", "time", "session", "kind", "tool", "action", "action_sha256", "decision", "rule", "reason", "approver", "exit_code", "limit", "host", "port", "allowed", "prev"]
        var lines = [header.joined(separator: ",")]
        for entry in entries {
            let fields: [String?] = [
                String(entry.seq), entry.time, entry.session, entry.kind.rawValue, entry.tool, entry.action, entry.actionSHA256,
                entry.decision, entry.rule, entry.reason, entry.approver, entry.result?.exitCode.map { String($0) }, entry.result?.limit,
                entry.egress?.host, entry.egress.map { String($0.port) }, entry.egress.map { String($0.allowed) }, entry.prev,
            ]
            lines.append(fields.map { AuditExport.csv($0 ?? "") }.joined(separator: ","))
        }
        StandardStreams.out(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}

enum AuditExport {
    static func csv(_ field: String) -> String {
        // Cells a spreadsheet would run as a formula are quoted with a leading '.
        var value = field
        if let first = value.first, "=+-@\t\r\u{FF1D}\u{FF0B}\u{FF0D}\u{FF20}".contains(first) { value = "'" + value }
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) || value != field else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func summary(_ entry: AuditEntry) -> String {
        switch entry.kind {
        case .egress:
            guard let event = entry.egress else { return "" }
            return "\(event.method) \(event.host):\(event.port) \(event.allowed ? "allowed" : "refused: \(event.reason ?? "")")"
        case .checkpoint:
            return "through \(entry.checkpoint?.through ?? 0)\(entry.checkpoint?.signature == nil ? ", unsigned" : ", signed by \(entry.checkpoint?.key ?? "")")"
        case .sessionStart:
            return "policy \(entry.policySHA256?.prefix(12) ?? "") tier \(entry.tier ?? "")"
        case .sessionEnd:
            return entry.reason ?? ""
        case .action:
            var text = entry.action ?? ""
            if let result = entry.result, result.performed {
                if let code = result.exitCode { text += " → exit \(code)" }
                if let limit = result.limit { text += " (limit: \(limit))" }
                if let status = result.httpStatus { text += " → \(status)" }
            }
            return text
        }
    }
}
