import Foundation
import MCP
import StockadeCore
import StockadePolicy
import StockadeRuntime

/// `stockade mcp`: the agent's tools as an MCP server (the official Swift SDK). One
/// session (one sandbox, one label state) per connection; every call goes through the
/// session's policy, and a refusal is an `isError` result that says which rule refused
/// and why, so that the model can adapt.
public enum StockadeMCP {
    /// Largest text returned for one stream or file before it is cut.
    static let maximumText = 256 << 10

    /// The tools, with their input schemas and honest annotations for this policy.
    public static func tools(for policy: PolicyDocument) -> [MCP.Tool] {
        let networked = policy.resolved().network?.grantsAccess ?? false
        var tools = [
            MCP.Tool(
                name: "run_command",
                description: """
                    Run a command in the sandbox (workspace at /workspace, no host files, \(networked ? "network only to the policy's hosts" : "no network")). \
                    Give argv (preferred: each argument exactly) or command (a shell line, run with sh -c when it uses shell syntax). \
                    Files and processes persist between calls in this session; background processes keep running.
                    """,
                inputSchema: .object([
                    "type": "object",
                    "properties": .object([
                        "argv": .object(["type": "array", "items": .object(["type": "string"]), "minItems": 1, "description": "The program and its arguments."]),
                        "command": .object(["type": "string", "description": "A shell command line, used when argv is not given."]),
                        "cwd": .object(["type": "string", "description": "Working directory inside the sandbox (default /workspace)."]),
                    ]),
                    "additionalProperties": false,
                ]),
                annotations: .init(title: "Run a command in the sandbox", readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: networked)
            ),
            MCP.Tool(
                name: "read_file",
                description: "Read a file of the workspace (a path below /workspace, or relative to it). Binary content comes back base64-encoded.",
                inputSchema: .object([
                    "type": "object",
                    "properties": .object(["path": .object(["type": "string", "description": "The file, e.g. src/main.c or /workspace/src/main.c."])]),
                    "required": .array(["path"]),
                    "additionalProperties": false,
                ]),
                annotations: .init(title: "Read a workspace file", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false)
            ),
            MCP.Tool(
                name: "write_file",
                description: "Write a file of the workspace (created with its directories, or replaced). Give content as text, or as base64 with encoding: base64.",
                inputSchema: .object([
                    "type": "object",
                    "properties": .object([
                        "path": .object(["type": "string", "description": "The file, relative to /workspace."]),
                        "content": .object(["type": "string", "description": "The whole new content."]),
                        "encoding": .object(["type": "string", "enum": .array(["utf8", "base64"]), "description": "How content is encoded (default utf8)."]),
                    ]),
                    "required": .array(["path", "content"]),
                    "additionalProperties": false,
                ]),
                annotations: .init(title: "Write a workspace file", readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false)
            ),
            MCP.Tool(
                name: "list_files",
                description: "List a directory of the workspace (default: its root). Hidden paths are not listed.",
                inputSchema: .object([
                    "type": "object",
                    "properties": .object(["path": .object(["type": "string", "description": "The directory, relative to /workspace (default .)."])]),
                    "additionalProperties": false,
                ]),
                annotations: .init(title: "List a workspace directory", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false)
            ),
        ]
        // Only where the policy grants hosts: a tool that could only ever be refused
        // would be noise to the model.
        if networked {
            tools.append(MCP.Tool(
                name: "http_fetch",
                description: """
                    Make an HTTP request to a host the policy allows, from outside the sandbox (nothing of it runs inside). \
                    Redirects are not followed: a 3xx comes back with its Location. Bodies longer than 1 MiB are cut; binary bodies come back base64-encoded.
                    """,
                inputSchema: .object([
                    "type": "object",
                    "properties": .object([
                        "url": .object(["type": "string", "description": "An absolute http or https URL."]),
                        "method": .object(["type": "string", "description": "The method (default GET)."]),
                        "headers": .object(["type": "object", "additionalProperties": .object(["type": "string"]), "description": "Request headers."]),
                        "body": .object(["type": "string", "description": "The request body, as text."]),
                    ]),
                    "required": .array(["url"]),
                    "additionalProperties": false,
                ]),
                annotations: .init(title: "Fetch a URL", readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true)
            ))
        }
        return tools
    }

