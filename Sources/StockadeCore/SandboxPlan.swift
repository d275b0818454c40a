/// A sandbox described as plain data: what the policy and the flags compile into, and
/// the only thing an isolation backend carries out.
///
/// Plans are `Equatable` and `Codable` so they can be tested, diffed, printed by
/// `stockade run --dry-run` and recorded (by digest) in the audit log. A plan holds no
/// host state that changes between runs except the workspace entries found hidden when
/// it was compiled.
public struct SandboxPlan: Codable, Equatable, Sendable {
    /// The program and its arguments, run inside the sandbox; `command[0]` is looked up
    /// on the sandbox's `PATH`, never the host's.
    public var command: [String]
    /// The complete environment of the command. Nothing is inherited from the caller.
    public var environment: [EnvironmentVariable]
    /// The working directory inside the sandbox.
    public var workingDirectory: String
    /// The host name inside the sandbox's UTS namespace.
    public var hostname: String
    /// The unprivileged user the command runs as inside the sandbox.
    public var user: SandboxUser
    /// The steps that build the sandbox's root file system, in order.
    public var mounts: [MountOperation]
    /// The workspace grant, if any (also present in `mounts`; kept here for reports).
    public var workspace: WorkspaceGrant?
    /// Network access: none, or only through the supervisor's egress proxy.
    public var network: NetworkMode
    /// Resource limits; every field is set (defaults are filled in by the compiler).
    public var limits: ResourceLimits
    /// The system-call filter to install last, just before exec.
    public var seccomp: SeccompProfile
    /// The toolset whose root replaces the host's /usr, if one was asked for (its binds
    /// are in `mounts`; kept here for reports).
    public var toolset: ToolsetGrant?

    public init(
        command: [String], environment: [EnvironmentVariable], workingDirectory: String,
        hostname: String, user: SandboxUser, mounts: [MountOperation], workspace: WorkspaceGrant?,
        network: NetworkMode, limits: ResourceLimits, seccomp: SeccompProfile, toolset: ToolsetGrant? = nil
    ) {
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.hostname = hostname
        self.user = user
        self.mounts = mounts
        self.workspace = workspace
        self.network = network
        self.limits = limits
        self.seccomp = seccomp
        self.toolset = toolset
    }
}

/// A toolset in a plan: the names asked for and the cached root that holds them.
public struct ToolsetGrant: Codable, Equatable, Sendable {
    /// The names as asked for (programs, named sets, absolute paths), repeats dropped.
    public var names: [String]
    /// SHA-256 of the resolved manifest: changes whenever a file of the toolset changes.
    public var key: String
    /// The host directory holding the root's tree.
    public var rootPath: String
    public init(names: [String], key: String, rootPath: String) {
        self.names = names
        self.key = key
        self.rootPath = rootPath
    }
}

/// One `NAME=value` entry of the sandbox's environment.
public struct EnvironmentVariable: Codable, Equatable, Sendable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// The identity of the sandboxed program inside its user namespace. It is never 0:
/// the program must not be root-with-capabilities even inside the namespace.
public struct SandboxUser: Codable, Equatable, Sendable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String
    public init(name: String = "sandbox", uid: UInt32 = 1000, gid: UInt32 = 1000, home: String = "/home/sandbox") {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
    }
}

/// The workspace: a host directory bound into the sandbox.
public struct WorkspaceGrant: Codable, Equatable, Sendable {
    /// Absolute, symlink-free host path.
    public var hostPath: String
    /// Where it appears inside (normally `/workspace`).
    public var sandboxPath: String
    public var readOnly: Bool
    /// The glob patterns that hide workspace entries.
    public var hiddenPatterns: [String]
    /// The workspace entries those patterns matched when the plan was compiled,
    /// relative to `hostPath`; each is masked inside the sandbox.
    public var hiddenEntries: [String]
    /// The glob patterns of entries that stay read-only in a writable workspace.
    public var protectedPatterns: [String]
    /// The entries those patterns matched, relative to `hostPath`.
    public var protectedEntries: [String]
    /// Protected names missing from the workspace: the backend creates each, empty, for
    /// the sandbox's lifetime, so that the command cannot create them either, and
    /// removes it afterwards if it is still empty.
    public var placeholders: [WorkspacePlaceholder]
    /// Protected names a mount cannot guard (missing files, symbolic links): checked
    /// again after the run, and reported if the command created or replaced them.
    public var watched: [WatchedEntry] = []

