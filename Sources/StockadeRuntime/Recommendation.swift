import Foundation

/// `stockade recommend`: the three questions (how sensitive the data is, the latency
/// budget, who the audience is) answered with a tier this host can run, and why.
public struct Recommendation: Codable, Equatable, Sendable {
    public enum Data: String, Codable, CaseIterable, Sendable { case `public`, `internal`, pii, financial }
    public enum Audience: String, Codable, CaseIterable, Sendable { case consumer, `internal`, enterprise }

    /// The tier the answers call for, whether or not this host has it.
    public var ideal: IsolationTier
    /// The tier to use here.
    public var tier: IsolationTier
    /// Why, one reason per line.
    public var reasons: [String]
    /// Where the answers pull against each other or the host falls short.
    public var warnings: [String]
    /// The policy lines that ask for it.
    public var policy: String

    /// Decides from the answers and what `report` found on this host.
    public static func decide(data: Data, latencyMilliseconds: UInt64?, audience: Audience, report: HostReport) -> Recommendation {
        var reasons: [String] = []
        var warnings: [String] = []
        let rank: [IsolationTier: Int] = [.namespaces: 0, .gvisor: 1, .microvm: 2]
        // What each answer asks for at least.
        var ideal = IsolationTier.namespaces
        func ask(_ tier: IsolationTier, _ why: String) {
            reasons.append(why)
            if rank[tier]! > rank[ideal]! { ideal = tier }
        }
        switch data {
        case .pii, .financial:
            ask(.microvm, "\(data.rawValue) data: a kernel of its own per sandbox (microVM), so that a kernel exploit inside reaches a guest kernel, not the host's")
        case .internal:
            ask(.gvisor, "internal data: a user-space kernel (gVisor) between the agent's code and the host kernel")
        case .public:
            ask(.namespaces, "public data: namespaces, seccomp and Landlock with a toolset of only the programs the agent needs")
        }
        switch audience {
        case .consumer:
            ask(.gvisor, "consumer audience: anyone can steer the agent, so the host kernel should not answer its system calls directly (gVisor at least)")
        case .enterprise:
            ask(.gvisor, "enterprise audience: gVisor at least, for customers' code and data")
        case .internal:
            reasons.append("internal audience: developers who trust the code base; least privilege (a toolset, a narrow workspace) does most of the work")
        }

        // Step down to what this host has and what fits the budget.
        let available = HostSurvey.strength.filter { report.tier($0)?.available == true }
        var tier = available.first { rank[$0]! <= rank[ideal]! } ?? .namespaces
        if tier != ideal {
            let why = report.tier(ideal).map { $0.detail } ?? "not probed"
            warnings.append("the answers call for the \(ideal.rawValue) tier, which this host cannot run (\(why)); the strongest it has is \(tier.rawValue)")
        }
        if let budget = latencyMilliseconds {
            let start = report.tier(tier)?.startMilliseconds
            if let start, start > Double(budget) {
                let faster = available.filter { rank[$0]! < rank[tier]! }.first { (report.tier($0)?.startMilliseconds ?? .infinity) <= Double(budget) }
                let sensitive = data == .pii || data == .financial
                if let faster, !sensitive {
                    warnings.append(String(format: "%@ starts in %.0f ms here, over the %llu ms budget: %@ fits, with weaker isolation", tier.rawValue, start, budget, faster.rawValue))
                    tier = faster
                } else {
                    warnings.append(String(format: "%@ starts in %.0f ms here, over the %llu ms budget; keep the stronger tier%@ and keep sessions open across actions (a session starts once)", tier.rawValue, start, budget, sensitive ? " for \(data.rawValue) data" : ""))
                }
            } else if let start {
                reasons.append(String(format: "%@ starts in %.0f ms here, within the %llu ms budget", tier.rawValue, start, budget))
            }
        }
        var policy = "isolation: {tier: \(tier.rawValue)"
        if let latencyMilliseconds { policy += ", latency_budget: \(latencyMilliseconds)ms" }
        policy += "}"
        if audience == .internal || data == .public { policy += "\ntoolset: [sh, coreutils]   # only the programs the agent needs" }
        return Recommendation(ideal: ideal, tier: tier, reasons: reasons, warnings: warnings, policy: policy)
    }
}
