import Foundation
import StockadeCore

/// The host's `/etc/ld.so.cache` in glibc's "glibc-ld.so.cache1.1" format: which file
/// the dynamic loader opens for a soname once `DT_RPATH`/`DT_RUNPATH` gave nothing.
///
/// The format: a 48-byte header (17-byte magic "glibc-ld.so.cache", 3-byte version
/// "1.1", library count, string table length, flags, extension offset, padding), then
/// one 24-byte entry per library (flags, key and value as string offsets from the start
/// of the file, OS version, hardware capabilities). Offsets are checked against the file;
/// a cache in another format (or none) is treated as empty, as the loader then searches
/// the default directories. Immutable after loading, so `Sendable`.
public struct LinkerCache: Sendable {
    /// Paths by soname, in cache order (which is the loader's order of preference).
    public let paths: [String: [String]]

    public static let defaultPath = "/etc/ld.so.cache"
    /// Largest cache read (real ones are tens of kilobytes).
    static let maximumBytes = 64 << 20

    public init(paths: [String: [String]]) {
        self.paths = paths
    }

    /// Loads a cache file; an absent, unreadable or foreign one gives an empty cache.
    public static func load(path: String = defaultPath) -> LinkerCache {
        guard let data = FileManager.default.contents(atPath: path), data.count <= maximumBytes else { return LinkerCache(paths: [:]) }
        return parse([UInt8](data))
    }

    /// Parses cache bytes; entries whose offsets fall outside the file are skipped.
    public static func parse(_ bytes: [UInt8]) -> LinkerCache {
        let magic = Array("glibc-ld.so.cache1.1".utf8)
        let headerSize = 48
        let entrySize = 24
        guard bytes.count >= headerSize, Array(bytes[0..<magic.count]) == magic else { return LinkerCache(paths: [:]) }
        func u32(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
        func string(_ at: Int) -> String? {
            guard at < bytes.count, let end = bytes[at...].firstIndex(of: 0) else { return nil }
            return String(validating: bytes[at..<end], as: UTF8.self)
        }
        let count = u32(20)
        guard count <= (bytes.count - headerSize) / entrySize else { return LinkerCache(paths: [:]) }
        var paths: [String: [String]] = [:]
        for index in 0..<count {
            let entry = headerSize + index * entrySize
            guard let key = string(u32(entry + 4)), let value = string(u32(entry + 8)), value.hasPrefix("/") else { continue }
            paths[key, default: []].append(value)
        }
        return LinkerCache(paths: paths)
    }
}

/// Finds the file the dynamic loader would open for a `DT_NEEDED` name, in its order:
/// `DT_RPATH` of the object and of the objects that loaded it (only when the object has
/// no `DT_RUNPATH`), then `DT_RUNPATH`, then `/etc/ld.so.cache`, then the default
/// directories. `LD_LIBRARY_PATH` plays no part: the sandbox's environment is made by
/// stockade. Candidates of another ELF class or machine are skipped, as the loader does.
struct LibraryLocator {
    var cache: LinkerCache
    /// Parsed ELF files by path, shared with the resolver so each file is read once.
    var parsed: [String: ELFDependencies] = [:]

    /// The loader's built-in directories for a machine (x86-64 and AArch64 by their
    /// Debian multiarch names; the plain ones for everything).
    static func defaultDirectories(machine: UInt16) -> [String] {
        var directories: [String] = []
        if let triplet = multiarchTriplet(machine: machine) {
            directories += ["/lib/\(triplet)", "/usr/lib/\(triplet)"]
        }
        return directories + ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    }

    static func multiarchTriplet(machine: UInt16) -> String? {
        switch machine {
        case 62: return "x86_64-linux-gnu"      // EM_X86_64
        case 183: return "aarch64-linux-gnu"    // EM_AARCH64
        case 243: return "riscv64-linux-gnu"    // EM_RISCV
        default: return nil
        }
    }

    /// Reads (once) and returns an ELF file's dependencies.
    mutating func dependencies(of path: String) throws -> ELFDependencies {
        if let known = parsed[path] { return known }
        let info = try ELFReader.read(path: path)
        parsed[path] = info
        return info
    }

    /// The path of `name` for an object of `machine` whose run paths (`DT_RPATH` chain or
    /// `DT_RUNPATH`, already expanded) are `directories`, or nil when the loader would not
    /// find it either.
    mutating func locate(_ name: String, machine: UInt16, directories: [String]) -> String? {
        if name.contains("/") {
            return name.hasPrefix("/") && compatible(name, machine: machine) ? name : nil
        }
        for directory in directories {
            let candidate = directory + "/" + name
            if compatible(candidate, machine: machine) { return candidate }
        }
        for candidate in cache.paths[name] ?? [] where compatible(candidate, machine: machine) {
            return candidate
        }
        for directory in Self.defaultDirectories(machine: machine) {
            let candidate = directory + "/" + name
            if compatible(candidate, machine: machine) { return candidate }
        }
        return nil
    }

    /// `$ORIGIN` and `${ORIGIN}` expanded; nil for directories using tokens the loader
    /// expands per platform (`$LIB`, `$PLATFORM`), which are skipped, and relative ones.
    static func expand(_ directory: String, origin: String) -> String? {
        let expanded = directory.replacingOccurrences(of: "${ORIGIN}", with: origin).replacingOccurrences(of: "$ORIGIN", with: origin)
        guard expanded.hasPrefix("/"), !expanded.contains("$") else { return nil }
        return expanded
    }

    private mutating func compatible(_ path: String, machine: UInt16) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
        guard let dependencies = try? dependencies(of: path) else { return false }
        return dependencies.machine == machine
    }
}
