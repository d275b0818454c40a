import Foundation
import Testing

/// THREATS.md 7: bad input gets a clear error that names the problem and what to do.
extension SandboxSuite {
    @Suite("Bad input gets a clear error") struct BadInput {
        @Test("bad flags exit 125 with one line naming the flag", arguments: [
            (["run", "--memory", "lots", "--", "true"], "--memory 'lots'"),
            (["run", "--timeout", "3 parsecs", "--", "true"], "--timeout '3 parsecs'"),
            (["run", "--pids", "zero", "--", "true"], "--pids 'zero'"),
            (["run", "--env", "1BAD=x", "--", "true"], "'1BAD' is not a valid variable name"),
            (["run", "--no-such-flag", "--", "true"], "no-such-flag"),
            (["run"], "no command given"),
            (["run", "--workspace", "/definitely/not/here", "--", "true"], "/definitely/not/here"),
            (["run", "--workspace", "/", "--", "true"], "whole host file system"),
            (["run", "--hide", "[unclosed", "--", "true"], "[unclosed"),
        ])
        func badFlags(arguments: [String], expected: String) throws {
            let out = try Harness.stockade(arguments)
            #expect(out.status == 125, "\(arguments): \(out.stderr)")
            #expect(out.stderr.hasPrefix("stockade: "))
            #expect(out.stderr.contains(expected), "\(out.stderr)")
        }

        @Test("a broken policy names the file, line and key")
        func badPolicy() throws {
            let directory = try Harness.temporaryDirectory("policy")
            defer { Harness.remove(directory) }
            try Harness.write("version: 1\nlimits:\n  memroy: 1G\n", to: directory + "/policy.yaml")
            let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "true"])
            #expect(out.status == 125)
            #expect(out.stderr.contains("policy.yaml:3:"), "\(out.stderr)")
            #expect(out.stderr.contains("memroy"))
            let missing = try Harness.stockade(["run", "--policy", directory + "/absent.yaml", "--", "true"])
            #expect(missing.status == 125)
            #expect(missing.stderr.contains("absent.yaml"))
        }

        @Test("a policy applies its limits, workspace mode and hidden paths")
        func policyApplies() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("hidden-content", to: workspace + "/notes.secret")
            try Harness.write("""
                version: 1
                filesystem:
                  workspace: {path: ., mode: ro}
                  hidden: ["*.secret"]
                environment:
                  set: {FROM_POLICY: "yes"}
                limits: {wall: 1s}
                """, to: workspace + "/policy.yaml")
            let out = try Harness.stockade(["run", "--json", "--policy", workspace + "/policy.yaml", "--", "/bin/sh", "-c", "cat notes.secret; touch x; echo $FROM_POLICY; sleep 30"], in: NSTemporaryDirectory())
            #expect(out.json["limit"] as? String == "wall")
            let stdout = out.json["stdout"] as? String ?? ""
            #expect(stdout == "yes\n", "\(stdout) \(out.json["stderr"] ?? "")")
            #expect(!FileManager.default.fileExists(atPath: workspace + "/x"))
        }

        @Test("--json reports stockade's own failures as JSON too")
        func jsonError() throws {
            let out = try Harness.stockade(["run", "--json", "--", "no-such-program-xyz"])
            #expect(out.status == 127)
            let error = out.json["error"] as? [String: Any]
            #expect(error?["code"] as? String == "notFound")
        }
    }

    @Suite("Nothing is left on the host") struct Leftovers {
        /// Every sandbox cgroup on the host, in any hierarchy, at any depth.
        static func cgroupEntries() -> [String] {
            let found = try? Harness.run(["/usr/bin/find", "/sys/fs/cgroup", "-type", "d", "-name", "sandbox-*"], environment: [:])
            return (found?.stdout ?? "").split(separator: "\n").map(String.init).sorted()
        }

        @Test("100 runs leave no mounts, cgroups, processes or temporary files behind")
        func hundredRuns() throws {
            let mountsBefore = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
            let tmpBefore = Set(try FileManager.default.contentsOfDirectory(atPath: "/tmp"))
            let cgroupsBefore = Self.cgroupEntries()
            for index in 0..<100 {
                let out = try Harness.sandboxed("echo \(index) > /tmp/x; sleep 0.01 & echo ok", flags: ["--memory", "64M", "--pids", "16"])
                #expect(out.stdout == "ok\n")
            }
            #expect(try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) == mountsBefore)
            let tmpAfter = Set(try FileManager.default.contentsOfDirectory(atPath: "/tmp"))
            #expect(tmpAfter.subtracting(tmpBefore).filter { $0.contains("stockade") && !$0.contains("stockade-test") }.isEmpty)
            #expect(Self.cgroupEntries() == cgroupsBefore, "\(Self.cgroupEntries())")
            let inits = try Harness.run(["/usr/bin/pgrep", "-f", "stockade-init"], environment: [:])
            #expect(inits.stdout.isEmpty)
        }

    }
}

extension SandboxSuite.BadInput {
    @Test("a policy inside a writable workspace cannot be rewritten by the sandbox")
    func policyProtected() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try Harness.write("version: 1\nlimits: {pids: 16}\n", to: workspace + "/stockade.yaml")
        let out = try Harness.stockade(["run", "--policy", workspace + "/stockade.yaml", "--workspace", workspace, "--", "/bin/sh", "-c",
                                        "echo 'version: 1' > stockade.yaml 2>/dev/null; rm -f stockade.yaml 2>/dev/null; mv stockade.yaml x 2>/dev/null; echo other > other.txt; echo done"])
        #expect(out.stdout == "done\n", "\(out.stderr)")
        #expect(try String(contentsOfFile: workspace + "/stockade.yaml", encoding: .utf8).contains("pids: 16"))
        #expect(FileManager.default.fileExists(atPath: workspace + "/other.txt"))
    }

    @Test("a policy may not grant the host's root, /proc, /sys, /dev or /run", arguments: ["/", "/proc", "/sys/fs/cgroup", "/dev", "/run"])
    func forbiddenReadOnlyPaths(path: String) throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write("version: 1\nfilesystem:\n  read_only: [\(path)]\n", to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("failed to grant read_only path \(path)"), "\(out.stderr)")
    }
}

extension SandboxSuite.BadInput {
    @Test("`stockade run --help` documents every flag and the exit codes")
    func help() throws {
        let out = try Harness.stockade(["run", "--help"])
        #expect(out.status == 0)
        for flag in ["--policy", "--workspace", "--read-only", "--hide", "--env", "--timeout", "--cpu", "--memory", "--pids",
                     "--open-files", "--file-size", "--output", "--json", "--dry-run"] {
            #expect(out.stdout.contains(flag), "help lacks \(flag)")
        }
        #expect(out.stdout.contains("exit 125"))
        let unknown = try Harness.stockade(["frob"])
        #expect(unknown.status == 125)
        #expect(unknown.stderr.contains("'frob'"))
    }
}
