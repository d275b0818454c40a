import ArgumentParser
import Foundation
import StockadeRuntime
import StockadeServer

enum StandardStreams {
    static func err(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}

/// `stockade-mcp` (started by `stockade mcp`): the sandbox's tools for an MCP client,
/// over stdio. A program of its own because the MCP SDK brings Foundation's networking,
/// which the fully static `stockade` cannot link; a long-lived server does not need the
/// CLI's start-up time either.
@main
struct MCPServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stockade mcp",
        abstract: "Serve run_command, read_file, write_file and list_files to an MCP client over stdio.",
        discussion: """
            One session (one sandbox, one label state) per connection: files and processes persist \
            between calls, and every call goes through the policy. The session ends, and every \
            process in it is killed, when the client disconnects, after --idle-timeout without a \
            call, or after --ttl. Diagnostics go to stderr; stdout carries the protocol only.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Policy file (YAML, version 1).", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: ArgumentHelp("The workspace (default: the policy's, else the current directory).", valueName: "dir"))
    var workspace: String?

    @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("End the session after this long without a call (default 15m).", valueName: "duration"))
    var idleTimeout: String?

    @Option(name: .long, help: ArgumentHelp("End the session this long after it started (default 4h).", valueName: "duration"))
    var ttl: String?

    @Option(name: .long, help: ArgumentHelp("Serve MCP's streamable HTTP transport on this port (at /mcp) instead of stdio; one session per MCP session.", valueName: "port"))
    var http: Int?

    @Option(name: .long, help: ArgumentHelp("The address to listen on with --http (default 127.0.0.1; anything else exposes the sandbox's tools to the network).", valueName: "address"))
    var host = "127.0.0.1"

    @Option(name: .long, help: ArgumentHelp("Isolation tier: namespaces, gvisor or auto (default: the policy's isolation.tier, else namespaces).", valueName: "tier"))
    var tier: String?

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as StockadeError {
            StandardStreams.err("stockade: \(error.message)\n")
            Foundation.exit(125)
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            StandardStreams.err("stockade: \(message(for: error))\nSee 'stockade mcp --help'.\n")
            Foundation.exit(125)
        }
    }

    func run() throws {
        let document = try policy.map { try PolicyLoader.load(contentsOf: $0) } ?? .default
        var settings = SessionOptions(workspace: workspace)
        if let tier {
            guard let named = IsolationSettings.Tier(rawValue: tier), named != .microvm, named != .wasm else {
                throw StockadeError(.invalidArgument, "failed to read --tier '\(tier)': expected namespaces, gvisor or auto")
            }
            settings.tier = named
        }
        if let idleTimeout { settings.idleTimeout = .milliseconds(try Self.duration(idleTimeout, flag: "--idle-timeout")) }
        if let ttl { settings.timeToLive = .milliseconds(try Self.duration(ttl, flag: "--ttl")) }
        let (options, http, host) = (settings, http, host)
        try Blocking.run {
            if let port = http {
                try await StockadeMCP.serveHTTP(host: host, port: port, policy: document, options: options) { bound in
                    StandardStreams.err("stockade mcp: listening on http://\(host):\(bound)/mcp\n")
                }
            } else {
                try await StockadeMCP.serveStandardIO(policy: document, options: options)
            }
        }
    }

    static func duration(_ text: String, flag: String) throws -> Int64 {
        guard let value = Quantity.parseMilliseconds(text), value > 0 else {
            throw StockadeError(.invalidArgument, "failed to read \(flag) '\(text)': expected a duration such as 30s or 15m")
        }
        return Int64(clamping: value)
    }
}
