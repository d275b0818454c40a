// Per-sandbox control groups: memory and process limits that hold for the whole sandbox
// (a fork bomb or a memory bomb ends inside its group, not on the host), CPU and peak
// memory accounting, and a kill-all that reaches double forks and daemons.
//
// Every sandbox gets a group "stockade/<name>" under each hierarchy it uses:
// - cgroup v2 (CgroupsV2.swift), what most hosts have: one directory, limits in
//   memory.max, memory.swap.max, memory.oom.group and pids.max, kill-all by cgroup.kill;
// - cgroup v1 (CgroupsV1.swift) as the fallback on hybrid hosts whose cgroup2 mount has
//   no controllers: one directory in each of the memory, pids and cpuacct hierarchies.
// CgroupsHost.swift finds which of the two this process can use (`probe()`).
// The "stockade" parents are created on demand and left in place (removing them would
// race with a concurrent create); each sandbox's own directories are removed by destroy().
//
// Inside the sandbox the child enters a new cgroup namespace after it has been moved
// here, so its /sys/fs/cgroup (if it could mount one) shows only its own group; cgroup
// files are owned by the host's root and the sandbox has no capabilities, so it cannot
// raise its limits or set a release_agent (CVE-2022-0492).

import CStockadeShim
import StockadeCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The limits a sandbox's cgroup enforces. `nil` means no limit file is written.
public struct CgroupLimits: Equatable, Sendable {
    /// Memory the whole sandbox may use (RAM, and no swap on top), in bytes.
    public var memoryBytes: UInt64?
    /// How many processes and threads the sandbox may have at once.
    public var pids: UInt64?

    public init(memoryBytes: UInt64? = nil, pids: UInt64? = nil) {
        self.memoryBytes = memoryBytes
        self.pids = pids
    }
}

/// What cgroup support this process could use, from `SandboxCgroup.probe()`.
public enum CgroupAvailability: Equatable, Sendable {
    /// cgroup v2 with the memory and pids controllers; sandboxes go under
    /// `<root>/stockade`. `root` is the hierarchy's mount point when running as root, or
    /// this process's own cgroup when that is a subtree delegated to it.
    case v2(root: String)
    /// cgroup v1 hierarchies (mount points), used as root only. `cpuacct` is optional.
    case v1(memory: String?, pids: String?, cpuacct: String?)
    /// No usable cgroups; `reason` says why (for `stockade doctor` and degraded reports).
    case unavailable(reason: String)
}

/// The control group(s) of one sandbox.
///
/// Thread-safe: it holds only immutable paths, and every operation is a handful of
/// writes to kernel files. Every method may be called after `destroy()`; they then find
/// nothing to do (readers return nil or false).
public final class SandboxCgroup: Sendable {
    /// The directories of this sandbox's group.
    enum Layout: Equatable, Sendable {
        case v2(directory: String)
        case v1(memory: String?, pids: String?, cpuacct: String?)
    }

    let layout: Layout

    init(layout: Layout) {
        self.layout = layout
    }

    /// The cgroup version in use: 1 or 2.
    public var version: Int {
        switch layout {
        case .v2: 2
        case .v1: 1
        }
    }

    /// Every directory of this group (one per hierarchy).
    var directories: [String] {
        switch layout {
        case .v2(let directory): [directory]
        case .v1(let memory, let pids, let cpuacct):
            // Co-mounted controllers share one directory; list it once.
            [memory, pids, cpuacct].compactMap { $0 }.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        }
    }

    // MARK: - Creating

    /// Creates the group "stockade/<name>" with `limits`, where `probe()` finds cgroups.
    ///
    /// Returns nil when cgroups are unavailable: the caller falls back to rlimits and
    /// reports the sandbox as degraded. Throws `StockadeError(.invalidArgument)` for a
    /// name that is not one plain path component, and `StockadeError(.hostFacility)` when
    /// cgroups are available but a step fails (a group of that name exists already, a
    /// limit cannot be written); nothing is left behind then.
    ///
    /// On a delegated v2 subtree the first call may move this process into a leaf
    /// "<own cgroup>/supervisor": cgroup v2 lets a group hand controllers to its children
    /// only while it holds no processes itself.
    public static func create(name: String, limits: CgroupLimits) throws -> SandboxCgroup? {
        try create(name: name, limits: limits, availability: probe())
    }

    /// `create(name:limits:)` on a given availability (tests use this to reach a hierarchy
    /// that `probe()` would not choose).
    static func create(name: String, limits: CgroupLimits, availability: CgroupAvailability) throws -> SandboxCgroup? {
        try validate(name: name)
        switch availability {
        case .unavailable:
            return nil
        case .v2(let root):
            return try createV2(root: root, name: name, limits: limits)
        case .v1(let memory, let pids, let cpuacct):
            return try createV1(memory: memory, pids: pids, cpuacct: cpuacct, name: name, limits: limits)
        }
    }

