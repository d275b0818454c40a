import Foundation
import StockadeAudit
import StockadeCore
import StockadeIsolation
import StockadeNetwork
import StockadePolicy
import StockadeSecrets
import StockadeSystem
import Synchronization

/// One sandbox for a whole agent task: one policy, one workspace, one label state. It
/// stays up between actions (a server started by one action can be reached by the
/// next) and ends on `close()`, on idle timeout, on its time to live, or when the
/// supervisor dies; then every process in it is killed.
///
/// Every action goes through the policy first (`PolicyGuard`), with the session's
/// labels; `ask` goes to the approver, bound to that exact action. Actions run one at a
/// time, so that the labels each one is judged with are those the previous ones left.
public final class Session: @unchecked Sendable {
    /// Random, for logs and audit records.
    public let id: String
    public let policy: PolicyDocument
    public let plan: SandboxPlan
    let policyGuard: PolicyGuard
    let sandbox: any SessionSandbox
    /// The tier the session runs on, and why.
    public let tier: TierChoice
    let workspaceFiles: WorkspaceFiles?
    /// The workspace's hidden patterns, compiled once for listings.
    let hiddenGlobs: GlobSet
    let options: SessionOptions
    let approver: any Approver
    let approvalTimeout: Duration
    let ledger = ApprovalLedger()
    /// The egress proxy, when the policy grants network access.
    let proxy: EgressProxy?
    /// The labels, readable by the proxy's threads without the session's locks.
    let labelCell = LabelCell()
    /// The leak guard: what leaves toward the agent, and the agent's own requests.
    let leaks: LeakControl
    /// Where every action is recorded before its result is returned (the policy's
    /// `audit.path`, or the options').
    let audit: AuditLog?

    /// Serializes actions (held for the whole of one).
    private let actionLock = NSLock()
    private let stateLock = NSCondition()
    private var currentLabel = SessionLabel.initial
    private var lastActivity = ContinuousClock.now
    private var ended: String?
    private let started = ContinuousClock.now

    /// Starts a session sandbox.
    /// - Throws: `StockadeError` when the policy or workspace is invalid or the
    ///   sandbox cannot start.
    public static func start(policy: PolicyDocument = .default, options: SessionOptions = SessionOptions()) async throws -> Session {
        try await Self.offload { try Session(policy: policy, options: options) }
    }

    init(policy: PolicyDocument, options: SessionOptions) throws {
        self.id = (0..<8).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        self.policy = policy
        self.options = options
        self.policyGuard = try PolicyGuard(policy)
        // The plan's command is never run: the guest agent starts each action's.
        let request = RunRequest(
            command: ["/bin/sh"], policy: policy, workspace: options.workspace,
            callerEnvironment: options.callerEnvironment, currentDirectory: options.currentDirectory)
        self.plan = try PlanCompiler.compile(request)
        self.tier = try Tiers.choose(flag: options.tier, policy: policy, plan: plan)
        let settings = policyGuard.policy.approval ?? ApprovalSettings()
        self.approver = options.approver ?? settings.makeApprover()
        self.approvalTimeout = settings.timeout
        self.hiddenGlobs = try GlobSet(patterns: plan.workspace?.hiddenPatterns ?? [])
        self.workspaceFiles = plan.workspace.map { WorkspaceFiles(root: $0.hostPath, hiddenEntries: $0.hiddenEntries) }
        let leaks = LeakControl.make(policyGuard.policy.secrets, environment: options.callerEnvironment)
        self.leaks = leaks
        let audit = try options.auditLog ?? AuditRecords.open(policyGuard.policy.audit, workspace: plan.workspace?.hostPath)
        self.audit = audit
        var proxy: EgressProxy?
        if plan.network == .proxy, let network = policyGuard.policy.network {
            var configuration = options.egress
            configuration.environment = options.callerEnvironment
            configuration.leakGuard = leaks.leakGuard
            configuration.leakAlertOnly = leaks.action == .alert
            // Every exchange goes to the audit log too, when it ends. (Its failure to
            // write cannot withhold anything: the exchange has happened.)
            let sessionID = id
            let sink = configuration.eventSink
            configuration.eventSink = { event in
                sink?(event)
                _ = try? audit?.append(AuditRecords.egress(session: sessionID, event: event))
            }
            // Programs the session started earlier keep running after it takes on a
            // label: the proxy asks again before each of their connections.
            let (cell, policyGuard) = (labelCell, policyGuard)
            proxy = try EgressProxy(policy: network, configuration: configuration) { _, _ in
                policyGuard.networkBlock(label: cell.value).map { EgressRefusal(.denied, rule: $0.ruleID, $0.reason) }
            }
        }
        self.proxy = proxy
        self.sandbox = try Tiers.startSession(tier.tier, plan: plan)
        do {
            try audit?.append(AuditRecords.start(session: id, policy: policyGuard.policy, plan: plan, tier: tier.tier.rawValue))
        } catch {
            proxy?.shutdown()
            sandbox.close()
            throw error
        }
        if let proxy {
            do {
                guard let listener = sandbox.takeEgressListener() else {
                    throw StockadeError(.internalError, "failed to start the egress proxy: the session has no bridge. This is a bug in stockade; please report it")
                }
                try proxy.serve(listener: listener)
            } catch {
                sandbox.close()
                throw error
            }
        }
        startWatchdog()
    }

