import CStockadeShim
import Foundation
import StockadeCore

/// Everything the launcher needs besides the plan, decided by the backend.
public struct LaunchRequest {
    public var plan: SandboxPlan
    public var identity: HostIdentity
    public var landlock: Landlock.Ruleset?
    public var seccompProgram: [UInt8]
    /// RLIMIT_* resource with its soft and hard limit.
    public var resourceLimits: [(resource: Int32, soft: UInt64, hard: UInt64)]
    /// Child-side stdio descriptors (the launcher does not close them).
    public var standardInput: Int32
    public var standardOutput: Int32
    public var standardError: Int32
    public var cgroup: SandboxCgroup?
    /// Size of the tmpfs that becomes the sandbox root.
    public var rootSizeBytes: UInt64 = 16 << 20
    /// Start stockade-init as a session's guest agent (`--session`) instead of running
    /// the plan's command: the status channel is then a socket both ways.
    public var session = false

    public init(
        plan: SandboxPlan, identity: HostIdentity, landlock: Landlock.Ruleset?, seccompProgram: [UInt8],
        resourceLimits: [(resource: Int32, soft: UInt64, hard: UInt64)], standardInput: Int32, standardOutput: Int32,
        standardError: Int32, cgroup: SandboxCgroup?
    ) {
        self.plan = plan
        self.identity = identity
        self.landlock = landlock
        self.seccompProgram = seccompProgram
        self.resourceLimits = resourceLimits
        self.standardInput = standardInput
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.cgroup = cgroup
    }
}

/// A started sandbox: stockade-init running as its PID 1.
public struct LaunchedSandbox: Sendable {
    public let pid: Int32
    /// A pidfd for stockade-init: readable when it has exited; signals go through it,
    /// so a recycled pid can never be hit.
    public let pidfd: Int32
    /// Read end of stockade-init's status channel (also its lifeline: closing it
    /// makes stockade-init tear the sandbox down). For a session, our end of the
    /// socket that carries the guest protocol.
    public let statusFD: Int32
    /// The egress bridge's listener (127.0.0.1:`EgressBridge.port` inside the
    /// sandbox's network namespace), for the supervisor's proxy to accept on; -1 when
    /// the plan has no network.
    public let egressListener: Int32
}

/// The parent side of starting a sandbox (the child side is CStockadeShim): clone,
/// write the uid/gid maps, move the child into its cgroups, release it, and wait until
/// it either failed (and said why) or became stockade-init.
public enum SandboxLauncher {
    static let launchLock = NSLock()

