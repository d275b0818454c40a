import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade doctor`: what this host offers for isolation, why a tier is missing, and
/// how long each available tier takes to start.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show which isolation tiers this host can run, why not, and how fast each starts.",
        discussion: """
            Probes user namespaces, seccomp, Landlock, cgroups, runsc and its platforms, KVM \
            (and whether it is real hardware virtualization) and QEMU, then starts /bin/true \
            in each available tier and reports the median start time. The measurement is \
            kept for 'isolation: {tier: auto}'.
            """
    )

    @Flag(name: .long, help: "Print one JSON object instead of the table.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Starts per tier to take the median of (default 5; 0 measures nothing).", valueName: "n"))
    var runs = 5

    func validate() throws {
        guard (0...100).contains(runs) else { throw ValidationError("--runs must be between 0 and 100") }
    }

    func run() throws {
        let report = HostSurvey.survey(measure: runs > 0, runs: runs)
        if runs > 0 { Tiers.remember(report) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            StandardStreams.out(try encoder.encode(report))
            StandardStreams.out(Data("\n".utf8))
            return
        }
        var text = "kernel \(report.kernel)\n\nfacilities\n"
        for facility in report.facilities {
            text += "  \(facility.usable ? "ok  " : "no  ") \(facility.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(facility.detail)\n"
        }
        text += "\ntiers\n"
        for tier in report.tiers {
            let start = tier.startMilliseconds.map { String(format: "%7.1f ms", $0) } ?? (tier.available ? "       -  " : "          ")
            text += "  \(tier.available ? "yes " : "no  ") \(tier.tier.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(start)  \(tier.detail)\n"
        }
        StandardStreams.out(Data(text.utf8))
    }
}

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
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            StandardStreams.out(try encoder.encode(advice))
            StandardStreams.out(Data("\n".utf8))
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
