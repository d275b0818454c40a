import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// runsc as found on this host: where, which version, and the platform stockade uses.
public struct GVisorRuntime: Equatable, Sendable {
    public let path: String
    public let version: String
    /// The platforms this runsc build has (`runsc help platforms`).
    public let platforms: [String]
    /// The one stockade runs it with: `STOCKADE_GVISOR_PLATFORM` if set and built in,
    /// else systrap where the build has it, else ptrace. Never kvm on its own: it needs
    /// hardware virtualization, and hangs on paravirtual KVM.
    public let platform: String

    private static let cached = Mutex<Result<GVisorRuntime, StockadeError>?>(nil)

    /// Finds runsc (`STOCKADE_RUNSC`, else the usual directories and `PATH`) and asks it
    /// what it has. Cached for the process.
    public static func locate() -> Result<GVisorRuntime, StockadeError> {
        cached.withLock { cached in
            if let cached { return cached }
            let found = find()
            cached = found
            return found
        }
    }

    private static func find() -> Result<GVisorRuntime, StockadeError> {
        let environment = ProcessInfo.processInfo.environment
        var candidates = ["/usr/sbin/runsc", "/usr/bin/runsc", "/usr/local/bin/runsc", "/usr/local/sbin/runsc"]
        candidates += (environment["PATH"] ?? "").split(separator: ":").map { "\($0)/runsc" }
        if let explicit = environment["STOCKADE_RUNSC"], !explicit.isEmpty { candidates = [explicit] }
        guard let path = candidates.first(where: { $0.hasPrefix("/") && FileManager.default.isExecutableFile(atPath: $0) }) else {
            if let explicit = environment["STOCKADE_RUNSC"], !explicit.isEmpty {
                return .failure(StockadeError(.hostFacility, "STOCKADE_RUNSC names \(explicit), which is not an executable file (an absolute path is needed)"))
            }
            return .failure(StockadeError(.hostFacility, "runsc is not installed (install the runsc package, or set STOCKADE_RUNSC to its path)"))
        }
        let version: String
        let platforms: [String]
        if let known = Answers.cached(for: path) {
            (version, platforms) = (known.version, known.platforms)
        } else {
            guard let versionText = capture(path, ["--version"]), let first = versionText.split(separator: "\n").first else {
                return .failure(StockadeError(.hostFacility, "\(path) did not answer --version; reinstall runsc"))
            }
            version = first.replacingOccurrences(of: "runsc version ", with: "")
            platforms = (capture(path, ["help", "platforms"]) ?? "ptrace").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            Answers.remember(Answers(version: version, platforms: platforms), for: path)
        }
        let platform: String
        if let asked = environment["STOCKADE_GVISOR_PLATFORM"], !asked.isEmpty {
            guard platforms.contains(asked) else {
                return .failure(StockadeError(.hostFacility, "STOCKADE_GVISOR_PLATFORM asks for '\(asked)', which this runsc does not have (it has \(platforms.joined(separator: ", ")))"))
            }
            platform = asked
        } else if platforms.contains("systrap") {
            platform = "systrap"
        } else if platforms.contains("ptrace") {
            platform = "ptrace"
        } else {
            return .failure(StockadeError(.hostFacility, "this runsc has neither the systrap nor the ptrace platform (it has \(platforms.joined(separator: ", ")))"))
        }
        return .success(GVisorRuntime(path: path, version: version, platforms: platforms, platform: platform))
    }

    /// What runsc said about itself, kept beside the toolset cache: asking costs two
    /// starts of a Go binary (about 50 ms) on every `stockade run`. Valid while the
    /// binary's inode, size and change time are the same; trusted only from a file of
    /// ours that nobody else may write.
    struct Answers: Codable {
        var version: String
        var platforms: [String]
        var binary: String = ""

        static func signature(of path: String) -> String? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return "\(path) \(info.st_dev) \(info.st_ino) \(info.st_size) \(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)"
        }