    public static func launch(_ request: LaunchRequest) throws -> LaunchedSandbox {
        // One launch at a time per process. Between clone and exec a child holds a copy
        // of every descriptor the process had, close-on-exec or not: two launches at
        // once would each hold the other's set-up pipes (and the idmap helper's gate),
        // and each would wait for an end of file that the other's child keeps from it.
        launchLock.lock()
        defer { launchLock.unlock() }
        let initFD = try InitBinary.descriptor()
        var trees: [Int32] = []
        defer { trees.forEach { close($0) } }
        var pipes = PipeSet()
        defer { pipes.closeAll() }
        let sync = try pipes.make()
        let failure = try pipes.make()
        let status = request.session ? try pipes.makeSocketPair() : try pipes.make()
        let bridge = request.plan.network == .proxy ? try pipes.makeSocketPair() : nil

        // Root mode: the workspace is attached as an idmapped tree prepared here,
        // since only the supervisor holds CAP_SYS_ADMIN over the host file system.
        var treeForPath: [String: Int32] = [:]
        if request.identity.privileged, let workspace = request.plan.workspace {
            let tree = try request.identity.idmappedTree(hostPath: workspace.hostPath, readOnly: workspace.readOnly)
            trees.append(tree)
            treeForPath[workspace.sandboxPath] = tree
        }
        // Root mode: the toolset root lives in a cache only the caller may enter (0700),
        // which the set-up, running as an unprivileged host id, cannot traverse; its
        // directories are attached as trees opened here instead.
        if request.identity.privileged, let toolset = request.plan.toolset {
            for case .bind(let source, let path, _) in request.plan.mounts where source.hasPrefix(toolset.rootPath + "/") {
                let tree = stockade_detached_tree(source)
                guard tree >= 0 else {
                    throw StockadeError(.startFailed, "failed to prepare the toolset mount for \(source): \(errnoText(-tree)). Remove the toolset cache directory and try again")
                }
                trees.append(tree)
                treeForPath[path] = tree
            }
        }

        var arena = CArena()
        defer { arena.free() }
        var config = stockade_spawn_config()
        let operations = request.plan.mounts.map { arena.mountOperation($0, treeForPath: treeForPath) }
        let rules = (request.landlock?.rules ?? []).map {
            stockade_landlock_rule(path: UnsafePointer(arena.string($0.path)), access: $0.access.rawValue)
        }
        let limits = request.resourceLimits.map { stockade_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        let argv = arena.stringArray(request.session ? ["stockade-init", "--session"] : ["stockade-init", "--"] + request.plan.command)
        let envp = arena.stringArray(request.plan.environment.map { "\($0.name)=\($0.value)" })
        let hostname = arena.string(request.plan.hostname)
        let workingDirectory = arena.string(request.plan.workingDirectory)

        var pidfd: Int32 = -1
        let pid: pid_t = operations.withUnsafeBufferPointer { operationBuffer in
            rules.withUnsafeBufferPointer { ruleBuffer in
                limits.withUnsafeBufferPointer { limitBuffer in
                    request.seccompProgram.withUnsafeBufferPointer { programBuffer in
                        config.mounts = operationBuffer.baseAddress
                        config.mount_count = operationBuffer.count
                        config.landlock_abi = request.landlock?.abi ?? 0
                        config.landlock_handled_fs = request.landlock?.handled.rawValue ?? 0
                        config.landlock_scoped = request.landlock?.scoped ?? 0
                        config.landlock_rules = ruleBuffer.baseAddress
                        config.landlock_rule_count = ruleBuffer.count
                        config.rlimits = limitBuffer.baseAddress
                        config.rlimit_count = limitBuffer.count
                        config.seccomp_program = programBuffer.baseAddress
                        config.seccomp_length = programBuffer.count
                        config.hostname = UnsafePointer(hostname)
                        config.working_directory = UnsafePointer(workingDirectory)
                        config.init_argv = UnsafePointer(argv)
                        config.init_envp = UnsafePointer(envp)
                        config.init_fd = initFD
                        config.stdin_fd = request.standardInput
                        config.stdout_fd = request.standardOutput
                        config.stderr_fd = request.standardError
                        config.status_fd = status.write
                        config.sync_fd = sync.read
                        config.sync_write_fd = sync.write
                        config.error_fd = failure.write
                        config.uid = request.plan.user.uid
                        config.gid = request.plan.user.gid
                        config.privileged = request.identity.privileged ? 1 : 0
                        config.root_size_bytes = request.rootSizeBytes
                        config.proxy_port = bridge == nil ? 0 : Int32(EgressBridge.port)
                        config.proxy_channel_fd = bridge?.write ?? -1
                        return stockade_spawn(&config, &pidfd)
                    }
                }
            }
        }
        if pid < 0 {
            throw StockadeError(.startFailed, "failed to create the sandbox namespaces: \(errnoText(-pid)). \(namespaceHint(-pid))")
        }
        // The child holds its own copies now.
        pipes.close(sync.read)
        pipes.close(failure.write)
        pipes.close(status.write)
        if let bridge { pipes.close(bridge.write) }

        func abandon() {
            _ = stockade_pidfd_send_signal(pidfd, SIGKILL)
            var ignored: Int32 = 0
            while waitpid(pid, &ignored, 0) < 0 && errno == EINTR {}
            close(pidfd)
        }
        do {
            try request.identity.writeMaps(pid: pid, sandboxUser: request.plan.user)
            try request.cgroup?.add(pid: pid)
        } catch {
            abandon()
            throw error
        }
        var go: UInt8 = 1
        if Glibc.write(sync.write, &go, 1) != 1 {
            abandon()
            throw StockadeError(.startFailed, "failed to release the sandbox: \(errnoText(errno))")
        }
        pipes.close(sync.write)

        // EOF on the failure pipe: stockade-init is running (the write end was
        // close-on-exec). A report: the child failed at the step it names.
        var report = stockade_child_error()
        let got = withUnsafeMutableBytes(of: &report) { buffer in
            readFully(failure.read, buffer.baseAddress!, buffer.count)
        }
        if got > 0 {
            abandon()
            let what = withUnsafeBytes(of: report.what) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            throw StockadeError(
                .startFailed,
                "failed to start the sandbox: could not \(what): \(errnoText(report.error_number)). \(setupHint(report.error_number))"
            )
        }
        // EOF without a report also happens when the child died during set-up without
        // getting to report (a crash). stockade-init only ever exits by itself, so a
        // child already ended by a signal here never became it.
        var info = siginfo_t()
        if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0, info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED {
            let signal = info._sifields._sigchld.si_status
            abandon()
            throw StockadeError(.startFailed, "failed to start the sandbox: its set-up was killed by signal \(signal) before it could report. This is a bug in stockade; please report it")
        }
        // The bridge's listener was sent before the exec, so it is queued by now.
        var listener: Int32 = -1
        if let bridge {
            listener = stockade_receive_fd(bridge.read)
            if listener < 0 {
                abandon()
                throw StockadeError(.startFailed, "failed to start the sandbox: its egress bridge did not arrive (\(errnoText(-listener))). This is a bug in stockade; please report it")
            }
        }
        let statusRead = pipes.release(status.read)
        return LaunchedSandbox(pid: pid, pidfd: pidfd, statusFD: statusRead, egressListener: listener)
    }

    private static func namespaceHint(_ error: Int32) -> String {
        switch error {
        case EPERM, EACCES, ENOSPC:
            return "User namespaces may be disabled on this host: check the sysctls user.max_user_namespaces and kernel.unprivileged_userns_clone, or AppArmor's restrict_unprivileged_userns"
        default:
            return "Check that this kernel offers user, mount, PID and network namespaces to this user"
        }
    }

    private static func setupHint(_ error: Int32) -> String {
        switch error {
        case ENOENT: return "A path the plan needs does not exist on this host; check --workspace and the policy's read_only paths"
        case EACCES, EPERM: return "The sandbox user may not reach that path; check its permissions (rootless mode maps only your own user)"
        default: return "Check that this kernel (Linux 5.12 or later) allows the step for this user; run with --dry-run to see the plan"
        }
    }

    static func readFully(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        var total = 0
        while total < count {
            let n = Glibc.read(fd, buffer + total, count - total)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
        }
        return total
    }
}

/// Pipes created close-on-exec, closed by `closeAll()` (on every path out of a set-up)
/// unless released first.
public struct PipeSet {
    public init() {}
    private var open: Set<Int32> = []

