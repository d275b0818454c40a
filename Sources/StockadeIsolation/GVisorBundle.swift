import Foundation
import StockadeCore
import StockadeSystem

/// A `SandboxPlan` compiled into an OCI bundle for runsc: a `config.json` and a root
/// directory that holds only the plan's directories, files and symbolic links (and the
/// mount points of its mounts). The root is read-only inside; everything else the plan
/// binds arrives as a mount, served by runsc's gofer.
///
/// What differs from the namespaces tier, and why:
/// - /dev, its device nodes and devpts come from gVisor's own /dev (the sentry's
///   devices, not the host's).
/// - /proc is gVisor's; the plan's read-only and masked /proc entries (kcore, keys,
///   sysrq-trigger, /proc/sys) do not exist there or are read-only already.
/// - Hidden entries are covered by an empty file or directory (mode 000), read-only.
struct GVisorBundle {
    /// The host uid and gid the sandbox user stands for (whoever runs stockade): files
    /// the sandbox creates in the workspace belong to them, as with the namespaces tier.
    let hostUID: UInt32
    let hostGID: UInt32
    /// Where the bundle lives; removed by `remove()`.
    let directory: String
    var rootPath: String { directory + "/rootfs" }
    var statePath: String { directory + "/state" }
    /// Notes about what the plan asked for that gVisor provides its own way.
    private(set) var notes: [String] = []

    /// The first host id of the range that the sandbox's ids below the sandbox user map
    /// to (its root among them, which runsc's gofer runs as): ids nobody on the host has.
    static let unusedHostIDBase: UInt32 = 1_996_000_000

    /// Paths inside the sandbox that gVisor owns.
    private static func providedByGVisor(_ path: String) -> Bool {
        path == "/proc" || path.hasPrefix("/proc/") || path.hasPrefix("/dev/") && !path.hasPrefix("/dev/shm")
    }