    /// Serves MCP on stdin and stdout until the client goes away, with one session for
    /// the connection. The session is closed (every process in it killed) at the end.
    public static func serveStandardIO(policy: PolicyDocument, options: SessionOptions) async throws {
        let session = try await Session.start(policy: policy, options: options)
        defer { session.close() }
        let server = await makeServer(policy: policy, session: session)
        try await server.start(transport: LineTransport())
        await server.waitUntilCompleted()
    }

    /// A server whose tool calls go to `session`, its handlers in place before it starts.
    public static func makeServer(policy: PolicyDocument, session: Session) async -> Server {
        let server = Server(
            name: "stockade", version: "0.1.0", title: "stockade",
            instructions: "Tools run inside a stockade sandbox. A refused call says which policy rule refused it and why; do not retry it unchanged.",
            capabilities: .init(tools: .init(listChanged: false)))
        let tools = tools(for: policy)
        await server.withMethodHandler(ListTools.self) { _ in .init(tools: tools) }
        await server.withMethodHandler(CallTool.self) { params in
            await call(params.name, arguments: params.arguments ?? [:], session: session)
        }
        return server
    }

    /// One tool call. Bad arguments and refusals are `isError` results, never thrown.
    static func call(_ name: String, arguments: [String: Value], session: Session) async -> CallTool.Result {
        let action: SessionAction
        do {
            action = try sessionAction(name, arguments)
        } catch let error as StockadeError {
            return failure(error.message)
        } catch {
            return failure("\(error)")
        }
        do {
            let result = try await session.perform(action)
            return render(result)
        } catch let error as StockadeError {
            return failure(error.message)
        } catch {
            return failure("\(error)")
        }
    }

