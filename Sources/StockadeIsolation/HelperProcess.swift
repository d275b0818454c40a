import CStockadeShim
import Foundation

/// A helper process (runsc) started by `stockade_spawn_helper`.
final class HelperProcess: @unchecked Sendable {
    let pid: Int32
    let pidfd: Int32
    private let lock = NSLock()
    private var reaped = false

    init(pid: Int32, pidfd: Int32) {
        self.pid = pid
        self.pidfd = pidfd
    }

    func signal(_ number: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if !reaped { _ = stockade_pidfd_send_signal(pidfd, number) }
    }

    /// Waits up to `milliseconds` for it to end by itself; true if it did.
    func awaitExit(milliseconds: Int32) -> Bool {
        var ready = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let count = poll(&ready, 1, milliseconds)
            if count < 0 && errno == EINTR { continue }
            return count > 0
        }
    }

    /// Kills and reaps it. Idempotent.
    func kill() {
        lock.lock()
        defer { lock.unlock() }
        guard !reaped else { return }
        reaped = true
        _ = stockade_pidfd_send_signal(pidfd, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(pidfd)
    }
}

/// Keeps the last few KiB of what runsc (and stockade-init) write to stderr, read on a
/// thread of its own so that neither ever blocks on a full pipe.
final class DiagnosticsLog: @unchecked Sendable {
    private let lock = NSCondition()
    private var text: [UInt8] = []
    private var done = false
    private static let keep = 8192

    init(fd: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                lock.lock()
                text += buffer[0..<count]
                if text.count > Self.keep { text.removeFirst(text.count - Self.keep) }
                lock.unlock()
            }
            close(fd)
            lock.lock()
            done = true
            lock.broadcast()
            lock.unlock()
        }
        thread.name = "stockade-runsc-log"
        thread.start()
    }

    /// What was said, once the writers are gone (or after 2 s), trimmed to its last lines.
    func finish() -> String {
        lock.lock()
        let deadline = Date().addingTimeInterval(2)
        while !done { if !lock.wait(until: deadline) { break } }
        let said = String(decoding: text, as: UTF8.self)
        lock.unlock()
        return said.split(separator: "\n").suffix(3).joined(separator: " / ").trimmingCharacters(in: .whitespaces)
    }
}
