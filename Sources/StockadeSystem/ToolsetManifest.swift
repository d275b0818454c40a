import Crypto
import Foundation
import StockadeCore

/// Why a file is part of a toolset, for `stockade toolset show`.
public struct ToolsetReason: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// A program the toolset names, or one a named set names.
        case program
        /// A symbolic link on the way from a name to a file (`python3 -> python3.11`).
        case link
        /// A shared library some ELF file needs (`DT_NEEDED`).
        case library
        /// The dynamic loader (`PT_INTERP`) of an ELF file, or the `#!` interpreter of a script.
        case interpreter
        /// A directory a named set or a program brings whole (the python standard library).
        case directory
        /// A file inside such a directory (listed under its directory).
        case member
        /// A file a set needs that is neither (C start files, linker scripts and what they name).
        case support
    }

    public var kind: Kind
    /// What it is for: the program's name, the path of the file that needs it, or the set.
    public var subject: String
    /// For `.member`: the directory it belongs to.
    public var directory: String?

    public init(_ kind: Kind, _ subject: String, directory: String? = nil) {
        self.kind = kind
        self.subject = subject
        self.directory = directory
    }

    public var description: String {
        switch kind {
        case .program: return "program \(subject)"
        case .link: return "link to \(subject)"
        case .library: return "library of \(subject)"
        case .interpreter: return "interpreter of \(subject)"
        case .directory: return subject
        case .member: return "in \(directory ?? "?") (\(subject))"
        case .support: return subject
        }
    }
}

/// One host file, directory or symbolic link of a toolset. Its `path` is the same
/// inside the sandbox, with merged-/usr paths in their `/usr` form.
public struct ToolsetEntry: Equatable, Sendable {
    public enum Kind: String, Sendable { case file, symlink, directory }

    public var path: String
    public var kind: Kind
    /// For a symbolic link: what the link in the toolset root says (the host link's own
    /// text, or the resolved target when the host's chain passes outside the root).
    public var linkTarget: String?
    public var reason: ToolsetReason
    public var device: UInt64
    public var inode: UInt64
    public var size: UInt64
    public var modifiedSeconds: Int64
    public var modifiedNanoseconds: Int64
    public var mode: UInt32
    /// Whether a cache hit re-checks this entry's stat. Files inside a set directory are
    /// checked through their directory instead: package managers replace files by
    /// renaming, which changes the directory's modification time.
    public var checkedOnHit: Bool

    /// The line of this entry in the manifest that the cache key hashes.
    var manifestLine: String {
        "\(kind.rawValue) \(device) \(inode) \(size) \(modifiedSeconds).\(modifiedNanoseconds) \(mode) \(path)\(linkTarget.map { "\t" + $0 } ?? "")"
    }
}

/// The resolved closure of a toolset: every host path it holds, each with its reason.
public struct ToolsetClosure: Sendable {
    /// The names asked for, in order, without repeats.
    public var names: [String]
    /// Sorted by path; parents before their contents.
    public var entries: [ToolsetEntry]
    /// Things left out that a program might still want (a library a helper in a set
    /// directory needs that the host lacks).
    public var warnings: [String]

    /// The cache key: SHA-256 over the manifest (every path with its kind, device, inode,
    /// size, modification time, mode and link text), so that any change on the host, a
    /// package upgrade say, gives a new key and a new root.
    public var key: String {
        var hasher = SHA256()
        hasher.update(data: Data("stockade toolset manifest \(ToolsetResolver.rulesVersion)\n".utf8))
        for entry in entries {
            hasher.update(data: Data(entry.manifestLine.utf8))
            hasher.update(data: Data("\n".utf8))
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Regular files in the closure.
    public var fileCount: Int { entries.reduce(0) { $0 + ($1.kind == .file ? 1 : 0) } }
    /// Their total size in bytes.
    public var totalBytes: UInt64 { entries.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) } }
}

/// The subset of `stat(2)` a toolset compares.
struct FileStatus: Equatable {
    var type: mode_t
    var mode: UInt32
    var device: UInt64
    var inode: UInt64
    var size: UInt64
    var modifiedSeconds: Int64
    var modifiedNanoseconds: Int64

    var isDirectory: Bool { type == S_IFDIR }
    var isRegular: Bool { type == S_IFREG }
    var isSymlink: Bool { type == S_IFLNK }

    /// `lstat` (the link itself) or, with `follow`, `stat`; nil when the path is absent.
    static func of(_ path: String, follow: Bool = false) -> FileStatus? {
        var info = stat()
        guard (follow ? stat(path, &info) : lstat(path, &info)) == 0 else { return nil }
        return FileStatus(
            type: info.st_mode & S_IFMT, mode: UInt32(info.st_mode & 0o7777), device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
            size: UInt64(info.st_size), modifiedSeconds: Int64(info.st_mtim.tv_sec), modifiedNanoseconds: Int64(info.st_mtim.tv_nsec)
        )
    }

    /// The fields a cache hit compares, as one line.
    var signature: String { "\(device) \(inode) \(size) \(modifiedSeconds).\(modifiedNanoseconds)" }
}
