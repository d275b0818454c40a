import Foundation
import Testing

/// THREATS.md 1: nothing outside the grant is visible. Each test is an attack; it
/// passes only when the attack fails.
extension SandboxSuite {
    @Suite("Escape: nothing outside the grant is visible") struct Escape {
        /// Runs a Python snippet that performs a raw system call and prints errno.
        static func syscallErrno(_ call: String) throws -> String {
            let script = """
                import ctypes, os
                libc = ctypes.CDLL(None, use_errno=True)
                libc.syscall.restype = ctypes.c_long
                r = \(call)
                print(0 if r >= 0 else ctypes.get_errno())
                """
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", script])
            #expect(out.status == 0, "\(out.stderr)")
            return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test("host directories are absent: /root, /home, /var, /run, /sys, host /tmp")
        func hostDirectories() throws {
            let marker = NSTemporaryDirectory() + "stockade-host-marker-\(UUID().uuidString)"
            try "host".write(toFile: marker, atomically: false, encoding: .utf8)
            defer { Harness.remove(marker) }
            let hostHomes = ((try? FileManager.default.contentsOfDirectory(atPath: "/home")) ?? []).map { "/home/" + $0 }.joined(separator: " ")
            let out = try Harness.sandboxed("for p in /root \(hostHomes) /var/lib /var/log /run /sys/kernel /etc/shadow /etc/ssh \(marker); do test -e $p && echo VISIBLE $p; done; ls /")
            #expect(out.status == 0)
            #expect(!out.stdout.contains("VISIBLE"), "\(out.stdout)")
            let top = Set(out.stdout.split(separator: "\n").map(String.init))
            #expect(top.isSubset(of: ["bin", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr", "var", "workspace"]), "\(top)")
        }

        @Test("an fd left open by the caller does not reach the sandbox (CVE-2024-21626)")
        func leakedDescriptor() throws {
            let out = try Harness.run(
                ["/bin/sh", "-c", "exec 7</etc/hostname 8</; exec \"$0\" run -- ls /proc/self/fd", Harness.binary],
                environment: ["PATH": "/usr/bin:/bin"]
            )
            #expect(out.status == 0, "\(out.stderr)")
            let fds = out.stdout.split(separator: "\n").map(String.init)
            #expect(Set(fds).isSubset(of: ["0", "1", "2", "3"]), "\(fds)")
        }

        @Test("/proc/1/exe is a sealed copy: writing it fails (CVE-2019-5736)")
        func procExe() throws {
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", """
                import os
                try:
                    fd = os.open('/proc/1/exe', os.O_WRONLY)
                    os.write(fd, b'x'); print('WROTE')
                except OSError as e: print('denied', e.errno)
                """])
            #expect(out.stdout.hasPrefix("denied"), "\(out.stdout) \(out.stderr)")
        }

        @Test("stockade-init's memory and environment are not readable (not dumpable)")
        func initNotDumpable() throws {
            let out = try Harness.sandboxed("cat /proc/1/environ >/dev/null 2>&1 && echo READ; ls -l /proc/1/exe 2>&1 | grep -c stockade-init; true")
            #expect(!out.stdout.contains("READ"), "\(out.stdout)")
        }

        @Test("TIOCSTI is refused, also with garbage in the upper 32 bits (CVE-2017-5226, CVE-2019-10063)")
        func tiocsti() throws {
            let eperm = "\(EPERM)"
            #expect(try Self.syscallErrno("libc.syscall(16, 0, 0x5412, ctypes.c_char_p(b'x'))") == eperm)
            #expect(try Self.syscallErrno("libc.syscall(16, 0, ctypes.c_ulong(0x100005412), ctypes.c_char_p(b'x'))") == eperm)
            #expect(try Self.syscallErrno("libc.syscall(16, 0, 0x541C, ctypes.c_char_p(b'x'))") == eperm)
        }

        @Test("the command has no controlling terminal (setsid)")
        func noControllingTerminal() throws {
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", """
                import os
                try: os.open('/dev/tty', os.O_RDWR); print('TTY')
                except OSError as e: print('none', e.errno)
                print(os.getsid(0) == os.getpid() or os.getsid(0) != os.getpgid(0))
                """])
            #expect(out.stdout.hasPrefix("none"), "\(out.stdout)")
        }

        @Test("kernel attack surface is refused: open_by_handle_at, ptrace, process_vm_readv, keyctl, bpf, perf_event_open, userfaultfd, io_uring, modules, kexec")
        func deniedSystemCalls() throws {
            let calls = [
                "open_by_handle_at": "libc.syscall(304, -100, None, 0)",
                "ptrace": "libc.syscall(101, 16, 1, 0, 0)",
                "process_vm_readv": "libc.syscall(310, 1, None, 0, None, 0, 0)",
                "keyctl": "libc.syscall(250, 0, 0, 0, 0, 0)",
                "bpf": "libc.syscall(321, 0, None, 0)",
                "perf_event_open": "libc.syscall(298, None, 0, -1, -1, 0)",
                "userfaultfd": "libc.syscall(323, 0)",
                "io_uring_setup": "libc.syscall(425, 1, None)",
                "init_module": "libc.syscall(175, None, 0, None)",
                "kexec_load": "libc.syscall(246, 0, 0, None, 0)",
                "unshare(CLONE_NEWUSER)": "libc.syscall(272, 0x10000000)",
                "clone(CLONE_NEWUSER)": "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",
                "setns": "libc.syscall(308, 0, 0)",
                "mount": "libc.syscall(165, b'none', b'/tmp', b'tmpfs', 0, None)",
                "fsopen": "libc.syscall(430, b'tmpfs', 0)",
                "personality(READ_IMPLIES_EXEC)": "libc.syscall(135, 0x0400000)",
                "socket(AF_PACKET)": "libc.syscall(41, 17, 3, 0)",
                "socket(AF_NETLINK, NETLINK_AUDIT)": "libc.syscall(41, 16, 3, 9)",
                "clock_settime": "libc.syscall(227, 0, ctypes.byref((ctypes.c_long*2)(0,0)))",
                "sethostname": "libc.syscall(170, b'evil', 4)",
            ]
            // One sandbox for all: each line prints name and errno.
            let script = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
                + calls.map { name, call in "r = \(call)\nprint(\(String(reflecting: name)), 0 if r >= 0 else ctypes.get_errno())\n" }.joined()
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", script])
            #expect(out.status == 0, "\(out.stderr)")
            var results: [String: String] = [:]
            for line in out.stdout.split(separator: "\n") {
                let parts = line.split(separator: " ")
                results[parts.dropLast().joined(separator: " ")] = String(parts.last ?? "")
            }
            for name in calls.keys {
                #expect(results[name] == "\(EPERM)", "\(name) returned \(results[name] ?? "nothing") instead of EPERM")
            }
        }

        @Test("nested user namespaces cannot be created (unshare -U)")
        func nestedUserNamespace() throws {
            let out = try Harness.sandboxed("unshare -U -r id -u 2>&1; echo rc=$?")
            #expect(!out.stdout.contains("\nrc=0"), "\(out.stdout)")
            #expect(!out.stdout.hasPrefix("0\n"))
        }

        @Test("no capabilities, no_new_privs, unprivileged uid inside")
        func privileges() throws {
            let out = try Harness.sandboxed("id -u; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
            #expect(out.status == 0)
            let lines = out.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "1000")
            for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                #expect(lines.contains("\(cap):\t0000000000000000"), "\(cap) not empty: \(lines)")
            }
            #expect(lines.contains("NoNewPrivs:\t1"))
            #expect(lines.contains("Seccomp:\t2"))
        }

        @Test("as root, the sandbox user maps to an unprivileged host uid, never root", .enabled(if: Harness.isRoot, "needs root: checks the root-mode mapping"))
        func rootModeMapping() throws {
            let out = try Harness.sandboxed("cat /proc/self/uid_map /proc/self/gid_map")
            let rows = out.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            // uid_map and gid_map: the sandbox user, and the namespace root used only
            // for the set-up; every host id is unprivileged.
            #expect(rows.count == 4, "\(rows)")
            #expect(rows.filter { $0.first == "1000" }.count == 2)
            for row in rows {
                #expect(row.count == 3 && row[2] == "1", "\(row)")
                #expect((UInt32(row[safe: 1] ?? "") ?? 0) >= 1_000_000_000, "mapped to host id \(row)")
            }
        }

        @Test("setuid binaries grant nothing (nosuid mounts, no_new_privs)")
        func setuid() throws {
            let out = try Harness.sandboxed("ls -l /usr/bin/su /usr/bin/passwd 2>/dev/null | head -1; su -c 'id -u' root </dev/null 2>&1; grep ' /usr ' /proc/self/mountinfo")
            #expect(!out.stdout.contains("\n0\n"))
            #expect(out.stdout.contains("nosuid"), "\(out.stdout)")
        }

        @Test("no network: only loopback, nothing reachable, not even the host's loopback")
        func network() throws {
            // A listener on the host's loopback: reachable without a network namespace.
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(listener) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
            #expect(listen(listener, 4) == 0)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
            let port = Int(UInt16(bigEndian: address.sin_port))
            let script = """
                import socket, os
                print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'nosys')
                for host, port in [('1.1.1.1', 53), ('127.0.0.1', \(port)), ('10.0.0.1', 80)]:
                    s = socket.socket(); s.settimeout(2)
                    try: s.connect((host, port)); print('CONNECTED', host)
                    except OSError as e: print('refused', host)
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try: u.sendto(b'x', ('8.8.8.8', 53)); print('SENT')
                except OSError: print('unreachable')
                """
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", script])
            #expect(out.status == 0, "\(out.stderr)")
            #expect(!out.stdout.contains("CONNECTED"))
            #expect(!out.stdout.contains("SENT"))
            let links = try Harness.sandboxed("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
            #expect(links.stdout == "lo\n", "\(links.stdout)")
        }

        @Test("abstract unix sockets of the host are unreachable")
        func abstractSocket() throws {
            let name = "stockade-test-\(UUID().uuidString.prefix(8))"
            let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(listener) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(name.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw[0] = 0
                for (index, byte) in bytes.enumerated() { raw[index + 1] = byte }
            }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
            let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
            #expect(bound == 0)
            #expect(listen(listener, 1) == 0)
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", """
                import socket
                s = socket.socket(socket.AF_UNIX)
                try: s.connect('\\0\(name)'); print('CONNECTED')
                except OSError as e: print('refused', e.errno)
                """])
            #expect(out.stdout.hasPrefix("refused"), "\(out.stdout) \(out.stderr)")
        }

        @Test("only the sandbox's own processes are visible; no outer /proc/<pid>/root")
        func processes() throws {
            let out = try Harness.sandboxed("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; ls /proc/1/root/ 2>&1 | head -3")
            let pids = out.stdout.split(separator: "\n").first.map { $0.split(separator: " ").compactMap { Int($0) } } ?? []
            #expect(pids.first == 1)
            #expect(pids.allSatisfy { $0 < 50 }, "\(pids)")
            #expect(!pids.contains(Int(getpid())) || getpid() < 50)
        }

        @Test("kernel knobs are read-only and /sys, cgroupfs and devices are absent")
        func kernelKnobs() throws {
            let out = try Harness.sandboxed("""
                echo 1 > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE-SYS
                echo b > /proc/sysrq-trigger 2>/dev/null && echo WROTE-SYSRQ
                test -e /sys/fs/cgroup && echo CGROUPFS
                mknod /tmp/sda b 8 0 2>/dev/null && echo MKNOD
                ls /dev | tr '\\n' ' '
                cat /proc/kcore 2>/dev/null | head -c1 | wc -c
                """)
            #expect(!out.stdout.contains("WROTE"), "\(out.stdout)")
            #expect(!out.stdout.contains("CGROUPFS"))
            #expect(!out.stdout.contains("MKNOD"))
            let devices = Set(out.stdout.split(separator: "\n").dropLast().last?.split(separator: " ").map(String.init) ?? [])
            #expect(devices.isSubset(of: ["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin", "stdout", "stderr"]), "\(devices)")
            #expect(out.stdout.hasSuffix("0\n"))
        }

        @Test("clock and host name cannot be changed")
        func clockAndHostname() throws {
            let out = try Harness.sandboxed("date -s '2001-01-01' >/dev/null 2>&1 && echo CLOCK; hostname evil 2>/dev/null && echo HOSTNAME; hostname")
            #expect(out.stdout == "stockade\n", "\(out.stdout)")
        }

        @Test("symlinks, hardlinks and .. planted in the workspace lead nowhere outside it")
        func workspaceLinks() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let secret = try Harness.temporaryDirectory("secret")
            defer { Harness.remove(secret) }
            try Harness.write("TOPSECRET-OUTSIDE", to: secret + "/token")
            try FileManager.default.createSymbolicLink(atPath: workspace + "/link", withDestinationPath: secret + "/token")
            try FileManager.default.createSymbolicLink(atPath: workspace + "/up", withDestinationPath: "../../../../..")
            let out = try Harness.sandboxed("""
                cat link 2>/dev/null; cat up\(secret)/token 2>/dev/null; cat ../..\(secret)/token 2>/dev/null
                ln /etc/passwd hard 2>/dev/null && echo HARDLINKED; ls / >/dev/null; echo done
                """, in: workspace)
            #expect(!out.stdout.contains("TOPSECRET"), "\(out.stdout)")
            #expect(!out.stdout.contains("HARDLINKED"))
            #expect(out.stdout.hasSuffix("done\n"))
        }

        @Test("a read-only workspace cannot be written, and mounts cannot be remounted")
        func readOnlyWorkspace() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("original", to: workspace + "/file")
            let out = try Harness.sandboxed("echo changed > file 2>/dev/null; touch new 2>/dev/null; mount -o remount,rw /workspace 2>/dev/null; echo changed > file 2>/dev/null; cat file", flags: ["--read-only"], in: workspace)
            #expect(out.stdout == "original")
            #expect(!FileManager.default.fileExists(atPath: workspace + "/new"))
            let root = try Harness.sandboxed("touch /evil 2>/dev/null && echo WROTE-ROOT; touch /usr/evil 2>/dev/null && echo WROTE-USR; touch /etc/evil 2>/dev/null && echo WROTE-ETC; echo ok")
            #expect(root.stdout == "ok\n", "\(root.stdout)")
        }
    }
}

extension SandboxSuite.Escape {
    /// As root the sandbox's workspace files are stored as the workspace owner (root
    /// here): a set-uid copy of a shell would be a root shell for any host user.
    @Test("no set-uid or set-gid file can be planted in the workspace")
    func setIDFiles() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        _ = try Harness.sandboxed("""
            cp /usr/bin/id suid; chmod 4755 suid; chmod u+s suid; chmod 2755 suid
            python3 -c "import os; os.close(os.open('created', os.O_CREAT | os.O_WRONLY, 0o6755))"
            python3 -c "import os; os.mknod('node', 0o104755)"
            true
            """, in: workspace)
        for name in ["suid", "created", "node"] {
            var info = stat()
            guard lstat(workspace + "/" + name, &info) == 0 else { continue }
            #expect(info.st_mode & (S_ISUID | S_ISGID) == 0, "\(name) has mode \(String(info.st_mode, radix: 8))")
        }
    }
}