    public init(
        hostPath: String, sandboxPath: String, readOnly: Bool, hiddenPatterns: [String], hiddenEntries: [String],
        protectedPatterns: [String] = [], protectedEntries: [String] = [], placeholders: [WorkspacePlaceholder] = []
    ) {
        self.hostPath = hostPath
        self.sandboxPath = sandboxPath
        self.readOnly = readOnly
        self.hiddenPatterns = hiddenPatterns
        self.hiddenEntries = hiddenEntries
        self.protectedPatterns = protectedPatterns
        self.protectedEntries = protectedEntries
        self.placeholders = placeholders
    }
}

/// A protected name checked after the run.
public struct WatchedEntry: Codable, Equatable, Sendable {
    /// Relative to the workspace root.
    public var relativePath: String
    /// What was there (inode, type and change time of the symbolic link: an inode
    /// number alone is reused at once when a file replaces the link); nil when nothing
    /// was.
    public var signature: String?

    public init(relativePath: String, signature: String?) {
        self.relativePath = relativePath
        self.signature = signature
    }
}

/// An empty file or directory that stands in the workspace for a protected name.
public struct WorkspacePlaceholder: Codable, Equatable, Sendable {
    /// Relative to the workspace root.
    public var relativePath: String
    public var isDirectory: Bool

    public init(relativePath: String, isDirectory: Bool) {
        self.relativePath = relativePath
        self.isDirectory = isDirectory
    }
}

/// One step in building the sandbox's root. Paths are absolute paths inside the
/// sandbox unless named `source` (a host path). Every mount is `nosuid`; every mount
/// but the device binds is `nodev`.
public enum MountOperation: Codable, Equatable, Sendable {
    /// A directory in the (read-only after set-up) root tmpfs.
    case directory(path: String, mode: UInt32)
    /// A regular file with these contents in the root tmpfs.
    case file(path: String, contents: String, mode: UInt32)
    /// A symbolic link.
    case symlink(target: String, path: String)
    /// A bind mount of a host file or directory; read-only ones are also locked
    /// read-only against remounts from inside.
    case bind(source: String, path: String, readOnly: Bool)
    /// A bind mount of a host device node (`/dev/null` and friends).
    case device(source: String, path: String)
    /// A size-capped tmpfs. `owner` makes the tmpfs root owned by the sandbox user.
    case tmpfs(path: String, sizeBytes: UInt64, inodes: UInt64, mode: UInt32, ownedBySandboxUser: Bool)
    /// A fresh procfs for the sandbox's PID namespace.
    case proc(path: String)
    /// A private devpts instance (with `/dev/ptmx` pointing into it).
    case devpts(path: String)
    /// Makes an existing path inside the sandbox read-only (for `/proc/sys` and friends).
    case readOnly(path: String)
    /// Hides a path below a mount: it is replaced by an empty, unreadable placeholder.
    /// Resolved beneath `base` without following symlinks.
    case mask(base: String, relativePath: String)
    /// Makes a path below a mount read-only (bound over itself), resolved beneath
    /// `base` without following symlinks. A symlink there is left alone.
    case readOnlyBeneath(base: String, relativePath: String)
    /// Binds a directory below a mount over itself, unchanged, so that it cannot be
    /// renamed or removed (a mount point is busy): the parents of protected entries,
    /// which a command could otherwise move aside and recreate without the protection.
    case pinBeneath(base: String, relativePath: String)
}

