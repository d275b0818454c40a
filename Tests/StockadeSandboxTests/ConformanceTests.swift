import Foundation
import StockadeIsolation
import Testing

/// One policy, every backend: the same cases run through `stockade run --tier T --json`
/// on every tier this host has. A tier that fails a case fails the suite; a tier the
/// host lacks is reported skipped, with the reason.
struct ConformanceCase: CustomTestStringConvertible, Sendable {
    let name: String
    /// The command's shell script (run with /bin/sh -c in the workspace), given the
    /// run's host paths.
    let script: @Sendable (ConformanceHost) -> String
    var flags: [String] = []
    var input: String?
    /// Checks the result; `host` is the per-case host directory (workspace, secrets).
    let check: @Sendable (_ result: ConformanceResult, _ host: ConformanceHost) throws -> Void

    var testDescription: String { name }

    init(
        name: String, script: String, flags: [String] = [], input: String? = nil,
        check: @escaping @Sendable (ConformanceResult, ConformanceHost) throws -> Void
    ) {
        self.init(name: name, flags: flags, input: input, script: { _ in script }, check: check)
    }

    init(
        name: String, flags: [String] = [], input: String? = nil, script: @escaping @Sendable (ConformanceHost) -> String,
        check: @escaping @Sendable (ConformanceResult, ConformanceHost) throws -> Void
    ) {
        self.name = name
        self.script = script
        self.flags = flags
        self.input = input
        self.check = check
    }
}

/// What the case's run produced.
struct ConformanceResult {
    let status: Int32
    let json: [String: Any]
    let stderr: String
    var stdout: String { json["stdout"] as? String ?? "" }
    var commandStderr: String { json["stderr"] as? String ?? "" }
    var exitCode: Int? { json["exit_code"] as? Int }
    var limit: String? { json["limit"] as? String }
}

/// The host side of a case: a workspace with a hidden file, and a secret outside it.
struct ConformanceHost {
    let workspace: String
    let outside: String
    static let secret = "AKIAQWERTYUIOPASDFGH-conformance-secret"
}

extension SandboxSuite {
    @Suite("Conformance: one policy, every tier") struct Conformance {
        /// The keys every tier's `--json` result has, whatever the case.
        static let resultKeys: Set<String> = [
            "cpu_ms", "created_protected", "degraded", "egress", "exit_code", "limit", "peak_memory_bytes", "signal",
            "stderr", "stderr_truncated", "stdout", "stdout_truncated", "wall_ms",
        ]

        static let gvisor = GVisorBackend.probe()
        static var gvisorAvailable: Bool { if case .available = gvisor { true } else { false } }
        static var gvisorSkipReason: Comment {
            if case .unavailable(let reason) = gvisor { Comment(rawValue: "gvisor tier unavailable here: \(reason)") }
            else { "" }
        }

        @Test("namespaces tier", arguments: ConformanceCase.all)
        func namespaces(_ testCase: ConformanceCase) throws {
            try Self.run(testCase, tier: "namespaces")
        }

        @Test("gvisor tier", .enabled(if: Conformance.gvisorAvailable, Conformance.gvisorSkipReason), arguments: ConformanceCase.all)
        func gvisor(_ testCase: ConformanceCase) throws {
            try Self.run(testCase, tier: "gvisor")
        }

        @Test("microvm tier", .disabled("microvm tier: not in this version of stockade"), arguments: ConformanceCase.all)
        func microvm(_ testCase: ConformanceCase) throws {
            try Self.run(testCase, tier: "microvm")
        }

        static func run(_ testCase: ConformanceCase, tier: String) throws {
            let workspace = try Harness.temporaryDirectory("conf-ws")
            let outside = try Harness.temporaryDirectory("conf-host")
            defer {
                Harness.remove(workspace)
                Harness.remove(outside)
            }
            try Harness.write("visible\n", to: workspace + "/notes.txt")
            try Harness.write("API_KEY=\(ConformanceHost.secret)\n", to: workspace + "/.env")
            try Harness.write(ConformanceHost.secret + "\n", to: outside + "/credentials")
            let host = ConformanceHost(workspace: workspace, outside: outside)
            let arguments = ["run", "--tier", tier, "--json", "--workspace", workspace] + testCase.flags + ["--", "/bin/sh", "-c", testCase.script(host)]
            let output = try Harness.stockade(
                arguments, in: workspace, environment: ["PATH": "/usr/bin:/bin", "HOST_ONLY_SECRET": ConformanceHost.secret],
                input: testCase.input)
            let result = ConformanceResult(status: output.status, json: output.json, stderr: output.stderr)
            #expect(Set(result.json.keys).isSuperset(of: resultKeys), "\(tier) \(testCase.name): result shape: \(output.stdout.prefix(300)) \(output.stderr)")
            #expect(!output.stdout.contains(ConformanceHost.secret), "\(tier) \(testCase.name): the secret reached the output")
            try testCase.check(result, host)
            // Nothing of the sandbox outlives the run: no command, no runtime.
            let leftover = Harness.hostProcesses(matching: [workspace, "stockade-gvisor-"])
            #expect(leftover.isEmpty, "\(tier) \(testCase.name): left running: \(leftover)")
        }
    }
}

