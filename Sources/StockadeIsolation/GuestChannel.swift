import Foundation
import StockadeCore
import StockadeSystem

/// One command for the guest agent: what `exec` runs inside a session.
public struct GuestExec: Sendable {
    public var argv: [String]
    public var environment: [EnvironmentVariable]
    public var workingDirectory: String
    /// Per-action limits; nil means none.
    public var wallMilliseconds: UInt64?
    public var cpuMilliseconds: UInt64?
    /// stdout and stderr together; the guest kills the action past it.
    public var outputBytes: UInt64?
    /// How much of each stream to keep in the result (the rest is counted).
    public var captureBytesPerStream: Int

    public init(
        argv: [String], environment: [EnvironmentVariable], workingDirectory: String, wallMilliseconds: UInt64? = nil,
        cpuMilliseconds: UInt64? = nil, outputBytes: UInt64? = nil, captureBytesPerStream: Int = 1 << 20
    ) {
        self.argv = argv
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.wallMilliseconds = wallMilliseconds
        self.cpuMilliseconds = cpuMilliseconds
        self.outputBytes = outputBytes
        self.captureBytesPerStream = captureBytesPerStream
    }
}

/// How a guest action ended.
public struct GuestExecResult: Sendable {
    public var exitCode: Int32
    public var signal: Int32?
    /// The per-action limit that ended it (`wall`, `output`, `cpu`), if one did.
    public var limit: LimitKind?
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool
    public var cpuMicroseconds: UInt64
    public var peakMemoryKiB: UInt64
    public var wallMilliseconds: UInt64
}

/// The supervisor's end of the guest protocol (docs/guest-protocol.md; the guest's end
/// is stockade-init's session.c): frames out, a reader thread that sorts the frames that
/// come back by action. Thread-safe; `exec` blocks its caller until the action ends.
public final class GuestChannel: @unchecked Sendable {
    public static let protocolVersion: UInt32 = 1
    static let maximumFrame = 1 << 20

    /// Receives an action's output as it arrives (true for stderr), on the channel's
    /// reader thread; a sink that blocks holds the guest back.
    public typealias OutputSink = @Sendable (_ isError: Bool, _ bytes: ArraySlice<UInt8>) -> Void

    private final class Pending: @unchecked Sendable {
        let capture: Int
        var sink: OutputSink?
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var stdoutTruncated = false
        var stderrTruncated = false
        var started = false
        var pid: Int32 = 0
        var exit: (how: UInt8, limit: UInt8, value: Int32, cpu: UInt64, rss: UInt64)?
        var failure: Int32?
        var lost = false

        init(capture: Int) {
            self.capture = capture
        }

        var done: Bool { exit != nil || failure != nil || lost }
    }

    private let fd: Int32
    private let condition = NSCondition()
    private var pending: [UInt32: Pending] = [:]
    private var nextID: UInt32 = 1
    private var ready = false
    private var closed = false
    /// Set (under both `condition` and `sendLock`) once the descriptor is closed: its
    /// number may then belong to another socket, so nothing may use it again.
    private var descriptorClosed = false
    private let sendLock = NSLock()

    /// Takes ownership of `socket` and starts reading. Blocks until the guest says it is
    /// ready, or throws if it does not within `timeout`.
    public init(socket: Int32, timeout: Duration = .seconds(10)) throws {
        fd = socket
        // The thread keeps the channel alive until the socket closes (`shutdown`).
        let thread = Thread { self.readLoop() }
        thread.name = "stockade-guest"
        thread.start()
        condition.lock()
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        while !ready && !closed {
            if !condition.wait(until: deadline) { break }
        }
        let isReady = ready
        condition.unlock()
        guard isReady else {
            shutdown()
            throw StockadeError(.startFailed, "failed to start the session: the guest agent inside the sandbox did not answer. Check that stockade-init is the one built with this stockade")
        }
    }

    /// True while the guest agent is reachable.
    public var isOpen: Bool {
        condition.lock()
        defer { condition.unlock() }
        return !closed
    }

