// Finding the cgroup hierarchies this process can use (`SandboxCgroup.probe()`), and the
// small file operations the cgroup code shares. See Cgroups.swift.

import StockadeCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension SandboxCgroup {
    // MARK: - Probing

    /// What this process could use, cheaply (reads /proc/self/mountinfo, /proc/self/cgroup
    /// and a few cgroup files; writes nothing).
    ///
    /// - cgroup v2 with the memory and pids controllers: as root (or with write access to
    ///   the hierarchy root) under the hierarchy's root; otherwise under this process's own
    ///   cgroup when it is writable and has both controllers (a delegated subtree, as from
    ///   `systemd-run --user -p Delegate=yes`).
    /// - Otherwise cgroup v1 with memory and pids hierarchies, as root only: v1 has no
    ///   safe delegation to unprivileged users.
    /// - Otherwise `.unavailable`, with every reason found.
    public static func probe() -> CgroupAvailability {
        let mounts = CgroupMounts(mountInfo: CgroupFS.read("/proc/self/mountinfo") ?? "")
        var reasons: [String] = []
        if let unified = mounts.unified {
            let required: Set<String> = ["memory", "pids"]
            if CgroupFS.isWritableDirectory(unified) {
                if required.isSubset(of: CgroupFS.controllers(at: unified)) { return .v2(root: unified) }
                reasons.append(
                    "the cgroup2 hierarchy at \(unified) lacks the memory or pids controller (on a hybrid host they belong to cgroup v1)"
                )
            } else if let own = CgroupMounts.ownV2Path(procSelfCgroup: CgroupFS.read("/proc/self/cgroup") ?? ""),
                let directory = mounts.directory(forV2Path: own)
            {
                let writable = CgroupFS.isWritableDirectory(directory)
                if writable && required.isSubset(of: CgroupFS.controllers(at: directory)) {
                    return .v2(root: directory)
                }
                reasons.append(
                    writable
                        ? "this process's cgroup \(directory) lacks the memory or pids controller"
                        : "this process's cgroup \(directory) is not delegated to it (not writable)")
            } else {
                reasons.append(
                    "the cgroup2 hierarchy at \(unified) is not writable and this process's cgroup was not found")
            }
        }
        if let memory = mounts.v1["memory"], let pids = mounts.v1["pids"] {
            if CgroupFS.isWritableDirectory(memory) && CgroupFS.isWritableDirectory(pids) {
                return .v1(memory: memory, pids: pids, cpuacct: mounts.v1["cpuacct"])
            }
            reasons.append(
                "cgroup v1 is mounted but not writable: v1 cannot be delegated safely, so stockade uses it only as root"
            )
        } else if mounts.unified == nil {
            reasons.append("no cgroup file system is mounted")
        } else {
            reasons.append("no cgroup v1 memory and pids hierarchies to fall back to")
        }
        return .unavailable(reason: reasons.joined(separator: "; "))
    }
}

/// The cgroup mounts of this process's mount namespace, from /proc/self/mountinfo.
struct CgroupMounts: Equatable {
    /// The cgroup2 mount point, if any.
    var unified: String?
    /// The mount root of the cgroup2 mount (the path inside the hierarchy it shows).
    var unifiedRoot: String = "/"
    /// Mount point of each cgroup v1 controller ("memory", "pids", "cpuacct", ...).
    var v1: [String: String] = [:]

    init(unified: String? = nil, unifiedRoot: String = "/", v1: [String: String] = [:]) {
        self.unified = unified
        self.unifiedRoot = unifiedRoot
        self.v1 = v1
    }

    /// Parses mountinfo lines: "id parent major:minor root mountpoint options [tags] -
    /// fstype source superoptions". The first mount of each hierarchy wins.
    init(mountInfo: String) {
        for line in mountInfo.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let mountFields = halves[0].split(separator: " ")
            let fsFields = halves[1].split(separator: " ")
            guard mountFields.count >= 5, fsFields.count >= 3 else { continue }
            let mountPoint = Self.unescape(mountFields[4])
            switch fsFields[0] {
            case "cgroup2" where unified == nil:
                unified = mountPoint
                unifiedRoot = Self.unescape(mountFields[3])
            case "cgroup":
                for option in fsFields[2].split(separator: ",") where v1[String(option)] == nil {
                    let name = String(option)
                    if ["memory", "pids", "cpuacct", "cpu", "freezer"].contains(name) { v1[name] = mountPoint }
                }
            default:
                continue
            }
        }
    }

    /// The directory of cgroup v2 path `path` (from /proc/self/cgroup), or nil when the
    /// mount does not show it.
    func directory(forV2Path path: String) -> String? {
        guard let unified else { return nil }
        let root = unifiedRoot == "/" ? "" : unifiedRoot
        guard path == root || path.hasPrefix(root + "/") || root.isEmpty else { return nil }
        let relative = String(path.dropFirst(root.count))
        return relative.isEmpty || relative == "/" ? unified : unified + relative
    }

    /// This process's cgroup v2 path: the "0::<path>" line of /proc/self/cgroup.
    static func ownV2Path(procSelfCgroup: String) -> String? {
        for line in procSelfCgroup.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
                let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Small reads and writes of cgroup files, with the errno kept for messages.
enum CgroupFS {
    /// Reads a small kernel file; nil when it cannot be read.
    static func read(_ path: String) -> String? {
        guard let descriptor = try? FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec) else {
            return nil
        }
        defer { try? descriptor.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            guard let count = try? chunk.withUnsafeMutableBytes({ try descriptor.read(into: $0) }) else { return nil }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` in one write(2), as cgroup files expect.
    static func write(_ text: String, to path: String) throws(Errno) {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .writeOnly, options: .closeOnExec)
        } catch let error as Errno {
            throw error
        } catch {
            throw Errno.ioError
        }
        defer { try? descriptor.close() }
        let bytes = Array(text.utf8)
        let written: Int
        do {
            written = try bytes.withUnsafeBytes { try descriptor.write($0) }
        } catch let error as Errno {
            throw error
        } catch {
            throw Errno.ioError
        }
        if written != bytes.count { throw Errno.ioError }
    }

    static func makeDirectory(_ path: String) throws(Errno) {
        if mkdir(path, 0o755) != 0 { throw Errno(rawValue: errno) }
    }

    static func removeDirectory(_ path: String) throws(Errno) {
        if rmdir(path) != 0 { throw Errno(rawValue: errno) }
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Whether this process may make groups in `directory` and move processes there
    /// (checked with the effective ids; a read-only mount fails too).
    static func isWritableDirectory(_ directory: String) -> Bool {
        faccessat(AT_FDCWD, directory, W_OK, AT_EACCESS) == 0
            && faccessat(AT_FDCWD, directory + "/cgroup.procs", W_OK, AT_EACCESS) == 0
    }

    /// The controllers a v2 group can hand to its children (its cgroup.controllers).
    static func controllers(at directory: String) -> Set<String> {
        Set((read(directory + "/cgroup.controllers") ?? "").split(whereSeparator: \.isWhitespace).map(String.init))
    }
}
