import Foundation
import StockadeSystem
import Testing

/// Runs the built `stockade` binary the way users do, and helpers for the tests.
enum Harness {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var binary: String {
        ProcessInfo.processInfo.environment["STOCKADE_BIN"] ?? packageRoot + "/.build/debug/stockade"
    }

    static var isRoot: Bool { geteuid() == 0 }

    /// Whether this host gives stockade cgroup limits (memory, pids, CPU accounting);
    /// without them those limits fall back to rlimits, which report no hit.
    static let cgroupsAvailable: Bool = {
        if case .unavailable = SandboxCgroup.probe() { return false }
        return true
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any]) ?? [:]
        }
    }

    /// Runs `stockade ARGS` with `environment` (default: a small one), in `directory`.
    /// `user` runs it through setpriv as that (unprivileged) account.
    @discardableResult
    static func stockade(
        _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil,
        user: String? = nil, input: String? = nil
    ) throws -> Output {
        var command = [binary] + arguments
        if let user {
            command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--reset-env", "--"] + command
        }
        return try run(command, in: directory, environment: environment ?? ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"], input: input)
    }

    /// Runs a command line in the sandbox through `stockade run`.
    static func sandboxed(
        _ script: String, flags: [String] = [], in directory: String? = nil, environment: [String: String]? = nil
    ) throws -> Output {
        try stockade(["run"] + flags + ["--", "/bin/sh", "-c", script], in: directory, environment: environment)
    }

    static func run(_ command: [String], in directory: String? = nil, environment: [String: String], input: String? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = environment
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so a full stderr cannot block stdout.
        let stderrBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let stderrData = stderrBox.data
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus,
            stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self)
        )
    }

    /// A fresh directory for one test, removed by the caller with `remove`.
    static func temporaryDirectory(_ name: String = "ws") throws -> String {
        let path = NSTemporaryDirectory() + "stockade-test-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// The unprivileged account the rootless tests run as (created when missing).
    static let unprivilegedUser: String? = {
        guard isRoot else { return nil }
        let name = "stockade-test"
        if (try? run(["/usr/bin/id", "-u", name], environment: [:]))?.status != 0 {
            _ = try? run(["/usr/sbin/useradd", "--create-home", "--shell", "/bin/sh", name], environment: ["PATH": "/usr/sbin:/usr/bin"])
        }
        return (try? run(["/usr/bin/id", "-u", name], environment: [:]))?.status == 0 ? name : nil
    }()

    /// Python inside the sandbox (the system one: the host's PATH plays no part).
    static let python = "/usr/bin/python3"
}

/// Filled by one thread, read after a DispatchGroup wait.
final class DataBox: @unchecked Sendable {
    var data = Data()
}
