import Crypto
import Foundation
import StockadeCore

/// A toolset materialized as a directory tree: the closure's files at their host
/// paths below `path`, which the sandbox binds read-only in place of the host's /usr.
public struct ToolsetRoot: Equatable, Sendable {
    /// One entry at the top of the tree.
    public enum TopLevel: Equatable, Sendable {
        case directory(name: String)
        case symlink(name: String, target: String)
    }

    /// The manifest's SHA-256 (hex): the name of the root in the cache.
    public var key: String
    /// The tree, an absolute path without symbolic links.
    public var path: String
    /// What the tree holds at its top (`usr`; `lib64 -> usr/lib64` and the like), sorted.
    public var topLevel: [TopLevel]
    /// Whether the root was already in the cache.
    public var cacheHit: Bool

    public init(key: String, path: String, topLevel: [TopLevel], cacheHit: Bool) {
        self.key = key
        self.path = path
        self.topLevel = topLevel
        self.cacheHit = cacheHit
    }
}

/// The cache of toolset roots, one per manifest key:
///
///     <cache>/toolsets/<key>/root/...     the tree
///     <cache>/toolsets/<key>/check        "<dev> <ino> <size> <mtime> <path>" per checked entry
///     <cache>/toolsets/index/<request>    the key for a request (its names and the stat of
///                                         each named program)
///
/// A hit reads the index and stats the checked entries; it parses no ELF file. Roots
/// are built in a temporary directory and renamed into place, so concurrent runs never
/// see a half-built root; two runs building the same root at once both succeed and one
/// tree is kept. Old roots are not removed (`rm -rf` the cache directory any time no
/// sandbox runs).
///
/// Thread-safe: holds only its directory's path.
public struct ToolsetCache: Sendable {
    /// The `toolsets` directory, resolved and checked.
    public let directory: String

    /// Opens (creating it 0700 if needed) the cache below `base`. A tampered cache is a
    /// sandbox escape: whoever can write a root decides which programs every sandbox
    /// runs, and could plant a setuid-free but trojaned `sh`, a library that reads the
    /// workspace of the next sandbox, or a link out to a host path. So the cache
    /// directory and `base` must belong to the caller and be writable by nobody else, and
    /// every directory above them must belong to root or the caller and be writable by
    /// others only when sticky (like /tmp). Throws `StockadeError(.invalidArgument)`
    /// saying which directory fails and how to fix it.
    public init(base: String) throws {
        try Self.createPrivate(base)
        guard let resolved = realpath(base, nil) else {
            throw StockadeError(.invalidArgument, "failed to use the toolset cache \(base): \(errnoText(errno)). Set STOCKADE_CACHE_DIR to a private directory")
        }
        let resolvedBase = String(cString: resolved)
        free(resolved)
        var ancestor = PathWalk.directory(of: resolvedBase)
        while true {
            try Self.checkAncestor(ancestor)
            if ancestor == "/" { break }
            ancestor = PathWalk.directory(of: ancestor)
        }
        try Self.checkPrivate(resolvedBase)
        let toolsets = resolvedBase + "/toolsets"
        try Self.createPrivate(toolsets)
        try Self.checkPrivate(toolsets)
        try Self.createPrivate(toolsets + "/index")
        try Self.checkPrivate(toolsets + "/index")
        directory = toolsets
    }

    /// The default cache base: `$STOCKADE_CACHE_DIR`; else `/var/cache/stockade` for
    /// root; else `$XDG_CACHE_HOME/stockade` or `$HOME/.cache/stockade`.
    public static func defaultBase(environment: [String: String]) throws -> String {
        if let path = environment["STOCKADE_CACHE_DIR"], !path.isEmpty { return path }
        if geteuid() == 0 { return "/var/cache/stockade" }
        if let path = environment["XDG_CACHE_HOME"], path.hasPrefix("/") { return path + "/stockade" }
        if let home = environment["HOME"], home.hasPrefix("/") { return home + "/.cache/stockade" }
        throw StockadeError(.invalidArgument, "failed to find a toolset cache directory: neither STOCKADE_CACHE_DIR, XDG_CACHE_HOME nor HOME is set. Set STOCKADE_CACHE_DIR to a private directory")
    }

    /// The root for `names`: from the cache when its files are unchanged on the host,
    /// else resolved and built. Throws what `ToolsetResolver.resolve` throws, or
    /// `StockadeError(.hostFacility)` when the tree cannot be written.
    public func root(for names: [String]) throws -> ToolsetRoot {
        let request = try Self.requestKey(names)
        if let key = readIndex(request), let root = validRoot(key) { return root }
        let closure = try ToolsetResolver.resolve(names)
        let root = try materialize(closure)
        writeIndex(request, key: root.key)
        return root
    }

