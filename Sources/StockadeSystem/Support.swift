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
