import Foundation
import Testing

/// Every test that starts sandboxes lives under this suite, run one at a time: the
/// leftover checks count host processes, mounts and cgroups, which concurrent
/// sandboxes would disturb.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SandboxSuite {}

extension SandboxSuite {
    @Suite("Commands work") struct Functional {
        @Test("python3 runs and sees the sandbox's own host name")
        func python() throws {
            let out = try Harness.stockade(["run", "--", Harness.python, "-c", "print(open('/etc/hostname').read().strip())"])
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == "stockade\n")
        }

        @Test("git works in the workspace")
        func git() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let out = try Harness.sandboxed("""
                git init -q . && git config user.email a@b.c && git config user.name t &&
                echo hi > f.txt && git add f.txt && git commit -qm first && git log --format=%s && git status --short
                """, in: workspace)
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == "first\n")
            #expect(FileManager.default.fileExists(atPath: workspace + "/.git/HEAD"))
        }

        @Test("shell pipelines and file edits reach the workspace on the host")
        func pipelineAndEdits() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("b\na\nc\n", to: workspace + "/in.txt")
            let out = try Harness.sandboxed("sort in.txt | tr a-z A-Z > out.txt && sed -i 's/B/bee/' out.txt && cat out.txt | wc -l", in: workspace)
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3")
            #expect(try String(contentsOfFile: workspace + "/out.txt", encoding: .utf8) == "A\nbee\nC\n")
        }

        @Test("the working directory follows the caller inside the workspace")
        func workingDirectory() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try FileManager.default.createDirectory(atPath: workspace + "/sub/dir", withIntermediateDirectories: true)
            let out = try Harness.stockade(["run", "--workspace", workspace, "--", "pwd"], in: workspace + "/sub/dir")
            #expect(out.stdout == "/workspace/sub/dir\n")
        }

        @Test("exit codes pass through; a signal gives 128+N")
        func exitCodes() throws {
            #expect(try Harness.sandboxed("exit 42").status == 42)
            let killed = try Harness.sandboxed("kill -TERM $$")
            #expect(killed.status == 128 + 15)
        }

        @Test("a command that does not exist inside exits 127 and says so")
        func notFound() throws {
            let out = try Harness.stockade(["run", "--", "no-such-program-xyz"])
            #expect(out.status == 127)
            #expect(out.stderr.contains("not found inside the sandbox"))
        }

        @Test("a file that is not executable exits 126")
        func notExecutable() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("echo hi\n", to: workspace + "/script.sh")
            let out = try Harness.stockade(["run", "--workspace", workspace, "--", "./script.sh"], in: workspace)
            #expect(out.status == 126)
            #expect(out.stderr.contains("failed to run './script.sh'"))
        }

        @Test("--json prints one object with the result")
        func json() throws {
            let out = try Harness.stockade(["run", "--json", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
            #expect(out.status == 3)
            let object = out.json
            #expect(object["exit_code"] as? Int == 3)
            #expect(object["stdout"] as? String == "out\n")
            #expect(object["stderr"] as? String == "err\n")
            #expect(object["limit"] is NSNull)
            #expect(object["stdout_truncated"] as? Bool == false)
            #expect(object["wall_ms"] is Int)
            #expect(object["cpu_ms"] is Int)
            #expect((object["peak_memory_bytes"] as? Int ?? 0) > 0)
        }

        @Test("standard input from a pipe reaches the command")
        func standardInput() throws {
            let out = try Harness.stockade(["run", "--", "tr", "a-z", "A-Z"], input: "hello\n")
            #expect(out.stdout == "HELLO\n")
        }

        @Test("--dry-run prints the plan and runs nothing")
        func dryRun() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let out = try Harness.stockade(["run", "--dry-run", "--workspace", workspace, "--", "touch", "/workspace/x"])
            #expect(out.status == 0)
            #expect(out.stdout.contains("\"command\""))
            #expect(out.stdout.contains("\"/workspace\""))
            #expect(!FileManager.default.fileExists(atPath: workspace + "/x"))
        }
    }
}
