import Crypto
import Foundation
import StockadeAudit
import StockadeCore
import StockadePolicy
import StockadeSecrets

/// The audit entries of runs and sessions, built from what they decided and did.
public enum AuditRecords {
    /// The log a policy's `audit` section names (signed when it names a key), or nil.
    /// - Parameter workspace: the sandbox's workspace on the host: neither the log nor
    ///   the key may lie in it, where the sandboxed program could rewrite the one or
    ///   read the other.
    public static func open(_ settings: AuditSettings?, workspace: String? = nil) throws -> AuditLog? {
        guard let settings, let path = settings.path else { return nil }
        if let workspace {
            for (what, file) in [("audit.path", path), ("audit.signing_key", settings.signingKey)] {
                guard let file, inside(file, workspace) else { continue }
                throw StockadeError(.invalidPolicy, "failed to open the audit log: \(what) (\(file)) lies in the workspace (\(workspace)), where the sandbox could \(what == "audit.path" ? "rewrite it" : "read it"). Put it outside the workspace")
            }
        }
        let key = try settings.signingKey.map(AuditKeys.privateKey(at:))
        return try AuditLog(path: path, signingKey: key, checkpointEvery: settings.checkpointEvery ?? 100)
    }

    /// Whether `path` (resolved as far as it exists) lies in `directory`.
    static func inside(_ path: String, _ directory: String) -> Bool {
        var existing = path
        var rest: [String] = []
        while !FileManager.default.fileExists(atPath: existing), existing != "/", !existing.isEmpty {
            rest.insert((existing as NSString).lastPathComponent, at: 0)
            existing = (existing as NSString).deletingLastPathComponent
        }
        guard let resolved = realpath(existing.isEmpty ? "/" : existing, nil) else { return false }
        defer { free(resolved) }
        let full = ([String(cString: resolved)] + rest).joined(separator: "/")
        return full == directory || full.hasPrefix(directory.hasSuffix("/") ? directory : directory + "/")
    }

    /// SHA-256 of a value's JSON with sorted keys.
    public static func digest(_ value: some Encodable) -> String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return nil }
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    public static func start(session: String, policy: PolicyDocument, plan: SandboxPlan, tier: String = "namespaces") -> AuditEntry {
        var entry = AuditEntry(session: session, kind: .sessionStart)
        entry.policySHA256 = digest(policy)
        entry.planSHA256 = digest(plan)
        entry.tier = tier
        entry.workspace = plan.workspace?.hostPath
        return entry
    }

    public static func action(
        session: String, action: Action?, summary: String, decision: Decision, rule: String?, reason: String, approver: String?,
        result: AuditResult?
    ) -> AuditEntry {
        var entry = AuditEntry(session: session, kind: .action)
        entry.tool = action?.tool.rawValue
        entry.action = summary
        entry.actionSHA256 = action?.digest
        entry.decision = decision.rawValue
        entry.rule = rule
        entry.reason = reason
        entry.approver = approver
        entry.result = result
        return entry
    }

    /// `text` with leaks redacted, for the log.
    static func redacted(_ text: String, _ leakGuard: LeakGuard?) -> String {
        guard let leakGuard else { return text }
        return String(decoding: leakGuard.redact(Array(text.utf8)).text, as: UTF8.self)
    }

    /// The entry of a session's action.
    public static func action(session: String, action: Action?, result: ActionResult, redactedBy leakGuard: LeakGuard? = nil) -> AuditEntry {
        var outcome = AuditResult(performed: result.performed)
        outcome.exitCode = result.exitCode
        outcome.signal = result.signal
        outcome.limit = result.limit?.rawValue
        outcome.wallMilliseconds = result.wallMilliseconds
        if result.exitCode != nil {
            outcome.stdoutBytes = result.stdout.count
            outcome.stderrBytes = result.stderr.count
        }
        outcome.path = result.path
        outcome.bytesWritten = result.bytesWritten
        outcome.httpStatus = result.httpStatus
        outcome.labels = result.labels
        outcome.leaks = result.leaks.isEmpty ? nil : result.leaks
        return Self.action(
            session: session, action: action, summary: redacted(result.action, leakGuard), decision: result.decision, rule: result.rule,
            reason: redacted(result.message, leakGuard), approver: result.approvedBy, result: outcome)
    }

    /// The entry of a one-shot run's command.
    public static func run(session: String, action: Action, verdict: Verdict, approver: String?, result: RunResult, redactedBy leakGuard: LeakGuard? = nil) -> AuditEntry {
        var outcome = AuditResult(performed: true)
        outcome.exitCode = result.exitCode
        outcome.signal = result.signal
        outcome.limit = result.limit?.rawValue
        outcome.wallMilliseconds = result.wallMilliseconds
        return Self.action(
            session: session, action: action, summary: redacted(action.description, leakGuard), decision: verdict.decision, rule: verdict.ruleID,
            reason: verdict.reason, approver: approver, result: outcome)
    }

    public static func egress(session: String, event: EgressEvent) -> AuditEntry {
        var entry = AuditEntry(session: session, kind: .egress)
        entry.tool = "egress"
        entry.decision = event.allowed ? "allow" : "deny"
        entry.rule = event.rule
        entry.egress = event
        return entry
    }

    public static func end(session: String, reason: String) -> AuditEntry {
        var entry = AuditEntry(session: session, kind: .sessionEnd)
        entry.reason = reason
        return entry
    }

    /// A random session id: 16 hex digits.
    public static func newSessionID() -> String {
        (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}