/// Network access of the sandbox.
public enum NetworkMode: String, Codable, Equatable, Sendable {
    /// A private network namespace holding only a loopback device.
    case none
    /// The same private namespace, plus one listener on its loopback
    /// (127.0.0.1:`EgressBridge.port`) that the supervisor's egress proxy accepts on.
    /// There is still no route: a program that ignores the proxy variables reaches
    /// nothing.
    case proxy
}

/// Where the egress proxy appears inside a sandbox, and the environment that points
/// programs at it.
public enum EgressBridge {
    /// The port of the bridge on the sandbox's loopback (squid's customary port).
    public static let port = 3128
    public static let url = "http://127.0.0.1:\(port)"
    /// The variables curl, pip, git, npm, Python and Go read, in both spellings.
    /// Loopback stays direct: servers the sandbox runs itself are there.
    public static var environment: [EnvironmentVariable] {
        var variables: [EnvironmentVariable] = []
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            variables.append(EnvironmentVariable(name: name, value: url))
            variables.append(EnvironmentVariable(name: name.lowercased(), value: url))
        }
        variables.append(EnvironmentVariable(name: "NO_PROXY", value: "localhost,127.0.0.1,::1"))
        variables.append(EnvironmentVariable(name: "no_proxy", value: "localhost,127.0.0.1,::1"))
        return variables
    }
}

/// Resource limits. `nil` means unlimited (only possible when asked for explicitly).
public struct ResourceLimits: Codable, Equatable, Sendable {
    public var wallMilliseconds: UInt64?
    public var cpuMilliseconds: UInt64?
    public var memoryBytes: UInt64?
    public var pids: UInt64?
    public var openFiles: UInt64?
    public var fileSizeBytes: UInt64?
    public var outputBytes: UInt64?
    /// Size of the private `/tmp` tmpfs.
    public var tmpBytes: UInt64
    /// Size of the private `/dev/shm` tmpfs.
    public var shmBytes: UInt64

    public init(
        wallMilliseconds: UInt64? = nil, cpuMilliseconds: UInt64? = nil, memoryBytes: UInt64? = nil,
        pids: UInt64? = nil, openFiles: UInt64? = nil, fileSizeBytes: UInt64? = nil,
        outputBytes: UInt64? = nil, tmpBytes: UInt64, shmBytes: UInt64
    ) {
        self.wallMilliseconds = wallMilliseconds
        self.cpuMilliseconds = cpuMilliseconds
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.openFiles = openFiles
        self.fileSizeBytes = fileSizeBytes
        self.outputBytes = outputBytes
        self.tmpBytes = tmpBytes
        self.shmBytes = shmBytes
    }
}

extension ResourceLimits {
    /// How a limit that ended a command is named: "memory (256 MiB)".
    public func describe(_ limit: LimitKind) -> String {
        switch limit {
        case .wall: return "wall time (\(wallMilliseconds.map(Quantity.formatMilliseconds) ?? "unset"))"
        case .cpu: return "cpu time (\(cpuMilliseconds.map(Quantity.formatMilliseconds) ?? "unset"))"
        case .memory: return "memory (\(memoryBytes.map(Quantity.formatBytes) ?? "unset"))"
        case .pids: return "processes (\(pids.map { String($0) } ?? "unset"))"
        case .output: return "output (\(outputBytes.map(Quantity.formatBytes) ?? "unset"))"
        case .fileSize: return "file size (\(fileSizeBytes.map(Quantity.formatBytes) ?? "unset"))"
        }
    }
}

/// Which system-call filter to install.
public enum SeccompProfile: String, Codable, Equatable, Sendable {
    /// Deny what an agent's tools never need (see `Seccomp.swift` for the list and why).
    case `default`
}

/// A limit that ended a sandbox, as named in messages and in `--json` output.
public enum LimitKind: String, Codable, Equatable, Sendable, CaseIterable {
    case wall, cpu, memory, pids, output
    case fileSize = "file_size"
}
