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
    /// `network`; nil if the file does not say.
    public var network: NetworkPolicy?
    /// `extends`: the built-in profile this document builds on; nil means
    /// `workspace-write`. See `PolicyProfile`.
    public var extends: PolicyProfile?
    /// `isolation`; nil if the file does not say.
    public var isolation: IsolationSettings?
    /// `toolset`: the programs and named sets that exist inside; nil means the host's
    /// whole read-only system view.
    public var toolset: [String]?
    /// `filesystem.protected`: globs of workspace entries that stay read-only inside a
    /// writable workspace, added to `ProtectedDefaults.patterns`.
    public var protectedPatterns: [String]
    /// `rules`, in file order.
    public var rules: [Rule]
    /// `labels`.
    public var labels: LabelPolicy
    /// `approval`; nil if the file does not say.
    public var approval: ApprovalSettings?
    /// `secrets`; nil if the file does not say.
    public var secrets: SecretsPolicy?
    /// `audit`; nil if the file does not say.
    public var audit: AuditSettings?

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
        network: NetworkPolicy? = nil,
        extends: PolicyProfile? = nil,
        isolation: IsolationSettings? = nil,
        toolset: [String]? = nil,
        protectedPatterns: [String] = [],
        rules: [Rule] = [],
        labels: LabelPolicy = LabelPolicy(),
        approval: ApprovalSettings? = nil,
        secrets: SecretsPolicy? = nil,
        audit: AuditSettings? = nil
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
        self.extends = extends
        self.isolation = isolation
        self.toolset = toolset
        self.protectedPatterns = protectedPatterns
        self.rules = rules
        self.labels = labels
        self.approval = approval
        self.secrets = secrets
        self.audit = audit
    }

    /// The empty version-1 policy: what applies when no policy file is given. Resolved
    /// (`resolved()`), it is the `workspace-write` profile: the workspace read-write, no
    /// network, default limits, every tool allowed on what the sandbox shows.
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

/// The workspace entries that stay read-only even in a writable workspace, whatever the
/// policy says: places where a file written now runs code later, outside the sandbox
/// (git hooks and configuration, shell start-up files, editor and agent settings, MCP
/// server lists). A policy's `filesystem.protected` adds to this list.
///
/// A pattern ending in `/` names a directory. A missing directory named without
/// wildcards gets an empty read-only placeholder for the sandbox's lifetime, so that
/// the command cannot create it either; a missing file (or a missing `.git`) is
/// watched instead and reported after the run if the command created it.
public enum ProtectedDefaults {
    public static let patterns = [
        ".git/hooks/", ".git/config", ".vscode/", ".idea/", ".claude/", ".cursor/", ".mcp.json",
        ".envrc", ".bashrc", ".bash_profile", ".profile", ".zshrc",
    ]
}