    public mutating func make() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let result = stockade_cloexec_pipe(&fds)
        guard result == 0 else {
            throw StockadeError(.startFailed, "failed to create a pipe: \(errnoText(-result)). The process may be out of file descriptors")
        }
        open.insert(fds[0])
        open.insert(fds[1])
        return (fds[0], fds[1])
    }

    public mutating func close(_ fd: Int32) {
        if open.remove(fd) != nil { Glibc.close(fd) }
    }

    /// A connected pair of stream sockets (close-on-exec), named like a pipe's ends: the
    /// child gets `write`, the supervisor keeps `read`; both ends read and write.
    public mutating func makeSocketPair() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw StockadeError(.startFailed, "failed to create a socket pair: \(errnoText(errno)). The process may be out of file descriptors")
        }
        open.insert(fds[0])
        open.insert(fds[1])
        return (fds[0], fds[1])
    }

    /// Takes `fd` (created elsewhere) into the set.
    public mutating func adopt(_ fd: Int32) {
        if fd >= 0 { open.insert(fd) }
    }

    @discardableResult
    public mutating func release(_ fd: Int32) -> Int32 {
        open.remove(fd)
        return fd
    }

    public mutating func closeAll() {
        for fd in open { Glibc.close(fd) }
        open.removeAll()
    }
}

