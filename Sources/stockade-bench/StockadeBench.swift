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
