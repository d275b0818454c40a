import Foundation
import StockadeRuntime

/// In-process spawn latency: `Runner.run` of /bin/true (library call, no CLI start-up)
/// against a bare posix_spawn+wait of /bin/true, alternating, and prints medians as JSON.
/// With `--toolset NAME` (repeatable) it also times planning and starting with that
/// toolset (its cached root: the first plan builds it, untimed) against without.
/// Used by bench/run.sh; not a test.
@main
enum StockadeBench {
    static func main() throws {
        var iterations = 300
        let arguments = CommandLine.arguments
        if let index = arguments.firstIndex(of: "--iterations"), index + 1 < arguments.count, let value = Int(arguments[index + 1]) {
            iterations = value
        }
        if arguments.contains("--decisions") {
            try benchmarkDecisions()
            return
        }
        if arguments.contains("--session") {
            try benchmarkSessions(iterations: iterations)
            return
        }
        if arguments.contains("--audit") {
            try benchmarkAudit(iterations: iterations)
            return
        }
        if let index = arguments.firstIndex(of: "--leaks"), index + 1 < arguments.count {
            let megabytes = arguments.firstIndex(of: "--megabytes").flatMap { Int(arguments[$0 + 1]) } ?? 100
            try LeakBench.run(corpusPath: arguments[index + 1], megabytes: megabytes)
            return
        }
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("stockade-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let plan = try Runner.plan(RunRequest(command: ["/bin/true"], workspace: workspace))
        var toolset: [String] = []
        for (index, argument) in arguments.enumerated() where argument == "--toolset" && index + 1 < arguments.count {
            toolset.append(arguments[index + 1])
        }
        if !toolset.isEmpty {
            try compareToolset(toolset, workspace: workspace, iterations: iterations)
            return
        }

        var bare: [Double] = []
        var sandboxed: [Double] = []
        for _ in 0..<10 { _ = try Runner.run(plan, output: .capture(maxBytesPerStream: 4096)) }
        for _ in 0..<iterations {
            bare.append(try time { try spawnBare() })
            sandboxed.append(try time {
                let result = try Runner.run(plan, output: .capture(maxBytesPerStream: 4096))
                guard result.exitCode == 0 else { throw StockadeError(.internalError, "/bin/true exited \(result.exitCode)") }
            })
        }
        let report: [String: Any] = ["iterations": iterations, "bare_ms": median(bare), "sandbox_ms": median(sandboxed)]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    /// Plan (no toolset) vs plan (cached toolset), and start+run of each, alternating.
    static func compareToolset(_ names: [String], workspace: String, iterations: Int) throws {
        let plain = RunRequest(command: ["/bin/sh", "-c", ":"], workspace: workspace)
        var withToolset = plain
        withToolset.toolset = names
        _ = try Runner.plan(withToolset)  // builds the root once
        var planPlain: [Double] = []
        var planToolset: [Double] = []
        var runPlain: [Double] = []
        var runToolset: [Double] = []
        for _ in 0..<iterations {
            var plans: [SandboxPlan] = []
            planPlain.append(try time { plans.append(try Runner.plan(plain)) })
            planToolset.append(try time { plans.append(try Runner.plan(withToolset)) })
            for (index, plan) in plans.enumerated() {
                let elapsed = try time {
                    let result = try Runner.run(plan, output: .capture(maxBytesPerStream: 4096))
                    guard result.exitCode == 0 else { throw StockadeError(.internalError, "sh exited \(result.exitCode)") }
                }
                if index == 0 { runPlain.append(elapsed) } else { runToolset.append(elapsed) }
            }
        }
        let report: [String: Any] = [
            "iterations": iterations, "toolset": names,
            "plan_ms": median(planPlain), "plan_toolset_ms": median(planToolset),
            "run_ms": median(runPlain), "run_toolset_ms": median(runToolset),
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    /// Audit appends, each written and made durable (fdatasync) before the next, as an
    /// action's is before its result returns: events per second, on this disk.
    static func benchmarkAudit(iterations: Int) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stockade-bench-audit-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try AuditLog(path: directory + "/audit.jsonl", signingKey: .init(), checkpointEvery: 100)
        var entry = AuditEntry(session: "bench", kind: .action)
        entry.tool = "exec"
        entry.action = "exec git status --short"
        entry.decision = "allow"
        entry.rule = "allow-exec"
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { try log.append(entry) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let object: [String: Any] = ["events": iterations, "seconds": seconds, "events_per_second": Double(iterations) / seconds, "checkpoint_every": 100]
        FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) + Data("\n".utf8))
    }

    /// The validation layer alone: decisions for typical actions against a 50-rule
    /// policy (20 exec, 15 file and 15 http rules, plus invariants and label sources).
    /// Each sample is the mean of a batch of decisions; the report gives the median
    /// sample per action, in microseconds.
    static func benchmarkDecisions() throws {
        var yaml = """
            version: 1
            network: {mode: allowlist, allow: [pypi.org, "*.pythonhosted.org"]}
            labels:
              sources: [{tool: http, integrity: untrusted}, {path: "secrets/**", confidentiality: secret}]
              invariants:
                - {id: no-secret-egress, deny_flow: {from: secret, to: network}}
                - {id: push-after-untrusted, when: untrusted, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask}
            filesystem: {hidden: [secrets]}
            rules:

            """
        for index in 0..<20 {
            yaml += "  - {id: exec-\(index), tool: exec, where: {argv: {prefix: [tool\(index), \"sub*\"]}}, decision: \(index % 2 == 0 ? "deny" : "ask")}\n"
        }
        for index in 0..<15 {
            yaml += "  - {id: file-\(index), tool: [read_file, write_file], where: {path: \"area\(index)/**/*.dat\"}, decision: deny}\n"
        }
        for index in 0..<15 {
            yaml += "  - {id: http-\(index), tool: http, where: {host: \"*.site\(index).example\", method: [GET, HEAD], url_path: \"/api/**\"}, decision: allow}\n"
        }
        let document = try PolicyLoader.parse(yaml, sourcePath: "bench.yaml", baseDirectory: "/")
        precondition(document.rules.count == 50)
        let policyGuard = try PolicyGuard(document)
        let actions: [(String, Action)] = [
            ("exec", .exec(argv: ["git", "status", "--short"], workingDirectory: "/workspace")),
            ("read_file", .readFile(path: "src/module/main.swift")),
            ("http", .http(method: "GET", url: "https://files.pythonhosted.org/packages/ab/cd/pkg.whl")),
        ]
        var report: [String: Any] = ["rules": document.rules.count]
        let batch = 2000
        for (name, action) in actions {
            var samples: [Double] = []
            var sink = 0
            for _ in 0..<60 {
                let elapsed = try time {
                    for _ in 0..<batch { sink &+= policyGuard.decide(action).decision == .deny ? 1 : 0 }
                }
                samples.append(elapsed * 1000 / Double(batch))
            }
            report["\(name)_us"] = median(samples)
            report["\(name)_decision"] = policyGuard.decide(action).description
            if sink < 0 { print(sink) }
        }
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    /// Sessions: `exec` of /bin/true in a warm session (the guest agent alone, and the
    /// whole `Session.perform` with the policy) against a bare posix_spawn+wait, and the
    /// time from starting a session to the first result.
    static func benchmarkSessions(iterations: Int) throws {
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("stockade-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let plan = try Runner.plan(RunRequest(command: ["/bin/true"], workspace: workspace))
        let sandbox = try NamespaceBackend().startSession(plan)
        defer { sandbox.close() }
        let exec = GuestExec(argv: ["/bin/true"], environment: plan.environment, workingDirectory: "/workspace")
        let session = try Blocking.run { try await Session.start(options: SessionOptions(workspace: workspace)) }
        defer { session.close() }
        var bare: [Double] = []
        var guest: [Double] = []
        var perform: [Double] = []
        for _ in 0..<10 { _ = try sandbox.exec(exec) }
        for _ in 0..<iterations {
            bare.append(try time { try spawnBare() })
            guest.append(try time { _ = try sandbox.exec(exec) })
            perform.append(try time { _ = try Blocking.run { try await session.perform(.exec(["/bin/true"])) } })
        }
        var firstResult: [Double] = []
        for _ in 0..<max(10, iterations / 10) {
            firstResult.append(try time {
                let fresh = try Blocking.run { try await Session.start(options: SessionOptions(workspace: workspace)) }
                _ = try Blocking.run { try await fresh.perform(.exec(["/bin/true"])) }
                fresh.close()
            })
        }
        let report: [String: Any] = [
            "iterations": iterations, "bare_ms": median(bare), "guest_exec_ms": median(guest), "perform_ms": median(perform),
            "start_to_first_result_ms": median(firstResult),
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    static func time(_ body: () throws -> Void) throws -> Double {
        var start = timespec()
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        try body()
        clock_gettime(CLOCK_MONOTONIC, &end)
        return Double(end.tv_sec - start.tv_sec) * 1000 + Double(end.tv_nsec - start.tv_nsec) / 1_000_000
    }

    static func spawnBare() throws {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { argv.forEach { free($0) } }
        let result = posix_spawn(&pid, "/bin/true", nil, nil, argv, environ)
        guard result == 0 else { throw StockadeError(.internalError, "posix_spawn: \(result)") }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