    /// Runs one command and waits for it to end.
    /// - Throws: `StockadeError(.notFound)` or `.notExecutable` when the command cannot
    ///   be started, `.startFailed` when the session has ended.
    /// With `output`, the output goes to it instead of being kept in the result.
    public func exec(_ request: GuestExec, output: OutputSink? = nil) throws -> GuestExecResult {
        let started = DispatchTime.now().uptimeNanoseconds
        let entry = Pending(capture: request.captureBytesPerStream)
        entry.sink = output
        condition.lock()
        guard !closed else {
            condition.unlock()
            throw StockadeError(.startFailed, "failed to run the command: the session has ended. Start a new one")
        }
        let id = nextID
        nextID &+= 1
        pending[id] = entry
        condition.unlock()

        do {
            try send(type: 0x01, payload: Self.execPayload(id: id, request))
        } catch {
            condition.lock()
            pending[id] = nil
            condition.unlock()
            throw error
        }
        // A guest that stops answering (stopped or wedged by what runs inside) must not
        // hang the caller: past the action's wall time and a margin, the session ends.
        let deadline = request.wallMilliseconds.map { Date().addingTimeInterval(Double($0) / 1000 + 10) }
        condition.lock()
        var abandoned = false
        while !entry.done {
            if let deadline {
                if !condition.wait(until: deadline) && !entry.done {
                    abandoned = true
                    break
                }
            } else {
                condition.wait()
            }
        }
        pending[id] = nil
        condition.unlock()
        if abandoned {
            shutdown()
            throw StockadeError(.startFailed, "failed to finish the command: the sandbox's guest agent stopped answering, and the session was ended. Start a new one")
        }

        if let failure = entry.failure {
            let command = request.argv.first ?? ""
            switch failure {
            case ENOENT: throw StockadeError(.notFound, "failed to run \(command): not found inside the sandbox. Check the name and the toolset")
            case EACCES, ENOEXEC, EISDIR: throw StockadeError(.notExecutable, "failed to run \(command): \(errnoText(failure)) inside the sandbox")
            default: throw StockadeError(.startFailed, "failed to run \(command): \(errnoText(failure))")
            }
        }
        guard let exit = entry.exit else {
            throw StockadeError(.startFailed, "failed to finish the command: the session ended while it ran")
        }
        let signaled = exit.how == 1
        // Values from inside the sandbox: no arithmetic on them may trap.
        let value = signaled ? max(0, min(exit.value, 127)) : max(0, min(exit.value, 255))
        let limit: LimitKind?
        switch exit.limit {
        case 1: limit = .wall
        case 2: limit = .output
        case 3: limit = .cpu
        default: limit = nil
        }
        return GuestExecResult(
            exitCode: signaled ? 128 + value : value, signal: signaled ? value : nil, limit: limit,
            stdout: entry.stdout, stderr: entry.stderr, stdoutTruncated: entry.stdoutTruncated,
            stderrTruncated: entry.stderrTruncated, cpuMicroseconds: exit.cpu, peakMemoryKiB: exit.rss,
            wallMilliseconds: (DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)
    }

    /// Stops reading and closes the socket; the guest agent then ends the sandbox.
    /// Actions still waiting fail. Idempotent.
    public func shutdown() {
        condition.lock()
        closed = true
        for entry in pending.values { entry.lost = true }
        condition.broadcast()
        // Wakes the reader, which closes the descriptor; only while it is still ours.
        if !descriptorClosed { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        condition.unlock()
    }

    // MARK: frames

    static func execPayload(id: UInt32, _ request: GuestExec) throws -> [UInt8] {
        var payload: [UInt8] = []
        func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { payload += $0 } }
        func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { payload += $0 } }
        func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { payload += $0 } }
        func string(_ text: String) throws {
            guard !text.utf8.contains(0) else {
                throw StockadeError(.invalidArgument, "failed to run the command: an argument or variable contains a NUL byte")
            }
            payload += text.utf8
            payload.append(0)
        }
        guard !request.argv.isEmpty, request.argv.count + request.environment.count < 8192 else {
            throw StockadeError(.invalidArgument, "failed to run the command: it is empty or has too many arguments")
        }
        u32(id)
        u32(UInt32(clamping: request.wallMilliseconds ?? 0))
        u32(UInt32(clamping: request.cpuMilliseconds ?? 0))
        u64(request.outputBytes ?? 0)
        u16(UInt16(request.argv.count))
        u16(UInt16(request.environment.count))
        try string(request.workingDirectory)
        for argument in request.argv { try string(argument) }
        for variable in request.environment { try string("\(variable.name)=\(variable.value)") }
        guard payload.count + 1 <= maximumFrame else {
            throw StockadeError(.invalidArgument, "failed to run the command: its arguments and environment exceed \(maximumFrame) bytes")
        }
        return payload
    }

    private func send(type: UInt8, payload: [UInt8]) throws {
        var frame: [UInt8] = []
        frame.reserveCapacity(payload.count + 5)
        withUnsafeBytes(of: UInt32(payload.count + 1).littleEndian) { frame += $0 }
        frame.append(type)
        frame += payload
        sendLock.lock()
        defer { sendLock.unlock() }
        condition.lock()
        let usable = !descriptorClosed
        condition.unlock()
        guard usable else {
            throw StockadeError(.startFailed, "failed to reach the session's guest agent: the session has ended")
        }
        var offset = 0
        while offset < frame.count {
            let written = frame[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 {
                throw StockadeError(.startFailed, "failed to reach the session's guest agent: \(errnoText(errno)). The session has ended")
            }
            offset += written
        }
    }

    private func readLoop() {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        reading: while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            buffer += chunk[0..<count]
            var offset = 0
            while buffer.count - offset >= 5 {
                let length = Int(UInt32(buffer[offset]) | UInt32(buffer[offset + 1]) << 8 | UInt32(buffer[offset + 2]) << 16 | UInt32(buffer[offset + 3]) << 24)
                guard length >= 1, length <= Self.maximumFrame + 64 else { break reading }
                guard buffer.count - offset - 4 >= length else { break }
                let type = buffer[offset + 4]
                let payload = buffer[(offset + 5)..<(offset + 4 + length)]
                if !handle(type: type, payload: payload) { break reading }
                offset += 4 + length
            }
            buffer.removeFirst(offset)
        }
        // No send may be under way, or start, with the number once it is closed.
        sendLock.lock()
        condition.lock()
        closed = true
        descriptorClosed = true
        close(fd)
        for entry in pending.values { entry.lost = true }
        condition.broadcast()
        condition.unlock()
        sendLock.unlock()
    }

    /// Applies one frame from the guest; false for a frame the protocol does not allow.
    private func handle(type: UInt8, payload: ArraySlice<UInt8>) -> Bool {
        func u32(_ at: Int) -> UInt32 {
            let base = payload.startIndex + at
            return UInt32(payload[base]) | UInt32(payload[base + 1]) << 8 | UInt32(payload[base + 2]) << 16 | UInt32(payload[base + 3]) << 24
        }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
        condition.lock()
        defer { condition.unlock() }
        switch type {
        case 0x80:
            guard payload.count == 4, u32(0) == Self.protocolVersion else { return false }
            ready = true
            condition.broadcast()
        case 0x81:
            guard payload.count == 8, let entry = pending[u32(0)] else { return payload.count == 8 }
            entry.started = true
            entry.pid = Int32(bitPattern: u32(4))
        case 0x82, 0x83:
            guard payload.count >= 4 else { return false }
            guard let entry = pending[u32(0)] else { return true }
            let bytes = payload.dropFirst(4)
            if let sink = entry.sink {
                sink(type == 0x83, bytes)
            } else if type == 0x82 {
                let room = max(0, entry.capture - entry.stdout.count)
                entry.stdout += bytes.prefix(room)
                if bytes.count > room { entry.stdoutTruncated = true }
            } else {
                let room = max(0, entry.capture - entry.stderr.count)
                entry.stderr += bytes.prefix(room)
                if bytes.count > room { entry.stderrTruncated = true }
            }
        case 0x84:
            guard payload.count == 28, payload[payload.startIndex + 4] <= 1 else { return false }
            if let entry = pending[u32(0)] {
                let base = payload.startIndex
                entry.exit = (payload[base + 4], payload[base + 5], Int32(bitPattern: u32(8)), u64(12), u64(20))
                condition.broadcast()
            }
        case 0x85:
            guard payload.count == 8 else { return false }
            if let entry = pending[u32(0)] {
                entry.failure = Int32(bitPattern: u32(4))
                condition.broadcast()
            }
        default:
            return false
        }
        return true
    }
}
