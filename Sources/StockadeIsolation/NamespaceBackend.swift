import CStockadeShim
import Foundation
import StockadeCore
import StockadeSystem

/// The default tier: our own code on the kernel's namespaces, cgroups, Landlock and
/// seccomp. No helper program is involved; see CStockadeShim for the child's steps.
public struct NamespaceBackend: IsolationBackend {
    public static let tier = IsolationTier.namespaces

    /// Signals the supervisor forwards to the command when `forwardSignals` is set:
    /// the caller must have blocked them in every thread.
    public static let forwardedSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// Whether to forward `forwardedSignals` (read through a signalfd) to the command.
    public var forwardSignals: Bool

    public init(forwardSignals: Bool = false) {
        self.forwardSignals = forwardSignals
    }

    public static func probe() -> Availability {
        guard FileManager.default.fileExists(atPath: "/proc/self/ns/user") else {
            return .unavailable(reason: "the kernel has no user namespaces (CONFIG_USER_NS)")
        }
        if let maximum = KernelFile.read("/proc/sys/user/max_user_namespaces"), Int(maximum.trimmingCharacters(in: .whitespacesAndNewlines)) == 0 {
            return .unavailable(reason: "user namespaces are disabled (user.max_user_namespaces is 0)")
        }
        do { _ = try InitBinary.descriptor() } catch let error as StockadeError {
            return .unavailable(reason: error.message)
        } catch {
            return .unavailable(reason: "\(error)")
        }
        var notes: [String] = []
        if let abi = Landlock.abiVersion() { notes.append("landlock ABI \(abi)") } else { notes.append("landlock unavailable") }
        switch SandboxCgroup.probe() {
        case .v2(let root): notes.append("cgroup v2 at \(root)")
        case .v1: notes.append("cgroup v1")
        case .unavailable(let reason): notes.append("no cgroup limits: \(reason)")
        }
        return .available(notes: notes)
    }

    /// What every start needs before the launch, for one-shot sandboxes and sessions
    /// alike. The cgroup and placeholders are the caller's to remove if the launch fails.
    struct Preparation {
        let identity: HostIdentity
        let seccomp: [UInt8]
        let landlock: Landlock.Ruleset?
        let cgroup: SandboxCgroup?
        let placeholders: WorkspacePlaceholders
        /// Protections this host could not give ("landlock", "cgroups").
        let degraded: [String]
    }

    func prepare(_ plan: SandboxPlan, cgroupName: String) throws -> Preparation {
        _ = Self.ignoreBrokenPipes
        let identity = HostIdentity.forNewSandbox()
        let seccomp = try SeccompFilter.program(for: plan.seccomp)
        var degraded: [String] = []
        let landlock = Landlock.abiVersion().map { Landlock.ruleset(for: plan.mounts, abi: $0) }
        if landlock == nil { degraded.append("landlock") }
        let cgroup = try SandboxCgroup.create(
            name: "\(cgroupName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            limits: CgroupLimits(memoryBytes: plan.limits.memoryBytes, pids: plan.limits.pids)
        )
        if cgroup == nil { degraded.append("cgroups") }
        let placeholders: WorkspacePlaceholders
        do {
            placeholders = try WorkspacePlaceholders.create(for: plan.workspace)
        } catch {
            _ = cgroup?.destroy()
            throw error
        }
        return Preparation(identity: identity, seccomp: seccomp, landlock: landlock, cgroup: cgroup, placeholders: placeholders, degraded: degraded)
    }