extension ConformanceCase {
    static let all: [ConformanceCase] = functional + escapes + limits

    static let functional: [ConformanceCase] = [
        .init(name: "output, exit code and the sandbox user", script: "echo out; echo err >&2; id -un; id -u; exit 7") { r, _ in
            #expect(r.exitCode == 7 && r.status == 7)
            #expect(r.stdout == "out\nsandbox\n1000\n")
            #expect(r.commandStderr == "err\n")
        },
        .init(name: "a signal gives 128+N", script: "kill -TERM $$") { r, _ in
            #expect(r.exitCode == 143)
            #expect(r.json["signal"] as? Int == 15)
        },
        .init(name: "the workspace is read and written at /workspace", script: "pwd; cat notes.txt; echo made > made.txt; mkdir -p d/e && echo x > d/e/f") { r, host in
            #expect(r.stdout == "/workspace\nvisible\n")
            #expect((try? String(contentsOfFile: host.workspace + "/made.txt", encoding: .utf8)) == "made\n")
            #expect(FileManager.default.fileExists(atPath: host.workspace + "/d/e/f"))
            // Created files belong to the caller on the host, as the sandbox user inside.
            let owner = (try? FileManager.default.attributesOfItem(atPath: host.workspace + "/made.txt")[.ownerAccountID] as? Int) ?? -1
            #expect(owner == Int(getuid()))
        },
        .init(name: "standard input reaches the command", script: "tr a-z A-Z", input: "piped data\n") { r, _ in
            #expect(r.stdout == "PIPED DATA\n")
        },
        .init(name: "python3 runs, with the sandbox's host name", script: "python3 -c 'import socket; print(socket.gethostname(), 6*7)'") { r, _ in
            #expect(r.stdout == "stockade 42\n", "\(r.commandStderr)")
        },
        .init(name: "only the plan's environment", script: "env | sort | cut -d= -f1 | tr '\\n' ' '; echo; echo \"[$HOST_ONLY_SECRET]\"") { r, _ in
            #expect(r.stdout.hasSuffix("[]\n"))
            #expect(!r.stdout.contains("HOST_ONLY_SECRET"))
        },
        .init(name: "a program that does not exist exits 127", script: "exec no-such-program-xyz") { r, _ in
            #expect(r.exitCode == 127)
        },
        .init(name: "pipes, files in /tmp and the home directory", script: "cd /tmp && seq 1 5 > n && sort -r n | head -2 | tr '\\n' ' '; echo > ~/f && echo home-ok") { r, _ in
            #expect(r.stdout == "5 4 home-ok\n", "\(r.commandStderr)")
        },
    ]