/// C strings and arrays that live until `free()`: the child reads its copy of them.
struct CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    mutating func string(_ text: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(text)!
        allocations.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    mutating func bytes(_ text: String) -> (UnsafeMutablePointer<CChar>, Int) {
        let utf8 = Array(text.utf8)
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count + 1)
        utf8.withUnsafeBufferPointer { source in
            for index in 0..<utf8.count { buffer[index] = CChar(bitPattern: source[index]) }
        }
        buffer[utf8.count] = 0
        allocations.append(UnsafeMutableRawPointer(buffer))
        return (buffer, utf8.count)
    }

    mutating func stringArray(_ strings: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
        for (index, text) in strings.enumerated() { array[index] = string(text) }
        array[strings.count] = nil
        allocations.append(UnsafeMutableRawPointer(array))
        return array
    }

    mutating func mountOperation(_ operation: MountOperation, treeForPath: [String: Int32]) -> stockade_mount_op {
        var op = stockade_mount_op()
        op.tree_fd = -1
        switch operation {
        case .directory(let path, let mode):
            op.kind = Int32(STOCKADE_MOUNT_DIRECTORY.rawValue)
            op.path = UnsafePointer(string(path))
            op.mode = mode
        case .file(let path, let contents, let mode):
            op.kind = Int32(STOCKADE_MOUNT_FILE.rawValue)
            op.path = UnsafePointer(string(path))
            let (buffer, length) = bytes(contents)
            op.source = UnsafePointer(buffer)
            op.source_length = length
            op.mode = mode
        case .symlink(let target, let path):
            op.kind = Int32(STOCKADE_MOUNT_SYMLINK.rawValue)
            op.path = UnsafePointer(string(path))
            op.source = UnsafePointer(string(target))
        case .bind(let source, let path, let readOnly):
            op.kind = Int32(STOCKADE_MOUNT_BIND.rawValue)
            op.path = UnsafePointer(string(path))
            op.source = UnsafePointer(string(source))
            op.read_only = readOnly ? 1 : 0
            op.tree_fd = treeForPath[path] ?? -1
        case .device(let source, let path):
            op.kind = Int32(STOCKADE_MOUNT_DEVICE.rawValue)
            op.path = UnsafePointer(string(path))
            op.source = UnsafePointer(string(source))
        case .tmpfs(let path, let sizeBytes, let inodes, let mode, let owned):
            op.kind = Int32(STOCKADE_MOUNT_TMPFS.rawValue)
            op.path = UnsafePointer(string(path))
            op.size_bytes = sizeBytes
            op.inodes = inodes
            op.mode = mode
            op.owned_by_user = owned ? 1 : 0
        case .proc(let path):
            op.kind = Int32(STOCKADE_MOUNT_PROC.rawValue)
            op.path = UnsafePointer(string(path))
        case .devpts(let path):
            op.kind = Int32(STOCKADE_MOUNT_DEVPTS.rawValue)
            op.path = UnsafePointer(string(path))
        case .readOnly(let path):
            op.kind = Int32(STOCKADE_MOUNT_READONLY.rawValue)
            op.path = UnsafePointer(string(path))
        case .mask(let base, let relativePath):
            op.kind = Int32(STOCKADE_MOUNT_MASK.rawValue)
            op.path = UnsafePointer(string(base))
            op.source = UnsafePointer(string(relativePath))
        case .readOnlyBeneath(let base, let relativePath):
            op.kind = Int32(STOCKADE_MOUNT_READONLY_BENEATH.rawValue)
            op.path = UnsafePointer(string(base))
            op.source = UnsafePointer(string(relativePath))
        case .pinBeneath(let base, let relativePath):
            op.kind = Int32(STOCKADE_MOUNT_PIN_BENEATH.rawValue)
            op.path = UnsafePointer(string(base))
            op.source = UnsafePointer(string(relativePath))
        }
        return op
    }

    mutating func free() {
        for pointer in allocations { Foundation.free(pointer) }
        allocations.removeAll()
    }
}

/// Starts helper programs (runtimes such as runsc) as plain children.
public enum HelperLauncher {
    /// Starts `arguments[0]`'s program at `path` with `stdio` as fds 0-2 and nothing else
    /// open. It waits for one byte on `gate` before it executes, so that the caller can
    /// move it into a cgroup first. Returns its pid and a pidfd.
    public static func spawn(path: String, arguments: [String], environment: [String], stdio: [Int32], gate: Int32) throws -> (pid: Int32, pidfd: Int32) {
        precondition(stdio.count == 3)
        var arena = CArena()
        defer { arena.free() }
        let argv = arena.stringArray(arguments)
        let envp = arena.stringArray(environment)
        let program = arena.string(path)
        var pidfd: Int32 = -1
        // One launch at a time, with the sandboxes' (see `SandboxLauncher.launch`).
        SandboxLauncher.launchLock.lock()
        defer { SandboxLauncher.launchLock.unlock() }
        let pid = stdio.withUnsafeBufferPointer { stockade_spawn_helper(program, argv, envp, $0.baseAddress!, gate, &pidfd) }
        guard pid > 0 else {
            throw StockadeError(.startFailed, "failed to start \(path): \(errnoText(-pid))")
        }
        return (pid, pidfd)
    }
}
