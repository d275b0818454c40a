// cgroup v2: one directory per sandbox, "<root>/stockade/<name>", with the memory, pids
// and (where available) cpu controllers passed down from the root. See Cgroups.swift.

import StockadeCore
import SystemPackage

extension SandboxCgroup {
    /// The controllers sandbox groups get: memory and pids for the limits, cpu where the
    /// host offers it (for cpu.max later; usage_usec in cpu.stat needs no controller).
    static let v2Controllers: [(name: String, required: Bool)] = [("memory", true), ("pids", true), ("cpu", false)]

    static func createV2(root: String, name: String, limits: CgroupLimits) throws -> SandboxCgroup {
        let parent = root + "/stockade"
        try makeParentDirectory(parent)
        sweepAbandoned(in: parent)
        // A group can only use a controller its parent lists in cgroup.subtree_control,
        // so pass them down twice: root -> stockade -> the sandbox.
        try enableV2Controllers(in: root)
        try enableV2Controllers(in: parent)

        let directory = parent + "/" + name
        try makeGroupDirectory(directory)
        let cleanup = [directory]
        if let memory = limits.memoryBytes {
            try writeLimit(String(memory), file: "memory.max", in: directory, what: "memory limit", cleanup: cleanup)
            // No swap on top of the limit, or a memory bomb pages out and keeps going. The
            // file is missing when the kernel does not account swap (swapaccount=0); swap
            // cannot be capped then, and memory.max still bounds what stays resident.
            if CgroupFS.exists(directory + "/memory.swap.max") {
                try writeLimit("0", file: "memory.swap.max", in: directory, what: "swap limit", cleanup: cleanup)
            }
            // An OOM kill takes the whole sandbox at once, stockade-init included, so the
            // sandbox ends cleanly as "memory limit" instead of limping on with one
            // process missing.
            try writeLimit("1", file: "memory.oom.group", in: directory, what: "OOM group kill", cleanup: cleanup)
        }
        if let pids = limits.pids {
            try writeLimit(String(pids), file: "pids.max", in: directory, what: "process limit", cleanup: cleanup)
        }
        return SandboxCgroup(layout: .v2(directory: directory))
    }

    /// Adds the wanted controllers that `directory` offers to its cgroup.subtree_control.
    ///
    /// cgroup v2's no-internal-process rule refuses this (EBUSY) while `directory`
    /// itself holds processes, except at the hierarchy root. In a delegated subtree that
    /// is this process's own cgroup, so this process moves into the leaf
    /// "<directory>/supervisor" and tries again, as systemd asks of delegated services.
    static func enableV2Controllers(in directory: String) throws {
        let offered = CgroupFS.controllers(at: directory)
        let enabled = Set(
            (CgroupFS.read(directory + "/cgroup.subtree_control") ?? "").split(whereSeparator: \.isWhitespace)
                .map(String.init))
        var movedOut = false
        for controller in v2Controllers where offered.contains(controller.name) && !enabled.contains(controller.name) {
            while true {
                do {
                    try CgroupFS.write("+" + controller.name, to: directory + "/cgroup.subtree_control")
                    break
                } catch .resourceBusy where !movedOut && isOwnV2Cgroup(directory) {
                    try moveSelfIntoLeaf(of: directory)
                    movedOut = true
                } catch {
                    guard controller.required else { break }
                    let hint =
                        error == .resourceBusy
                        ? "The cgroup holds processes, and cgroup v2 passes controllers on only from a cgroup without "
                            + "any. Run stockade in a cgroup of its own (for example under systemd-run -p Delegate=yes)."
                        : "Check that the memory and pids controllers are enabled for it."
                    throw StockadeError(
                        .hostFacility,
                        "failed to enable the \(controller.name) controller in \(directory)/cgroup.subtree_control: "
                            + "\(error). \(hint)", cause: error)
                }
            }
        }
    }

    /// Whether `directory` is the cgroup v2 group this process is in.
    static func isOwnV2Cgroup(_ directory: String) -> Bool {
        let mounts = CgroupMounts(mountInfo: CgroupFS.read("/proc/self/mountinfo") ?? "")
        guard let own = CgroupMounts.ownV2Path(procSelfCgroup: CgroupFS.read("/proc/self/cgroup") ?? "") else {
            return false
        }
        return mounts.directory(forV2Path: own) == directory
    }

    /// Moves this process (all its threads) into "<directory>/supervisor".
    static func moveSelfIntoLeaf(of directory: String) throws {
        let leaf = directory + "/supervisor"
        try makeParentDirectory(leaf)
        do {
            // "0" names the writing process.
            try CgroupFS.write("0", to: leaf + "/cgroup.procs")
        } catch {
            throw StockadeError(
                .hostFacility,
                "failed to move stockade into \(leaf) to free \(directory) for sandbox cgroups: \(error). "
                    + "Run stockade in a cgroup of its own (for example under systemd-run -p Delegate=yes).",
                cause: error)
        }
    }
}