    deinit {
        proxy?.shutdown()
        sandbox.close()
    }

    /// Every connection and request through the session's egress proxy so far.
    public var egressEvents: [EgressEvent] { proxy?.events ?? [] }

    /// The labels the session carries now.
    public var label: SessionLabel {
        stateLock.lock()
        defer { stateLock.unlock() }
        return currentLabel
    }

    /// Why the session ended, or nil while it is open.
    public var endReason: String? {
        stateLock.lock()
        defer { stateLock.unlock() }
        return ended
    }

    /// Decides and, if allowed, performs one action.
    /// - Throws: `StockadeError` when the session has ended or stockade itself fails
    ///   (a denial is a result, not an error).
    public func perform(_ action: SessionAction) async throws -> ActionResult {
        try await Self.offload { try self.performNow(action) }
    }

    /// Ends the session now. Idempotent.
    public func close() {
        end(because: "closed")
    }

    // MARK: -

    func performNow(_ request: SessionAction) throws -> ActionResult {
        actionLock.lock()
        defer { actionLock.unlock() }
        try touch()
        var decided: Action?
        let result = try performDecided(request, action: &decided)
        // On disk before the result is returned: a result whose record could not be
        // written is withheld.
        // The log gets the action with its arguments through the leak guard (a secret in
        // a command line would otherwise be kept forever); the digest covers them whole.
        try audit?.append(AuditRecords.action(session: id, action: decided, result: result, redactedBy: leaks.leakGuard))
        return result
    }

