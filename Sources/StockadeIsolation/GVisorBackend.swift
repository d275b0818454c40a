import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// The gVisor tier: the plan as an OCI bundle run by runsc, whose user-space kernel (the
/// Sentry) answers the sandbox's system calls instead of the host's. stockade-init runs
/// inside as the guest agent, over a socket passed as its standard output, so sessions
/// and one-shot runs work as on the namespaces tier.
///
/// Limits: wall time, output, open files, file size and processes (RLIMIT_NPROC, which
/// gVisor enforces) are held inside. Memory and CPU time are held from the host, on a
/// cgroup holding runsc and everything it starts, so they count gVisor's own kernel
/// too, and hitting either ends the whole sandbox. No network but `none`: the egress
/// bridge needs a listener in the sandbox's network namespace, which runsc's own
/// network stack does not have; a plan that asks for it is refused.
public struct GVisorBackend: IsolationBackend {
    public static let tier = IsolationTier.gvisor

    /// Whether one-shot runs forward `NamespaceBackend.forwardedSignals` (which the
    /// caller has blocked in every thread) to the command, as on the namespaces tier.
    public var forwardSignals: Bool

    public init(forwardSignals: Bool = false) {
        self.forwardSignals = forwardSignals
    }

    public static func probe() -> Availability {
        let runtime: GVisorRuntime
        switch GVisorRuntime.locate() {
        case .success(let found): runtime = found
        case .failure(let error): return .unavailable(reason: error.message)
        }
        guard geteuid() == 0 else {
            return .unavailable(reason: "runsc \(runtime.version) is installed, but stockade runs it as root only: the sandbox user's mapping to the caller needs CAP_SETUID (rootless runsc is not supported yet)")
        }
        do { _ = try InitBinary.descriptor() } catch let error as StockadeError {
            return .unavailable(reason: error.message)
        } catch {
            return .unavailable(reason: "\(error)")
        }
        var notes = ["runsc \(runtime.version) at \(runtime.path)", "platform \(runtime.platform) (built in: \(runtime.platforms.joined(separator: ", ")))"]
        switch SandboxCgroup.probe() {
        case .v2(let root): notes.append("memory and CPU limits on cgroup v2 at \(root)")
        case .v1: notes.append("memory and CPU limits on cgroup v1")
        case .unavailable(let reason): notes.append("no memory or CPU limits: \(reason)")
        }
        return .available(notes: notes)
    }

    /// Refuses what this tier cannot carry out, naming it.
    static func check(_ plan: SandboxPlan) throws {
        if plan.network == .proxy {
            throw StockadeError(
                .unsupported,
                "failed to start the gVisor sandbox: the policy grants network access through the egress proxy, which the gvisor tier does not have (runsc has its own network stack, where the bridge cannot be opened). Use --tier namespaces, or drop the network grant")
        }
    }

    /// Runs the plan's command once, in a new gVisor sandbox.
    public func start(_ plan: SandboxPlan, input: InputHandling, output: OutputHandling) throws -> any Sandbox {
        let started = Clock.now()
        // runsc holds its own copy of the read end once started.
        var ends = PipeSet()
        defer { ends.closeAll() }
        var standardInput: Int32 = -1
        var pump: InputPump?
        switch try StandardInput.connect(input) {
        case .passed(let fd):
            standardInput = fd
        case .pumped(let read, let feeder):
            ends.adopt(read)
            standardInput = read
            pump = feeder
        case .null:
            break
        }
        let session: GVisorSession
        do {
            session = try startSession(plan, standardInput: standardInput)
        } catch {
            pump?.close()
            throw error
        }
        return GVisorSandbox(plan: plan, session: session, output: output, input: pump, started: started, forwardSignals: forwardSignals)
    }

    /// Starts a session sandbox for `plan` (its `command` is not run: actions come
    /// through `exec`).
    public func startSession(_ plan: SandboxPlan) throws -> GVisorSession {
        try startSession(plan, standardInput: -1)
    }

