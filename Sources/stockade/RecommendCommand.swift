import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade recommend`: the article's three questions answered with a tier.
struct RecommendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recommend",
        abstract: "Recommend an isolation tier for how sensitive the data is, the latency budget and the audience.",
        discussion: "Uses what 'stockade doctor' finds on this host (and its measured start times)."
    )

    @Option(name: .long, help: ArgumentHelp("How sensitive the data is: public, internal, pii or financial.", valueName: "kind"))
    var data: String

    @Option(name: .long, help: ArgumentHelp("Latency budget for starting a sandbox, e.g. 200ms or 1s.", valueName: "duration"))
    var latency: String?

    @Option(name: .long, help: ArgumentHelp("Who drives the agent: consumer, internal or enterprise.", valueName: "who"))
    var audience: String

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func run() throws {
        guard let data = Recommendation.Data(rawValue: data) else {
            throw StockadeError(.invalidArgument, "failed to read --data '\(self.data)': expected public, internal, pii or financial")
        }
        guard let audience = Recommendation.Audience(rawValue: audience) else {
            throw StockadeError(.invalidArgument, "failed to read --audience '\(self.audience)': expected consumer, internal or enterprise")
        }
        var budget: UInt64?
        if let latency {
            guard let value = Quantity.parseMilliseconds(latency), value > 0 else {
                throw StockadeError(.invalidArgument, "failed to read --latency '\(latency)': expected a duration such as 200ms or 1s")
            }
            budget = value
        }
        let advice = Recommendation.decide(data: data, latencyMilliseconds: budget, audience: audience, report: Tiers.measuredReport())
        if json {
            try StandardStreams.json(advice)
            return
        }
        var text = "tier: \(advice.tier.rawValue)\n"
        if advice.ideal != advice.tier { text += "(the answers call for \(advice.ideal.rawValue))\n" }
        text += "\nwhy:\n" + advice.reasons.map { "  - \($0)\n" }.joined()
        if !advice.warnings.isEmpty { text += "\nmind:\n" + advice.warnings.map { "  - \($0)\n" }.joined() }
        text += "\nin the policy:\n" + advice.policy.split(separator: "\n").map { "  \($0)\n" }.joined()
        StandardStreams.out(Data(text.utf8))
    }
}
