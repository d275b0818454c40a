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
            try StandardStreams.json(report)
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
