@_exported import StockadeAudit
@_exported import StockadeCore
@_exported import StockadeIsolation
@_exported import StockadeNetwork
@_exported import StockadePolicy

/// The one-shot API the front ends use: plan a request, then run the plan on a tier.
/// (Long-lived sessions come later and will sit beside this.)
public enum Runner {
    /// Compiles a request (command, flags, policy) into a plan. Throws
    /// `StockadeError(.invalidArgument)` or `.invalidPolicy` with a message that names
    /// the problem.
    public static func plan(_ request: RunRequest) throws -> SandboxPlan {
        try PlanCompiler.compile(request)
    }

    /// Runs a plan to completion on `tier`. A non-zero exit and a limit
    /// that ended the command are results; failures of stockade itself throw.
    ///
    /// A plan with `network: .proxy` gets an egress proxy for its lifetime, enforcing
    /// `network` (the policy's section; required then) with `egress`'s resolver and sink;
    /// its events are in the result.
    public static func run(
        _ plan: SandboxPlan, tier: IsolationTier = .namespaces, input: InputHandling = .none, output: OutputHandling,
        forwardSignals: Bool = false, network: NetworkPolicy? = nil, egress: EgressConfiguration = EgressConfiguration()
    ) throws -> RunResult {
        let backend = try Tiers.backend(tier, forwardSignals: forwardSignals)
        guard plan.network == .proxy else {
            return try backend.run(plan, input: input, output: output)
        }
        guard let network, network.grantsAccess else {
            throw StockadeError(.invalidArgument, "failed to start the sandbox: its plan has the egress bridge but no network allowlist was given to enforce")
        }
        // Made before the sandbox: a credential the policy injects but the host lacks
        // stops the run before anything starts.
        let proxy = try EgressProxy(policy: network, configuration: egress)
        let sandbox = try backend.start(plan, input: input, output: output)
        do {
            guard let listener = sandbox.takeEgressListener() else {
                throw StockadeError(.internalError, "failed to start the egress proxy: the sandbox has no bridge. This is a bug in stockade; please report it")
            }
            try proxy.serve(listener: listener)
        } catch {
            sandbox.kill()
            _ = try? sandbox.wait()
            throw error
        }
        defer { proxy.shutdown() }
        var result = try sandbox.wait()
        proxy.shutdown()
        result.egress = proxy.events
        return result
    }
}