    static func validate(name: String) throws {
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        guard allowed, !name.isEmpty, name.utf8.count <= 200, !name.hasPrefix(".") else {
            throw StockadeError(
                .invalidArgument,
                "failed to create a cgroup named \"\(name)\": a name is 1 to 200 letters, digits, '-', '_' or '.', "
                    + "and does not start with '.'. Choose another name.")
        }
    }

    /// Makes `directory` (whose parent exists), failing if it exists already.
    static func makeGroupDirectory(_ directory: String) throws {
        do {
            try CgroupFS.makeDirectory(directory)
        } catch .fileExists {
            throw StockadeError(
                .hostFacility,
                "failed to create the cgroup \(directory): it exists already (left by a stockade that crashed?). "
                    + "Remove it with rmdir once it holds no processes, or use another name.")
        } catch {
            throw StockadeError(
                .hostFacility,
                "failed to create the cgroup \(directory): \(error). Check that stockade runs as root "
                    + "or in a delegated cgroup v2 subtree.", cause: error)
        }
    }

    /// Removes groups that supervisors killed before their clean-up left behind:
    /// "sandbox-<pid>-..." whose supervisor no longer exists and which hold no process
    /// (their sandboxes died with the supervisor). Best effort; never throws.
    static func sweepAbandoned(in parent: String) {
        guard let handle = opendir(parent) else { return }
        var abandoned: [String] = []
        while let entry = readdir(handle) {
            let name = directoryEntryName(entry)
            let parts = name.split(separator: "-")
            guard parts.count >= 3, parts[0] == "sandbox", let pid = Int32(parts[1]), pid > 0 else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }  // its supervisor still runs
            abandoned.append(parent + "/" + name)
        }
        closedir(handle)
        for directory in abandoned where (CgroupFS.read(directory + "/cgroup.procs") ?? "busy").isEmpty {
            rmdir(directory)
        }
    }

    /// Makes the shared "stockade" parent if it is missing.
    static func makeParentDirectory(_ directory: String) throws {
        do {
            try CgroupFS.makeDirectory(directory)
        } catch .fileExists {
            return
        } catch {
            throw StockadeError(
                .hostFacility,
                "failed to create the cgroup \(directory): \(error). Check that stockade runs as root "
                    + "or in a delegated cgroup v2 subtree.", cause: error)
        }
    }

    /// Writes one limit file of a new group; on failure removes `cleanup` and throws.
    static func writeLimit(
        _ value: String, file: String, in directory: String, what: String, cleanup: [String]
    ) throws {
        do {
            try CgroupFS.write(value, to: directory + "/" + file)
        } catch {
            for made in cleanup { try? CgroupFS.removeDirectory(made) }
            let hint =
                error == .noSuchFileOrDirectory
                ? "The controller is not enabled for this cgroup; enable it in the parent's cgroup.subtree_control."
                : "Check the value and the kernel log."
            throw StockadeError(
                .hostFacility,
                "failed to set the \(what) of cgroup \(directory) (\(file) = \(value)): \(error). \(hint)",
                cause: error)
        }
    }

    // MARK: - Processes

    /// Moves process `pid` (all its threads) into this group; on v1 into the group of
    /// every hierarchy. Throws `StockadeError(.hostFacility)` when the kernel refuses
    /// (the process is gone, or the group has been destroyed).
    public func add(pid: Int32) throws {
        for directory in directories {
            do {
                try CgroupFS.write(String(pid), to: directory + "/cgroup.procs")
            } catch {
                throw StockadeError(
                    .hostFacility,
                    "failed to move process \(pid) into the cgroup \(directory): \(error). "
                        + "The process may have exited, or the cgroup was destroyed.", cause: error)
            }
        }
    }

    /// Kills every process in the group with SIGKILL. On v2 with cgroup.kill (Linux 5.14)
    /// the kernel does it atomically, forks in flight included; elsewhere every process
    /// listed in cgroup.procs is killed, repeatedly, until the group is empty or a bound
    /// of about 500 ms passes. Processes die asynchronously: `destroy()` waits for them.
    public func killAll() {
        if case .v2(let directory) = layout, (try? CgroupFS.write("1", to: directory + "/cgroup.kill")) != nil {
            return
        }
        killListedProcesses(until: .now + .milliseconds(500))
    }

    /// The v1 kill-all (and the v2 one before Linux 5.14). A pid read from cgroup.procs
    /// may exit and be reused by an unrelated host process before it is signalled, so
    /// each process is pinned first (an fd of /proc/<pid> works as a pidfd), its
    /// membership checked again, and only then signalled through that fd.
    @discardableResult
    func killListedProcesses(until deadline: ContinuousClock.Instant) -> Bool {
        var pause: UInt32 = 50
        while true {
            let listed = processes()
            if listed.isEmpty { return true }
            var pinned: [(pid: Int32, descriptor: Int32)] = []
            for pid in listed {
                let descriptor = open("/proc/\(pid)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if descriptor >= 0 { pinned.append((pid, descriptor)) }
            }
            let stillListed = Set(processes())
            for (pid, descriptor) in pinned {
                if stillListed.contains(pid) { _ = stockade_pidfd_send_signal(descriptor, SIGKILL) }
                close(descriptor)
            }
            if ContinuousClock.now >= deadline { return processes().isEmpty }
            usleep(pause)
            pause = min(pause * 2, 2000)
        }
    }

    /// The processes (thread-group ids) in the group, across all of its hierarchies.
    func processes() -> [Int32] {
        var all: Set<Int32> = []
        for directory in directories {
            let text = CgroupFS.read(directory + "/cgroup.procs") ?? ""
            for line in text.split(separator: "\n") {
                if let pid = Int32(line) { all.insert(pid) }
            }
        }
        return all.sorted()
    }

    /// Kills everything in the group, waits (up to about 500 ms) until it is empty, and
    /// removes the group's directories. Safe to call more than once, and from any thread.
    ///
    /// Returns false when a directory is left behind: the kernel refused to remove it
    /// (processes stuck in uninterruptible sleep, for example). It can be retried later.
    @discardableResult
    public func destroy() -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(500)
        killAll()
        killListedProcesses(until: deadline)
        var removedAll = true
        var pause: UInt32 = 50
        for directory in directories {
            while true {
                do {
                    try CgroupFS.removeDirectory(directory)
                    break
                } catch .noSuchFileOrDirectory {
                    break
                } catch .resourceBusy where ContinuousClock.now < deadline {
                    // The last task leaves the group a moment after it is reaped: poll
                    // quickly first, since this is on every sandbox's exit path.
                    usleep(pause)
                    pause = min(pause * 2, 2000)
                } catch {
                    removedAll = false
                    break
                }
            }
        }
        return removedAll
    }

    // MARK: - Counters

    /// Whether the kernel's OOM killer killed a process of the group (v2: `oom_kill` in
    /// memory.events; v1: `oom_kill` in memory.oom_control, Linux 4.13+).
    public func memoryLimitHit() -> Bool {
        memoryKills() > 0
    }

    /// How many processes of the group the OOM killer has killed so far (sessions
    /// compare it before and after each action).
    public func memoryKills() -> UInt64 {
        let events: String?
        switch layout {
        case .v2(let directory): events = CgroupFS.read(directory + "/memory.events")
        case .v1(let memory, _, _): events = memory.flatMap { CgroupFS.read($0 + "/memory.oom_control") }
        }
        return events.flatMap { Self.counter("oom_kill", in: $0) } ?? 0
    }

    /// Whether a fork or clone failed because of the process limit (`max` in pids.events).
    public func pidsLimitHit() -> Bool {
        pidsLimitRefusals() > 0
    }

    /// How many forks or clones the process limit has refused so far.
    public func pidsLimitRefusals() -> UInt64 {
        let directory: String?
        switch layout {
        case .v2(let path): directory = path
        case .v1(_, let pids, _): directory = pids
        }
        let events = directory.flatMap { CgroupFS.read($0 + "/pids.events") }
        return events.flatMap { Self.counter("max", in: $0) } ?? 0
    }

    /// CPU time used by the group's processes, user and system, in microseconds (v2:
    /// `usage_usec` in cpu.stat, present without the cpu controller; v1: cpuacct.usage,
    /// in nanoseconds). Nil when there is no CPU accounting (v1 without cpuacct).
    public func cpuUsageMicroseconds() -> UInt64? {
        switch layout {
        case .v2(let directory):
            return CgroupFS.read(directory + "/cpu.stat").flatMap { Self.counter("usage_usec", in: $0) }
        case .v1(_, _, let cpuacct):
            return cpuacct.flatMap { Self.number(in: CgroupFS.read($0 + "/cpuacct.usage")) }.map { $0 / 1000 }
        }
    }

    /// The most memory the group has used at once, in bytes (v2: memory.peak, Linux 5.19+;
    /// v1: memory.max_usage_in_bytes). Nil when the kernel does not track it.
    public func peakMemoryBytes() -> UInt64? {
        switch layout {
        case .v2(let directory): Self.number(in: CgroupFS.read(directory + "/memory.peak"))
        case .v1(let memory, _, _): memory.flatMap { Self.number(in: CgroupFS.read($0 + "/memory.max_usage_in_bytes")) }
        }
    }

    /// A counter "key value" in a flat-keyed cgroup file (memory.events, pids.events,
    /// cpu.stat, memory.oom_control), or nil.
    static func counter(_ key: String, in text: String) -> UInt64? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == key { return UInt64(fields[1]) }
        }
        return nil
    }

    /// A single number file ("max" reads as nil).
    static func number(in text: String?) -> UInt64? {
        guard let text else { return nil }
        return UInt64(text.split(whereSeparator: \.isWhitespace).first ?? "")
    }
}
