import Foundation
import StockadeCore

/// Resolves toolset names into the closure of host files they need to run: the
/// programs, the symbolic links on the way to them, their dynamic loader and shared
/// libraries (as ld.so would find them), script interpreters, and the directories of
/// named sets. Nothing else: "if it is not in the list, it does not exist".
///
/// Reads the host's file system and `/etc/ld.so.cache`; holds no shared state, so
/// concurrent calls are safe.
public enum ToolsetResolver {
    /// The version of the resolution rules, part of every cache key: bump it when the
    /// rules change what a name resolves to, so that roots built by older rules are not
    /// reused.
    public static let rulesVersion = 1

    /// Where a bare program name is looked up, in order.
    public static let searchPath = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    /// Top-level host directories a toolset root may hold. Everything else is either made
    /// by stockade inside the sandbox (/etc, /dev, /proc, /tmp, the home directory) or
    /// not the system's to give (/home, /root, /var, /run).
    public static let systemDirectories: Set<String> = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt"]

    /// Resolves `names`. Throws `StockadeError(.invalidPolicy)` naming the first name that
    /// is not a set and not a program on this host (or not usable: outside the system
    /// directories, a broken ELF file, a library the loader would not find either).
    public static func resolve(_ names: [String], linkerCache: LinkerCache = .load()) throws -> ToolsetClosure {
        var resolution = Resolution(locator: LibraryLocator(cache: linkerCache))
        let unique = uniqueNames(names)
        for name in unique {
            try resolution.add(name: name)
        }
        let entries = resolution.entries.values.sorted { $0.path < $1.path }
        return ToolsetClosure(names: unique, entries: entries, warnings: resolution.warnings)
    }

    /// The names in order, repeats dropped.
    public static func uniqueNames(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    /// Checks a name's form: a set or program name, or an absolute path.
    static func validate(_ name: String) throws {
        let bad = name.isEmpty || name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
        if bad || (name.contains("/") && !name.hasPrefix("/")) || name.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) {
            throw StockadeError(.invalidPolicy, "failed to resolve toolset name '\(name)': a toolset name is a program name (python3), a named set (\(ToolsetSet.names.joined(separator: ", "))) or an absolute path without '.' or '..'. Fix the name")
        }
    }

    /// Finds a program: a bare name on `searchPath`, an absolute path as it is. Returns
    /// the path as found (symbolic links not yet followed), or nil.
    public static func findProgram(_ name: String) -> String? {
        if name.hasPrefix("/") {
            return FileStatus.of(name, follow: true)?.isRegular == true ? name : nil
        }
        for directory in searchPath {
            let candidate = directory + "/" + name
            if let status = FileStatus.of(candidate, follow: true), status.isRegular, status.mode & 0o111 != 0 {
                return candidate
            }
        }
        return nil
    }

    static func notFound(_ name: String, for purpose: String) -> StockadeError {
        if name.hasPrefix("/") {
            return StockadeError(.invalidPolicy, "failed to resolve \(purpose) '\(name)': no such file on this host. Check the path or install the program")
        }
        return StockadeError(.invalidPolicy, "failed to resolve \(purpose) '\(name)': it was not found in \(searchPath.joined(separator: ":")) and is not a named set (\(ToolsetSet.names.joined(separator: ", "))). Check the name or give an absolute path")
    }
}

/// A path with every symbolic link on it followed, as the kernel would.
struct PathWalk {
    /// Each link met, in order: where it is (its parent directories already resolved) and
    /// what it says.
    var links: [(path: String, target: String)]
    /// The resolved path.
    var final: String

    /// Most links followed, as the kernel's limit (ELOOP after 40).
    static let maximumLinks = 40

    /// Walks `path` component by component with `lstat`; nil when a component is missing
    /// or there are too many links.
    static func walk(_ path: String) -> PathWalk? {
        var pending = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed() as [String]
        var resolved = ""
        var links: [(String, String)] = []
        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                if let slash = resolved.lastIndex(of: "/") { resolved = String(resolved[..<slash]) }
                continue
            }
            let candidate = resolved + "/" + component
            guard let status = FileStatus.of(candidate) else { return nil }
            guard status.isSymlink else {
                resolved = candidate
                continue
            }
            guard links.count < maximumLinks, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: candidate) else { return nil }
            links.append((candidate, target))
            pending += target.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed()
            if target.hasPrefix("/") { resolved = "" }
        }
        return PathWalk(links: links, final: resolved.isEmpty ? "/" : resolved)
    }

    /// The first component of an absolute path ("usr" for /usr/bin/ls).
    static func topLevel(_ path: String) -> String {
        String(path.split(separator: "/").first ?? "")
    }

    static func isSystemPath(_ path: String) -> Bool {
        ToolsetResolver.systemDirectories.contains(topLevel(path))
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    static func name(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}
