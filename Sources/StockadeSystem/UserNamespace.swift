import CStockadeShim
import Foundation
import StockadeCore

/// Who the sandbox user is on the host, and the parent-side step of the user
/// namespace: writing the child's uid and gid maps.
///
/// Rootless: the sandbox user maps to the caller (the only id an unprivileged process
/// may map). As root: it maps to a random unprivileged host id, never to root, so a
/// kernel file that slipped through a mount would not be writable by real root, and
/// two sandboxes rarely share a host uid (one of 50 million even ids, drawn at
/// random). As root the namespace also maps its uid 0 (to the next host id, equally
/// unprivileged), used only during the set-up.
public struct HostIdentity: Equatable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    /// Whether the supervisor runs as root (and may map arbitrary ids).
    public var privileged: Bool

    /// Host ids handed to sandboxes when stockade runs as root: a range no ordinary
    /// account uses.
    public static let privilegedRange: ClosedRange<UInt32> = 1_000_000_000...1_099_999_999

    /// The identity for a new sandbox started by this process.
    public static func forNewSandbox() -> HostIdentity {
        if geteuid() == 0 {
            let id = UInt32.random(in: privilegedRange) & ~1
            return HostIdentity(uid: id, gid: id, privileged: true)
        }
        return HostIdentity(uid: getuid(), gid: getgid(), privileged: false)
    }

    /// Writes the child's maps. Rootless: only the sandbox user, and setgroups(2)
    /// denied first, as the kernel requires. Root mode: also the namespace's root, to
    /// `uid + 1` on the host; never host root.
    func writeMaps(pid: Int32, sandboxUser: SandboxUser) throws {
        if privileged {
            try KernelFile.write("0 \(uid + 1) 1\n\(sandboxUser.uid) \(uid) 1\n", to: "/proc/\(pid)/uid_map")
            try KernelFile.write("0 \(gid + 1) 1\n\(sandboxUser.gid) \(gid) 1\n", to: "/proc/\(pid)/gid_map")
        } else {
            try KernelFile.write("\(sandboxUser.uid) \(uid) 1\n", to: "/proc/\(pid)/uid_map")
            try KernelFile.write("deny", to: "/proc/\(pid)/setgroups")
            try KernelFile.write("\(sandboxUser.gid) \(gid) 1\n", to: "/proc/\(pid)/gid_map")
        }
    }

    /// As root, a detached, idmapped copy of `hostPath`: files owned by the directory's
    /// owner appear as the sandbox user inside, and what the sandbox writes lands on
    /// disk as that owner, while the sandbox itself runs as an unprivileged host id.
    func idmappedTree(hostPath: String, readOnly: Bool) throws -> Int32 {
        var info = stat()
        guard stat(hostPath, &info) == 0 else {
            throw StockadeError(.startFailed, "failed to inspect the workspace \(hostPath): \(errnoText(errno))")
        }
        // The idmapping's namespace maps the owner's id (inside) to the sandbox user's
        // host id (outside): files of the owner appear as the sandbox user, and files
        // the sandbox user creates are stored as the owner.
        let userns = stockade_idmap_userns(info.st_uid, uid, info.st_gid, gid)
        guard userns >= 0 else {
            throw StockadeError(.startFailed, "failed to create the id mapping for the workspace: \(errnoText(-userns))")
        }
        defer { close(userns) }
        let tree = stockade_idmapped_tree(hostPath, userns, readOnly ? 1 : 0)
        guard tree >= 0 else {
            throw StockadeError(
                .startFailed,
                "failed to prepare the workspace mount for \(hostPath): \(errnoText(-tree)). Its file system may not support idmapped mounts (Linux 5.12+; ext4, xfs, btrfs, tmpfs)"
            )
        }
        return tree
    }
}