    static let escapes: [ConformanceCase] = [
        .init(name: "hidden workspace files cannot be read", script: "cat .env; grep -r AKIA /workspace; echo done") { r, _ in
            #expect(r.stdout == "done\n")
        },
        .init(name: "host files outside the grant do not exist") { host in
            "cat \(host.outside)/credentials; ls \(host.outside); cat /root/.aws/credentials /etc/shadow; grep -rs AKIA /tmp /home /root /etc; echo done"
        } check: { r, _ in
            #expect(r.stdout == "done\n")
        },
        .init(name: "a symbolic link out of the workspace leads nowhere") { host in
            "ln -s \(host.outside)/credentials leak; cat leak; ln -s / root; cat root\(host.outside)/credentials; echo done"
        } check: { r, host in
            #expect(r.stdout == "done\n")
            // The link is the sandbox's own; the host's file is untouched.
            #expect((try? String(contentsOfFile: host.outside + "/credentials", encoding: .utf8)) == ConformanceHost.secret + "\n")
        },
        .init(name: "the system outside the workspace is read-only", script: "for p in /usr/bin/x /etc/x /bin/x /x; do touch $p 2>/dev/null && echo wrote $p; done; echo done") { r, _ in
            #expect(r.stdout == "done\n")
        },
        .init(name: "a read-only workspace refuses writes", script: "echo x > notes.txt || echo refused; cat notes.txt", flags: ["--read-only"]) { r, host in
            #expect(r.stdout == "refused\nvisible\n")
            #expect((try? String(contentsOfFile: host.workspace + "/notes.txt", encoding: .utf8)) == "visible\n")
        },
        .init(name: "no network: no route, no resolver", script: """
            python3 - <<'EOF'
            import socket
            for target in [("1.1.1.1", 53), ("127.0.0.1", 22), ("169.254.169.254", 80)]:
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(target)
                    print("REACHED", target)
                except OSError:
                    pass
            try:
                socket.getaddrinfo("example.com", 80)
                print("RESOLVED")
            except OSError:
                pass
            print("done")
            EOF
            """) { r, _ in
            #expect(r.stdout == "done\n", "\(r.commandStderr)")
        },
        .init(name: "namespaces, mounts, keyrings and ptrace are refused", script: """
            unshare -U true 2>/dev/null && echo unshare
            unshare -m true 2>/dev/null && echo unshare-mount
            python3 -c 'import ctypes; l=ctypes.CDLL(None); print("mount" if l.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0 else "")'
            python3 -c 'import ctypes; l=ctypes.CDLL(None); print("keyctl" if l.syscall(250, 0, 0, 0, 0) >= 0 else "")'
            python3 -c 'import ctypes; l=ctypes.CDLL(None); print("ptrace-init" if l.ptrace(16, 1, 0, 0) == 0 else "")'
            echo done
            """) { r, _ in
            #expect(r.stdout.replacingOccurrences(of: "\n\n", with: "\n").trimmingCharacters(in: .newlines) == "done", "\(r.stdout)")
        },
        .init(name: "no capabilities, and the seccomp filter is on", script: "grep -E '^(Cap(Eff|Prm|Bnd)|Seccomp):' /proc/self/status | tr -s '\\t ' ' '") { r, _ in
            #expect(r.stdout.contains("CapEff: 0000000000000000"))
            #expect(r.stdout.contains("CapPrm: 0000000000000000"))
            #expect(r.stdout.contains("Seccomp: 2"), "\(r.stdout)")
        },
    ]

    static let limits: [ConformanceCase] = [
        .init(name: "wall time", script: "sleep 30", flags: ["--timeout", "1s"]) { r, _ in
            #expect(r.limit == "wall")
            #expect(r.exitCode == 137)
        },
        .init(name: "output", script: "yes", flags: ["--output", "64K"]) { r, _ in
            #expect(r.limit == "output")
            #expect(r.stdout.utf8.count <= 64 * 1024)
        },
        .init(name: "memory", script: "python3 -c 'x = bytearray(768 << 20); print(len(x))'", flags: ["--memory", "128M"]) { r, _ in
            #expect(r.limit == "memory", "\(r.json)")
            #expect(r.stdout.isEmpty)
        },
        .init(name: "CPU time", script: "python3 -c 'while True: pass'", flags: ["--cpu", "1s", "--timeout", "20s"]) { r, _ in
            #expect(r.limit == "cpu", "\(r.json)")
        },
        .init(name: "processes: a fork bomb is contained", script: """
            python3 - <<'EOF'
            import os, time
            started = 0
            for _ in range(200):
                try:
                    if os.fork() == 0:
                        time.sleep(5)
                        os._exit(0)
                    started += 1
                except OSError:
                    break
            print(started)
            EOF
            """, flags: ["--pids", "16", "--timeout", "20s"]) { r, _ in
            // The namespaces tier ends the sandbox at the cgroup's limit; gVisor refuses the
            // fork (RLIMIT_NPROC in its kernel). Either way no more than the limit ran.
            let started = Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            #expect(started < 16, "\(r.json)")
            #expect(r.limit == "pids" || started > 0, "\(r.json)")
        },
        .init(name: "file size", script: "head -c 3000000 /dev/zero > big; echo $?", flags: ["--file-size", "1M"]) { r, host in
            let size = (try? FileManager.default.attributesOfItem(atPath: host.workspace + "/big")[.size] as? Int) ?? 0
            #expect(size <= 1 << 20)
            #expect(r.stdout != "0\n")
        },
        .init(name: "background processes end with the command", script: "sh -c 'sleep 60' & setsid sh -c 'sleep 61' & echo started", flags: ["--timeout", "20s"]) { r, _ in
            #expect(r.stdout == "started\n")
            let leftover = Harness.hostProcesses(matching: ["sleep 60", "sleep 61"])
            #expect(leftover.isEmpty, "left running on the host: \(leftover)")
        },
    ]
}

