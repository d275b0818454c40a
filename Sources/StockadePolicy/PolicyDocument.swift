import StockadeCore

/// A policy file as written, after validation: version 1 of the format.
///
/// A document only says what the file asks for. Every field that the file leaves out is
/// empty or `nil`; filling in defaults, merging with `stockade run` flags and turning the
/// result into a `SandboxPlan` is the plan compiler's job, not the loader's.
///
/// Values are plain data: `Equatable`, `Codable` and `Sendable`, safe to share between
/// threads.
public struct PolicyDocument: Codable, Equatable, Sendable {
    /// The format version; always 1 for documents this version of stockade accepts.
    public var version: Int
    /// The file the document was loaded from, as the caller named it; `nil` for
    /// `PolicyDocument.default`.
    public var sourcePath: String?
    /// The host directory to grant as the workspace: absolute, resolved against the
    /// directory of the policy file, with `.` and repeated slashes removed. `..` is kept
    /// as written so that a later `realpath` resolves it the way the kernel would (a
    /// lexical `..` would be wrong after a symbolic link). `nil` if the file does not say.
    public var workspacePath: String?
    /// Whether the workspace is bound read-only (`mode: ro`); `nil` if the file does not say.
    public var workspaceReadOnly: Bool?
    /// Extra absolute host paths bound read-only at the same path inside the sandbox.
    public var readOnlyPaths: [String]
    /// Extra globs of workspace entries to hide, added to `HiddenDefaults.patterns`.
    /// Each one is known to compile with `Glob`.
    public var hiddenPatterns: [String]
    /// Variables to set inside the sandbox, in the order the file lists them.
    public var environmentSet: [EnvironmentVariable]
    /// Names of variables copied from the caller's environment, in file order.
    public var environmentPass: [String]
    /// Resource limits the file asks for; unset fields are left to the defaults.
    public var limits: PolicyLimits
    /// The network mode. Only `"none"` exists in version 1.
    public var network: String

    /// Creates a document. The values are taken as they are: this initializer does not
    /// validate, `PolicyLoader` does.
    public init(
        version: Int = 1,
        sourcePath: String? = nil,
        workspacePath: String? = nil,
        workspaceReadOnly: Bool? = nil,
        readOnlyPaths: [String] = [],
        hiddenPatterns: [String] = [],
        environmentSet: [EnvironmentVariable] = [],
        environmentPass: [String] = [],
        limits: PolicyLimits = PolicyLimits(),
        network: String = "none"
    ) {
        self.version = version
        self.sourcePath = sourcePath
        self.workspacePath = workspacePath
        self.workspaceReadOnly = workspaceReadOnly
        self.readOnlyPaths = readOnlyPaths
        self.hiddenPatterns = hiddenPatterns
        self.environmentSet = environmentSet
        self.environmentPass = environmentPass
        self.limits = limits
        self.network = network
    }

    /// The empty version-1 policy: what applies when no policy file is given. It grants
    /// nothing beyond the built-in defaults (no workspace, no network, default limits).
    public static let `default` = PolicyDocument()
}

/// The `limits` section. Every field is optional: `nil` means "not given in the file".
/// Durations are in milliseconds, sizes in bytes; every value that is set is above zero.
public struct PolicyLimits: Codable, Equatable, Sendable {
    /// `wall`: how long the command may run, by the clock.
    public var wallMilliseconds: UInt64?
    /// `cpu`: CPU time the command may use, summed over its processes.
    public var cpuMilliseconds: UInt64?
    /// `memory`: memory the sandbox may use.
    public var memoryBytes: UInt64?
    /// `pids`: how many processes and threads may exist at once.
    public var pids: UInt64?
    /// `open_files`: how many file descriptors one process may hold.
    public var openFiles: UInt64?
    /// `file_size`: the largest file a process may write.
    public var fileSizeBytes: UInt64?
    /// `output`: how much of stdout and stderr is kept.
    public var outputBytes: UInt64?
    /// `tmp`: the size of the sandbox's `/tmp`.
    public var tmpBytes: UInt64?
    /// `shm`: the size of the sandbox's `/dev/shm`.
    public var shmBytes: UInt64?

    public init(
        wallMilliseconds: UInt64? = nil, cpuMilliseconds: UInt64? = nil, memoryBytes: UInt64? = nil,
        pids: UInt64? = nil, openFiles: UInt64? = nil, fileSizeBytes: UInt64? = nil,
        outputBytes: UInt64? = nil, tmpBytes: UInt64? = nil, shmBytes: UInt64? = nil
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

/// The workspace entries hidden in every sandbox, whatever the policy says: files that
/// commonly hold credentials. A policy's `filesystem.hidden` adds to this list; it cannot
/// remove from it.
public enum HiddenDefaults {
    /// Globs in `Glob` syntax, matched anywhere in the workspace.
    public static let patterns = [".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*"]
}