    public func start(_ plan: SandboxPlan, input: InputHandling, output: OutputHandling) throws -> any Sandbox {
        let started = Clock.now()
        let prepared = try prepare(plan, cgroupName: "sandbox")
        let (identity, seccomp, landlock, cgroup, placeholders) = (prepared.identity, prepared.seccomp, prepared.landlock, prepared.cgroup, prepared.placeholders)
        let degraded = prepared.degraded

        // The sandbox's ends close when start returns (the child holds copies); ours
        // are released to the sandbox object, or closed on every failure path.
        var childEnds = PipeSet()
        defer { childEnds.closeAll() }
        var ourEnds = PipeSet()
        defer { ourEnds.closeAll() }
        var launchedSandbox = false
        defer {
            if !launchedSandbox {
                cgroup?.destroy()
                placeholders.remove()
            }
        }
        func pipe() throws -> (read: Int32, write: Int32) {
            let made = try ourEnds.make()
            childEnds.adopt(ourEnds.release(made.write))
            return made
        }
        let stdoutPipe = try pipe()
        let stderrPipe = try pipe()
        var standardInput: Int32 = -1
        var pump: InputPump?
        switch try StandardInput.connect(input) {
        case .passed(let fd):
            standardInput = fd
        case .pumped(let read, let feeder):
            childEnds.adopt(read)
            standardInput = read
            pump = feeder
        case .null:
            standardInput = open("/dev/null", O_RDONLY | O_CLOEXEC)
            childEnds.adopt(standardInput)
        }

        let request = LaunchRequest(
            plan: plan, identity: identity, landlock: landlock, seccompProgram: seccomp,
            resourceLimits: Self.resourceLimits(plan.limits, cgroup: cgroup),
            standardInput: standardInput, standardOutput: stdoutPipe.write, standardError: stderrPipe.write,
            cgroup: cgroup
        )
        let launched: LaunchedSandbox
        do {
            launched = try SandboxLauncher.launch(request)
        } catch {
            pump?.close()
            throw error
        }
        launchedSandbox = true
        ourEnds.release(stdoutPipe.read)
        ourEnds.release(stderrPipe.read)
        return NamespaceSandbox(
            plan: plan, launched: launched, cgroup: cgroup, placeholders: placeholders, stdoutFD: stdoutPipe.read,
            stderrFD: stderrPipe.read, output: output, input: pump, started: started, degraded: degraded,
            forwardSignals: forwardSignals
        )
    }

    /// The supervisor writes into pipes whose reader may be gone (the sandbox's stdin
    /// after it exits, the caller's stdout); that must be an EPIPE to handle, not a
    /// SIGPIPE that kills the supervisor. Done once per process, like SwiftNIO does.
    static let ignoreBrokenPipes: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()

    /// The rlimits every sandbox gets: a floor under the cgroup limits, and the only
    /// memory and process limits where cgroups are not available.
    static func resourceLimits(_ limits: ResourceLimits, cgroup: SandboxCgroup?) -> [(resource: Int32, soft: UInt64, hard: UInt64)] {
        var result: [(resource: Int32, soft: UInt64, hard: UInt64)] = [(Int32(RLIMIT_CORE.rawValue), 0, 0)]
        if let files = limits.openFiles { result.append((Int32(RLIMIT_NOFILE.rawValue), files, files)) }
        if let size = limits.fileSizeBytes { result.append((Int32(RLIMIT_FSIZE.rawValue), size, size)) }
        if let cpu = limits.cpuMilliseconds {
            // SIGXCPU at the soft limit names the cause; SIGKILL a second later if the
            // program catches it.
            let seconds = (cpu + 999) / 1000
            result.append((Int32(RLIMIT_CPU.rawValue), seconds, seconds + 1))
        }
        // RLIMIT_NPROC counts per user namespace and uid, so it counts only the
        // sandbox's own processes. With a pids cgroup it sits above the cgroup's limit
        // (a floor, and so that the cgroup, which reports the hit, is what stops forks).
        if let pids = limits.pids {
            let floor = cgroup == nil ? pids : pids + 8
            result.append((STOCKADE_RLIMIT_NPROC, floor, floor))
        }
        if cgroup == nil, let memory = limits.memoryBytes {
            result.append((Int32(RLIMIT_DATA.rawValue), memory, memory))
        }
        return result
    }
}

/// Monotonic time in milliseconds.
enum Clock {
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }
}
