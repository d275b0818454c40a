import Foundation
import StockadeCore

extension ToolsetCache {
    /// Temporary build directories older than this are left-overs of a killed run.
    static let staleBuildSeconds: Int64 = 3600

    /// Builds the tree for `closure` (unless the cache holds it already) and returns it.
    /// Files are hard links to the host's where the kernel allows (same file system, and
    /// `fs.protected_hardlinks` satisfied), copies otherwise. Throws
    /// `StockadeError(.hostFacility)` naming the path that could not be written.
    public func materialize(_ closure: ToolsetClosure) throws -> ToolsetRoot {
        let key = closure.key
        let final = directory + "/" + key
        if let root = validRoot(key) { return root }
        sweepStaleBuilds()
        let build = directory + "/.build-\(key.prefix(16))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(build, 0o700) == 0 else {
            throw StockadeError(.hostFacility, "failed to build a toolset root in \(directory): \(errnoText(errno)). Check that the cache directory is writable")
        }
        do {
            try Self.writeTree(closure, into: build + "/root")
            var check = ""
            for entry in closure.entries where entry.checkedOnHit {
                check += "\(entry.device) \(entry.inode) \(entry.size) \(entry.modifiedSeconds).\(entry.modifiedNanoseconds) \(entry.path)\n"
            }
            guard FileManager.default.createFile(atPath: build + "/check", contents: Data(check.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw StockadeError(.hostFacility, "failed to write \(build)/check. Check the cache directory's free space")
            }
            // Atomic: a root is either absent or complete. Another run may have renamed
            // its own build of the same key into place first; then keep that one.
            if rename(build, final) != 0 {
                let error = errno
                guard error == EEXIST || error == ENOTEMPTY else {
                    throw StockadeError(.hostFacility, "failed to move the toolset root into \(final): \(errnoText(error))")
                }
                try? FileManager.default.removeItem(atPath: build)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: build)
            throw error
        }
        guard let root = validRoot(key) else {
            throw StockadeError(.hostFacility, "failed to use the toolset root \(final): the host's files changed while it was built. Try again")
        }
        return ToolsetRoot(key: root.key, path: root.path, topLevel: root.topLevel, cacheHit: false)
    }

    /// Writes every entry below `root`, parents before children (entries are sorted).
    static func writeTree(_ closure: ToolsetClosure, into root: String) throws {
        guard mkdir(root, 0o755) == 0 else { throw writeError(root, errno) }
        var made: Set<String> = [root]
        func makeParents(_ path: String) throws {
            let parent = PathWalk.directory(of: path)
            if made.contains(parent) { return }
            try makeParents(parent)
            if mkdir(parent, 0o755) != 0 && errno != EEXIST { throw writeError(parent, errno) }
            made.insert(parent)
        }
        for entry in closure.entries {
            let target = root + entry.path
            try makeParents(target)
            switch entry.kind {
            case .directory:
                if mkdir(target, 0o755) != 0 && errno != EEXIST { throw writeError(target, errno) }
                made.insert(target)
            case .symlink:
                guard let text = entry.linkTarget else { continue }
                if symlink(text, target) != 0 { throw writeError(target, errno) }
            case .file:
                try place(entry, at: target)
            }
        }
    }

    /// A hard link when allowed, else a copy (mode kept, setuid and setgid bits dropped:
    /// the sandbox mounts nosuid anyway). The file is checked to be the one resolved.
    static func place(_ entry: ToolsetEntry, at target: String) throws {
        if link(entry.path, target) == 0 {
            if let placed = FileStatus.of(target), placed.inode == entry.inode, placed.device == entry.device { return }
            unlink(target)
            throw StockadeError(.hostFacility, "failed to link \(entry.path) into the toolset root: the file changed while the root was built. Try again")
        }
        let source = open(entry.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard source >= 0 else {
            throw StockadeError(.hostFacility, "failed to copy \(entry.path) into the toolset root: \(errnoText(errno)). Leave the program out or run as a user who may read it")
        }
        defer { close(source) }
        let destination = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(entry.mode & 0o755))
        guard destination >= 0 else { throw writeError(target, errno) }
        defer { close(destination) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            if got < 0 { throw writeError(entry.path, errno) }
            if got == 0 { break }
            var written = 0
            while written < got {
                let count = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + written, got - written) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { throw writeError(target, errno) }
                written += count
            }
        }
        fchmod(destination, mode_t(entry.mode & 0o755))
    }

    static func writeError(_ path: String, _ error: Int32) -> StockadeError {
        StockadeError(.hostFacility, "failed to write the toolset root at \(path): \(errnoText(error)). Check the cache directory's free space and permissions")
    }

    /// Removes build directories that a killed run left behind.
    func sweepStaleBuilds() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let now = Int64(time(nil))
        for name in names where name.hasPrefix(".build-") {
            let path = directory + "/" + name
            if let status = FileStatus.of(path), now - status.modifiedSeconds > Self.staleBuildSeconds {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }
}
