import Foundation
import StockadeSystem
import Testing

/// Protections that other fences would otherwise hide from the tests (a second fence, a
/// floor under a cgroup limit, the supervisor dying mid-run): each test fails when its
/// protection is switched off.
extension SandboxSuite.Escape {
    /// Runs `stockade run -- python3 -c SCRIPT` and returns the non-empty stdout lines.
    static func pythonLines(_ script: String, flags: [String] = []) throws -> [String] {
        let out = try Harness.stockade(["run"] + flags + ["--", Harness.python, "-c", script])
        #expect(out.status == 0, "\(out.stderr)")
        return out.stdout.split(separator: "\n").map(String.init)
    }

    static var landlockAvailable: Bool { Landlock.abiVersion() != nil }

    @Test("stockade-init leads its own session; nothing inside has the caller's terminal, even under a pty")
    func ownSession() throws {
        // pty.spawn runs stockade as a session leader with a pseudo-terminal as its
        // controlling terminal: the case setsid in the shim exists for.
        let script = """
            import os
            ttys = []
            for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
                try: fields = open('/proc/%s/stat' % pid).read().rsplit(')', 1)[1].split()
                except OSError: continue
                if fields[4] != '0': ttys.append(pid)
            print('SID', os.getsid(1), 'TTYS', sorted(ttys))
            """
        let out = try Harness.run(
            [Harness.python, "-c", "import pty, sys; pty.spawn(sys.argv[1:])", Harness.binary, "run", "--", Harness.python, "-c", script],
            environment: ["PATH": "/usr/bin:/bin"]
        )
        #expect(out.stdout.contains("SID 1 TTYS []"), "\(out.stdout) \(out.stderr)")
    }

