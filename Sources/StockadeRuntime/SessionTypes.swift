import Foundation
import StockadeAudit
import StockadeCore
import StockadeNetwork
import StockadePolicy
import StockadeSystem

/// How a session is set up, beyond its policy.
public struct SessionOptions: Sendable {
    /// The workspace; nil: the policy's, else the current directory.
    public var workspace: String?
    /// The session ends after this long without an action.
    public var idleTimeout: Duration
    /// The session ends this long after it started, whatever it is doing.
    public var timeToLive: Duration
    /// Who answers `ask` decisions; nil: the one the policy's `approval` names.
    public var approver: (any Approver)?
    /// Largest file `read_file` returns (more is cut, and said so).
    public var maxReadBytes: Int
    /// Largest file `write_file` accepts.
    public var maxWriteBytes: Int
    /// Largest stdout (and stderr) an `exec` result holds.
    public var maxCapturedOutput: Int
    public var callerEnvironment: [String: String]
    public var currentDirectory: String
    /// The egress proxy's resolver, extra trust roots and event sink (used when the
    /// policy grants network access). Its environment is `callerEnvironment`.
    public var egress: EgressConfiguration
    /// Largest response body an `http` action returns (more is cut, and said so).
    public var maxFetchBytes: Int
    /// The audit log; nil: the one the policy's `audit` section names, if any.
    public var auditLog: AuditLog?
    /// The isolation tier; nil: the policy's `isolation.tier`, else namespaces.
    public var tier: IsolationSettings.Tier?

    public init(
        workspace: String? = nil, idleTimeout: Duration = .seconds(15 * 60), timeToLive: Duration = .seconds(4 * 3600),
        approver: (any Approver)? = nil, maxReadBytes: Int = 8 << 20, maxWriteBytes: Int = 8 << 20,
        maxCapturedOutput: Int = 1 << 20,
        callerEnvironment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath,
        egress: EgressConfiguration = EgressConfiguration(), maxFetchBytes: Int = 1 << 20, auditLog: AuditLog? = nil,
        tier: IsolationSettings.Tier? = nil
    ) {
        self.auditLog = auditLog
        self.tier = tier
        self.egress = egress
        self.maxFetchBytes = maxFetchBytes
        self.workspace = workspace
        self.idleTimeout = idleTimeout
        self.timeToLive = timeToLive
        self.approver = approver
        self.maxReadBytes = maxReadBytes
        self.maxWriteBytes = maxWriteBytes
        self.maxCapturedOutput = maxCapturedOutput
        self.callerEnvironment = callerEnvironment
        self.currentDirectory = currentDirectory
    }
}

/// An action as a front end asks for it: the policy's `Action` plus what it carries
/// beyond its arguments (the content of a write).
public enum SessionAction: Sendable {
    /// Runs a command; the working directory defaults to /workspace.
    case exec([String], workingDirectory: String? = nil)
    case readFile(String)
    case writeFile(String, content: [UInt8])
    case listFiles(String)
    /// An HTTP request the supervisor makes for the agent, through the egress proxy's
    /// rules (`http_fetch`).
    case http(method: String, url: String, headers: [String: String] = [:], body: [UInt8] = [])
    /// Asks to lower a label through the policy's declassify rule of this id.
    case declassify(String)
}

/// A header of an `http` action's response.
public struct HTTPHeader: Codable, Equatable, Sendable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// What one action did. A denial is a result too (`performed` false), with the rule
/// that made it: agents are told why, and can adapt.
public struct ActionResult: Codable, Equatable, Sendable {
    /// The action in one line.
    public var action: String
    public var decision: Decision
    /// The rule, invariant or declassify rule behind the decision.
    public var rule: String?
    /// "denied by rule no-push: git push needs approval", or why approval failed.
    public var message: String
    /// Who approved an `ask`.
    public var approvedBy: String?
    /// False when the action was refused and nothing ran.
    public var performed: Bool

    // exec
    public var exitCode: Int32?
    public var signal: Int32?
    public var limit: LimitKind?
    public var limitDescription: String?
    public var stdout: [UInt8] = []
    public var stderr: [UInt8] = []
    public var stdoutTruncated = false
    public var stderrTruncated = false
    public var cpuMilliseconds: UInt64?

    // read_file, write_file, list_files
    /// The resolved path, relative to the workspace.
    public var path: String?
    public var content: [UInt8]?
    public var contentTruncated = false
    public var bytesWritten: Int?
    public var entries: [WorkspaceFiles.Entry]?

    // http (the body is in `content`)
    public var httpStatus: Int?
    public var httpHeaders: [HTTPHeader]?

    public var wallMilliseconds: UInt64 = 0
    /// The leak guard's rules that found something in what this action returned or
    /// sent (`known-secret`, `github-token`, ...).
    public var leaks: [String] = []
    /// True when the leak guard withheld output (`on_leak: block`).
    public var withheld = false
    /// Terminal escape sequences (clipboard, hyperlinks) removed from the output.
    public var escapesRemoved = 0
    /// The session's labels after the action.
    public var labels: [String] = []

    /// True when the action was refused, or ran and failed (non-zero exit, a limit).
    public var isError: Bool {
        !performed || withheld || (exitCode.map { $0 != 0 } ?? false) || limit != nil
    }
}