    /// Writes the bundle for `plan`, with stockade-init (a copy of the sealed binary)
    /// at /.stockade/init and, if given, the seccomp program at /.stockade/seccomp.
    static func create(for plan: SandboxPlan, initDescriptor: Int32, seccomp: [UInt8]) throws -> GVisorBundle {
        let template = NSTemporaryDirectory() + "stockade-gvisor-XXXXXX"
        var pathBuffer = Array(template.utf8CString)
        guard mkdtemp(&pathBuffer) != nil else {
            throw StockadeError(.startFailed, "failed to create the gVisor bundle directory: \(errnoText(errno)). Check that \(NSTemporaryDirectory()) is writable")
        }
        let directory = String(cString: pathBuffer)
        var bundle = GVisorBundle(hostUID: getuid(), hostGID: getgid(), directory: directory)
        do {
            try bundle.write(plan, initDescriptor: initDescriptor, seccomp: seccomp)
        } catch {
            bundle.remove()
            throw error
        }
        return bundle
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private mutating func write(_ plan: SandboxPlan, initDescriptor: Int32, seccomp: [UInt8]) throws {
        let files = FileManager.default
        try make(directory: rootPath, mode: 0o755)
        try make(directory: statePath, mode: 0o700)
        try make(directory: rootPath + "/.stockade", mode: 0o755)
        // stockade-init, copied from the sealed in-memory copy: the file the sandbox
        // runs is the bundle's, read-only inside, and gone with the bundle.
        let initData = try Data(contentsOf: URL(fileURLWithPath: "/proc/self/fd/\(initDescriptor)"))
        try put(initData, at: "/.stockade/init", mode: 0o555)
        if !seccomp.isEmpty { try put(Data(seccomp), at: "/.stockade/seccomp", mode: 0o444) }
        let emptyFile = directory + "/empty-file"
        let emptyDirectory = directory + "/empty-directory"
        guard files.createFile(atPath: emptyFile, contents: nil, attributes: [.posixPermissions: 0]) else {
            throw StockadeError(.startFailed, "failed to create \(emptyFile)")
        }
        try make(directory: emptyDirectory, mode: 0)

        var mounts: [[String: Any]] = []
        var sources: [String: String] = [:]  // sandbox path of a bind → host source
        for operation in plan.mounts {
            switch operation {
            case .directory(let path, let mode):
                try make(directory: rootPath + path, mode: mode)
            case .file(let path, let contents, let mode):
                try put(Data(contents.utf8), at: path, mode: mode)
            case .symlink(let target, let path):
                if Self.providedByGVisor(path) { continue }
                try makeParent(of: rootPath + path)
                guard symlink(target, rootPath + path) == 0 else {
                    throw StockadeError(.startFailed, "failed to create the link \(path) in the gVisor bundle: \(errnoText(errno))")
                }
            case .bind(let source, let path, let readOnly):
                sources[path] = source
                try mountPoint(at: path, like: source)
                mounts.append(Self.bind(source, at: path, readOnly: readOnly))
            case .device, .devpts:
                continue
            case .proc(let path):
                try mountPoint(at: path, directory: true)
                mounts.append(["destination": path, "type": "proc", "source": "proc"])
            case .tmpfs(let path, let size, let inodes, let mode, let owned):
                try mountPoint(at: path, directory: true)
                var options = ["nosuid", "nodev", "size=\(size)", "nr_inodes=\(inodes)", "mode=\(String(mode, radix: 8))"]
                if owned { options += ["uid=\(plan.user.uid)", "gid=\(plan.user.gid)"] }
                mounts.append(["destination": path, "type": "tmpfs", "source": "tmpfs", "options": options])
            case .readOnly(let path):
                guard Self.providedByGVisor(path) else {
                    throw StockadeError(.unsupported, "failed to build the gVisor sandbox: the plan makes \(path) read-only, which the gvisor tier does not do outside /proc. Use --tier namespaces")
                }
                notes.append("\(path): gVisor's own")
            case .mask(let base, let relativePath):
                let path = base + "/" + relativePath
                if Self.providedByGVisor(path) { continue }
                guard let source = sources[base] else {
                    throw StockadeError(.unsupported, "failed to build the gVisor sandbox: cannot hide \(path): \(base) is not a bind mount of the plan")
                }
                var info = stat()
                guard lstat(source + "/" + relativePath, &info) == 0 else { continue }
                let isDirectory = info.st_mode & S_IFMT == S_IFDIR
                mounts.append(Self.bind(isDirectory ? emptyDirectory : emptyFile, at: path, readOnly: true))
            case .readOnlyBeneath(let base, let relativePath), .pinBeneath(let base, let relativePath):
                guard let source = sources[base] else {
                    throw StockadeError(.unsupported, "failed to build the gVisor sandbox: \(base)/\(relativePath) is not below a bind mount of the plan")
                }
                var info = stat()
                let hostPath = source + "/" + relativePath
                // A symbolic link is left alone, as in the namespaces tier.
                guard lstat(hostPath, &info) == 0, info.st_mode & S_IFMT != S_IFLNK else { continue }
                var readOnly = true
                if case .pinBeneath = operation { readOnly = false }
                mounts.append(Self.bind(hostPath, at: base + "/" + relativePath, readOnly: readOnly))
            }
        }

        var rlimits: [[String: Any]] = [["type": "RLIMIT_CORE", "soft": 0, "hard": 0]]
        func limit(_ name: String, _ value: UInt64?) {
            if let value { rlimits.append(["type": name, "soft": value, "hard": value]) }
        }
        limit("RLIMIT_NOFILE", plan.limits.openFiles)
        limit("RLIMIT_FSIZE", plan.limits.fileSizeBytes)
        // gVisor counts processes per user inside its own kernel: the process limit.
        limit("RLIMIT_NPROC", plan.limits.pids)

        let uid = plan.user.uid
        let gid = plan.user.gid
        func mappings(inside: UInt32, host: UInt32) -> [[String: Any]] {
            var result: [[String: Any]] = []
            if inside > 0 { result.append(["containerID": 0, "hostID": Self.unusedHostIDBase, "size": inside]) }
            result.append(["containerID": inside, "hostID": host, "size": 1])
            return result
        }
        let config: [String: Any] = [
            "ociVersion": "1.0.2",
            "hostname": plan.hostname,
            "root": ["path": "rootfs", "readonly": true],
            "process": [
                "user": ["uid": uid, "gid": gid],
                "args": ["/.stockade/init", "--session-stdio"],
                "env": plan.environment.map { "\($0.name)=\($0.value)" },
                "cwd": "/",
                "capabilities": [String: Any](),
                "noNewPrivileges": true,
                "rlimits": rlimits,
            ] as [String: Any],
            "mounts": mounts,
            "linux": [
                "namespaces": ["pid", "network", "ipc", "uts", "mount", "user"].map { ["type": $0] },
                "uidMappings": mappings(inside: uid, host: hostUID),
                "gidMappings": mappings(inside: gid, host: hostGID),
            ] as [String: Any],
        ]
        let data = try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys, .prettyPrinted])
        try data.write(to: URL(fileURLWithPath: directory + "/config.json"))
    }

    private static func bind(_ source: String, at path: String, readOnly: Bool) -> [String: Any] {
        ["destination": path, "type": "bind", "source": source, "options": ["rbind", readOnly ? "ro" : "rw", "nosuid", "nodev"]]
    }

    private func make(directory path: String, mode: UInt32) throws {
        if mkdir(path, mode_t(mode)) < 0 && errno != EEXIST {
            throw StockadeError(.startFailed, "failed to create \(path) in the gVisor bundle: \(errnoText(errno))")
        }
        chmod(path, mode_t(mode))
    }

    private func makeParent(of hostPath: String) throws {
        let parent = (hostPath as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: parent) {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
    }

    private func put(_ data: Data, at path: String, mode: UInt32) throws {
        let hostPath = rootPath + path
        try makeParent(of: hostPath)
        guard FileManager.default.createFile(atPath: hostPath, contents: data, attributes: [.posixPermissions: Int(mode)]) else {
            throw StockadeError(.startFailed, "failed to write \(hostPath) in the gVisor bundle")
        }
    }

    /// A mount point in the root for `path` (inside), of the same kind as `source`.
    private func mountPoint(at path: String, like source: String) throws {
        var info = stat()
        let isDirectory = stat(source, &info) != 0 || info.st_mode & S_IFMT == S_IFDIR
        try mountPoint(at: path, directory: isDirectory)
    }

    private func mountPoint(at path: String, directory isDirectory: Bool) throws {
        // Mount points below another mount (/workspace/.env) live in that mount.
        let hostPath = rootPath + path
        try makeParent(of: hostPath)
        var info = stat()
        if lstat(hostPath, &info) == 0 { return }
        if isDirectory {
            try make(directory: hostPath, mode: 0o755)
        } else if !FileManager.default.createFile(atPath: hostPath, contents: nil, attributes: [.posixPermissions: 0o444]) {
            throw StockadeError(.startFailed, "failed to create the mount point \(hostPath) in the gVisor bundle")
        }
    }
}
