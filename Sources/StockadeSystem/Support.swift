import Foundation
import StockadeCore
import Synchronization

/// A re-export so the other files need not import Synchronization each.
public typealias Mutex = Synchronization.Mutex

/// The text of an errno value ("Permission denied").
public func errnoText(_ value: Int32) -> String {
    String(cString: strerror(value))
}

/// Small reads and writes of kernel interface files (/proc, /sys) for callers that
/// want a `StockadeError`; one implementation with the cgroup code's `CgroupFS`.
public enum KernelFile {
    /// Writes `text` in one write(2), as kernel interface files expect.
    public static func write(_ text: String, to path: String) throws {
        do {
            try CgroupFS.write(text, to: path)
        } catch {
            throw StockadeError(.hostFacility, "failed to write \(path): \(errnoText(error.rawValue))", cause: error)
        }
    }

    /// Reads a small file; nil when it cannot be read.
    public static func read(_ path: String) -> String? {
        CgroupFS.read(path)
    }
}

/// The name of a directory entry from readdir(3), read in place. Copying `d_name`
/// (declared as 256 bytes) reads past the end of a short record, and past the end of
/// the C library's buffer when the record is the last one before an unmapped page: a
/// crash in a large enough directory.
public func directoryEntryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
    let start = UnsafeRawPointer(entry).advanced(by: offset).assumingMemoryBound(to: UInt8.self)
    let limit = max(0, Int(entry.pointee.d_reclen) - offset)
    var length = 0
    while length < limit && start[length] != 0 { length += 1 }
    return String(decoding: UnsafeBufferPointer(start: start, count: length), as: UTF8.self)
}
