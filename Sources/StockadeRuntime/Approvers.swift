import Foundation
import StockadePolicy

/// Asks a person on a terminal: prints the action and the rule, reads `y` or `n`.
/// Anything but `y`/`yes`, end of input or silence past the timeout is a denial. Reads
/// the controlling terminal, not stdin, which the agent may control.
public struct TerminalApprover: Approver {
    let input: Int32
    let output: Int32

    /// An approver on the given descriptors (a terminal, or a pipe in tests). They are
    /// not closed.
    public init(input: Int32, output: Int32) {
        self.input = input
        self.output = output
    }

    /// The approver on the controlling terminal; nil when there is none.
    public static func controllingTerminal() -> TerminalApprover? {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        return TerminalApprover(input: fd, output: fd)
    }

    public var name: String { "terminal" }

    public func review(_ request: ApprovalRequest, timeout: Duration) -> ApprovalAnswer {
        let prompt = """

            stockade: approval needed (\(request.rule.map { "rule \($0)" } ?? "policy")): \(request.reason)
              action: \(request.action)
              session labels: \(request.labels.isEmpty ? "none" : request.labels.joined(separator: ", "))
            Allow this once? [y/N] (\(Int(timeout.components.seconds))s) 
            """
        guard write(all: Array(prompt.utf8)) else { return .denied(reason: "the terminal could not be written to") }
        var answer: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero {
                _ = write(all: Array("\nstockade: no answer in time; denied.\n".utf8))
                return .timedOut
            }
            var descriptor = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            var byte: UInt8 = 0
            let count = read(input, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return .denied(reason: "the terminal closed before an answer") }
            if byte == UInt8(ascii: "\n") { break }
            if answer.count < 16 { answer.append(byte) }
        }
        let text = String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased()
        if text == "y" || text == "yes" { return .approved(by: name) }
        return .denied(reason: "refused at the terminal")
    }

    private func write(all bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.write(output, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }
}

/// Asks an external program: runs `argv` with the request as one JSON object on stdin
/// (see `ApprovalRequest`) and reads one JSON object from stdout:
/// `{"decision": "allow"}` or `{"decision": "deny", "reason": "..."}`. A non-zero exit,
/// anything else on stdout, or no answer in time (the program is then killed) is a
/// denial. The program runs outside the sandbox, as stockade's user: it is part of the
/// supervisor's trusted configuration, like the policy.
public struct CommandApprover: Approver {
    public let argv: [String]

    public init(argv: [String]) {
        self.argv = argv
    }

    public var name: String { "command:\(argv.first ?? "")" }

    /// Largest answer read.
    static let maximumAnswer = 64 << 10

    public func review(_ request: ApprovalRequest, timeout: Duration) -> ApprovalAnswer {
        guard let program = argv.first else { return .denied(reason: "no approver command is configured") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var payload = (try? encoder.encode(request)) ?? Data()
        payload.append(UInt8(ascii: "\n"))

        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard pipe(&toChild) == 0 else { return .denied(reason: "the approver command could not start: pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&fromChild) == 0 else {
            close(toChild[0]); close(toChild[1])
            return .denied(reason: "the approver command could not start: pipe: \(String(cString: strerror(errno)))")
        }
        // Our ends must not leak into the child, nor into sandboxes started meanwhile.
        _ = fcntl(toChild[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fromChild[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], STDIN_FILENO)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], STDOUT_FILENO)
        // The approver runs in a process group of its own, so that a timeout kills it
        // and everything it started, not only the first process.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var pid: pid_t = 0
        let arguments = argv.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        let spawned = posix_spawn(&pid, program, &actions, &attributes, arguments, environ)
        close(toChild[0])
        close(fromChild[1])
        guard spawned == 0 else {
            close(toChild[1])
            close(fromChild[0])
            return .denied(reason: "the approver command \(program) could not start: \(String(cString: strerror(spawned)))")
        }
        defer {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            close(fromChild[0])
        }
        payload.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(toChild[1], raw.baseAddress! + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { break }
                offset += written
            }
        }
        close(toChild[1])

        var answer = Data()
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return .timedOut }
            var descriptor = pollfd(fd: fromChild[0], events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready <= 0 { continue }
            let count = read(fromChild[0], &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            answer.append(contentsOf: buffer[0..<count])
            if answer.count > Self.maximumAnswer {
                return .denied(reason: "the approver command wrote more than \(Self.maximumAnswer) bytes")
            }
        }
        // End of output: the answer is complete once the program exits successfully.
        var status: Int32 = 0
        var waited: pid_t = -1
        while true {
            waited = waitpid(pid, &status, WNOHANG)
            if waited != 0 || ContinuousClock.now >= deadline { break }
            usleep(2000)
        }
        guard waited == pid else { return .timedOut }
        let exitedCleanly = (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0
        guard exitedCleanly else {
            return .denied(reason: "the approver command \(program) failed (wait status \(status))")
        }
        struct Answer: Decodable {
            var decision: String
            var reason: String?
            var approver: String?
        }
        guard let parsed = try? JSONDecoder().decode(Answer.self, from: answer) else {
            return .denied(reason: "the approver command's answer is not {\"decision\": \"allow\"|\"deny\"}")
        }
        switch parsed.decision {
        case "allow": return .approved(by: parsed.approver.map { "\(name) (\($0))" } ?? name)
        case "deny": return .denied(reason: parsed.reason ?? "refused by the approver command")
        default: return .denied(reason: "the approver command answered '\(parsed.decision)', which is neither allow nor deny")
        }
    }
}

extension ApprovalSettings {
    /// How long an approver is given when the policy does not say.
    public static let defaultTimeout: Duration = .seconds(120)

    /// The approver these settings name. `auto` is a terminal prompt when stockade has
    /// a controlling terminal and a denial otherwise.
    public func makeApprover() -> any Approver {
        switch mode ?? .auto {
        case .deny: return UnattendedApprover()
        case .command: return CommandApprover(argv: command ?? [])
        case .auto: return TerminalApprover.controllingTerminal() ?? UnattendedApprover()
        case .prompt:
            return TerminalApprover.controllingTerminal()
                ?? UnattendedApprover(reason: "the policy asks for a terminal prompt (approval.mode: prompt), but stockade has no terminal")
        }
    }

    public var timeout: Duration {
        timeoutMilliseconds.map { .milliseconds(Int64(clamping: $0)) } ?? Self.defaultTimeout
    }
}
