import Foundation
import StockadeCore
import Testing

@testable import StockadeSystem

/// Cgroup tests. The parsing tests run anywhere; the others make real groups under
/// "stockade/" in whatever hierarchy `SandboxCgroup.probe()` picks, which needs root (or
/// a delegated v2 subtree) and is skipped otherwise.
@Suite struct CgroupTests {
    /// Whether this host and user can make sandbox cgroups at all.
    static let usable: Bool = {
        if case .unavailable = SandboxCgroup.probe() { return false }
        return true
    }()

    /// The cgroup2 mount, if this process may write its root (root on most hosts).
    static let writableUnified: String? = {
        let mounts = CgroupMounts(mountInfo: CgroupFS.read("/proc/self/mountinfo") ?? "")
        guard let unified = mounts.unified, CgroupFS.isWritableDirectory(unified) else { return nil }
        return unified
    }()

    static func uniqueName(_ purpose: String) -> String {
        "test-\(purpose)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    // MARK: - Parsing (no privileges needed)

    @Test func mountInfoOfAHybridHost() {
        let text = """
            30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
            31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
            35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct
            36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory
            37 30 0:33 / /sys/fs/cgroup/pids rw,nosuid shared:17 - cgroup cgroup rw,pids
            38 30 0:34 / /sys/fs/cgroup/systemd rw,nosuid shared:18 - cgroup cgroup rw,xattr,name=systemd
            """
        let mounts = CgroupMounts(mountInfo: text)
        #expect(mounts.unified == "/sys/fs/cgroup/unified")
        #expect(mounts.v1["memory"] == "/sys/fs/cgroup/memory")
        #expect(mounts.v1["pids"] == "/sys/fs/cgroup/pids")
        #expect(mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(mounts.v1["name=systemd"] == nil)
    }

    @Test func mountInfoOfAV2HostInAContainer() {
        let text = """
            612 600 0:30 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup rw
            613 600 0:40 / /mnt/with\\040space rw - cgroup2 cgroup rw
            """
        let mounts = CgroupMounts(mountInfo: text)
        #expect(mounts.unified == "/sys/fs/cgroup")
        #expect(mounts.unifiedRoot == "/docker/abc")
        #expect(mounts.v1.isEmpty)
        #expect(mounts.directory(forV2Path: "/docker/abc") == "/sys/fs/cgroup")
        #expect(mounts.directory(forV2Path: "/docker/abc/sub") == "/sys/fs/cgroup/sub")
        #expect(mounts.directory(forV2Path: "/elsewhere") == nil)
        #expect(CgroupMounts.unescape("/mnt/with\\040space") == "/mnt/with space")
        #expect(
            CgroupMounts.ownV2Path(procSelfCgroup: "4:memory:/a\n0::/user.slice/x.scope\n") == "/user.slice/x.scope")
    }

