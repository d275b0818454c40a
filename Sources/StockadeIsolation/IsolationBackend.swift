import StockadeCore

/// The isolation tiers stockade knows. `.namespaces` and `.gvisor` are implemented; the
/// others slot in beside them behind the same protocol.
public enum IsolationTier: String, Codable, Sendable, CaseIterable {
    case namespaces, gvisor, microvm, wasm
}

/// Whether a tier can run on this host, and if not, why.
public enum Availability: Equatable, Sendable {
    case available(notes: [String])
    case unavailable(reason: String)
}

/// Where a sandbox's standard streams go.
public enum OutputHandling: Sendable {
    /// Relay each chunk to these host descriptors as it arrives (counted against the
    /// output limit).
    case stream(standardOutput: Int32, standardError: Int32)
    /// Keep up to `maxBytesPerStream` of each stream in the result, and count the rest.
    case capture(maxBytesPerStream: Int)
    /// Like `stream`, through a filter for each stream (the leak guard), which may hold
    /// the last bytes back until it has seen what follows them.
    case filteredStream(standardOutput: Int32, standardError: Int32, filters: OutputFilters)
}

/// Rewrites a stream of output on its way to the caller.
public protocol OutputFilter: AnyObject {
    /// What to pass on of `chunk` (and of bytes held back before).
    func pass(_ chunk: [UInt8]) -> [UInt8]
    /// What is still held back, at the end of the stream.
    func finish() -> [UInt8]
}

/// One filter per stream. Used by one sandbox's relay thread only.
public final class OutputFilters: @unchecked Sendable {
    public let standardOutput: any OutputFilter
    public let standardError: any OutputFilter

    public init(standardOutput: any OutputFilter, standardError: any OutputFilter) {
        self.standardOutput = standardOutput
        self.standardError = standardError
    }
}

/// What to connect to the command's standard input.
public enum InputHandling: Sendable {
    /// /dev/null (the default; never the caller's terminal).
    case none
    /// This host descriptor (a pipe or a file; the launcher refuses terminals).
    case descriptor(Int32)
}

/// A running sandbox. `wait()` blocks until the command and everything it started have
/// ended, enforcing the plan's limits meanwhile, and returns the result; it may be
/// called once.
public protocol Sandbox: AnyObject, Sendable {
    var plan: SandboxPlan { get }
    func wait() throws -> RunResult
    /// Asks the command to stop (forwarded as `signal` to its process group); the
    /// sandbox still ends only when `wait()` returns.
    func signal(_ signal: Int32)
    /// Ends the sandbox now: every process in it is killed.
    func kill()
    /// The egress bridge's listener (plans with `network: .proxy`), handed over once:
    /// the caller's proxy owns it from then on. Nil when there is none, or it was taken.
    func takeEgressListener() -> Int32?
}

/// One isolation tier: carries a `SandboxPlan` out. After crun's handlers and
/// containerization's `VirtualMachineManager`.
public protocol IsolationBackend: Sendable {
    static var tier: IsolationTier { get }
    /// Whether this host can run the tier, and why not (for `stockade doctor`).
    static func probe() -> Availability
    /// Starts the plan's command in a new sandbox.
    func start(_ plan: SandboxPlan, input: InputHandling, output: OutputHandling) throws -> any Sandbox
}

extension IsolationBackend {
    /// Starts the plan and waits for its result.
    public func run(_ plan: SandboxPlan, input: InputHandling = .none, output: OutputHandling) throws -> RunResult {
        try start(plan, input: input, output: output).wait()
    }
}

/// What a session runs its actions in, on any tier.
public protocol SessionSandbox: AnyObject, Sendable {
    var plan: SandboxPlan { get }
    /// Protections this host could not give.
    var degraded: [String] { get }
    var isOpen: Bool { get }
    func exec(_ request: GuestExec) throws -> GuestExecResult
    /// The egress bridge's listener, handed over once (see `Sandbox`).
    func takeEgressListener() -> Int32?
    func close()
}
