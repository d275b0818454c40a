import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// A one-shot gVisor run: a session with one action, whose output streams to the caller.
final class GVisorSandbox: Sandbox, @unchecked Sendable {
    let plan: SandboxPlan
    private let session: GVisorSession
    private let output: OutputHandling
    private let started: UInt64
    private let forwardSignals: Bool
    private let done = DispatchSemaphore(value: 0)
    private let outcome = Mutex<Result<GuestExecResult, any Error>?>(nil)
    private let waited = Mutex(false)

    init(plan: SandboxPlan, session: GVisorSession, output: OutputHandling, input: InputPump?, started: UInt64, forwardSignals: Bool) {
        self.plan = plan
        self.forwardSignals = forwardSignals
        self.session = session
        self.output = output
        self.started = started
        var capture = 1 << 20
        var sink: GuestChannel.OutputSink?
        switch output {
        case .capture(let maximum):
            capture = maximum
        case .stream(let standardOutput, let standardError):
            sink = { isError, bytes in Self.write(bytes, to: isError ? standardError : standardOutput) }
        case .filteredStream(let standardOutput, let standardError, let filters):
            sink = { isError, bytes in
                let filter = isError ? filters.standardError : filters.standardOutput
                Self.write(filter.pass(Array(bytes))[...], to: isError ? standardError : standardOutput)
            }
        }
        let request = GuestExec(
            argv: plan.command, environment: plan.environment, workingDirectory: plan.workingDirectory,
            wallMilliseconds: plan.limits.wallMilliseconds, cpuMilliseconds: plan.limits.cpuMilliseconds,
            outputBytes: plan.limits.outputBytes, captureBytesPerStream: capture)
        let thread = Thread { [self, sink] in
            let result = Result { try session.exec(request, output: sink) }
            outcome.withLock { $0 = result }
            done.signal()
        }
        thread.name = "stockade-gvisor-run"
        thread.start()
        // Feeds standard input from a file, on a thread of its own, until the file
        // ends or the sandbox's end of the pipe is gone.
        if let input {
            let feeder = Thread {
                while input.waitWritable() && input.feed() {}
                input.close()
            }
            feeder.name = "stockade-gvisor-input"
            feeder.start()
        }
    }

    func takeEgressListener() -> Int32? { nil }

    func signal(_ signal: Int32) {
        session.signal(signal)
    }

    func kill() {
        session.close()
    }

    func wait() throws -> RunResult {
        let already = waited.withLock { value -> Bool in
            defer { value = true }
            return value
        }
        guard !already else {
            throw StockadeError(.invalidArgument, "failed to wait for the sandbox: it was already waited for")
        }
        if forwardSignals {
            // As on the namespaces tier: the first interrupt is passed on, a second kills.
            let signals = NamespaceBackend.forwardedSignals
            let fd = stockade_signalfd(signals, Int32(signals.count))
            var forwarded = 0
            while done.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
                var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard fd >= 0, poll(&ready, 1, 0) > 0 else { continue }
                let number = stockade_signalfd_read(fd)
                guard number > 0 else { continue }
                forwarded += 1
                if forwarded > 1 { session.close() } else { session.signal(number) }
            }
            if fd >= 0 { close(fd) }
        } else {
            done.wait()
        }
        let finished = outcome.withLock { $0 }!
        let cpu = session.cpuMicroseconds
        let peak = session.peakMemoryBytes
        session.close()
        if case .filteredStream(let standardOutput, let standardError, let filters) = output {
            Self.write(filters.standardOutput.finish()[...], to: standardOutput)
            Self.write(filters.standardError.finish()[...], to: standardError)
        }
        let guest = try finished.get()
        var result = RunResult(
            exitCode: guest.exitCode, signal: guest.signal, wallMilliseconds: Clock.now() - started,
            cpuMilliseconds: max(guest.cpuMicroseconds, cpu ?? 0) / 1000,
            peakMemoryBytes: max(guest.peakMemoryKiB * 1024, peak ?? 0), degraded: session.degraded)
        result.stdout = guest.stdout
        result.stderr = guest.stderr
        result.stdoutTruncated = guest.stdoutTruncated || guest.limit == .output
        result.stderrTruncated = guest.stderrTruncated || guest.limit == .output
        var limit = guest.limit
        if limit == nil, guest.signal == SIGXFSZ { limit = .fileSize }
        if let limit {
            result.limit = limit
            result.limitDescription = plan.limits.describe(limit)
        }
        if let workspace = plan.workspace {
            result.createdProtected = workspace.watched.filter { $0.changed(in: workspace.hostPath) }.map(\.relativePath)
        }
        return result
    }

    /// Writes all of `bytes`; a reader that went away loses the rest.
    private static func write(_ bytes: ArraySlice<UInt8>, to fd: Int32) {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