    private func performDecided(_ request: SessionAction, action decided: inout Action?) throws -> ActionResult {
        let clock = ContinuousClock.now
        // Paths are judged where they really lead: a symlink in the workspace is
        // resolved (beneath the root, by the kernel) before the policy sees it.
        let action: Action
        var opened: WorkspaceFiles.Opened?
        var writeTarget: WorkspaceFiles.WriteTarget?
        switch request {
        case .exec(let argv, let workingDirectory):
            action = .exec(argv: argv, workingDirectory: workingDirectory ?? plan.workingDirectory)
        case .readFile(let path):
            let handle = try files().open(try workspaceRelative(path))
            opened = handle
            action = .readFile(path: Self.sandboxPath(handle.relativePath))
        case .listFiles(let path):
            let handle = try files().open(try workspaceRelative(path), directory: true)
            opened = handle
            action = .listFiles(path: Self.sandboxPath(handle.relativePath))
        case .writeFile(let path, let content):
            guard content.count <= options.maxWriteBytes else {
                throw StockadeError(.invalidArgument, "failed to write \(path): \(content.count) bytes is more than the session's limit of \(options.maxWriteBytes)")
            }
            let target = try files().writeTarget(try workspaceRelative(path))
            writeTarget = target
            action = .writeFile(path: Self.sandboxPath(target.relativePath))
        case .http(let method, let url, _, _):
            action = .http(method: method, url: url)
        case .declassify(let rule):
            action = .declassify(rule: rule)
        }
        decided = action

        let before = label
        if let opened, opened.isHidden {
            // A hidden file reached under another name is hidden all the same.
            let reason = "\(action.path ?? "") is hidden by the policy (filesystem.hidden): it does not exist for the sandbox"
            return ActionResult(
                action: action.description, decision: .deny, rule: nil, message: "denied: \(reason)", approvedBy: nil,
                performed: false, labels: Label.allCases.filter(before.contains).map(\.rawValue))
        }
        let authorization = ActionGate.authorize(
            action, guard: policyGuard, label: before, approver: { self.approver }, timeout: approvalTimeout, ledger: ledger)
        var result = ActionResult(
            action: action.description, decision: authorization.verdict.decision, rule: authorization.verdict.ruleID,
            message: authorization.allowed ? authorization.verdict.description : authorization.refusal,
            approvedBy: authorization.approver, performed: false)
        guard authorization.allowed else {
            result.labels = Label.allCases.filter(before.contains).map(\.rawValue)
            result.wallMilliseconds = Self.milliseconds(since: clock)
            return result
        }
        result.performed = true
        switch request {
        case .exec(let argv, _):
            let outcome = try sandbox.exec(GuestExec(
                argv: argv, environment: plan.environment, workingDirectory: action.workingDirectory ?? plan.workingDirectory,
                wallMilliseconds: plan.limits.wallMilliseconds, cpuMilliseconds: plan.limits.cpuMilliseconds,
                outputBytes: plan.limits.outputBytes, captureBytesPerStream: options.maxCapturedOutput))
            result.exitCode = outcome.exitCode
            result.signal = outcome.signal
            result.limit = outcome.limit
            result.limitDescription = outcome.limit.map { plan.limits.describe($0) }
            result.stdout = outgoing(outcome.stdout, into: &result)
            result.stderr = outgoing(outcome.stderr, into: &result)
            result.stdoutTruncated = outcome.stdoutTruncated
            result.stderrTruncated = outcome.stderrTruncated
            result.cpuMilliseconds = outcome.cpuMicroseconds / 1000
        case .readFile:
            let read = try files().read(opened!, limit: options.maxReadBytes)
            result.path = opened!.relativePath
            result.content = outgoing(read.bytes, fileContent: true, into: &result)
            result.contentTruncated = read.truncated
        case .listFiles:
            let hidden = hiddenGlobs
            let base = opened!.relativePath
            // Hidden entries are not there for the agent, not even by name.
            var entries = try files().list(opened!).filter { entry in
                !hidden.matchesPathOrAnyParent(base.isEmpty ? entry.name : base + "/" + entry.name, isDirectory: entry.type == "directory")
            }
            if entries.count > WorkspaceFiles.maximumEntries {
                entries.removeLast(entries.count - WorkspaceFiles.maximumEntries)
                result.contentTruncated = true
            }
            // A name is a channel too (`touch "$(cat token)"`).
            for index in entries.indices {
                let name = outgoing(Array(entries[index].name.utf8), fileContent: true, into: &result)
                entries[index].name = String(decoding: name, as: UTF8.self)
            }
            result.entries = entries
            result.path = base
        case .writeFile(_, let content):
            result.bytesWritten = try files().write(content, to: writeTarget!)
            result.path = writeTarget!.relativePath
        case .http(let method, let url, let headers, let body):
            guard try fetch(method: method, url: url, headers: headers, body: body, into: &result) else {
                // Refused by the network rules or the leak guard (or the host failed):
                // nothing came back, and the labels stay as they were.
                result.labels = Label.allCases.filter(before.contains).map(\.rawValue)
                result.wallMilliseconds = Self.milliseconds(since: clock)
                return result
            }
        case .declassify:
            break
        }
        finish(action, into: &result, from: before, clock: clock)
        return result
    }

    /// The workspace's files, with this thread acting as the workspace owner (each
    /// action runs on a thread of its own; see `offload`).
    private func files() throws -> WorkspaceFiles {
        guard let files = workspaceFiles else {
            throw StockadeError(.invalidArgument, "failed to use a file action: this session has no workspace")
        }
        try files.becomeOwner()
        return files
    }