    @Test func countersInFlatKeyedFiles() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n"
        #expect(SandboxCgroup.counter("oom_kill", in: events) == 2)
        #expect(SandboxCgroup.counter("max", in: events) == 12)
        #expect(SandboxCgroup.counter("missing", in: events) == nil)
        #expect(SandboxCgroup.number(in: "4096\n") == 4096)
        #expect(SandboxCgroup.number(in: "max\n") == nil)
    }

    @Test(arguments: ["", "..", ".hidden", "a/b", "../../etc", "name with space", String(repeating: "x", count: 201)])
    func namesThatCouldEscapeTheParentAreRefused(name: String) {
        #expect(throws: StockadeError.self) {
            _ = try SandboxCgroup.create(name: name, limits: CgroupLimits(), availability: .unavailable(reason: "test"))
        }
    }

    @Test func unavailableCgroupsMeanNoGroup() throws {
        let group = try SandboxCgroup.create(
            name: "ok", limits: CgroupLimits(), availability: .unavailable(reason: "test"))
        #expect(group == nil)
    }

    // MARK: - Real groups on this host

    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func createAndDestroyLeaveNoDirectory() throws {
        let group = try #require(try SandboxCgroup.create(name: Self.uniqueName("empty"), limits: CgroupLimits()))
        #expect(!group.directories.isEmpty)
        for directory in group.directories { #expect(CgroupFS.exists(directory)) }
        #expect(!group.memoryLimitHit())
        #expect(!group.pidsLimitHit())
        #expect(group.destroy())
        for directory in group.directories { #expect(!CgroupFS.exists(directory), "\(directory) was left behind") }
        #expect(group.destroy(), "a second destroy finds nothing to do")
    }

    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func aGroupOfThatNameTwiceIsAnError() throws {
        let name = Self.uniqueName("twice")
        let group = try #require(try SandboxCgroup.create(name: name, limits: CgroupLimits()))
        defer { group.destroy() }
        #expect(throws: StockadeError.self) { _ = try SandboxCgroup.create(name: name, limits: CgroupLimits()) }
        for directory in group.directories {
            #expect(CgroupFS.exists(directory), "the failed create removed a live group")
        }
    }

    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func killAllEndsTheProcessAndDestroyRemovesTheDirectory() throws {
        let group = try #require(try SandboxCgroup.create(name: Self.uniqueName("kill"), limits: CgroupLimits()))
        defer { group.destroy() }
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["30"]
        try sleeper.run()
        try group.add(pid: sleeper.processIdentifier)
        #expect(group.processes() == [sleeper.processIdentifier])

        group.killAll()
        // #require: reading the termination status of a running Process traps.
        try #require(Self.waitForExit(sleeper, seconds: 5), "killAll did not end the process")
        #expect(sleeper.terminationReason == .uncaughtSignal && sleeper.terminationStatus == SIGKILL)
        #expect(group.destroy())
        for directory in group.directories { #expect(!CgroupFS.exists(directory), "\(directory) was left behind") }
    }

    /// Threat R/"nothing survives": a process that double-forks into its own session is
    /// still in the group and dies with it.
    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func killAllReachesDetachedGrandchildren() throws {
        let group = try #require(try SandboxCgroup.create(name: Self.uniqueName("daemon"), limits: CgroupLimits()))
        defer { group.destroy() }
        let (shell, gate) = try Self.startGated(
            "/bin/sh", ["-c", "read go; (setsid sleep 300 &); (setsid sleep 300 &); exec sleep 300"])
        try group.add(pid: shell.processIdentifier)
        Self.release(gate)
        #expect(Self.waitUntil(seconds: 5) { group.processes().count >= 3 }, "the daemons did not start")

        group.killAll()
        #expect(
            Self.waitUntil(seconds: 5) { group.processes().isEmpty }, "processes survived killAll: \(group.processes())"
        )
        #expect(Self.waitForExit(shell, seconds: 5))
        #expect(group.destroy())
    }

    /// Threat R, fork bomb: with pids.max = 3 the shell cannot start its eight children.
    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func pidsLimitStopsForks() throws {
        let group = try #require(try SandboxCgroup.create(name: Self.uniqueName("pids"), limits: CgroupLimits(pids: 3)))
        defer { group.destroy() }
        #expect(!group.pidsLimitHit())
        let (shell, gate) = try Self.startGated(
            "/bin/sh", ["-c", "read go; for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait"], quiet: true)
        try group.add(pid: shell.processIdentifier)
        Self.release(gate)
        #expect(Self.waitUntil(seconds: 5) { group.pidsLimitHit() }, "no fork failed at the process limit")
        #expect(group.processes().count <= 3)
        group.killAll()
        #expect(Self.waitForExit(shell, seconds: 5))
        #expect(group.destroy())
    }

    /// Threat R, memory bomb: 200 MiB in a 32 MiB group is OOM-killed, and swap is no way out.
    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func memoryLimitOOMKills() throws {
        let limit: UInt64 = 32 << 20
        let group = try #require(
            try SandboxCgroup.create(name: Self.uniqueName("memory"), limits: CgroupLimits(memoryBytes: limit)))
        defer { group.destroy() }
        #expect(!group.memoryLimitHit())
        let (python, gate) = try Self.startGated(
            "/usr/bin/python3",
            ["-c", "import sys; sys.stdin.readline(); b = bytearray(b'x') * (200 << 20); print(len(b))"])
        try group.add(pid: python.processIdentifier)
        Self.release(gate)
        try #require(Self.waitForExit(python, seconds: 20), "the memory bomb was not stopped")
        #expect(python.terminationReason == .uncaughtSignal && python.terminationStatus == SIGKILL)
        #expect(group.memoryLimitHit())
        if let peak = group.peakMemoryBytes() {
            #expect(peak > 8 << 20 && peak <= limit, "peak \(peak) bytes")
        }
        #expect(group.destroy())
    }

    @Test(.enabled(if: usable, "needs root or a delegated cgroup v2 subtree"))
    func cpuTimeIsAccounted() throws {
        let group = try #require(try SandboxCgroup.create(name: Self.uniqueName("cpu"), limits: CgroupLimits()))
        defer { group.destroy() }
        let (python, gate) = try Self.startGated(
            "/usr/bin/python3", ["-c", "import sys; sys.stdin.readline(); sum(range(5_000_000))"])
        try group.add(pid: python.processIdentifier)
        Self.release(gate)
        #expect(Self.waitForExit(python, seconds: 20))
        if let used = group.cpuUsageMicroseconds() {
            #expect(used >= 10_000, "only \(used) µs of CPU accounted")
        } else {
            #expect(group.version == 1, "cgroup v2 always has cpu.stat")
        }
        #expect(group.destroy())
    }

    /// The v2 code on any host with a writable cgroup2 mount, even a hybrid one whose v2
    /// hierarchy has no controllers (so no limits here): grouping, kill and accounting.
    @Test(.enabled(if: writableUnified != nil, "needs a cgroup2 mount this process may write (root)"))
    func v2GroupWithoutLimits() throws {
        let root = try #require(Self.writableUnified)
        let group = try #require(
            try SandboxCgroup.create(name: Self.uniqueName("v2"), limits: CgroupLimits(), availability: .v2(root: root))
        )
        defer { group.destroy() }
        #expect(group.version == 2)
        let (shell, gate) = try Self.startGated(
            "/bin/sh",
            ["-c", "read go; (setsid sleep 300 &); i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 300"])
        try group.add(pid: shell.processIdentifier)
        Self.release(gate)
        #expect(
            Self.waitUntil(seconds: 10) { group.processes().count >= 2 && (group.cpuUsageMicroseconds() ?? 0) > 10_000 }
        )
        group.killAll()
        #expect(Self.waitForExit(shell, seconds: 5))
        #expect(Self.waitUntil(seconds: 5) { group.processes().isEmpty })
        #expect(group.destroy())
        #expect(!CgroupFS.exists(group.directories[0]))
    }

    // MARK: - Helpers

    /// Starts a program that waits for a line on stdin, so it can be put in a group first.
    static func startGated(_ path: String, _ arguments: [String], quiet: Bool = false) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let gate = Pipe()
        process.standardInput = gate
        if quiet { process.standardError = FileHandle.nullDevice }
        try process.run()
        return (process, gate)
    }

    static func release(_ gate: Pipe) {
        gate.fileHandleForWriting.write(Data("go\n".utf8))
    }

    static func waitForExit(_ process: Process, seconds: Double) -> Bool {
        waitUntil(seconds: seconds) { !process.isRunning }
    }

    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
