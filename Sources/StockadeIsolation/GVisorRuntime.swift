import Foundation
import StockadeCore
import StockadeSystem

/// runsc as found on this host: where, which version, and the platform stockade uses.
public struct GVisorRuntime: Equatable, Sendable {
    public let path: String
    public let version: String
    /// The platforms this runsc build has (`runsc help platforms`).
    public let platforms: [String]
    /// The one stockade runs it with: `STOCKADE_GVISOR_PLATFORM` if set and built in,
    /// else systrap where the build has it, else ptrace. Never kvm on its own: it needs
    /// hardware virtualization, and hangs on paravirtual KVM.
    public let platform: String

    private static let cached = Mutex<Result<GVisorRuntime, StockadeError>?>(nil)

    /// Finds runsc (`STOCKADE_RUNSC`, else the usual directories and `PATH`) and asks it
    /// what it has. Cached for the process.
    public static func locate() -> Result<GVisorRuntime, StockadeError> {
        cached.withLock { cached in
            if let cached { return cached }
            let found = find()
            cached = found
            return found
        }
    }

    private static func find() -> Result<GVisorRuntime, StockadeError> {
        let environment = ProcessInfo.processInfo.environment
        var candidates = ["/usr/sbin/runsc", "/usr/bin/runsc", "/usr/local/bin/runsc", "/usr/local/sbin/runsc"]
        candidates += (environment["PATH"] ?? "").split(separator: ":").map { "\($0)/runsc" }
        if let explicit = environment["STOCKADE_RUNSC"], !explicit.isEmpty { candidates = [explicit] }
        guard let path = candidates.first(where: { $0.hasPrefix("/") && FileManager.default.isExecutableFile(atPath: $0) }) else {
            if let explicit = environment["STOCKADE_RUNSC"], !explicit.isEmpty {
                return .failure(StockadeError(.hostFacility, "STOCKADE_RUNSC names \(explicit), which is not an executable file (an absolute path is needed)"))
            }
            return .failure(StockadeError(.hostFacility, "runsc is not installed (install the runsc package, or set STOCKADE_RUNSC to its path)"))
        }
        let version: String
        let platforms: [String]
        if let known = Answers.cached(for: path) {
            (version, platforms) = (known.version, known.platforms)
        } else {
            guard let versionText = capture(path, ["--version"]), let first = versionText.split(separator: "\n").first else {
                return .failure(StockadeError(.hostFacility, "\(path) did not answer --version; reinstall runsc"))
            }
            version = first.replacingOccurrences(of: "runsc version ", with: "")
            platforms = (capture(path, ["help", "platforms"]) ?? "ptrace").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            Answers.remember(Answers(version: version, platforms: platforms), for: path)
        }
        let platform: String
        if let asked = environment["STOCKADE_GVISOR_PLATFORM"], !asked.isEmpty {
            guard platforms.contains(asked) else {
                return .failure(StockadeError(.hostFacility, "STOCKADE_GVISOR_PLATFORM asks for '\(asked)', which this runsc does not have (it has \(platforms.joined(separator: ", ")))"))
            }
            platform = asked
        } else if platforms.contains("systrap") {
            platform = "systrap"
        } else if platforms.contains("ptrace") {
            platform = "ptrace"
        } else {
            return .failure(StockadeError(.hostFacility, "this runsc has neither the systrap nor the ptrace platform (it has \(platforms.joined(separator: ", ")))"))
        }
        return .success(GVisorRuntime(path: path, version: version, platforms: platforms, platform: platform))
    }

    /// What runsc said about itself, kept beside the toolset cache: asking costs two
    /// starts of a Go binary (about 50 ms) on every `stockade run`. Valid while the
    /// binary's inode, size and change time are the same; trusted only from a file of
    /// ours that nobody else may write.
    struct Answers: Codable {
        var version: String
        var platforms: [String]
        var binary: String = ""

        static func signature(of path: String) -> String? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return "\(path) \(info.st_dev) \(info.st_ino) \(info.st_size) \(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)"
        }

        static func file() -> String? {
            guard let base = try? ToolsetCache.defaultBase(environment: ProcessInfo.processInfo.environment) else { return nil }
            return base + "/runsc.json"
        }

        static func cached(for path: String) -> Answers? {
            guard let file = file(), let signature = signature(of: path) else { return nil }
            var info = stat()
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), info.st_mode & 0o022 == 0,
                  let data = FileManager.default.contents(atPath: file),
                  let answers = try? JSONDecoder().decode(Answers.self, from: data), answers.binary == signature
            else { return nil }
            return answers
        }

        static func remember(_ answers: Answers, for path: String) {
            guard let file = file(), let signature = signature(of: path) else { return }
            var stamped = answers
            stamped.binary = signature
            let directory = (file as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            guard let data = try? JSONEncoder().encode(stamped) else { return }
            try? data.write(to: URL(fileURLWithPath: file), options: .atomic)
            chmod(file, 0o600)
        }
    }

    /// Standard output of a short-lived command, or nil when it failed.
    static func capture(_ path: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
