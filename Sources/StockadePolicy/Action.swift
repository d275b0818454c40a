import Crypto
import Foundation

/// The kinds of action an agent can ask for. Rules, label sources and audit records
/// name them by `rawValue`.
public enum Tool: String, CaseIterable, Codable, Hashable, Sendable, CustomStringConvertible {
    /// Run a command in the sandbox.
    case exec
    /// Read a file of the sandbox view.
    case readFile = "read_file"
    /// Write a file of the sandbox view.
    case writeFile = "write_file"
    /// List a directory of the sandbox view.
    case listFiles = "list_files"
    /// Fetch a URL through the egress proxy.
    case http
    /// Lower the session's label through a `declassify` rule (always needs approval).
    case declassify

    /// Also accepted in policies: the names the MCP server gives the same tools.
    static let aliases: [String: Tool] = ["run_command": .exec, "http_fetch": .http]

    /// The tool a policy names, by its own name or an alias; nil for anything else.
    public init?(policyName: String) {
        if let tool = Tool(rawValue: policyName) ?? Tool.aliases[policyName] {
            self = tool
        } else {
            return nil
        }
    }

    public var description: String { rawValue }
}

/// One action, as the validation layer sees it: the tool and the arguments that rules can
/// constrain. Paths are paths of the sandbox view; the caller resolves `..` and symbolic
/// links (on the real tree, by file descriptor) before asking for a decision, and the
/// guard normalizes what it is given once more, lexically.
public enum Action: Hashable, Sendable, CustomStringConvertible {
    /// `argv[0]` is the program as the caller named it (`git` or `/usr/bin/git`).
    case exec(argv: [String], workingDirectory: String? = nil)
    case readFile(path: String)
    case writeFile(path: String)
    case listFiles(path: String)
    /// `url` is absolute (`https://host/path`); `method` is upper case.
    case http(method: String, url: String)
    /// A request to apply the `declassify` rule with this id.
    case declassify(rule: String)

    public var tool: Tool {
        switch self {
        case .exec: return .exec
        case .readFile: return .readFile
        case .writeFile: return .writeFile
        case .listFiles: return .listFiles
        case .http: return .http
        case .declassify: return .declassify
        }
    }

    /// The working directory of an `exec`; nil for other tools.
    public var workingDirectory: String? {
        if case .exec(_, let workingDirectory) = self { return workingDirectory }
        return nil
    }

    /// The path a file action names; nil for other tools.
    public var path: String? {
        switch self {
        case .readFile(let path), .writeFile(let path), .listFiles(let path): return path
        default: return nil
        }
    }

    /// One line for messages and prompts: `exec git push origin`, `read_file /workspace/a`.
    public var description: String {
        switch self {
        case .exec(let argv, _): return "exec " + argv.map(Self.shellQuoted).joined(separator: " ")
        case .readFile(let path), .writeFile(let path), .listFiles(let path): return "\(tool) \(path.printableForMessages)"
        case .http(let method, let url): return "http \(method.printableForMessages) \(url.printableForMessages)"
        case .declassify(let rule): return "declassify \(rule.printableForMessages)"
        }
    }

    /// The action in canonical JSON: keys sorted, no insignificant white space. Two
    /// actions have the same canonical form exactly when they are equal.
    public var canonicalJSON: Data {
        var object: [String: CanonicalValue] = ["tool": .string(tool.rawValue)]
        switch self {
        case .exec(let argv, let workingDirectory):
            object["argv"] = .strings(argv)
            if let workingDirectory { object["cwd"] = .string(workingDirectory) }
        case .readFile(let path), .writeFile(let path), .listFiles(let path):
            object["path"] = .string(path)
        case .http(let method, let url):
            object["method"] = .string(method)
            object["url"] = .string(url)
        case .declassify(let rule):
            object["rule"] = .string(rule)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings and arrays of strings cannot fail.
        return (try? encoder.encode(object)) ?? Data()
    }

    /// SHA-256 of `canonicalJSON`, in lower-case hex: what an approval is bound to and
    /// what the audit log records.
    public var digest: String {
        SHA256.hash(data: canonicalJSON).map { String(format: "%02x", $0) }.joined()
    }

    static func shellQuoted(_ word: String) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "-_./=:,@+%".unicodeScalars.contains($0)
        }
        if plain { return word }
        return "'" + word.printableForMessages.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// The values of a canonical action object.
private enum CanonicalValue: Encodable {
    case string(String)
    case strings([String])

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .strings(let values): try container.encode(values)
        }
    }
}
