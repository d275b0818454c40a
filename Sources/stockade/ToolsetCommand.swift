import ArgumentParser
import Foundation
import StockadeRuntime
import StockadeSystem

/// `stockade toolset`: inspect toolsets, the programs a sandbox's system view holds.
struct ToolsetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "toolset",
        abstract: "Inspect toolsets: exactly the programs that exist inside a sandbox.",
        subcommands: [ToolsetShowCommand.self]
    )
}

/// `stockade toolset show NAME...`: what a toolset pulls in, and why.
struct ToolsetShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show the files a toolset holds and why each is there.",
        discussion: """
            A name is a named set (coreutils, python, git, build-essential), a program looked up in \
            \(ToolsetResolver.searchPath.joined(separator: ":")), or an absolute path. The toolset \
            holds the programs, the links on the way to them, their dynamic loader and shared \
            libraries, script interpreters and the directories of sets, nothing else. Nothing is run \
            and nothing is written.
            """
    )

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Argument(help: ArgumentHelp("Programs, named sets or absolute paths.", valueName: "name"))
    var names: [String] = []

    func validate() throws {
        if names.isEmpty {
            throw ValidationError("no toolset names given, as in: stockade toolset show sh ls python")
        }
    }

    func run() throws {
        let closure = try ToolsetResolver.resolve(names)
        StandardStreams.out(json ? Self.json(closure) : Data(Self.text(closure).utf8))
    }

    /// Sections in the order printed, with the reasons each holds.
    static let sections: [(title: String, kinds: [ToolsetReason.Kind])] = [
        ("programs", [.program]),
        ("links", [.link]),
        ("interpreters", [.interpreter]),
        ("libraries", [.library]),
        ("directories", [.directory]),
        ("support files", [.support]),
    ]

    static func text(_ closure: ToolsetClosure) -> String {
        var lines = ["toolset: \(closure.names.joined(separator: " "))"]
        // Files inside a directory are summed up under it, not listed one by one.
        var memberCounts: [String: (files: Int, bytes: UInt64)] = [:]
        for entry in closure.entries where entry.reason.kind == .member {
            let directory = entry.reason.directory ?? ""
            var sum = memberCounts[directory] ?? (0, 0)
            if entry.kind == .file {
                sum.files += 1
                sum.bytes += entry.size
            }
            memberCounts[directory] = sum
        }
        for section in sections {
            let entries = closure.entries.filter { section.kinds.contains($0.reason.kind) }
            guard !entries.isEmpty else { continue }
            lines.append("\(section.title):")
            let width = min(64, entries.map { displayPath($0).count }.max() ?? 0)
            for entry in entries {
                var detail = entry.reason.description
                if entry.kind == .directory, let sum = memberCounts[entry.path] {
                    detail += ": \(sum.files) files, \(Quantity.formatBytes(sum.bytes))"
                } else if entry.kind == .file {
                    detail += " (\(Quantity.formatBytes(entry.size)))"
                }
                let path = displayPath(entry)
                lines.append("  " + path + String(repeating: " ", count: max(1, width - path.count + 2)) + detail)
            }
        }
        if !closure.warnings.isEmpty {
            lines.append("warnings:")
            lines += closure.warnings.map { "  " + $0 }
        }
        lines.append("total: \(closure.fileCount) files, \(Quantity.formatBytes(closure.totalBytes))")
        lines.append("key: sha256:\(closure.key)")
        return lines.joined(separator: "\n") + "\n"
    }

    static func displayPath(_ entry: ToolsetEntry) -> String {
        entry.linkTarget.map { "\(entry.path) -> \($0)" } ?? entry.path
    }

    static func json(_ closure: ToolsetClosure) -> Data {
        let entries: [[String: Any]] = closure.entries.map { entry in
            var object: [String: Any] = [
                "path": entry.path,
                "kind": entry.kind.rawValue,
                "reason": entry.reason.kind.rawValue,
                "why": entry.reason.description,
                "size": Int(entry.size),
            ]
            if let target = entry.linkTarget { object["link_target"] = target }
            if let directory = entry.reason.directory { object["directory"] = directory }
            return object
        }
        let object: [String: Any] = [
            "names": closure.names,
            "key": "sha256:" + closure.key,
            "file_count": closure.fileCount,
            "total_bytes": Int(closure.totalBytes),
            "warnings": closure.warnings,
            "entries": entries,
        ]
        var data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        data.append(contentsOf: "\n".utf8)
        return data
    }
}
