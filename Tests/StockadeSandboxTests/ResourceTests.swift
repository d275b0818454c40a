import Foundation
import Testing

/// THREATS.md 4 and 5: limits hold, are named when they end the command, and nothing
/// survives the sandbox.
extension SandboxSuite {
    @Suite("Limits hold and are named") struct Resources {
        static func limit(_ out: Harness.Output) -> String? { out.json["limit"] as? String }

        @Test("a fork bomb hits the process limit and the sandbox ends", .enabled(if: Harness.cgroupsAvailable, "needs cgroup memory and pids controllers (root, or a delegated cgroup v2 subtree)"))
        func forkBomb() throws {
            let out = try Harness.stockade(["run", "--json", "--pids", "32", "--timeout", "30s", "--", "/bin/sh", "-c", "b() { b | b & }; b; sleep 20"])
            #expect(Self.limit(out) == "pids", "\(out.stdout) \(out.stderr)")
            #expect(out.stderr.contains("stockade: limit exceeded: processes (32)"))
        }

        @Test("the wall-time limit ends a sleeping command")
        func wallTime() throws {
            let out = try Harness.stockade(["run", "--json", "--timeout", "1s", "--", "sleep", "60"])
            #expect(Self.limit(out) == "wall")
            #expect(out.status == 137)
            #expect((out.json["wall_ms"] as? Int ?? 99_999) < 10_000)
        }

        @Test("a CPU spin hits the CPU limit")
        func cpuSpin() throws {
            let out = try Harness.stockade(["run", "--json", "--cpu", "1s", "--timeout", "30s", "--", "/bin/sh", "-c", "while :; do :; done"])
            #expect(Self.limit(out) == "cpu", "\(out.stdout)")
            #expect((out.json["cpu_ms"] as? Int ?? 0) >= 900)
        }

        @Test("CPU spin on every core is accounted across processes", .enabled(if: Harness.cgroupsAvailable, "needs cgroup memory and pids controllers (root, or a delegated cgroup v2 subtree)"))
        func cpuEveryCore() throws {
            let out = try Harness.stockade(["run", "--json", "--cpu", "2s", "--timeout", "30s", "--", "/bin/sh", "-c", "for i in 1 2 3 4; do (while :; do :; done) & done; wait"])
            #expect(Self.limit(out) == "cpu", "\(out.stdout)")
        }

        @Test("an output flood hits the output limit")
        func outputFlood() throws {
            let out = try Harness.stockade(["run", "--json", "--output", "1M", "--timeout", "30s", "--", "yes", "flood"])
            #expect(Self.limit(out) == "output")
            #expect(out.json["stdout_truncated"] as? Bool == true)
            #expect((out.json["stdout"] as? String)?.utf8.count ?? 0 <= 1 << 20)
        }

        @Test("streamed output stops at the output limit too")
        func outputFloodStreamed() throws {
            let out = try Harness.stockade(["run", "--output", "100K", "--timeout", "30s", "--", "yes", "flood"])
            #expect(out.stdout.utf8.count <= 100 * 1024)
            #expect(out.stderr.contains("limit exceeded: output (100 KiB)"))
        }

        @Test("writing a file larger than the file-size limit ends the command")
        func fileSize() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let out = try Harness.stockade(["run", "--json", "--workspace", workspace, "--file-size", "1M", "--", "dd", "if=/dev/zero", "of=/workspace/big", "bs=64k", "count=64"])
            #expect(Self.limit(out) == "file_size", "\(out.stdout)")
            let size = (try? FileManager.default.attributesOfItem(atPath: workspace + "/big")[.size] as? Int) ?? 0
            #expect(size <= 1 << 20)
        }

        @Test("/tmp and /dev/shm are capped memory, not the host's")
        func tmpfsFill() throws {
            let out = try Harness.sandboxed("dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>&1 | tail -1; du -m /tmp/fill | cut -f1; dd if=/dev/zero of=/dev/shm/fill bs=1M count=200 2>&1 | grep -c 'No space'", flags: ["--memory", "2G"])
            let lines = out.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 3, "\(out.stdout)")
            #expect((Int(lines[safe: 1] ?? "") ?? 999) <= 256)
            #expect(lines.last == "1")
        }

        @Test("file descriptors are limited")
        func openFiles() throws {
            let out = try Harness.stockade(["run", "--open-files", "64", "--", Harness.python, "-c", """
                import os
                fds = []
                try:
                    while True: fds.append(os.open('/dev/null', os.O_RDONLY))
                except OSError as e: print(len(fds) < 64, e.errno)
                """])
            #expect(out.stdout == "True 24\n", "\(out.stdout) \(out.stderr)")
        }

        @Test("daemons, double forks and setsid children die with the sandbox")
        func nothingSurvives() throws {
            let marker = "31\(Int.random(in: 1000...9999))"
            let out = try Harness.sandboxed("setsid sleep \(marker) & (sleep \(marker) &) ; nohup sleep \(marker) >/dev/null 2>&1 & echo started")
            #expect(out.stdout == "started\n")
            let left = try Harness.run(["/usr/bin/pgrep", "-f", "sleep \(marker)"], environment: [:])
            #expect(left.stdout.isEmpty, "survivors: \(left.stdout)")
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
