import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// A running namespaces-tier sandbox: relays output, enforces the wall, CPU, memory,
/// process and output limits, and tears everything down when stockade-init ends.
final class NamespaceSandbox: Sandbox, @unchecked Sendable {
    let plan: SandboxPlan
    private let launched: LaunchedSandbox
    private let cgroup: SandboxCgroup?
    /// Removed once every process of the sandbox is gone.
    private let placeholders: WorkspacePlaceholders
    private let stdoutFD: Int32
    private let stderrFD: Int32
    private let output: OutputHandling
    private let started: UInt64
    private let degraded: [String]
    private let forwardSignals: Bool
    private var input: InputPump?
    private let state = Mutex<State>(State())

    private struct State {
        var waited = false
        var killedFor: LimitKind?
        var egressListener: Int32 = -1
    }

    /// How often cgroup counters are read while a CPU, memory or process limit is set.
    private static let cgroupPollMilliseconds: Int32 = 20

    init(
        plan: SandboxPlan, launched: LaunchedSandbox, cgroup: SandboxCgroup?, placeholders: WorkspacePlaceholders,
        stdoutFD: Int32, stderrFD: Int32, output: OutputHandling, input: InputPump?, started: UInt64, degraded: [String],
        forwardSignals: Bool
    ) {
        self.input = input
        self.placeholders = placeholders
        self.plan = plan
        self.launched = launched
        self.cgroup = cgroup
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.output = output
        self.started = started
        self.degraded = degraded
        self.forwardSignals = forwardSignals
        state.withLock { $0.egressListener = launched.egressListener }
    }

    func takeEgressListener() -> Int32? {
        state.withLock { state in
            defer { state.egressListener = -1 }
            return state.egressListener >= 0 ? state.egressListener : nil
        }
    }

    func signal(_ signal: Int32) {
        _ = stockade_pidfd_send_signal(launched.pidfd, signal)
    }

    func kill() {
        // stockade-init is PID 1 of the sandbox's PID namespace: when it dies the
        // kernel kills every other process in the namespace.
        _ = stockade_pidfd_send_signal(launched.pidfd, SIGKILL)
        cgroup?.killAll()
    }

    private func end(for limit: LimitKind) {
        state.withLock { if $0.killedFor == nil { $0.killedFor = limit } }
        kill()
    }

