import CStockadeShim
import Glibc
import StockadeCore

/// The empty files and directories that stand in a writable workspace for protected
/// names that are missing (`.vscode`, `.mcp.json`), so that the sandbox finds a
/// read-only entry there and cannot create its own. They are made just before the
/// sandbox starts and removed after it ends, if they are still the same, empty entry.
/// If the supervisor is killed outright, an empty placeholder can stay behind.
public final class WorkspacePlaceholders: @unchecked Sendable {
    private struct Made {
        let relativePath: String
        let isDirectory: Bool
        let device: UInt64
        let inode: UInt64
    }

    private let root: String
    private var made: [Made] = []

    private init(root: String) {
        self.root = root
    }

    /// Creates the missing placeholders of `workspace`. Parents are opened beneath the
    /// workspace without following symlinks; an entry that appeared meanwhile is left
    /// as it is (the sandbox's mounts protect it, or refuse a symlink).
    /// - Throws: `StockadeError(.startFailed)` when a placeholder cannot be created.
    public static func create(for workspace: WorkspaceGrant?) throws -> WorkspacePlaceholders {
        guard let workspace, !workspace.readOnly, !workspace.placeholders.isEmpty else {
            return WorkspacePlaceholders(root: "")
        }
        let placeholders = WorkspacePlaceholders(root: workspace.hostPath)
        let rootFD = open(workspace.hostPath, STOCKADE_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else {
            throw StockadeError(.startFailed, "failed to open the workspace \(workspace.hostPath): \(errnoText(errno))")
        }
        defer { close(rootFD) }
        for placeholder in workspace.placeholders {
            let (parentPath, name) = split(placeholder.relativePath)
            let parent = parentPath.isEmpty ? dup(rootFD) : openBeneath(rootFD, parentPath)
            guard parent >= 0 else { continue }
            defer { close(parent) }
            var info = stat()
            if fstatat(parent, "", &info, STOCKADE_AT_EMPTY_PATH_FLAG) == 0 {
                // Owned like the directory it sits in, not by the supervisor.
                if placeholder.isDirectory {
                    guard mkdirat(parent, name, 0o755) == 0 else {
                        if errno == EEXIST { continue }
                        placeholders.remove()
                        throw StockadeError(.startFailed, "failed to protect \(placeholder.relativePath) in the workspace: mkdir: \(errnoText(errno)). Create it yourself, or make the workspace read-only")
                    }
                } else {
                    let fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o444)
                    guard fd >= 0 else {
                        if errno == EEXIST { continue }
                        placeholders.remove()
                        throw StockadeError(.startFailed, "failed to protect \(placeholder.relativePath) in the workspace: create: \(errnoText(errno)). Create it yourself, or make the workspace read-only")
                    }
                    close(fd)
                }
                _ = fchownat(parent, name, info.st_uid, info.st_gid, AT_SYMLINK_NOFOLLOW)
                var made = stat()
                if fstatat(parent, name, &made, AT_SYMLINK_NOFOLLOW) == 0 {
                    placeholders.made.append(Made(
                        relativePath: placeholder.relativePath, isDirectory: placeholder.isDirectory,
                        device: UInt64(made.st_dev), inode: UInt64(made.st_ino)))
                }
            }
        }
        return placeholders
    }

    /// Removes the placeholders this object made that are still the same empty entry.
    /// Idempotent.
    public func remove() {
        guard !made.isEmpty else { return }
        let rootFD = open(root, STOCKADE_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { return }
        defer { close(rootFD) }
        for entry in made.reversed() {
            let (parentPath, name) = Self.split(entry.relativePath)
            let parent = parentPath.isEmpty ? dup(rootFD) : Self.openBeneath(rootFD, parentPath)
            guard parent >= 0 else { continue }
            defer { close(parent) }
            var info = stat()
            guard fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) == 0,
                  UInt64(info.st_dev) == entry.device, UInt64(info.st_ino) == entry.inode else { continue }
            if entry.isDirectory {
                _ = unlinkat(parent, name, AT_REMOVEDIR)  // fails, and keeps it, unless empty
            } else if info.st_size == 0 {
                _ = unlinkat(parent, name, 0)
            }
        }
        made.removeAll()
    }

    private static func split(_ relative: String) -> (String, String) {
        guard let slash = relative.lastIndex(of: "/") else { return ("", relative) }
        return (String(relative[..<slash]), String(relative[relative.index(after: slash)...]))
    }

    private static func openBeneath(_ rootFD: Int32, _ relative: String) -> Int32 {
        let fd = stockade_open_beneath(rootFD, relative, STOCKADE_O_PATH | O_DIRECTORY, 0, 0)
        return fd < 0 ? -1 : fd
    }
}
