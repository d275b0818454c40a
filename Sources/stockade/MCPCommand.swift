import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade mcp`: hands over to `stockade-mcp`, the MCP server (a program of its own:
/// the MCP SDK needs Foundation's networking, which this fully static binary cannot
/// link). The flags are those of `stockade-mcp`.
struct MCPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve run_command, read_file, write_file and list_files to an MCP client over stdio.",
        discussion: "Flags: --policy FILE, --workspace DIR, --tier T, --idle-timeout D, --ttl D. See 'stockade mcp --help'."
    )

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The flags of stockade-mcp.", valueName: "flags"))
    var arguments: [String] = []

    func run() throws {
        let server = try Self.locate()
        let argv = [server] + arguments
        var pointers = argv.map { strdup($0) } + [nil]
        execv(server, &pointers)
        let error = errno
        pointers.forEach { free($0) }
        throw StockadeError(.startFailed, "failed to start the MCP server \(server): \(String(cString: strerror(error))). Reinstall stockade with stockade-mcp beside it")
    }

    /// `$STOCKADE_MCP`, else `stockade-mcp` beside this executable, else in
    /// `../libexec/stockade`.
    static func locate() throws -> String {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["STOCKADE_MCP"], !explicit.isEmpty { candidates.append(explicit) }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let directory = (executable as NSString).deletingLastPathComponent
            candidates.append(directory + "/stockade-mcp")
            candidates.append((directory as NSString).deletingLastPathComponent + "/libexec/stockade/stockade-mcp")
        }
        guard let found = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw StockadeError(.startFailed, "failed to find the MCP server: no stockade-mcp in \(candidates.joined(separator: ", ")). Build it (make) or set STOCKADE_MCP")
        }
        return found
    }
}