        static func file() -> String? {
            guard let base = try? ToolsetCache.defaultBase(environment: ProcessInfo.processInfo.environment) else { return nil }
            return base + "/runsc.json"
        }

        static func cached(for path: String) -> Answers? {
            guard let file = file(), let signature = signature(of: path) else { return nil }
            var info = stat()
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), info.st_mode & 0o022 == 0,
                  let data = FileManager.default.contents(atPath: file),
                  let answers = try? JSONDecoder().decode(Answers.self, from: data), answers.binary == signature
            else { return nil }
            return answers
        }

        static func remember(_ answers: Answers, for path: String) {
            guard let file = file(), let signature = signature(of: path) else { return }
            var stamped = answers
            stamped.binary = signature
            let directory = (file as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            guard let data = try? JSONEncoder().encode(stamped) else { return }
            try? data.write(to: URL(fileURLWithPath: file), options: .atomic)
            chmod(file, 0o600)
        }
    }

    /// Standard output of a short-lived command, or nil when it failed.
    static func capture(_ path: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

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
        var ends = PipeSet()
        defer { ends.closeAll() }
        // Standard input as on the namespaces tier: pipes and sockets pass; /dev/null
        // and terminals become /dev/null; anything else is pumped through a pipe.
        var standardInput: Int32 = -1
        var pump: InputPump?
        switch input {
        case .descriptor(let fd) where isatty(fd) == 0:
            var info = stat()
            let kind = fstat(fd, &info) == 0 ? info.st_mode & S_IFMT : 0
            if kind == S_IFIFO || kind == S_IFSOCK {
                standardInput = fd
            } else if !(kind == S_IFCHR && info.st_rdev == (1 << 8 | 3)) {
                let made = try ends.make()
                standardInput = made.read
                pump = InputPump(source: fd, pipe: ends.release(made.write))
            }
        case .none, .descriptor:
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

/// A helper process (runsc) started by `stockade_spawn_helper`.
final class HelperProcess: @unchecked Sendable {
    let pid: Int32
    let pidfd: Int32
    private let lock = NSLock()
    private var reaped = false

    init(pid: Int32, pidfd: Int32) {
        self.pid = pid
        self.pidfd = pidfd
    }

    func signal(_ number: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if !reaped { _ = stockade_pidfd_send_signal(pidfd, number) }
    }

    /// Waits up to `milliseconds` for it to end by itself; true if it did.
    func awaitExit(milliseconds: Int32) -> Bool {
        var ready = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let count = poll(&ready, 1, milliseconds)
            if count < 0 && errno == EINTR { continue }
            return count > 0
        }
    }

    /// Kills and reaps it. Idempotent.
    func kill() {
        lock.lock()
        defer { lock.unlock() }
        guard !reaped else { return }
        reaped = true
        _ = stockade_pidfd_send_signal(pidfd, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(pidfd)
    }
}

/// Keeps the last few KiB of what runsc (and stockade-init) write to stderr, read on a
/// thread of its own so that neither ever blocks on a full pipe.
final class DiagnosticsLog: @unchecked Sendable {
    private let lock = NSCondition()
    private var text: [UInt8] = []
    private var done = false
    private static let keep = 8192

    init(fd: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                lock.lock()
                text += buffer[0..<count]
                if text.count > Self.keep { text.removeFirst(text.count - Self.keep) }
                lock.unlock()
            }
            close(fd)
            lock.lock()
            done = true
            lock.broadcast()
            lock.unlock()
        }
        thread.name = "stockade-runsc-log"
        thread.start()
    }

    /// What was said, once the writers are gone (or after 2 s), trimmed to its last lines.
    func finish() -> String {
        lock.lock()
        let deadline = Date().addingTimeInterval(2)
        while !done { if !lock.wait(until: deadline) { break } }
        let said = String(decoding: text, as: UTF8.self)
        lock.unlock()
        return said.split(separator: "\n").suffix(3).joined(separator: " / ").trimmingCharacters(in: .whitespaces)
    }
}
