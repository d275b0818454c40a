import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// A gVisor sandbox that lives across many actions: runsc runs stockade-init as the
/// guest agent. Memory and CPU limits are held on the host cgroup around runsc: hitting
/// either ends the session (the Sentry holds every process's memory, and gVisor's ptrace
/// platform does not account CPU time per process, so RLIMIT_CPU never fires inside).
public final class GVisorSession: SessionSandbox, @unchecked Sendable {
    public let plan: SandboxPlan
    public let degraded: [String]
    private let process: HelperProcess
    private let channel: GuestChannel
    private let cgroup: SandboxCgroup?
    private let bundle: GVisorBundle
    private let placeholders: WorkspacePlaceholders
    private let log: DiagnosticsLog
    private let lock = NSLock()
    private var closed = false
    /// The host limit that ended the sandbox, if one did.
    private var endedFor: LimitKind?

    /// How often the cgroup's CPU counter is read while an action has a CPU limit.
    private static let pollMilliseconds = 20

    init(
        plan: SandboxPlan, process: HelperProcess, channel: GuestChannel, cgroup: SandboxCgroup?, bundle: GVisorBundle,
        placeholders: WorkspacePlaceholders, log: DiagnosticsLog, degraded: [String]
    ) {
        self.plan = plan
        self.process = process
        self.channel = channel
        self.cgroup = cgroup
        self.bundle = bundle
        self.placeholders = placeholders
        self.log = log
        self.degraded = degraded
    }

    deinit {
        close()
    }

    public var isOpen: Bool {
        lock.lock()
        defer { lock.unlock() }
        return !closed && channel.isOpen
    }

    public func takeEgressListener() -> Int32? { nil }

    /// Sends a signal to runsc, which passes it to the guest agent; the agent passes
    /// it on to every process of the session.
    func signal(_ number: Int32) {
        process.signal(number)
    }

    /// CPU time of the whole sandbox so far (gVisor's kernel included), in microseconds.
    var cpuMicroseconds: UInt64? { cgroup?.cpuUsageMicroseconds() }
    var peakMemoryBytes: UInt64? { cgroup?.peakMemoryBytes() }

    /// Runs one command in the session and waits for it. A CPU limit is measured on the
    /// host over the whole sandbox; hitting it, or the memory limit, ends the session,
    /// and the action's result names the limit.
    public func exec(_ request: GuestExec) throws -> GuestExecResult {
        try exec(request, output: nil)
    }

    func exec(_ request: GuestExec, output: GuestChannel.OutputSink?) throws -> GuestExecResult {
        if request.cpuMilliseconds != nil && cgroup == nil {
            throw StockadeError(
                .unsupported,
                "failed to run the command: the gvisor tier holds CPU-time limits on a host cgroup, and none is available here. Drop the CPU limit or use --tier namespaces")
        }
        var guestRequest = request
        // RLIMIT_CPU is not enforced inside gVisor (see above): the host watches instead.
        guestRequest.cpuMilliseconds = nil
        let kills = cgroup?.memoryKills() ?? 0
        let watchdog = request.cpuMilliseconds.flatMap { limit in cgroup.map { CPUWatchdog(session: self, cgroup: $0, limitMilliseconds: limit) } }
        defer { watchdog?.stop() }
        do {
            var result = try channel.exec(guestRequest, output: output)
            if let limit = hostLimit(memoryKillsBefore: kills) {
                result.limit = limit
            }
            return result
        } catch let error as StockadeError where error.code == .startFailed {
            // The session ended under the action: name the host limit that ended it.
            guard let limit = hostLimit(memoryKillsBefore: kills) else {
                let said = log.finish()
                if said.isEmpty { throw error }
                throw StockadeError(error.code, "\(error.message) (runsc said: \(said))")
            }
            return GuestExecResult(
                exitCode: 128 + SIGKILL, signal: SIGKILL, limit: limit, stdout: [], stderr: [], stdoutTruncated: false,
                stderrTruncated: false, cpuMicroseconds: 0, peakMemoryKiB: 0, wallMilliseconds: 0)
        }
    }

    private func hostLimit(memoryKillsBefore kills: UInt64) -> LimitKind? {
        lock.lock()
        let ended = endedFor
        lock.unlock()
        if let ended { return ended }
        if let cgroup, cgroup.memoryKills() > kills || cgroup.memoryLimitHit() && !channel.isOpen { return .memory }
        return nil
    }

    /// Ends the session for a host-side limit.
    func end(for limit: LimitKind) {
        lock.lock()
        if endedFor == nil { endedFor = limit }
        lock.unlock()
        channel.shutdown()
        cgroup?.killAll()
    }

    /// Ends the session: the guest agent sees its socket close and ends every process;
    /// runsc then exits. Whatever is left after a grace period is killed. Idempotent.
    public func close() {
        lock.lock()
        let wasClosed = closed
        closed = true
        lock.unlock()
        guard !wasClosed else { return }
        channel.shutdown()
        if !process.awaitExit(milliseconds: 2000) { cgroup?.killAll() }
        process.kill()
        cgroup?.killAll()
        _ = cgroup?.destroy()
        bundle.remove()
        placeholders.remove()
    }
}

/// Watches the host cgroup's CPU counter while one action runs.
private final class CPUWatchdog: @unchecked Sendable {
    private let stopped = Mutex(false)

    init(session: GVisorSession, cgroup: SandboxCgroup, limitMilliseconds: UInt64) {
        let start = cgroup.cpuUsageMicroseconds() ?? 0
        let thread = Thread { [self] in
            while !stopped.withLock({ $0 }) {
                usleep(20_000)
                if let used = cgroup.cpuUsageMicroseconds(), used >= start, (used - start) / 1000 >= limitMilliseconds {
                    session.end(for: .cpu)
                    return
                }
            }
        }
        thread.name = "stockade-cpu-watch"
        thread.start()
    }

    func stop() {
        stopped.withLock { $0 = true }
    }
}
