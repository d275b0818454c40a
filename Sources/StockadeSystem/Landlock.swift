import CStockadeShim
import StockadeCore

/// Landlock: the kernel's own file-system access control, applied as a second fence
/// over the same grant the mounts express. If a mount were ever wrongly writable, or
/// a descriptor to a host directory leaked in (CVE-2024-21626), Landlock still refuses
/// access outside the grant. Where the kernel lacks it, its absence is reported.
public enum Landlock {
    /// Access rights (LANDLOCK_ACCESS_FS_*), by the ABI version that introduced them.
    public struct Access: OptionSet, Sendable, Hashable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let execute = Access(rawValue: 1 << 0)
        public static let writeFile = Access(rawValue: 1 << 1)
        public static let readFile = Access(rawValue: 1 << 2)
        public static let readDirectory = Access(rawValue: 1 << 3)
        public static let removeDirectory = Access(rawValue: 1 << 4)
        public static let removeFile = Access(rawValue: 1 << 5)
        public static let makeCharacterDevice = Access(rawValue: 1 << 6)
        public static let makeDirectory = Access(rawValue: 1 << 7)
        public static let makeRegular = Access(rawValue: 1 << 8)
        public static let makeSocket = Access(rawValue: 1 << 9)
        public static let makeFifo = Access(rawValue: 1 << 10)
        public static let makeBlockDevice = Access(rawValue: 1 << 11)
        public static let makeSymlink = Access(rawValue: 1 << 12)
        /// ABI 2: rename and link across directories.
        public static let refer = Access(rawValue: 1 << 13)
        /// ABI 3: truncate.
        public static let truncate = Access(rawValue: 1 << 14)
        /// ABI 5: ioctl on device files.
        public static let ioctlDevice = Access(rawValue: 1 << 15)

        public static let readExecute: Access = [.execute, .readFile, .readDirectory]
        /// Everything except creating device nodes (never granted).
        public static let readWrite: Access = [
            .execute, .writeFile, .readFile, .readDirectory, .removeDirectory, .removeFile,
            .makeDirectory, .makeRegular, .makeSocket, .makeFifo, .makeSymlink, .refer, .truncate,
        ]
        public static let device: Access = [.readFile, .writeFile, .ioctlDevice]
    }

    /// One rule: `access` beneath `path` (a path inside the sandbox).
    public struct Rule: Equatable, Sendable {
        public var path: String
        public var access: Access
    }

    /// The compiled ruleset for one ABI.
    public struct Ruleset: Equatable, Sendable {
        public var abi: Int32
        public var handled: Access
        /// LANDLOCK_SCOPE_* bits (ABI 6): abstract unix sockets and signals stay inside.
        public var scoped: UInt64
        public var rules: [Rule]
    }

    /// The kernel's Landlock ABI version, or nil when Landlock is not available.
    public static func abiVersion() -> Int32? {
        let abi = stockade_landlock_abi()
        return abi > 0 ? abi : nil
    }

    /// Every right this ABI knows, which is what we ask the kernel to handle (deny
    /// unless granted).
    public static func handledAccess(abi: Int32) -> Access {
        var handled = Access(rawValue: (1 << 13) - 1)
        if abi >= 2 { handled.insert(.refer) }
        if abi >= 3 { handled.insert(.truncate) }
        if abi >= 5 { handled.insert(.ioctlDevice) }
        return handled
    }

    /// The ruleset for a plan's mounts: read and execute everywhere in the sandbox
    /// root, full access only where the plan mounts something writable, and device
    /// access only on the device nodes.
    public static func ruleset(for mounts: [MountOperation], abi: Int32) -> Ruleset {
        var rules = [Rule(path: "/", access: .readExecute)]
        for mount in mounts {
            switch mount {
            case .bind(_, let path, let readOnly):
                rules.append(Rule(path: path, access: readOnly ? .readExecute : .readWrite))
            case .tmpfs(let path, _, _, _, _):
                rules.append(Rule(path: path, access: .readWrite))
            case .device(_, let path):
                rules.append(Rule(path: path, access: .device))
            case .devpts(let path):
                rules.append(Rule(path: path, access: [.device, .readDirectory]))
            case .proc(let path):
                // /proc/self/... is written by ordinary programs (oom_score_adj, comm);
                // execute allows re-exec through /proc/self/exe.
                rules.append(Rule(path: path, access: [.readExecute, .writeFile]))
            case .directory, .file, .symlink, .readOnly, .mask, .readOnlyBeneath, .pinBeneath:
                continue
            }
        }
        let handled = handledAccess(abi: abi)
        for index in rules.indices { rules[index].access.formIntersection(handled) }
        let scoped: UInt64 = abi >= 6 ? 0b11 : 0
        return Ruleset(abi: abi, handled: handled, scoped: scoped, rules: rules)
    }
}
