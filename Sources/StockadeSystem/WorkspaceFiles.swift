import CStockadeShim
import Foundation
import StockadeCore

/// File actions the supervisor performs on a workspace for an agent: every path is
/// resolved beneath the workspace root with openat2 (RESOLVE_BENEATH and no magic
/// links), so that a symlink or `..` the sandboxed program planted can never lead the
/// supervisor outside the grant. The caller learns the resolved path before anything
/// is read or written, to put it through the policy.
public struct WorkspaceFiles: Sendable {
    /// Absolute, symlink-free host path of the workspace root.
    public let root: String
    /// Device and inode of every hidden entry, refused whatever name leads to it.
    let hidden: Set<[UInt64]>

    /// - Parameter hiddenEntries: the workspace's hidden entries (relative paths), as
    ///   the plan lists them.
    public init(root: String, hiddenEntries: [String] = []) {
        self.root = root
        var hidden = Set<[UInt64]>()
        for entry in hiddenEntries {
            var info = stat()
            if lstat(root + "/" + entry, &info) == 0 { hidden.insert([UInt64(info.st_dev), UInt64(info.st_ino)]) }
        }
        self.hidden = hidden
    }

    /// Makes the calling thread act as the workspace's owner (the user the sandbox user
    /// stands for) for the file work that follows, when the supervisor runs as root: it
    /// then reads and writes with that user's permissions, not root's. The change is
    /// for the rest of this thread's life; call it on a thread of its own.
    public func becomeOwner() throws {
        guard geteuid() == 0 else { return }
        var info = stat()
        guard stat(root, &info) == 0 else { throw Self.failure(errno, "the workspace") }
        let result = stockade_thread_become(info.st_uid, info.st_gid)
        guard result == 0 else {
            throw StockadeError(.hostFacility, "failed to take the workspace owner's credentials: \(errnoText(-result))")
        }
    }

    /// A file or directory opened beneath the root; `relativePath` is where it really is.
    public final class Opened: @unchecked Sendable {
        public let fd: Int32
        /// The resolved path relative to the root ("" for the root itself).
        public let relativePath: String
        public let info: stat
        /// True when this is a hidden entry, whatever name led to it.
        public let isHidden: Bool

        init(fd: Int32, relativePath: String, info: stat, isHidden: Bool) {
            self.fd = fd
            self.relativePath = relativePath
            self.info = info
            self.isHidden = isHidden
        }

        deinit { close(fd) }

        public var isDirectory: Bool { (info.st_mode & S_IFMT) == S_IFDIR }
        public var isRegularFile: Bool { (info.st_mode & S_IFMT) == S_IFREG }
    }

    /// Where a write goes: the deepest directory of its path that exists (opened
    /// beneath the root), the directories still to create below it, and the file name.
    public struct WriteTarget: Sendable {
        public let directory: Opened
        public let missing: [String]
        public let name: String
        /// The resolved path of the file to write, relative to the root.
        public var relativePath: String {
            ([directory.relativePath].filter { !$0.isEmpty } + missing + [name]).joined(separator: "/")
        }
    }

    /// One entry of a directory listing.
    public struct Entry: Codable, Equatable, Sendable {
        public var name: String
        /// `file`, `directory`, `symlink` or `other`.
        public var type: String
        public var size: UInt64
    }

    /// Opens `relative` (relative to the root) for reading, following symlinks only
    /// within the root.
    /// - Throws: `.notFound` when it does not exist, `.invalidArgument` when it leads
    ///   outside the root or through a magic link.
    public func open(_ relative: String, directory: Bool = false) throws -> Opened {
        let rootFD = try openRoot()
        defer { close(rootFD) }
        let path = relative.isEmpty ? "." : relative
        let fd = stockade_open_beneath(rootFD, path, O_RDONLY | O_NOCTTY | O_NONBLOCK | (directory ? O_DIRECTORY : 0), 0, 1)
        guard fd >= 0 else { throw Self.failure(-fd, relative) }
        return try opened(fd, asked: relative)
    }

    /// Resolves where a write of `relative` would go: its parent directory (symlinks
    /// followed within the root) and its last name, which must not be `.` or `..`.
    /// Nothing is created here: the caller puts `relativePath` through the policy
    /// first, and `write` makes the missing directories.
    public func writeTarget(_ relative: String) throws -> WriteTarget {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let last = parts.last else {
            throw StockadeError(.invalidArgument, "failed to write \(relative): the path names no file. Give a file name inside the workspace")
        }
        guard !parts.contains("."), !parts.contains("..") else {
            throw StockadeError(.invalidArgument, "failed to write \(relative): '.' and '..' are not allowed in a path to write. Give the path from the workspace root")
        }
        var parents = Array(parts.dropLast())
        var missing: [String] = []
        while true {
            do {
                let directory = try open(parents.joined(separator: "/"), directory: true)
                return WriteTarget(directory: directory, missing: missing, name: last)
            } catch let error as StockadeError where error.code == .notFound && !parents.isEmpty {
                missing.insert(parents.removeLast(), at: 0)
            }
        }
    }