    @Test("stockade-init runs from a sealed memfd, not from the file on disk (CVE-2019-5736)")
    func initIsSealedMemfd() throws {
        let marker = "33\(Int.random(in: 1000...9999))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.binary)
        process.arguments = ["run", "--timeout", "20s", "--", "sleep", marker]
        process.environment = ["PATH": "/usr/bin:/bin"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { process.waitUntilExit() }
        var sleeper: Int32?
        for _ in 0..<100 where sleeper == nil {
            usleep(50_000)
            // Anchored: stockade's own command line contains the pattern too.
            let found = try Harness.run(["/usr/bin/pgrep", "-f", "^sleep \(marker)$"], environment: [:]).stdout
            sleeper = Int32(found.split(separator: "\n").first ?? "")
        }
        let command = try #require(sleeper, "the sandbox did not start")
        defer { kill(command, SIGKILL) }
        // The command's parent is stockade-init, as seen from the host.
        let stat = try String(contentsOfFile: "/proc/\(command)/stat", encoding: .utf8)
        let initPID = try #require(stat.split(separator: ")").last?.split(separator: " ").dropFirst().first.flatMap { Int32($0) })
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(initPID)/exe")
        #expect(exe.hasPrefix("/memfd:stockade-init"), "stockade-init runs from \(exe)")
        let fd = open("/proc/\(initPID)/exe", O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let seals = fcntl(fd, 1034 /* F_GET_SEALS */)
        #expect(seals >= 0 && seals & 0x8 /* F_SEAL_WRITE */ != 0, "seals: \(seals)")
    }

    @Test("/proc/kcore, /proc/keys and /proc/timer_list are masked")
    func procMasks() throws {
        let lines = try Self.pythonLines("""
            import os
            for p in ['/proc/kcore', '/proc/keys', '/proc/timer_list']:
                if os.path.exists(p): print(p, oct(os.stat(p).st_mode & 0o7777))
            """)
        #expect(!lines.isEmpty)
        for line in lines { #expect(line.hasSuffix(" 0o0"), "not masked: \(line)") }
    }

    @Test("the root, /etc and the kernel's knobs in /proc are read-only mounts")
    func readOnlyMounts() throws {
        let lines = try Self.pythonLines("""
            import os
            for p in ['/', '/etc', '/usr', '/proc/sys', '/proc/sysrq-trigger', '/proc/irq', '/proc/bus']:
                if os.path.exists(p): print(p, bool(os.statvfs(p).f_flag & os.ST_RDONLY))
            """)
        #expect(lines.count >= 4, "\(lines)")
        for line in lines { #expect(line.hasSuffix(" True"), "writable mount: \(line)") }
    }

    /// Mounts do not apply to /proc/self/fd magic links and DAC allows the write (the
    /// file is world-writable). Two fences: the supervisor pumps a file through a pipe
    /// (the sandbox never holds the file's descriptor), and Landlock refuses the reopen
    /// of a host file beneath no rule. The test fails only with both removed.
    @Test("a file given as standard input cannot be reopened for writing", .enabled(if: landlockAvailable, "needs Landlock"))
    func standardInputReopen() throws {
        let directory = try Harness.temporaryDirectory("input")
        defer { Harness.remove(directory) }
        let input = directory + "/input.txt"
        try Harness.write("original\n", to: input)
        #expect(chmod(input, 0o666) == 0)
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        let out = try Harness.run(
            ["/bin/sh", "-c", "exec \"$0\" run --workspace \"$1\" -- /bin/sh -c 'echo OVERWRITTEN > /proc/self/fd/0 2>/dev/null && echo WROTE; cat' < \"$2\"",
             Harness.binary, workspace, input],
            environment: ["PATH": "/usr/bin:/bin"]
        )
        #expect(out.stdout.hasPrefix("original\n") || out.stdout.hasPrefix("WROTE\noriginal\n"), "\(out.stdout) \(out.stderr)")
        #expect(try String(contentsOfFile: input, encoding: .utf8) == "original\n")
    }
}

extension SandboxSuite.Rootless {
    @Test("rootless: the caller's own file given as standard input stays read-only",
          .enabled(if: Harness.isRoot && SandboxSuite.Escape.landlockAvailable, "needs root to switch to the test user, and Landlock"))
    func standardInputReopenRootless() throws {
        let user = try #require(Harness.unprivilegedUser)
        let directory = "/tmp/stockade-rootless-input-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/ws", withIntermediateDirectories: true)
        defer { Harness.remove(directory) }
        try Harness.write("original\n", to: directory + "/input.txt")
        _ = try Harness.run(["/bin/chown", "-R", "\(user):\(user)", directory], environment: [:])
        _ = try Harness.run(["/bin/chmod", "755", directory], environment: [:])
        let out = try Harness.run(
            ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--reset-env", "--", "/bin/sh", "-c",
             "exec \"$0\" run --workspace \"$1\" -- /bin/sh -c 'echo OVERWRITTEN > /proc/self/fd/0 2>/dev/null && echo WROTE; cat' < \"$2\"",
             Harness.binary, directory + "/ws", directory + "/input.txt"],
            environment: [:]
        )
        #expect(out.stdout.hasPrefix("original\n") || out.stdout.hasPrefix("WROTE\noriginal\n"), "\(out.stdout) \(out.stderr)")
        #expect(try String(contentsOfFile: directory + "/input.txt", encoding: .utf8) == "original\n")
    }
}

extension SandboxSuite.Resources {
    @Test("the rlimits under the cgroup limits are set: CPU, file size, open files, no core dumps")
    func rlimits() throws {
        let out = try Harness.stockade(["run", "--cpu", "3s", "--file-size", "1M", "--open-files", "64", "--", Harness.python, "-c",
                                        "import resource as r\nprint([r.getrlimit(x) for x in (r.RLIMIT_CPU, r.RLIMIT_FSIZE, r.RLIMIT_NOFILE, r.RLIMIT_CORE)])"])
        #expect(out.stdout == "[(3, 4), (1048576, 1048576), (64, 64), (0, 0)]\n", "\(out.stdout) \(out.stderr)")
    }

    /// Replaces memoryBomb: bounded at 1 GiB, so a missing limit shows as SURVIVED (and
    /// not as a host-wide OOM kill that the old test counted as a pass), and the peak
    /// must stay at the limit.
    @Test("a bounded memory bomb is stopped at the sandbox's own limit", .enabled(if: Harness.cgroupsAvailable, "needs cgroup memory and pids controllers (root, or a delegated cgroup v2 subtree)"))
    func boundedMemoryBomb() throws {
        let out = try Harness.stockade(["run", "--json", "--memory", "64M", "--timeout", "30s", "--", Harness.python, "-c",
                                        "b = []\nfor _ in range(64): b.append(bytearray(16 << 20))\nprint('SURVIVED')"])
        #expect(Self.limit(out) == "memory", "\(out.stdout) \(out.stderr)")
        #expect(out.status == 137)
        #expect(!(out.json["stdout"] as? String ?? "").contains("SURVIVED"))
        #expect((out.json["peak_memory_bytes"] as? Int ?? .max) <= 72 << 20, "peak: \(out.json["peak_memory_bytes"] ?? "none")")
    }
}

extension SandboxSuite.Leftovers {
    /// Replaces supervisorKilled: its pattern "sleep N" also matched stockade's own
    /// command line, so it killed stockade before the sandbox existed and checked nothing.
    @Test("killing stockade with SIGKILL takes the running sandbox down with it")
    func supervisorKilledOnceRunning() throws {
        let marker = "34\(Int.random(in: 1000...9999))"
        let pattern = "^sleep \(marker)$"
        func sleepers() throws -> [String] {
            try Harness.run(["/usr/bin/pgrep", "-f", pattern], environment: [:]).stdout.split(separator: "\n").map(String.init)
        }
        defer { _ = try? Harness.run(["/usr/bin/pkill", "-KILL", "-f", pattern], environment: [:]) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.binary)
        process.arguments = ["run", "--", "/bin/sh", "-c", "setsid sleep \(marker) & exec sleep \(marker)"]
        process.environment = ["PATH": "/usr/bin:/bin"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var running = 0
        for _ in 0..<100 where running < 2 {
            usleep(50_000)
            running = try sleepers().count
        }
        try #require(running == 2, "the sandbox did not start both sleeps")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        var left = ["x"]
        for _ in 0..<40 where !left.isEmpty {
            usleep(50_000)
            left = try sleepers()
        }
        #expect(left.isEmpty, "survivors: \(left)")
    }
}

extension SandboxSuite.Functional {
    @Test("a file or a directory given as standard input reaches the command as a pipe")
    func standardInputPumped() throws {
        let directory = try Harness.temporaryDirectory("input")
        defer { Harness.remove(directory) }
        let big = String(repeating: "0123456789abcdef", count: 40_000) + "\n"
        try Harness.write(big, to: directory + "/input.txt")
        let file = try Harness.run(
            ["/bin/sh", "-c", "exec \"$0\" run -- /bin/sh -c 'test -p /dev/stdin && echo pipe; wc -c' < \"$1\"", Harness.binary, directory + "/input.txt"],
            environment: ["PATH": "/usr/bin:/bin"]
        )
        #expect(file.stdout == "pipe\n\(big.utf8.count)\n", "\(file.stdout) \(file.stderr)")
        // A directory fd would be a way out of the root: it arrives as an empty pipe.
        let root = try Harness.run(
            ["/bin/sh", "-c", "exec \"$0\" run -- /bin/sh -c 'ls /proc/self/fd/0/ 2>/dev/null | head -3; wc -c' < /", Harness.binary],
            environment: ["PATH": "/usr/bin:/bin"]
        )
        #expect(root.stdout == "0\n", "\(root.stdout) \(root.stderr)")
    }
}
