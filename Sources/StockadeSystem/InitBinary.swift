import CStockadeShim
import Foundation
import StockadeCore

/// Finds stockade-init and keeps a sealed in-memory copy of it for this process.
///
/// Sandboxes execute the copy, never the file: a process inside that opens
/// /proc/1/exe reaches a sealed memfd it cannot write (CVE-2019-5736, where a container
/// overwrote the host's runc binary through it).
public enum InitBinary {
    private static let state = Mutex<Result<Int32, StockadeError>?>(nil)

    /// The directories searched, in order: `$STOCKADE_INIT` (a file), the directory of
    /// the running executable, its `../libexec/stockade`.
    public static func candidates() -> [String] {
        var paths: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["STOCKADE_INIT"], !explicit.isEmpty {
            paths.append(explicit)
        }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let directory = (executable as NSString).deletingLastPathComponent
            paths.append(directory + "/stockade-init")
            paths.append((directory as NSString).deletingLastPathComponent + "/libexec/stockade/stockade-init")
        }
        return paths
    }

    /// A close-on-exec fd of the sealed copy; the same fd for the life of the process.
    /// Thread-safe. Throws `.startFailed` when stockade-init cannot be found or copied.
    public static func descriptor() throws -> Int32 {
        let result = state.withLock { cached -> Result<Int32, StockadeError> in
            if let cached { return cached }
            let found = load()
            cached = found
            return found
        }
        return try result.get()
    }

    private static func load() -> Result<Int32, StockadeError> {
        let searched = candidates()
        for path in searched where FileManager.default.isExecutableFile(atPath: path) {
            let fd = stockade_sealed_executable(path)
            if fd < 0 {
                return .failure(StockadeError(.startFailed, "failed to load stockade-init from \(path): \(errnoText(-fd)). Reinstall stockade"))
            }
            return .success(fd)
        }
        return .failure(StockadeError(
            .startFailed,
            "failed to find stockade-init (looked in \(searched.joined(separator: ", "))). Install it next to the stockade binary or set STOCKADE_INIT"
        ))
    }
}