    /// The index key of a request: its names, and for each program they name the path it
    /// is found at and that path's stat, so that a program installed earlier on the search
    /// path, or a link switched to another target, gives a new request.
    static func requestKey(_ names: [String]) throws -> String {
        var text = "stockade toolset request \(ToolsetResolver.rulesVersion)\n"
        for name in ToolsetResolver.uniqueNames(names) {
            try ToolsetResolver.validate(name)
            text += "name \(name)\n"
            let programs: [(String, Bool)]
            if let set = ToolsetSet.named(name) {
                programs = set.programs.map { ($0, true) } + set.optionalPrograms.map { ($0, false) }
            } else {
                programs = [(name, true)]
            }
            for (program, required) in programs {
                guard let found = ToolsetResolver.findProgram(program), let status = FileStatus.of(found) else {
                    if required { throw ToolsetResolver.notFound(program, for: "toolset program") }
                    text += "absent \(program)\n"
                    continue
                }
                text += "\(status.signature) \(found)\n"
            }
        }
        return SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: Hits

    func readIndex(_ request: String) -> String? {
        guard let bytes = Self.readSmallFile(directory + "/index/" + request, limit: 128) else { return nil }
        let key = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return key.count == 64 && key.allSatisfy(\.isHexDigit) ? key : nil
    }

    /// The cached root for `key` when every checked entry still has the stat it had when
    /// the root was built; nil otherwise (the caller rebuilds).
    func validRoot(_ key: String) -> ToolsetRoot? {
        let base = directory + "/" + key
        guard let check = Self.readSmallFile(base + "/check", limit: 64 << 20) else { return nil }
        for line in check.split(separator: 0x0A) {
            // "<dev> <ino> <size> <sec>.<nsec> <path>": the path follows the fourth space.
            var spaces = 0
            guard let split = line.firstIndex(where: { byte in
                if byte == 0x20 { spaces += 1 }
                return spaces == 4
            }) else { return nil }
            let path = String(decoding: line[(split + 1)...], as: UTF8.self)
            guard let status = FileStatus.of(path), status.signature.utf8.elementsEqual(line[..<split]) else { return nil }
        }
        guard let topLevel = Self.topLevel(of: base + "/root") else { return nil }
        return ToolsetRoot(key: key, path: base + "/root", topLevel: topLevel, cacheHit: true)
    }

    func writeIndex(_ request: String, key: String) {
        let path = directory + "/index/" + request
        let temporary = path + ".\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else { return }
        if rename(temporary, path) != 0 { unlink(temporary) }
    }

    static func topLevel(of root: String) -> [ToolsetRoot.TopLevel]? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return nil }
        return names.sorted().compactMap { name in
            let path = root + "/" + name
            guard let status = FileStatus.of(path) else { return nil }
            if status.isDirectory { return .directory(name: name) }
            if status.isSymlink, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
                return .symlink(name: name, target: target)
            }
            return nil
        }
    }

    static func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int(info.st_size) <= limit else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return nil }
            filled += got
        }
        return bytes
    }

    // MARK: Safety of the cache directory

    static func createPrivate(_ path: String) throws {
        if FileStatus.of(path) != nil { return }
        let parent = PathWalk.directory(of: path)
        if parent != path, FileStatus.of(parent, follow: true) == nil { try createPrivate(parent) }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw StockadeError(.invalidArgument, "failed to create the toolset cache directory \(path): \(errnoText(errno)). Set STOCKADE_CACHE_DIR to a directory you may write")
        }
    }

    /// The cache's own directories: real directories of the caller's, writable by no one else.
    static func checkPrivate(_ path: String) throws {
        guard let status = FileStatus.of(path), status.isDirectory else {
            throw StockadeError(.invalidArgument, "failed to use the toolset cache \(path): it is not a directory (or is a symbolic link). Remove it or set STOCKADE_CACHE_DIR to a private directory")
        }
        var info = stat()
        lstat(path, &info)
        if info.st_uid != geteuid() {
            throw StockadeError(.invalidArgument, "failed to use the toolset cache \(path): it belongs to uid \(info.st_uid), not to you (uid \(geteuid())); whoever owns it decides which programs sandboxes run. Remove it or set STOCKADE_CACHE_DIR to a directory of your own")
        }
        if status.mode & 0o022 != 0 {
            throw StockadeError(.invalidArgument, "failed to use the toolset cache \(path): it is writable by other users (mode \(String(status.mode, radix: 8))), who could plant programs in every sandbox. Run chmod go-w \(path) or set STOCKADE_CACHE_DIR to a private directory")
        }
    }

    /// A directory above the cache: root's or the caller's, and not writable by others
    /// unless sticky (where others cannot rename what is ours).
    static func checkAncestor(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        let mode = UInt32(info.st_mode & 0o7777)
        if info.st_uid != 0 && info.st_uid != geteuid() {
            throw StockadeError(.invalidArgument, "failed to use the toolset cache below \(path): that directory belongs to uid \(info.st_uid), who could replace the cache. Set STOCKADE_CACHE_DIR to a directory of your own")
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            throw StockadeError(.invalidArgument, "failed to use the toolset cache below \(path): that directory is writable by other users (mode \(String(mode, radix: 8))) and not sticky, so they could replace the cache. Set STOCKADE_CACHE_DIR to a private directory")
        }
    }
}