    func startSession(_ plan: SandboxPlan, standardInput: Int32) throws -> GVisorSession {
        try Self.check(plan)
        _ = NamespaceBackend.ignoreBrokenPipes
        let runtime = try GVisorRuntime.locate().get()
        guard geteuid() == 0 else {
            throw StockadeError(.unsupported, "failed to start the gVisor sandbox: stockade runs runsc as root only. Use --tier namespaces, or run stockade as root")
        }
        // The plan's system-call filter, installed inside by the guest agent before each
        // command (gVisor's kernel runs seccomp filters for its processes).
        let seccomp = try SeccompFilter.program(for: plan.seccomp)
        let bundle = try GVisorBundle.create(for: plan, initDescriptor: try InitBinary.descriptor(), seccomp: seccomp)
        var cleanups: [() -> Void] = [{ bundle.remove() }]
        var launched = false
        defer { if !launched { cleanups.reversed().forEach { $0() } } }

        let placeholders = try WorkspacePlaceholders.create(for: plan.workspace)
        cleanups.append { placeholders.remove() }
        // Memory and CPU from the host: the cgroup holds runsc, its gofer and the
        // Sentry, whose memory is the sandbox's. Processes are limited inside; the
        // cgroup's process limit is only a backstop above runsc's own threads.
        var degraded: [String] = []
        let cgroup = try SandboxCgroup.create(
            name: "gvisor-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            limits: CgroupLimits(memoryBytes: plan.limits.memoryBytes, pids: plan.limits.pids.map { $0 + 1024 })
        )
        if cgroup == nil { degraded.append("cgroups") }
        cleanups.append { _ = cgroup?.destroy() }

        var pipes = PipeSet()
        defer { pipes.closeAll() }
        let channel = try pipes.makeSocketPair()
        let diagnostics = try pipes.make()
        let gate = try pipes.make()
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw StockadeError(.startFailed, "failed to open /dev/null: \(errnoText(errno))") }
        defer { close(null) }
        let id = "stockade-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        // STOCKADE_RUNSC_DEBUG=DIR/ keeps runsc's debug logs (and strace of the sandbox).
        var debug: [String] = []
        if let directory = ProcessInfo.processInfo.environment["STOCKADE_RUNSC_DEBUG"], directory.hasPrefix("/") {
            debug = ["--debug", "--strace", "--debug-log=\(directory.hasSuffix("/") ? directory : directory + "/")"]
        }
        let arguments = [runtime.path] + debug + [
            "--root", bundle.statePath, "--platform", runtime.platform, "--network", "none",
            "--ignore-cgroups", "--host-uds", "none", "--host-fifo", "none", "run", "--bundle", bundle.directory, id,
        ]
        let stdio: [Int32] = [standardInput >= 0 ? standardInput : null, channel.write, diagnostics.write]
        let (pid, pidfd) = try HelperLauncher.spawn(
            path: runtime.path, arguments: arguments, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], stdio: stdio, gate: gate.read)
        pipes.close(channel.write)
        pipes.close(diagnostics.write)
        pipes.close(gate.read)
        let process = HelperProcess(pid: pid, pidfd: pidfd)
        cleanups.append { process.kill() }
        if let cgroup {
            try cgroup.add(pid: pid)
        }
        var byte: UInt8 = 1
        guard write(gate.write, &byte, 1) == 1 else {
            throw StockadeError(.startFailed, "failed to start runsc: \(errnoText(errno))")
        }
        pipes.close(gate.write)
        let log = DiagnosticsLog(fd: pipes.release(diagnostics.read))
        let guest: GuestChannel
        do {
            guest = try GuestChannel(socket: pipes.release(channel.read), timeout: .seconds(60))
        } catch {
            process.kill()
            let said = log.finish()
            throw StockadeError(.startFailed, "failed to start the gVisor sandbox: \(said.isEmpty ? "runsc ended without a message" : "runsc said: \(said)")")
        }
        launched = true
        return GVisorSession(
            plan: plan, process: process, channel: guest, cgroup: cgroup, bundle: bundle, placeholders: placeholders,
            log: log, degraded: degraded)
    }
}