    static func sessionAction(_ name: String, _ arguments: [String: Value]) throws -> SessionAction {
        func string(_ key: String) -> String? { arguments[key]?.stringValue }
        let known: [String: Set<String>] = [
            "run_command": ["argv", "command", "cwd"], "read_file": ["path"], "write_file": ["path", "content", "encoding"],
            "list_files": ["path"], "http_fetch": ["url", "method", "headers", "body"],
        ]
        guard let allowed = known[name] else {
            throw StockadeError(.invalidArgument, "unknown tool '\(name)'; the tools are \(known.keys.sorted().joined(separator: ", "))")
        }
        if let stray = arguments.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw StockadeError(.invalidArgument, "\(name) takes no argument '\(stray)'; it takes \(allowed.sorted().joined(separator: ", "))")
        }
        switch name {
        case "run_command":
            let cwd = string("cwd")
            if let argv = arguments["argv"]?.arrayValue {
                let words = argv.compactMap(\.stringValue)
                guard !words.isEmpty, words.count == argv.count else {
                    throw StockadeError(.invalidArgument, "run_command: argv must be a non-empty list of strings")
                }
                return .exec(words, workingDirectory: cwd)
            }
            guard let command = string("command"), !command.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw StockadeError(.invalidArgument, "run_command needs argv (a list of strings) or command (a shell line)")
            }
            return .exec(ShellWords.argv(for: command), workingDirectory: cwd)
        case "read_file":
            guard let path = string("path") else { throw StockadeError(.invalidArgument, "read_file needs a path") }
            return .readFile(path)
        case "write_file":
            guard let path = string("path"), let content = string("content") else {
                throw StockadeError(.invalidArgument, "write_file needs a path and a content")
            }
            switch string("encoding") ?? "utf8" {
            case "utf8": return .writeFile(path, content: Array(content.utf8))
            case "base64":
                guard let data = Data(base64Encoded: content) else {
                    throw StockadeError(.invalidArgument, "write_file: content is not valid base64")
                }
                return .writeFile(path, content: Array(data))
            default:
                throw StockadeError(.invalidArgument, "write_file: encoding must be utf8 or base64")
            }
        case "http_fetch":
            guard let url = string("url") else { throw StockadeError(.invalidArgument, "http_fetch needs a url") }
            var headers: [String: String] = [:]
            if let given = arguments["headers"] {
                guard let object = given.objectValue else {
                    throw StockadeError(.invalidArgument, "http_fetch: headers must be an object of strings, as in {\"Accept\": \"text/html\"}")
                }
                for (name, value) in object {
                    guard let text = value.stringValue else { throw StockadeError(.invalidArgument, "http_fetch: the header \(name) must be a string") }
                    headers[name] = text
                }
            }
            return .http(method: (string("method") ?? "GET").uppercased(), url: url, headers: headers, body: Array((string("body") ?? "").utf8))
        default:
            return .listFiles(string("path") ?? ".")
        }
    }

    static func render(_ result: ActionResult) -> CallTool.Result {
        guard result.performed else { return failure(result.message) }
        var text = ""
        var structured: [String: Value] = ["decision": .string(result.decision.rawValue), "labels": .array(result.labels.map { .string($0) })]
        if let rule = result.rule { structured["rule"] = .string(rule) }
        if let exitCode = result.exitCode {
            let stdout = clip(result.stdout, truncated: result.stdoutTruncated)
            let stderr = clip(result.stderr, truncated: result.stderrTruncated)
            text = "exit code: \(exitCode)"
            if let description = result.limitDescription { text += "\nlimit exceeded: \(description)" }
            if !stdout.isEmpty { text += "\n--- stdout ---\n" + stdout }
            if !stderr.isEmpty { text += "\n--- stderr ---\n" + stderr }
            structured["exit_code"] = .int(Int(exitCode))
            structured["stdout"] = .string(stdout)
            structured["stderr"] = .string(stderr)
            if let limit = result.limit { structured["limit"] = .string(limit.rawValue) }
        } else if let status = result.httpStatus {
            let headers = result.httpHeaders ?? []
            text = "HTTP \(status)\n" + headers.map { "\($0.name): \($0.value)" }.joined(separator: "\n") + "\n\n"
            let body = result.content ?? []
            if let utf8 = String(validating: body, as: UTF8.self) {
                text += utf8.count > maximumText ? String(utf8.prefix(maximumText)) + "\n[cut at \(maximumText) characters]" : utf8
                structured["encoding"] = .string("utf8")
            } else {
                text += Data(body).base64EncodedString()
                structured["encoding"] = .string("base64")
            }
            if result.contentTruncated { text += "\n[the body is longer; only its first \(body.count) bytes were kept]" }
            structured["status"] = .int(status)
            structured["headers"] = .object(Dictionary(headers.map { ($0.name.lowercased(), Value.string($0.value)) }, uniquingKeysWith: { first, second in .string((first.stringValue ?? "") + ", " + (second.stringValue ?? "")) }))
        } else if let content = result.content {
            if let utf8 = String(validating: content, as: UTF8.self) {
                text = utf8.count > maximumText ? String(utf8.prefix(maximumText)) + "\n[cut at \(maximumText) characters]" : utf8
                structured["encoding"] = .string("utf8")
            } else {
                text = Data(content).base64EncodedString()
                structured["encoding"] = .string("base64")
            }
            if result.contentTruncated { text += "\n[the file is longer; only its first \(content.count) bytes were read]" }
            structured["path"] = .string(result.path ?? "")
        } else if let written = result.bytesWritten {
            text = "wrote \(written) bytes to /workspace/\(result.path ?? "")"
            structured["bytes_written"] = .int(written)
        } else if let entries = result.entries {
            text = entries.map { "\($0.type == "directory" ? "d" : $0.type == "symlink" ? "l" : "-") \($0.size)\t\($0.name)" }.joined(separator: "\n")
            if result.contentTruncated { text += "\n[only the first \(entries.count) entries]" }
            structured["entries"] = .array(entries.map { .object(["name": .string($0.name), "type": .string($0.type), "size": .int(Int($0.size))]) })
        }
        if !result.leaks.isEmpty {
            structured["leaks"] = .array(result.leaks.map { .string($0) })
            text += result.withheld ? "\n[\(result.message)]" : "\n[the leak guard found \(result.leaks.joined(separator: ", ")); redacted where it says [REDACTED:...]]"
        }
        return CallTool.Result(content: [.text(text: text, annotations: nil, _meta: nil)], structuredContent: .object(structured), isError: result.isError)
    }

    static func failure(_ message: String) -> CallTool.Result {
        CallTool.Result(content: [.text(text: message, annotations: nil, _meta: nil)], isError: true)
    }

    static func clip(_ bytes: [UInt8], truncated: Bool) -> String {
        var text = String(decoding: bytes.prefix(maximumText), as: UTF8.self)
        if truncated || bytes.count > maximumText { text += "\n[output cut]" }
        return text
    }
}