    func wait() throws -> RunResult {
        let already = state.withLock { state -> Bool in
            defer { state.waited = true }
            return state.waited
        }
        guard !already else {
            throw StockadeError(.invalidArgument, "failed to wait for the sandbox: it was already waited for")
        }
        defer {
            input?.close()
            close(stdoutFD)
            close(stderrFD)
            close(launched.statusFD)
            close(launched.pidfd)
            if let listener = takeEgressListener() { close(listener) }
        }
        var stdout = StreamState(fd: stdoutFD)
        var stderr = StreamState(fd: stderrFD)
        var initExited = false
        let deadline = plan.limits.wallMilliseconds.map { started + $0 }
        let watchCgroup = cgroup != nil && (plan.limits.cpuMilliseconds != nil || plan.limits.memoryBytes != nil || plan.limits.pids != nil)
        var signals: Int32 = -1
        if forwardSignals { signals = Self.signalDescriptor() }
        defer { if signals >= 0 { close(signals) } }
        var forwarded = 0
        var pollFailure: Int32?
        var buffer = [UInt8](repeating: 0, count: 65536)

        while !(initExited && stdout.closed && stderr.closed) {
            var timeout: Int32 = -1
            if let deadline {
                let now = Clock.now()
                timeout = now >= deadline ? 0 : Int32(min(deadline - now, 60_000))
            }
            if watchCgroup && !initExited { timeout = timeout < 0 ? Self.cgroupPollMilliseconds : min(timeout, Self.cgroupPollMilliseconds) }
            var fds = [
                pollfd(fd: initExited ? -1 : launched.pidfd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stdout.closed ? -1 : stdoutFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stderr.closed ? -1 : stderrFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
                pollfd(fd: input?.pipe ?? -1, events: Int16(POLLOUT), revents: 0),
            ]
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR {
                // Tear down as usual (reap, remove the cgroup), then report.
                pollFailure = errno
                kill()
                break
            }
            if fds[1].revents != 0 { relay(&stdout, isError: false, buffer: &buffer, otherTotal: stderr.total, deadline: deadline) }
            if fds[2].revents != 0 { relay(&stderr, isError: true, buffer: &buffer, otherTotal: stdout.total, deadline: deadline) }
            if fds[0].revents != 0 { initExited = true }
            if fds[4].revents != 0, let pump = input, !pump.feed() {
                pump.close()
                input = nil
            }
            if fds[3].revents != 0 {
                let number = stockade_signalfd_read(signals)
                if number > 0 {
                    forwarded += 1
                    // A second interrupt means "now": kill instead of asking again.
                    if forwarded > 1 { kill() } else { signal(number) }
                }
            }
            if let limit = plan.limits.outputBytes, stdout.total + stderr.total > limit { end(for: .output) }
            if let deadline, !initExited, Clock.now() >= deadline { end(for: .wall) }
            if watchCgroup && !initExited, let cgroup { check(cgroup) }
        }

        var usage = rusage()
        var status: Int32 = 0
        while wait4(launched.pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let wall = Clock.now() - started
        let report = Self.readStatus(launched.statusFD)
        var cpu = UInt64(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000
            + UInt64(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000
        var peak = UInt64(usage.ru_maxrss) * 1024
        var memoryHit = false
        if let cgroup {
            if let used = cgroup.cpuUsageMicroseconds() { cpu = max(cpu, used / 1000) }
            if let most = cgroup.peakMemoryBytes() { peak = most }
            memoryHit = cgroup.memoryLimitHit()
            if cgroup.pidsLimitHit() { state.withLock { if $0.killedFor == nil { $0.killedFor = .pids } } }
            cgroup.destroy()
        }
        placeholders.remove()
        if let pollFailure {
            throw StockadeError(.internalError, "failed to wait for the sandbox: poll: \(errnoText(pollFailure)). The sandbox was ended")
        }

        var result = RunResult(exitCode: 0, wallMilliseconds: wall, cpuMilliseconds: cpu, peakMemoryBytes: peak, degraded: degraded)
        result.stdout = stdout.captured
        result.stderr = stderr.captured
        result.stdoutTruncated = stdout.truncated
        result.stderrTruncated = stderr.truncated
        if let workspace = plan.workspace {
            result.createdProtected = workspace.watched.filter { $0.changed(in: workspace.hostPath) }.map(\.relativePath)
        }
        switch report {
        case .exited(let code):
            result.exitCode = code
        case .signaled(let number):
            result.exitCode = 128 + number
            result.signal = number
        case .execFailed(let error):
            throw Self.execError(error, command: plan.command, toolset: plan.toolset)
        case .missing:
            // stockade-init was killed (by us, for a limit, or by the kernel's OOM killer).
            result.exitCode = 128 + SIGKILL
            result.signal = SIGKILL
        }
        var limit = state.withLock { $0.killedFor }
        if limit == nil, memoryHit { limit = .memory }
        if limit == nil, result.signal == SIGXFSZ { limit = .fileSize }
        // SIGXCPU comes from RLIMIT_CPU's soft limit; SIGKILL from its hard limit.
        if limit == nil, plan.limits.cpuMilliseconds != nil, result.signal == SIGXCPU { limit = .cpu }
        if limit == nil, result.signal == SIGKILL, let cpuLimit = plan.limits.cpuMilliseconds, cpu >= cpuLimit { limit = .cpu }
        if let limit {
            result.limit = limit
            result.limitDescription = plan.limits.describe(limit)
            if result.signal == nil {
                result.signal = SIGKILL
                result.exitCode = 128 + SIGKILL
            }
        }
        return result
    }

    private func check(_ cgroup: SandboxCgroup) {
        if plan.limits.memoryBytes != nil, cgroup.memoryLimitHit() { end(for: .memory); return }
        if plan.limits.pids != nil, cgroup.pidsLimitHit() { end(for: .pids); return }
        if let limit = plan.limits.cpuMilliseconds, let used = cgroup.cpuUsageMicroseconds(), used / 1000 >= limit {
            end(for: .cpu)
        }
    }

    private struct StreamState {
        let fd: Int32
        var closed = false
        var total: UInt64 = 0
        var captured: [UInt8] = []
        var truncated = false
        var relayBroken = false
    }

    private func relay(_ stream: inout StreamState, isError: Bool, buffer: inout [UInt8], otherTotal: UInt64, deadline: UInt64?) {
        let count = buffer.withUnsafeMutableBytes { read(stream.fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { return }
            stream.closed = true
            return
        }
        if count == 0 {
            stream.closed = true
            flush(&stream, isError: isError, deadline: deadline)
            return
        }
        var allowed = count
        if let limit = plan.limits.outputBytes {
            // The limit covers stdout and stderr together.
            let used = stream.total + otherTotal
            let remaining = limit > used ? limit - used : 0
            allowed = Int(min(UInt64(count), remaining))
        }
        stream.total += UInt64(count)
        switch output {
        case .capture(let maximum):
            let room = max(0, maximum - stream.captured.count)
            let keep = min(room, allowed)
            stream.captured.append(contentsOf: buffer[0..<keep])
            if keep < count { stream.truncated = true }
        case .stream(let standardOutput, let standardError):
            if allowed < count { stream.truncated = true }
            guard !stream.relayBroken, allowed > 0 else { return }
            write(Array(buffer[0..<allowed]), to: isError ? standardError : standardOutput, stream: &stream, deadline: deadline)
        case .filteredStream(let standardOutput, let standardError, let filters):
            if allowed < count { stream.truncated = true }
            guard !stream.relayBroken, allowed > 0 else { return }
            let filter = isError ? filters.standardError : filters.standardOutput
            write(filter.pass(Array(buffer[0..<allowed])), to: isError ? standardError : standardOutput, stream: &stream, deadline: deadline)
        }
    }

    /// At the end of a stream: what its filter still holds.
    private func flush(_ stream: inout StreamState, isError: Bool, deadline: UInt64?) {
        guard case .filteredStream(let standardOutput, let standardError, let filters) = output, !stream.relayBroken else { return }
        let filter = isError ? filters.standardError : filters.standardOutput
        write(filter.finish(), to: isError ? standardError : standardOutput, stream: &stream, deadline: deadline)
    }

    private func write(_ bytes: [UInt8], to target: Int32, stream: inout StreamState, deadline: UInt64?) {
        var offset = 0
        while offset < bytes.count {
            // A reader that stops reading must not suspend the limits: wait for room
            // only until the wall deadline, then write at most PIPE_BUF bytes, which
            // a pipe with room takes without blocking.
            var waitFor = pollfd(fd: target, events: Int16(POLLOUT), revents: 0)
            let timeout = deadline.map { Int32(clamping: $0 > Clock.now() ? $0 - Clock.now() : 0) } ?? -1
            let ready = poll(&waitFor, 1, timeout)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                end(for: .wall)
                stream.relayBroken = true
                break
            }
            let chunk = min(bytes.count - offset, 4096)
            let written = bytes.withUnsafeBytes { Glibc.write(target, $0.baseAddress! + offset, chunk) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 {
                // The reader went away: keep draining so the sandbox is not blocked.
                stream.relayBroken = true
                break
            }
            offset += written
        }
    }

    private enum StatusReport {
        case exited(Int32), signaled(Int32), execFailed(Int32), missing
    }

    private static func readStatus(_ fd: Int32) -> StatusReport {
        var bytes = [UInt8](repeating: 0, count: 128)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return .missing }
        let words = String(decoding: bytes[0..<count], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard words.count >= 2, let value = Int32(words[1]) else { return .missing }
        switch words[0] {
        case "exited": return .exited(value)
        case "signaled": return .signaled(value)
        case "exec-failed": return .execFailed(value)
        default: return .missing
        }
    }

    private static func execError(_ error: Int32, command: [String], toolset: ToolsetGrant?) -> StockadeError {
        let name = command.first ?? ""
        if error == ENOENT, let toolset {
            return StockadeError(
                .notFound,
                "failed to run '\(name)': not found inside the sandbox. Its toolset holds only \(toolset.names.joined(separator: ", ")) and what they need; add the program to the toolset (stockade toolset show NAME... lists what a toolset holds)"
            )
        }
        if error == ENOENT {
            return StockadeError(
                .notFound,
                "failed to run '\(name)': not found inside the sandbox. Only /usr, /bin, /lib*, the workspace (/workspace) and granted paths are visible; use a path inside them"
            )
        }
        return StockadeError(
            .notExecutable,
            "failed to run '\(name)': \(errnoText(error)). Check that it is an executable file the sandbox user may run"
        )
    }

    private static func signalDescriptor() -> Int32 {
        let signals = NamespaceBackend.forwardedSignals
        return stockade_signalfd(signals, Int32(signals.count))
    }
}

extension WatchedEntry {
    /// Whether the entry below `hostPath` (the workspace root) is no longer what was seen.
    func changed(in hostPath: String) -> Bool {
        var info = stat()
        let present = lstat(hostPath + "/" + relativePath, &info) == 0
        guard let signature else { return present }
        return !present || Self.signature(of: info) != signature
    }

    static func signature(of info: stat) -> String {
        "\(info.st_ino):\(info.st_mode):\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)"
    }
}
