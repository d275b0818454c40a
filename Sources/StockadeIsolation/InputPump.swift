import Foundation
import StockadeSystem

/// Copies a host descriptor (a file, say) into the pipe that is the sandbox's standard
/// input, so that the sandbox reads the data without holding the descriptor itself.
/// The pipe end is non-blocking; `feed()` moves what fits and never waits. Used by one
/// thread at a time.
final class InputPump: @unchecked Sendable {
    let source: Int32
    let pipe: Int32
    private var pending: [UInt8] = []
    private var offset = 0

    init(source: Int32, pipe: Int32) {
        self.source = source
        self.pipe = pipe
        let flags = fcntl(pipe, F_GETFL)
        _ = fcntl(pipe, F_SETFL, flags | O_NONBLOCK)
    }

    /// Moves data while the pipe takes it. Returns false when the pump is finished (the
    /// source ended and everything was written, or the sandbox closed its end).
    func feed() -> Bool {
        while true {
            if offset == pending.count {
                pending = [UInt8](repeating: 0, count: 65536)
                let count = pending.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { pending = []; offset = 0; continue }
                if count <= 0 {
                    // End of file, or unreadable (a directory): the sandbox reads EOF.
                    pending = []
                    offset = 0
                    return false
                }
                pending.removeSubrange(count...)
                offset = 0
            }
            let written = pending.withUnsafeBytes { write(pipe, $0.baseAddress! + offset, pending.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN
            }
            offset += written
        }
    }

    /// Blocks until the pipe has room or its reader is gone; false if poll fails.
    func waitWritable() -> Bool {
        var ready = pollfd(fd: pipe, events: Int16(POLLOUT), revents: 0)
        while true {
            let count = poll(&ready, 1, -1)
            if count < 0 && errno == EINTR { continue }
            return count > 0
        }
    }

    func close() {
        Glibc.close(pipe)
    }
}

/// How a sandbox's standard input is connected; the same rule on every tier.
///
/// Pipes and sockets pass as they are. A terminal never does: it is how TIOCSTI
/// injection and reads of the user's keystrokes happen. Anything else (a file, a
/// directory, a device) is pumped through a pipe by the supervisor: the sandbox must not
/// hold the descriptor itself, since /proc/self/fd/0 would reopen the host file for
/// writing, and a directory fd is a way out of the root (CVE-2024-21626).
enum StandardInput {
    /// /dev/null: nothing given, a terminal, or /dev/null itself.
    case null
    /// The caller's pipe or socket, passed as it is (still the caller's).
    case passed(Int32)
    /// A new pipe: the sandbox reads `read` (the caller of `connect` owns it), `pump`
    /// writes what the caller's descriptor holds.
    case pumped(read: Int32, pump: InputPump)

    static func connect(_ input: InputHandling) throws -> StandardInput {
        guard case .descriptor(let fd) = input, isatty(fd) == 0 else { return .null }
        var info = stat()
        let kind = fstat(fd, &info) == 0 ? info.st_mode & S_IFMT : 0
        if kind == S_IFIFO || kind == S_IFSOCK { return .passed(fd) }
        if kind == S_IFCHR && info.st_rdev == (1 << 8 | 3) { return .null }  // makedev(1, 3)
        var ends = PipeSet()
        let made = try ends.make()
        return .pumped(read: ends.release(made.read), pump: InputPump(source: fd, pipe: ends.release(made.write)))
    }
}
