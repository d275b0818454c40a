import Foundation
import StockadeSystem

/// What this host offers for isolation, and why a tier is missing: what
/// `stockade doctor` prints and what `tier: auto` and `stockade recommend` decide on.
public struct HostReport: Codable, Equatable, Sendable {
    /// One facility a tier needs.
    public struct Facility: Codable, Equatable, Sendable {
        public var name: String
        public var usable: Bool
        public var detail: String

        public init(name: String, usable: Bool, detail: String) {
            self.name = name
            self.usable = usable
            self.detail = detail
        }
    }

    /// One tier: usable or not and why, and its start time where measured.
    public struct Tier: Codable, Equatable, Sendable {
        public var tier: IsolationTier
        public var available: Bool
        /// Why not, or notes on how it runs here.
        public var detail: String
        /// Median start-to-exit time of `/bin/true` in milliseconds, if measured.
        public var startMilliseconds: Double?

        public init(tier: IsolationTier, available: Bool, detail: String, startMilliseconds: Double? = nil) {
            self.tier = tier
            self.available = available
            self.detail = detail
            self.startMilliseconds = startMilliseconds
        }
    }

    public var kernel: String
    public var facilities: [Facility]
    public var tiers: [Tier]

    public init(kernel: String, facilities: [Facility], tiers: [Tier]) {
        self.kernel = kernel
        self.facilities = facilities
        self.tiers = tiers
    }

    public func tier(_ tier: IsolationTier) -> Tier? { tiers.first { $0.tier == tier } }
}

/// Probes the host (`stockade doctor`).
public enum HostSurvey {
    /// From strongest to weakest isolation of shell commands. Wasm runs only WASI
    /// modules, so it is not a place for an agent's shell commands.
    public static let strength: [IsolationTier] = [.microvm, .gvisor, .namespaces]

    /// Probes every facility and tier; with `measure`, starts each available tier
    /// `runs` times and records the median.
    public static func survey(measure: Bool, runs: Int = 5) -> HostReport {
        var facilities: [HostReport.Facility] = []
        let maxUserNamespaces = read("/proc/sys/user/max_user_namespaces").flatMap { Int($0) }
        facilities.append(.init(
            name: "user namespaces", usable: FileManager.default.fileExists(atPath: "/proc/self/ns/user") && maxUserNamespaces != 0,
            detail: maxUserNamespaces.map { "user.max_user_namespaces = \($0)" } ?? "no /proc/sys/user/max_user_namespaces"))
        let seccompActions = read("/proc/sys/kernel/seccomp/actions_avail")
        facilities.append(.init(
            name: "seccomp", usable: seccompActions != nil,
            detail: seccompActions.map { "actions: \($0)" + ($0.contains("user_notif") ? "" : " (no user notification)") } ?? "the kernel has no seccomp filters"))
        let landlock = Landlock.abiVersion()
        facilities.append(.init(
            name: "landlock", usable: landlock != nil,
            detail: landlock.map { "ABI \($0)" } ?? "not enabled (lsm= on the kernel command line, or CONFIG_SECURITY_LANDLOCK)"))
        switch SandboxCgroup.probe() {
        case .v2(let root):
            facilities.append(.init(name: "cgroups", usable: true, detail: "v2 at \(root)"))
        case .v1:
            facilities.append(.init(name: "cgroups", usable: true, detail: "v1 controllers (memory, pids, cpuacct)"))
        case .unavailable(let reason):
            facilities.append(.init(name: "cgroups", usable: false, detail: reason))
        }
        switch GVisorRuntime.locate() {
        case .success(let runtime):
            facilities.append(.init(
                name: "runsc", usable: true,
                detail: "\(runtime.version) at \(runtime.path); platforms \(runtime.platforms.joined(separator: ", ")); using \(runtime.platform)"))
        case .failure(let error):
            facilities.append(.init(name: "runsc", usable: false, detail: error.message))
        }
        let kvm = kvmFacility()
        facilities.append(kvm)
        let qemu = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].first { FileManager.default.isExecutableFile(atPath: $0) }
        facilities.append(.init(name: "qemu", usable: qemu != nil, detail: qemu ?? "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"))

        var tiers: [HostReport.Tier] = []
        func add(_ tier: IsolationTier, _ availability: Availability) {
            switch availability {
            case .available(let notes): tiers.append(.init(tier: tier, available: true, detail: notes.joined(separator: "; ")))
            case .unavailable(let reason): tiers.append(.init(tier: tier, available: false, detail: reason))
            }
        }
        add(.namespaces, NamespaceBackend.probe())
        add(.gvisor, GVisorBackend.probe())
        add(.microvm, .unavailable(reason: "not in this version of stockade" + (kvm.usable ? "" : "; and this host could not run it: \(kvm.detail)")))
        add(.wasm, .unavailable(reason: "not in this version of stockade"))
        if measure {
            for index in tiers.indices where tiers[index].available {
                tiers[index].startMilliseconds = try? startTime(tiers[index].tier, runs: runs)
            }
        }
        return HostReport(kernel: read("/proc/sys/kernel/osrelease") ?? "unknown", facilities: facilities, tiers: tiers)
    }

    /// Whether /dev/kvm is there and backed by hardware virtualization.
    static func kvmFacility() -> HostReport.Facility {
        guard FileManager.default.fileExists(atPath: "/dev/kvm") else {
            return .init(name: "kvm", usable: false, detail: "no /dev/kvm (no hardware virtualization, or the kvm module is not loaded)")
        }
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            return .init(name: "kvm", usable: false, detail: "/dev/kvm is not accessible to this user (join the kvm group)")
        }
        let flags = (read("/proc/cpuinfo") ?? "").split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []
        let paravirtual = FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm")
        if paravirtual || !(flags.contains("vmx") || flags.contains("svm")) {
            return .init(
                name: "kvm", usable: false,
                detail: "/dev/kvm is \(paravirtual ? "paravirtual (kvm_pvm)" : "present") without hardware virtualization (no vmx/svm in the CPU flags): stock guest kernels do not boot on it, and stockade does not use runsc's kvm platform on it")
        }
        return .init(name: "kvm", usable: true, detail: "/dev/kvm with \(flags.contains("vmx") ? "Intel VT-x" : "AMD-V")")
    }

    /// Median wall time of `/bin/true` in a fresh sandbox of `tier`, in milliseconds,
    /// after one warm-up start.
    public static func startTime(_ tier: IsolationTier, runs: Int) throws -> Double {
        let workspace = NSTemporaryDirectory() + "stockade-doctor-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let plan = try PlanCompiler.compile(RunRequest(command: ["/bin/true"], policy: .default, workspace: workspace))
        var times: [Double] = []
        for index in 0...max(1, runs) {
            let start = DispatchTime.now().uptimeNanoseconds
            let result = try Tiers.backend(tier).run(plan, output: .capture(maxBytesPerStream: 4096))
            guard result.exitCode == 0 else {
                throw StockadeError(.startFailed, "/bin/true exited \(result.exitCode) on the \(tier.rawValue) tier")
            }
            if index > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
        }
        times.sort()
        return times[times.count / 2]
    }

    private static func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
