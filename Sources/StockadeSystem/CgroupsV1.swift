// cgroup v1, the fallback on hybrid hosts whose cgroup2 mount has no controllers: one
// directory "stockade/<name>" in each of the memory, pids and cpuacct hierarchies, and
// every sandbox process in all of them. See Cgroups.swift.

import StockadeCore
import SystemPackage

extension SandboxCgroup {
    static func createV1(
        memory: String?, pids: String?, cpuacct: String?, name: String, limits: CgroupLimits
    ) throws -> SandboxCgroup {
        if limits.memoryBytes != nil && memory == nil || limits.pids != nil && pids == nil {
            throw StockadeError(
                .hostFacility,
                "failed to create the cgroups of sandbox \(name): cgroup v1 has no "
                    + "\(memory == nil ? "memory" : "pids") hierarchy mounted. Mount it, or run without that limit.")
        }
        // One group per hierarchy; co-mounted controllers share one.
        var groups: [String: String] = [:]
        var made: [String] = []
        let own = CgroupFS.read("/proc/self/cgroup") ?? ""
        let hierarchies = [(memory, "memory"), (pids, "pids"), (cpuacct, "cpuacct")]
        for case let (mountPoint?, controller) in hierarchies where groups[mountPoint] == nil {
            do {
                // Nested under the supervisor's own group, so that limits someone set on
                // stockade (a CI job's memory cap, say) also bound its sandboxes.
                let base = mountPoint + Self.ownV1Path(controller: controller, procSelfCgroup: own)
                try makeParentDirectory(base + "/stockade")
                sweepAbandoned(in: base + "/stockade")
                let directory = base + "/stockade/" + name
                try makeGroupDirectory(directory)
                groups[mountPoint] = directory
                made.append(directory)
            } catch {
                for directory in made { try? CgroupFS.removeDirectory(directory) }
                throw error
            }
        }
        let memoryGroup = memory.flatMap { groups[$0] }
        let pidsGroup = pids.flatMap { groups[$0] }

        if let bytes = limits.memoryBytes, let memoryGroup {
            // The fresh group starts unlimited, and the kernel keeps memsw >= the plain
            // limit at every step: so the plain limit first, then memsw to the same value
            // (the order for raising). memsw counts memory plus swap, so equal values
            // leave no room to escape into swap. Without memsw (swapaccount=0) swap
            // cannot be capped; the plain limit still bounds what stays resident.
            try writeLimit(
                String(bytes), file: "memory.limit_in_bytes", in: memoryGroup, what: "memory limit", cleanup: made)
            if CgroupFS.exists(memoryGroup + "/memory.memsw.limit_in_bytes") {
                try writeLimit(
                    String(bytes), file: "memory.memsw.limit_in_bytes", in: memoryGroup, what: "memory+swap limit",
                    cleanup: made)
            }
        }
        if let count = limits.pids, let pidsGroup {
            try writeLimit(String(count), file: "pids.max", in: pidsGroup, what: "process limit", cleanup: made)
        }
        return SandboxCgroup(layout: .v1(memory: memoryGroup, pids: pidsGroup, cpuacct: cpuacct.flatMap { groups[$0] }))
    }

    /// This process's group in a v1 hierarchy ("" for the root), from the
    /// "N:controller[,controller]:/path" lines of /proc/self/cgroup.
    static func ownV1Path(controller: String, procSelfCgroup: String) -> String {
        for line in procSelfCgroup.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[1].split(separator: ",").contains(Substring(controller)) else { continue }
            let path = String(fields[2])
            return path == "/" ? "" : path
        }
        return ""
    }
}