    static func sandboxPath(_ relative: String) -> String {
        relative.isEmpty ? "/workspace" : "/workspace/" + relative
    }

    private func finish(_ action: Action, into result: inout ActionResult, from before: SessionLabel, clock: ContinuousClock.Instant) {
        let after = action.tool == .declassify
            ? policyGuard.label(afterApproved: action, from: before)
            : policyGuard.label(after: action, from: before)
        stateLock.lock()
        currentLabel = after
        lastActivity = ContinuousClock.now
        stateLock.unlock()
        labelCell.value = after
        // A label that closes the network also ends the connections already open.
        if let proxy, policyGuard.networkBlock(label: before) == nil, policyGuard.networkBlock(label: after) != nil {
            proxy.dropConnections()
        }
        result.labels = Label.allCases.filter(after.contains).map(\.rawValue)
        result.wallMilliseconds = Self.milliseconds(since: clock)
    }

    /// The workspace-relative form of a sandbox path (`/workspace/a` or `a`).
    private func workspaceRelative(_ path: String) throws -> String {
        guard !path.isEmpty, !path.utf8.contains(0) else {
            throw StockadeError(.invalidArgument, "failed to use the path: it is empty or contains a NUL byte")
        }
        if path == "/workspace" { return "" }
        if path.hasPrefix("/workspace/") { return String(path.dropFirst("/workspace/".count)) }
        if path.hasPrefix("/") {
            throw StockadeError(.invalidArgument, "failed to use \(path): file actions reach the workspace (/workspace) only. Run a command (exec) to look elsewhere in the sandbox")
        }
        return path
    }

    private func touch() throws {
        stateLock.lock()
        defer { stateLock.unlock() }
        if let ended {
            throw StockadeError(.startFailed, "failed to perform the action: the session has ended (\(ended)). Start a new one")
        }
        guard sandbox.isOpen else {
            ended = "its sandbox ended"
            throw StockadeError(.startFailed, "failed to perform the action: the session's sandbox has ended. Start a new one")
        }
        lastActivity = ContinuousClock.now
    }

    private func end(because reason: String) {
        stateLock.lock()
        let first = ended == nil
        if first { ended = reason }
        stateLock.broadcast()
        stateLock.unlock()
        proxy?.shutdown()
        sandbox.close()
        if first, let audit {
            _ = try? audit.append(AuditRecords.end(session: id, reason: reason))
            try? audit.checkpoint(session: id)
        }
    }

    /// Ends the session on idle timeout or at its time to live.
    private func startWatchdog() {
        let thread = Thread { [weak self] in
            while let session = self {
                session.stateLock.lock()
                if session.ended != nil {
                    session.stateLock.unlock()
                    return
                }
                let now = ContinuousClock.now
                let idleDeadline = session.lastActivity + session.options.idleTimeout
                let lifeDeadline = session.started + session.options.timeToLive
                let busy = !session.actionLock.try()
                if !busy { session.actionLock.unlock() }
                var reason: String?
                if now >= lifeDeadline {
                    reason = "its time to live of \(session.options.timeToLive) ran out"
                } else if now >= idleDeadline && !busy {
                    reason = "it was idle for \(session.options.idleTimeout)"
                }
                if let reason {
                    session.stateLock.unlock()
                    session.end(because: reason)
                    return
                }
                let wake = min(idleDeadline, lifeDeadline) - now
                let seconds = max(0.01, min(1.0, Double(wake.components.seconds) + Double(wake.components.attoseconds) / 1e18))
                _ = session.stateLock.wait(until: Date().addingTimeInterval(seconds))
                session.stateLock.unlock()
            }
        }
        thread.name = "stockade-session-watchdog"
        thread.start()
    }

    /// The session's labels, for threads that must not take the session's locks.
    final class LabelCell: Sendable {
        private let state = Mutex(SessionLabel.initial)
        var value: SessionLabel {
            get { state.withLock { $0 } }
            set { state.withLock { $0 = newValue } }
        }
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> UInt64 {
        let elapsed = ContinuousClock.now - start
        return UInt64(elapsed.components.seconds) * 1000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000_000)
    }

    /// Runs blocking work on a thread of its own, so that async callers never block
    /// the cooperative pool.
    static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try work() }) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }
}
