import Foundation
import StockadeCore
import Synchronization

/// A re-export so the other files need not import Synchronization each.
public typealias Mutex = Synchronization.Mutex

/// The text of an errno value ("Permission denied").
public func errnoText(_ value: Int32) -> String {
    String(cString: strerror(value))
}

/// Small file helpers for /proc and /sys files (short reads and writes).
public enum KernelFile {
    /// Writes `text` in one write(2), as kernel interface files expect.
    public static func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw StockadeError(.hostFacility, "failed to open \(path): \(errnoText(errno))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written != bytes.count {
            throw StockadeError(.hostFacility, "failed to write \(path): \(errnoText(errno))")
        }
    }

    /// Reads a small file; nil when it cannot be read.
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            result.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: result, as: UTF8.self)
    }
}
