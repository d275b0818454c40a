/// What running a command in a sandbox produced. A non-zero exit is a result, not an
/// error; so is a limit that ended the command.
public struct RunResult: Codable, Equatable, Sendable {
    /// The exit code stockade reports: the command's own, or 128+N when signal N ended it.
    public var exitCode: Int32
    /// The signal that ended the command, if one did.
    public var signal: Int32?
    /// The limit that ended the sandbox, if one did.
    public var limit: LimitKind?
    /// A human-readable description of the limit ("memory (256 MiB)").
    public var limitDescription: String?
    public var wallMilliseconds: UInt64
    /// CPU time of every process of the sandbox (user + system).
    public var cpuMilliseconds: UInt64
    /// Peak memory of the sandbox (cgroup peak when available, else the largest RSS).
    public var peakMemoryBytes: UInt64
    /// Captured output (only when the run captured it; empty when it was streamed).
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    /// Whether more output was produced than captured.
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool
    /// Protections that were not available on this host and were left out (for
    /// example "landlock"); reported, never silently dropped.
    public var degraded: [String]
    /// Protected files that were missing when the sandbox started and exist now: the
    /// command created them (a placeholder stands in only for missing directories).
    /// Review them before any tool reads them.
    public var createdProtected: [String] = []
    /// Every connection and request through the egress proxy, allowed or refused
    /// (empty without a network grant).
    public var egress: [EgressEvent] = []

    public init(
        exitCode: Int32, signal: Int32? = nil, limit: LimitKind? = nil, limitDescription: String? = nil,
        wallMilliseconds: UInt64 = 0, cpuMilliseconds: UInt64 = 0, peakMemoryBytes: UInt64 = 0,
        stdout: [UInt8] = [], stderr: [UInt8] = [], stdoutTruncated: Bool = false, stderrTruncated: Bool = false,
        degraded: [String] = []
    ) {
        self.exitCode = exitCode
        self.signal = signal
        self.limit = limit
        self.limitDescription = limitDescription
        self.wallMilliseconds = wallMilliseconds
        self.cpuMilliseconds = cpuMilliseconds
        self.peakMemoryBytes = peakMemoryBytes
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
        self.degraded = degraded
    }
}