    /// Reads up to `limit` bytes of an opened regular file; `truncated` when it holds more.
    public func read(_ file: Opened, limit: Int) throws -> (bytes: [UInt8], truncated: Bool) {
        guard file.isRegularFile else {
            throw StockadeError(.invalidArgument, "failed to read \(file.relativePath): not a regular file. Use list_files for a directory")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        // One byte past the limit tells whether there is more.
        while bytes.count <= limit {
            let want = min(chunk.count, limit + 1 - bytes.count)
            let count = chunk.withUnsafeMutableBytes { Glibc.read(file.fd, $0.baseAddress, want) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw StockadeError(.hostFacility, "failed to read \(file.relativePath): \(errnoText(errno))") }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        let truncated = bytes.count > limit
        if truncated { bytes.removeLast(bytes.count - limit) }
        return (bytes, truncated)
    }

    /// Writes `bytes` as the whole content of the target (created if missing, owned like
    /// the workspace root). Refuses to write through a symlink, into anything but a
    /// regular file, or into a file with more than one link (a hard link could be a
    /// name for a file outside the grant).
    public func write(_ bytes: [UInt8], to target: WriteTarget) throws -> Int {
        // The missing directories, each made and entered without following a link (a
        // link planted meanwhile makes the write fail, never escape).
        var directoryFD = dup(target.directory.fd)
        guard directoryFD >= 0 else { throw Self.failure(errno, target.relativePath) }
        defer { close(directoryFD) }
        for name in target.missing {
            if mkdirat(directoryFD, name, 0o755) != 0 && errno != EEXIST {
                throw Self.failure(errno, target.relativePath)
            }
            let next = openat(directoryFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else { throw Self.failure(errno, target.relativePath) }
            close(directoryFD)
            directoryFD = next
        }
        let fd = openat(directoryFD, target.name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.failure(errno, target.relativePath) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Self.failure(errno, target.relativePath) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw StockadeError(.invalidArgument, "failed to write \(target.relativePath): not a regular file")
        }
        guard info.st_nlink <= 1 else {
            throw StockadeError(.invalidArgument, "failed to write \(target.relativePath): the file has \(info.st_nlink) hard links, and one may lead outside the workspace. Remove the extra links first")
        }
        // The policy approved target.relativePath: a directory on the way renamed since
        // must not make the write land elsewhere.
        guard let landed = try? opened(dup(fd), asked: target.relativePath), landed.relativePath == target.relativePath else {
            throw StockadeError(.invalidArgument, "failed to write \(target.relativePath): the workspace changed while it was written to. Try again")
        }
        guard ftruncate(fd, 0) == 0 else { throw Self.failure(errno, target.relativePath) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { throw Self.failure(errno, target.relativePath) }
            offset += written
        }
        return offset
    }

    /// Most entries `list` returns.
    public static let maximumEntries = 10_000

    /// The entries of an opened directory, sorted by name; at most `maximumEntries`
    /// (`truncated` says when there were more).
    public func list(_ directory: Opened) throws -> [Entry] {
        guard directory.isDirectory else {
            throw StockadeError(.invalidArgument, "failed to list \(directory.relativePath): not a directory. Use read_file for a file")
        }
        let copy = openat(directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let handle = fdopendir(copy) else {
            throw Self.failure(errno, directory.relativePath)
        }
        defer { closedir(handle) }
        var entries: [Entry] = []
        while let entry = readdir(handle) {
            let name = directoryEntryName(entry)
            if name == "." || name == ".." { continue }
            var info = stat()
            guard fstatat(directory.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let type: String
            switch info.st_mode & S_IFMT {
            case S_IFREG: type = "file"
            case S_IFDIR: type = "directory"
            case S_IFLNK: type = "symlink"
            default: type = "other"
            }
            entries.append(Entry(name: name, type: type, size: UInt64(info.st_size)))
            if entries.count > Self.maximumEntries { break }
        }
        return entries.sorted { $0.name < $1.name }
    }

    // MARK: -

    private func openRoot() throws -> Int32 {
        let fd = Glibc.open(root, STOCKADE_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StockadeError(.hostFacility, "failed to open the workspace \(root): \(errnoText(errno))") }
        return fd
    }

    /// Learns where `fd` really is, from the kernel, and checks that it lies in the root.
    private func opened(_ fd: Int32, asked: String) throws -> Opened {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw Self.failure(errno, asked)
        }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard length > 0 else {
            close(fd)
            throw StockadeError(.hostFacility, "failed to resolve \(asked): \(errnoText(errno))")
        }
        let resolved = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // A name that no longer exists (" (deleted)") cannot be judged by its name.
        guard info.st_nlink > 0 || (info.st_mode & S_IFMT) == S_IFDIR else {
            close(fd)
            throw StockadeError(.notFound, "failed to open \(asked): it was removed")
        }
        let relative: String
        if resolved == root {
            relative = ""
        } else if resolved.hasPrefix(root + "/") {
            relative = String(resolved.dropFirst(root.count + 1))
        } else {
            close(fd)
            throw StockadeError(.invalidArgument, "failed to open \(asked): it resolves outside the workspace")
        }
        return Opened(fd: fd, relativePath: relative, info: info, isHidden: hidden.contains([UInt64(info.st_dev), UInt64(info.st_ino)]))
    }

    static func failure(_ error: Int32, _ path: String) -> StockadeError {
        switch error {
        case ENOENT: return StockadeError(.notFound, "failed to open \(path): no such file in the workspace")
        case EXDEV: return StockadeError(.invalidArgument, "failed to open \(path): it leads outside the workspace")
        case ELOOP: return StockadeError(.invalidArgument, "failed to open \(path): a symbolic link where none may be followed")
        case ENOTDIR: return StockadeError(.invalidArgument, "failed to open \(path): a part of the path is not a directory")
        case EISDIR: return StockadeError(.invalidArgument, "failed to write \(path): it is a directory")
        case EROFS, EACCES, EPERM: return StockadeError(.invalidArgument, "failed to write \(path): \(errnoText(error))")
        default: return StockadeError(.hostFacility, "failed to open \(path): \(errnoText(error))")
        }
    }
}
