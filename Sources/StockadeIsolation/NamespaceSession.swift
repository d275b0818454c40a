import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// A sandbox that lives across many actions: stockade-init runs as the guest agent and
/// starts each command on request (`exec`). Memory and process limits hold for the
/// session as a whole (its cgroup); wall time, CPU time and output for each action.
/// Thread-safe.
public final class NamespaceSession: SessionSandbox, @unchecked Sendable {
    public let plan: SandboxPlan
    public let degraded: [String]
    private let launched: LaunchedSandbox
    private let channel: GuestChannel
    private let cgroup: SandboxCgroup?
    private let placeholders: WorkspacePlaceholders
    private let lock = NSLock()
    private var closed = false
    private var egressListener: Int32 = -1

    init(plan: SandboxPlan, launched: LaunchedSandbox, channel: GuestChannel, cgroup: SandboxCgroup?, placeholders: WorkspacePlaceholders, degraded: [String]) {
        self.plan = plan
        self.launched = launched
        self.channel = channel
        self.cgroup = cgroup
        self.placeholders = placeholders
        self.degraded = degraded
        egressListener = launched.egressListener
    }

    /// The egress bridge's listener, handed over once (see `Sandbox`).
    public func takeEgressListener() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        defer { egressListener = -1 }
        return egressListener >= 0 ? egressListener : nil
    }

    deinit {
        close()
    }

    /// True until the session is closed or its sandbox has ended.
    public var isOpen: Bool {
        lock.lock()
        defer { lock.unlock() }
        return !closed && channel.isOpen
    }

    /// Runs one command in the session and waits for it. A memory or process limit hit
    /// while it ran (the session's cgroup) is reported as its limit.
    public func exec(_ request: GuestExec) throws -> GuestExecResult {
        let kills = cgroup?.memoryKills() ?? 0
        let refusals = cgroup?.pidsLimitRefusals() ?? 0
        var result = try channel.exec(request)
        if result.limit == nil, let cgroup {
            if result.signal == SIGKILL, cgroup.memoryKills() > kills {
                result.limit = .memory
            } else if cgroup.pidsLimitRefusals() > refusals {
                result.limit = .pids
            }
        }
        return result
    }

    /// Ends the session: every process in the sandbox is killed, its cgroup removed,
    /// its placeholders taken away. Idempotent.
    public func close() {
        lock.lock()
        let wasClosed = closed
        closed = true
        lock.unlock()
        guard !wasClosed else { return }
        channel.shutdown()
        _ = stockade_pidfd_send_signal(launched.pidfd, SIGKILL)
        cgroup?.killAll()
        var status: Int32 = 0
        while waitpid(launched.pid, &status, 0) < 0 && errno == EINTR {}
        Glibc.close(launched.pidfd)
        if let listener = takeEgressListener() { Glibc.close(listener) }
        _ = cgroup?.destroy()
        placeholders.remove()
    }
}

extension NamespaceBackend {
    /// Starts a session sandbox for `plan` (its `command` is not run: actions come
    /// through `exec`).
    public func startSession(_ plan: SandboxPlan) throws -> NamespaceSession {
        let prepared = try prepare(plan, cgroupName: "session")
        let (cgroup, placeholders) = (prepared.cgroup, prepared.placeholders)
        var launchedSandbox = false
        defer {
            if !launchedSandbox {
                _ = cgroup?.destroy()
                placeholders.remove()
            }
        }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw StockadeError(.startFailed, "failed to open /dev/null: \(errnoText(errno))") }
        defer { Glibc.close(null) }
        // The session's limits on wall and CPU time apply per action, not to the
        // session: its lifetime is the caller's (idle timeout, TTL).
        var limits = plan.limits
        limits.cpuMilliseconds = nil
        var request = LaunchRequest(
            plan: plan, identity: prepared.identity, landlock: prepared.landlock, seccompProgram: prepared.seccomp,
            resourceLimits: Self.resourceLimits(limits, cgroup: cgroup),
            standardInput: null, standardOutput: null, standardError: null, cgroup: cgroup
        )
        request.session = true
        let launched = try SandboxLauncher.launch(request)
        let channel: GuestChannel
        do {
            channel = try GuestChannel(socket: launched.statusFD)
        } catch {
            _ = stockade_pidfd_send_signal(launched.pidfd, SIGKILL)
            var status: Int32 = 0
            while waitpid(launched.pid, &status, 0) < 0 && errno == EINTR {}
            Glibc.close(launched.pidfd)
            throw error
        }
        launchedSandbox = true
        return NamespaceSession(plan: plan, launched: launched, channel: channel, cgroup: cgroup, placeholders: placeholders, degraded: prepared.degraded)
    }
}
