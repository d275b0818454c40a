import Foundation
import StockadeSystem

/// The tier a sandbox runs on, and why that one.
public struct TierChoice: Equatable, Sendable {
    public let tier: IsolationTier
    /// Why: "asked for by --tier", "policy isolation.tier", or what auto weighed.
    public let reason: String

    public init(tier: IsolationTier, reason: String) {
        self.tier = tier
        self.reason = reason
    }
}

/// Picks and starts tiers.
public enum Tiers {
    /// The backend that carries out `tier`'s plans. Throws for tiers this version lacks.
    public static func backend(_ tier: IsolationTier, forwardSignals: Bool = false) throws -> any IsolationBackend {
        switch tier {
        case .namespaces: return NamespaceBackend(forwardSignals: forwardSignals)
        case .gvisor: return GVisorBackend(forwardSignals: forwardSignals)
        case .microvm, .wasm:
            throw StockadeError(.unsupported, "failed to start the sandbox: this version of stockade has no \(tier.rawValue) tier. Use namespaces, gvisor or auto")
        }
    }

    /// Starts a session sandbox on `tier`.
    public static func startSession(_ tier: IsolationTier, plan: SandboxPlan) throws -> any SessionSandbox {
        switch tier {
        case .namespaces: return try NamespaceBackend().startSession(plan)
        case .gvisor: return try GVisorBackend().startSession(plan)
        case .microvm, .wasm:
            throw StockadeError(.unsupported, "failed to start the session: this version of stockade has no \(tier.rawValue) tier. Use namespaces, gvisor or auto")
        }
    }

    /// The tier for a plan: `flag` (the command line's `--tier`), else the policy's
    /// `isolation.tier`, else namespaces. A named tier this host lacks fails with the
    /// reason; `auto` picks the strongest available tier that can carry the plan and
    /// whose measured start fits the policy's latency budget.
    public static func choose(flag: IsolationSettings.Tier?, policy: PolicyDocument, plan: SandboxPlan) throws -> TierChoice {
        let settings = policy.resolved().isolation
        let asked = flag ?? settings?.tier ?? .namespaces
        let source = flag != nil ? "--tier" : "the policy's isolation.tier"
        guard asked == .auto else {
            let tier = IsolationTier(rawValue: asked.rawValue)!
            if case .unavailable(let reason) = probe(tier) {
                throw StockadeError(.unsupported, "failed to start the sandbox: \(source) asks for the \(tier.rawValue) tier, which this host cannot run: \(reason). Run 'stockade doctor' for what the host has")
            }
            if let reason = cannotCarry(plan, on: tier) {
                throw StockadeError(.unsupported, "failed to start the sandbox: \(source) asks for the \(tier.rawValue) tier, but \(reason)")
            }
            return TierChoice(tier: tier, reason: "\(source) asks for it")
        }
        return autoChoice(budget: settings?.latencyBudgetMilliseconds, plan: plan, report: measuredReport())
    }

    /// auto: the strongest tier that is available, can carry the plan, and starts
    /// within the budget; without a budget, the strongest available.
    public static func autoChoice(budget: UInt64?, plan: SandboxPlan?, report: HostReport) -> TierChoice {
        var passedOver: [String] = []
        for tier in HostSurvey.strength {
            guard let entry = report.tier(tier), entry.available else {
                passedOver.append("\(tier.rawValue) unavailable")
                continue
            }
            if let plan, let reason = cannotCarry(plan, on: tier) {
                passedOver.append("\(tier.rawValue) cannot: \(reason)")
                continue
            }
            if let budget, let start = entry.startMilliseconds, start > Double(budget) {
                passedOver.append(String(format: "%@ starts in %.0f ms, over the %llu ms budget", tier.rawValue, start, budget))
                continue
            }
            let timing = entry.startMilliseconds.map { String(format: " (starts in %.0f ms%@)", $0, budget.map { " of a \($0) ms budget" } ?? "") } ?? ""
            let skipped = passedOver.isEmpty ? "" : "; passed over: " + passedOver.joined(separator: ", ")
            return TierChoice(tier: tier, reason: "auto: the strongest tier that fits\(timing)\(skipped)")
        }
        return TierChoice(tier: .namespaces, reason: "auto: no tier fits (\(passedOver.joined(separator: ", "))); namespaces, the fastest")
    }

    /// Why `tier` cannot carry `plan` out, or nil.
    static func cannotCarry(_ plan: SandboxPlan, on tier: IsolationTier) -> String? {
        if tier == .gvisor, plan.network == .proxy {
            return "the policy grants network access through the egress proxy, which the gvisor tier does not have"
        }
        return nil
    }

    static func probe(_ tier: IsolationTier) -> Availability {
        switch tier {
        case .namespaces: return NamespaceBackend.probe()
        case .gvisor: return GVisorBackend.probe()
        case .microvm, .wasm: return .unavailable(reason: "this version of stockade has no \(tier.rawValue) tier")
        }
    }

    // MARK: measured start times, cached

    /// The host report with start times: from the cache when it is under a day old and
    /// the host's tiers are unchanged, else measured (three starts of each) and cached.
    public static func measuredReport() -> HostReport {
        let fresh = HostSurvey.survey(measure: false)
        let path = cachePath()
        if let path, let data = FileManager.default.contents(atPath: path),
           let cached = try? JSONDecoder().decode(CachedReport.self, from: data),
           Date().timeIntervalSince(cached.measured) < 86_400,
           cached.report.tiers.map({ [$0.tier.rawValue, String($0.available), $0.detail] }) == fresh.tiers.map({ [$0.tier.rawValue, String($0.available), $0.detail] }) {
            return cached.report
        }
        var report = fresh
        for index in report.tiers.indices where report.tiers[index].available {
            report.tiers[index].startMilliseconds = try? HostSurvey.startTime(report.tiers[index].tier, runs: 3)
        }
        remember(report)
        return report
    }

    /// Keeps a measured report for `auto` (best effort).
    public static func remember(_ report: HostReport) {
        guard let path = cachePath(), let data = try? JSONEncoder().encode(CachedReport(measured: Date(), report: report)) else { return }
        try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    private struct CachedReport: Codable {
        var measured: Date
        var report: HostReport
    }

    private static func cachePath() -> String? {
        guard let base = try? ToolsetCache.defaultBase(environment: ProcessInfo.processInfo.environment) else { return nil }
        guard (try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])) != nil else { return nil }
        return base + "/tiers.json"
    }
}
