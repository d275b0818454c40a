import Foundation

/// What an approver is shown for an `ask` decision. Encoded as JSON for external approver
/// commands (see docs/policy.md, "approval").
public struct ApprovalRequest: Codable, Equatable, Sendable {
    /// The action in one line: `exec git push origin main`.
    public var action: String
    public var tool: String
    /// SHA-256 of the action's canonical JSON: the approval is bound to it.
    public var digest: String
    /// The rule, invariant or declassify rule that asked.
    public var rule: String?
    public var reason: String
    /// The session's labels when it asked.
    public var labels: [String]
    /// The arguments, for approvers that want more than the summary.
    public var argv: [String]?
    /// The working directory of an `exec` (part of what the digest covers).
    public var cwd: String?
    public var path: String?
    public var url: String?
    public var method: String?

    public init(action: Action, verdict: Verdict, label: SessionLabel) {
        self.action = action.description
        self.tool = action.tool.rawValue
        self.digest = action.digest
        self.rule = verdict.ruleID
        self.reason = verdict.reason
        self.labels = Label.allCases.filter(label.contains).map(\.rawValue)
        switch action {
        case .exec(let argv, let workingDirectory):
            self.argv = argv
            self.cwd = workingDirectory
        case .readFile(let path), .writeFile(let path), .listFiles(let path): self.path = path
        case .http(let method, let url):
            self.method = method
            self.url = url
        case .declassify: break
        }
    }
}

/// An approver's answer.
public enum ApprovalAnswer: Equatable, Sendable {
    /// Approved, by whom (the approver's name, or what a command said).
    case approved(by: String)
    /// Refused, with the reason to pass on to the agent.
    case denied(reason: String)
    /// No answer came in time: a denial.
    case timedOut

    public var isApproved: Bool {
        if case .approved = self { return true }
        return false
    }
}

/// Answers `ask` decisions. Implementations must treat anything other than a clear
/// "yes" (an error, a broken answer, silence past `timeout`) as a denial.
public protocol Approver: Sendable {
    /// Names the approver in audit records: `terminal`, `command:/usr/local/bin/approve`.
    var name: String { get }
    /// Blocks until an answer or until `timeout` has passed.
    func review(_ request: ApprovalRequest, timeout: Duration) -> ApprovalAnswer
}

/// The approver when nobody is attending: every request is denied at once.
public struct UnattendedApprover: Approver {
    let reason: String

    public init(reason: String = "nobody is attending to approve it (the policy's approval mode denies every 'ask' here)") {
        self.reason = reason
    }

    public var name: String { "unattended" }
    public func review(_ request: ApprovalRequest, timeout: Duration) -> ApprovalAnswer {
        .denied(reason: reason)
    }
}

/// The approvals granted in one session: each is bound to the exact action it approved
/// (by digest) and is used at most once, so an approval can neither be replayed nor
/// carried over to a different action. Thread-safe.
public final class ApprovalLedger: @unchecked Sendable {
    private let lock = NSLock()
    private var granted: [String: Int] = [:]

    public init() {}

    /// Records an approval of `action`.
    public func grant(_ action: Action) {
        lock.lock()
        defer { lock.unlock() }
        granted[action.digest, default: 0] += 1
    }

    /// Uses up one approval of exactly this action; false when there is none.
    public func consume(_ action: Action) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let digest = action.digest
        guard let count = granted[digest], count > 0 else { return false }
        granted[digest] = count == 1 ? nil : count - 1
        return true
    }
}
