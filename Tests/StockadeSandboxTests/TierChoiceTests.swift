import Foundation
import StockadeRuntime
import Testing

/// `tier: auto` and `stockade recommend` on made-up host reports: pure decisions.
@Suite("Choosing a tier") struct TierChoiceTests {
    static func report(gvisor: Double?, namespaces: Double = 8, microvm: Double? = nil) -> HostReport {
        HostReport(kernel: "test", facilities: [], tiers: [
            .init(tier: .namespaces, available: true, detail: "", startMilliseconds: namespaces),
            .init(tier: .gvisor, available: gvisor != nil, detail: gvisor == nil ? "runsc is not installed" : "", startMilliseconds: gvisor),
            .init(tier: .microvm, available: microvm != nil, detail: microvm == nil ? "no KVM" : "", startMilliseconds: microvm),
        ])
    }

    @Test("auto takes the strongest available tier that starts within the budget")
    func autoWithinBudget() {
        #expect(Tiers.autoChoice(budget: 500, plan: nil, report: Self.report(gvisor: 150)).tier == .gvisor)
        #expect(Tiers.autoChoice(budget: 100, plan: nil, report: Self.report(gvisor: 150)).tier == .namespaces)
        #expect(Tiers.autoChoice(budget: nil, plan: nil, report: Self.report(gvisor: 900)).tier == .gvisor)
        #expect(Tiers.autoChoice(budget: 1000, plan: nil, report: Self.report(gvisor: 150, microvm: 400)).tier == .microvm)
        let none = Tiers.autoChoice(budget: 1000, plan: nil, report: Self.report(gvisor: nil))
        #expect(none.tier == .namespaces)
        #expect(none.reason.contains("gvisor unavailable"))
        let slow = Tiers.autoChoice(budget: 100, plan: nil, report: Self.report(gvisor: 150))
        #expect(slow.reason.contains("over the 100 ms budget"), "\(slow.reason)")
    }

    @Test("auto passes over a tier that cannot carry the plan (network through the proxy on gvisor)")
    func autoAndNetwork() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        let policy = try PolicyLoader.parse(
            "version: 1\nextends: networked\nnetwork: {mode: allowlist, allow: [example.com]}\n", sourcePath: "test.yaml", baseDirectory: workspace)
        let plan = try Runner.plan(RunRequest(command: ["true"], policy: policy, workspace: workspace))
        #expect(plan.network == .proxy)
        let choice = Tiers.autoChoice(budget: nil, plan: plan, report: Self.report(gvisor: 150))
        #expect(choice.tier == .namespaces)
        #expect(choice.reason.contains("egress proxy"))
    }

    @Test("recommend: sensitive data asks for a microVM and keeps gVisor here over a tight budget")
    func recommendSensitive() {
        let advice = Recommendation.decide(data: .financial, latencyMilliseconds: 100, audience: .enterprise, report: Self.report(gvisor: 300))
        #expect(advice.ideal == .microvm)
        #expect(advice.tier == .gvisor)
        #expect(advice.warnings.contains { $0.contains("cannot run") })
        #expect(advice.warnings.contains { $0.contains("over the 100 ms budget") })
        #expect(advice.policy.hasPrefix("isolation: {tier: gvisor"))
    }

    @Test("recommend: internal tools on a tight budget get namespaces and a toolset")
    func recommendInternal() {
        let advice = Recommendation.decide(data: .internal, latencyMilliseconds: 100, audience: .internal, report: Self.report(gvisor: 300))
        #expect(advice.ideal == .gvisor)
        #expect(advice.tier == .namespaces)
        #expect(advice.policy.contains("toolset"))
        let roomy = Recommendation.decide(data: .internal, latencyMilliseconds: 1000, audience: .consumer, report: Self.report(gvisor: 300))
        #expect(roomy.tier == .gvisor)
        let publicData = Recommendation.decide(data: .public, latencyMilliseconds: nil, audience: .internal, report: Self.report(gvisor: 300))
        #expect(publicData.tier == .namespaces)
    }
}
