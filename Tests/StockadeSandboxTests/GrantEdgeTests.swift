import Foundation
import Testing

/// Attacks on the edges of a grant: symlinks that redirect it, a policy's directory
/// swapped under it, a FIFO in place of a policy, a hidden name that is a symlink, the
/// output limit split over two streams, a reader that stops reading, groups left by a
/// killed supervisor.
extension SandboxSuite.BadInput {
    @Test("a read_only path that resolves to /run through a symlink is refused")
    func readOnlySymlinkToRun() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try FileManager.default.createSymbolicLink(atPath: directory + "/innocent", withDestinationPath: "/run")
        try Harness.write("version: 1\nfilesystem:\n  read_only: [\(directory)/innocent]\n", to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("(/run)"), "\(out.stderr)")
    }

    @Test("the policy's own directory in the workspace cannot be swapped for another")
    func policyDirectorySwap() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try Harness.write("version: 1\nlimits: {pids: 16}\n", to: workspace + "/.stockade/policy.yaml")
        _ = try Harness.stockade(["run", "--policy", workspace + "/.stockade/policy.yaml", "--workspace", workspace, "--", "/bin/sh", "-c",
                                  "mv .stockade .old 2>/dev/null; mkdir -p .stockade 2>/dev/null; echo 'version: 1' > .stockade/policy.yaml 2>/dev/null; true"])
        #expect(try String(contentsOfFile: workspace + "/.stockade/policy.yaml", encoding: .utf8).contains("pids: 16"))
        #expect(!FileManager.default.fileExists(atPath: workspace + "/.old"))
    }

    @Test("a FIFO where the policy should be is refused at once, not waited on")
    func policyFIFO() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        #expect(mkfifo(directory + "/policy.yaml", 0o644) == 0)
        let out = try Harness.run(["/usr/bin/timeout", "10", Harness.binary, "run", "--policy", directory + "/policy.yaml", "--", "true"], environment: [:])
        #expect(out.status == 125, "\(out.stderr)")
        #expect(out.stderr.contains("not a regular file"))
    }

    @Test("the example policy of docs/policy.md runs")
    func documentedExample() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try Harness.write("""
            version: 1
            filesystem:
              workspace: {path: ., mode: rw}
              read_only: [/usr/share/zoneinfo]
              hidden: ["*.sqlite", "secrets/**"]
            environment:
              set: {LOG_LEVEL: debug, PORT: "8080"}
            limits: {wall: 30s, cpu: 10s, memory: 512MiB, pids: 64, open_files: 256, file_size: 100MiB, output: 1MiB}
            network: none
            """, to: workspace + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", workspace + "/policy.yaml", "--", "/bin/sh", "-c", "echo $LOG_LEVEL"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "debug\n")
    }
}

extension SandboxSuite.Secrets {
    @Test("a hidden name that is a symlink hides the file it points to")
    func hiddenSymlink() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try Harness.write(Self.secret, to: workspace + "/conf/prod")
        try FileManager.default.createSymbolicLink(atPath: workspace + "/.env", withDestinationPath: "conf/prod")
        let out = try Harness.sandboxed("cat .env conf/prod 2>/dev/null; echo end", in: workspace)
        #expect(out.stdout == "end\n", "\(out.stdout)")
    }
}

extension SandboxSuite.Resources {
    @Test("the output limit counts stdout and stderr together")
    func outputLimitBothStreams() throws {
        let out = try Harness.stockade(["run", "--json", "--output", "1M", "--timeout", "30s", "--", "/bin/sh", "-c", "yes out & yes err >&2"])
        #expect(Self.limit(out) == "output")
        let total = (out.json["stdout"] as? String ?? "").utf8.count + (out.json["stderr"] as? String ?? "").utf8.count
        #expect(total <= 1 << 20, "relayed \(total) bytes")
    }
}

extension SandboxSuite.Resources {
    @Test("a reader that stops reading stockade's output does not suspend the wall limit")
    func stalledReader() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.binary)
        process.arguments = ["run", "--timeout", "1s", "--", "yes"]
        process.environment = ["PATH": "/usr/bin:/bin"]
        let never = Pipe()  // nobody reads this
        let errors = Pipe()
        process.standardOutput = never
        process.standardError = errors
        try process.run()
        var waited = 0
        while process.isRunning && waited < 150 {
            usleep(100_000)
            waited += 1
        }
        let stuck = process.isRunning
        if stuck { process.terminate() }
        process.waitUntilExit()
        #expect(!stuck, "stockade still ran after 15 s with a 1 s limit")
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("limit exceeded: wall time (1s)"), "\(message)")
    }
}

extension SandboxSuite.Leftovers {
    @Test("groups left by a killed supervisor are swept by the next run", .enabled(if: Harness.isRoot, "needs root for cgroups on this host"))
    func abandonedCgroupsSwept() throws {
        // A pid that no longer exists: a process that has exited and been reaped.
        let gone = try Harness.run(["/bin/sh", "-c", "echo $$"], environment: [:]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let before = Set(Self.cgroupEntries())
        // Where stockade puts its groups: "stockade" below this process's own group in
        // each v1 hierarchy (stockade inherits it), or at the v2 root.
        var parents: [String] = []
        let own = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        for line in own.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, let controller = ["memory", "pids"].first(where: { fields[1].split(separator: ",").contains(Substring($0)) }) else { continue }
            parents.append("/sys/fs/cgroup/\(controller)\(fields[2] == "/" ? "" : String(fields[2]))/stockade")
        }
        try #require(!parents.isEmpty, "no v1 memory or pids hierarchy on this host")
        var planted: [String] = []
        for parent in parents where FileManager.default.fileExists(atPath: parent) {
            let directory = parent + "/sandbox-\(gone)-12345"
            if mkdir(directory, 0o755) == 0 { planted.append(directory) }
        }
        try #require(!planted.isEmpty)
        _ = try Harness.sandboxed("true")
        for directory in planted {
            #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) was not swept")
            rmdir(directory)
        }
        #expect(Set(Self.cgroupEntries()).subtracting(before).isEmpty)
    }
}

extension SandboxSuite.Rootless {
    @Test("a weaker limit is said out loud: rootless memory limits without cgroups", .enabled(if: Harness.isRoot, "needs root to create and switch to an unprivileged test user"))
    func degradedIsReported() throws {
        let user = try #require(Harness.unprivilegedUser)
        let workspace = "/tmp/stockade-rootless-note-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        defer { Harness.remove(workspace) }
        _ = try Harness.run(["/bin/chown", "\(user):\(user)", workspace], environment: [:])
        let out = try Harness.stockade(["run", "--workspace", workspace, "--memory", "64M", "--", "true"], user: user)
        #expect(out.status == 0, "\(out.stderr)")
        let json = try Harness.stockade(["run", "--json", "--workspace", workspace, "--", "true"], user: user)
        let degraded = json.json["degraded"] as? [String] ?? []
        #expect(degraded.contains("cgroups") == out.stderr.contains("no usable cgroups"), "\(degraded) \(out.stderr)")
    }
}