extension Harness {
    /// Host processes whose command line holds one of `fragments` (joined with spaces).
    static func hostProcesses(matching fragments: [String]) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { Int($0) != nil }.compactMap { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let line = String(decoding: data, as: UTF8.self).split(separator: "\0").joined(separator: " ")
            return fragments.contains { line.contains($0) } ? "\(pid): \(line)" : nil
        }
    }
}

extension SandboxSuite {
    @Suite("Tiers: bad input and missing facilities") struct TierBadInput {
        @Test("an unknown tier is refused, naming the choices")
        func unknownTier() throws {
            let out = try Harness.stockade(["run", "--tier", "firecracker", "--", "true"])
            #expect(out.status == 125)
            #expect(out.stderr.contains("namespaces") && out.stderr.contains("gvisor") && out.stderr.contains("auto"), "\(out.stderr)")
        }

        @Test("a tier this version does not have fails before anything starts")
        func missingTier() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("version: 1\nisolation: {tier: microvm}\n", to: workspace + "/policy.yaml")
            let out = try Harness.stockade(["run", "--policy", workspace + "/policy.yaml", "--workspace", workspace, "--", "touch", "ran"])
            #expect(out.status == 125)
            #expect(out.stderr.contains("microvm") && out.stderr.contains("stockade doctor"), "\(out.stderr)")
            #expect(!FileManager.default.fileExists(atPath: workspace + "/ran"))
        }

        @Test("without runsc the gvisor tier fails closed and doctor says why")
        func noRunsc() throws {
            let environment = ["PATH": "/usr/bin:/bin", "STOCKADE_RUNSC": "/nonexistent/runsc"]
            let out = try Harness.stockade(["run", "--tier", "gvisor", "--", "true"], environment: environment)
            #expect(out.status == 125)
            #expect(out.stderr.contains("/nonexistent/runsc"), "\(out.stderr)")
            let doctor = try Harness.stockade(["doctor", "--json", "--runs", "0"], environment: environment)
            #expect(doctor.status == 0)
            let tiers = doctor.json["tiers"] as? [[String: Any]] ?? []
            let gvisor = tiers.first { $0["tier"] as? String == "gvisor" }
            #expect(gvisor?["available"] as? Bool == false)
            #expect((gvisor?["detail"] as? String ?? "").contains("/nonexistent/runsc"))
        }

        @Test("the gvisor tier refuses a network grant it cannot enforce", .enabled(if: Conformance.gvisorAvailable, Conformance.gvisorSkipReason))
        func gvisorNetwork() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("version: 1\nextends: networked\nnetwork: {mode: allowlist, allow: [example.com]}\n", to: workspace + "/policy.yaml")
            let out = try Harness.stockade(["run", "--tier", "gvisor", "--policy", workspace + "/policy.yaml", "--workspace", workspace, "--", "touch", "ran"])
            #expect(out.status == 125)
            #expect(out.stderr.contains("egress proxy, which the gvisor tier does not have"), "\(out.stderr)")
            #expect(!FileManager.default.fileExists(atPath: workspace + "/ran"))
        }

        @Test("doctor reports every tier and measures the available ones")
        func doctor() throws {
            let out = try Harness.stockade(["doctor", "--json", "--runs", "1"])
            #expect(out.status == 0, "\(out.stderr)")
            let tiers = out.json["tiers"] as? [[String: Any]] ?? []
            #expect(Set(tiers.compactMap { $0["tier"] as? String }) == ["namespaces", "gvisor", "microvm", "wasm"])
            for tier in tiers where tier["available"] as? Bool == true {
                #expect((tier["startMilliseconds"] as? Double ?? 0) > 0, "\(tier)")
            }
            let facilities = (out.json["facilities"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(Set(facilities).isSuperset(of: ["user namespaces", "seccomp", "landlock", "cgroups", "runsc", "kvm", "qemu"]))
        }
    }
}
