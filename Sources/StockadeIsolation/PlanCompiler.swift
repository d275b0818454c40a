import Foundation
import StockadeCore
import StockadePolicy
import StockadeSystem

/// What a caller asks for beyond the policy: the command and the flags of `stockade
/// run`. A flag overrides the policy; the policy overrides the defaults.
public struct RunRequest: Sendable {
    public var command: [String]
    public var policy: PolicyDocument
    public var workspace: String?
    public var readOnlyWorkspace: Bool?
    public var hide: [String]
    /// `NAME=VALUE` sets a variable; `NAME` copies it from `callerEnvironment`.
    public var environment: [String]
    public var limits: PolicyLimits
    public var callerEnvironment: [String: String]
    public var currentDirectory: String
    /// Programs and named sets that make up the sandbox's system view instead of the
    /// host's whole /usr (see `ToolsetResolver`); nil binds the host's /usr.
    public var toolset: [String]?

    public init(
        command: [String], policy: PolicyDocument = .default, workspace: String? = nil, readOnlyWorkspace: Bool? = nil,
        hide: [String] = [], environment: [String] = [], limits: PolicyLimits = PolicyLimits(),
        callerEnvironment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath, toolset: [String]? = nil
    ) {
        self.command = command
        self.policy = policy
        self.workspace = workspace
        self.readOnlyWorkspace = readOnlyWorkspace
        self.hide = hide
        self.environment = environment
        self.limits = limits
        self.callerEnvironment = callerEnvironment
        self.currentDirectory = currentDirectory
        self.toolset = toolset
    }
}

/// Compiles a request and its policy into a `SandboxPlan`: the default view of the
/// host (read-only system directories, a synthesized /etc, fresh /proc and /dev,
/// private /tmp and home), the workspace with its hidden entries masked, the
/// environment and the limits.
public enum PlanCompiler {
    /// Limits that apply unless the policy or a flag says otherwise.
    public static let defaultLimits = ResourceLimits(
        wallMilliseconds: 300_000, cpuMilliseconds: nil, memoryBytes: 1 << 30, pids: 256, openFiles: 1024,
        fileSizeBytes: 1 << 30, outputBytes: 64 << 20, tmpBytes: 256 << 20, shmBytes: 64 << 20
    )

    public static let sandboxPath = "/workspace"
    /// Most workspace entries one sandbox may hide (each is a mount).
    public static let maximumHiddenEntries = 10_000
    static let searchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public static func compile(_ request: RunRequest) throws -> SandboxPlan {
        // The policy as enforced: laid over the profile it extends.
        var request = request
        request.policy = request.policy.resolved()
        guard let program = request.command.first, !program.isEmpty else {
            throw StockadeError(.invalidArgument, "failed to plan the sandbox: no command given. Put it after '--', as in: stockade run -- ls")
        }
        if request.command.contains(where: { $0.utf8.contains(0) }) {
            throw StockadeError(.invalidArgument, "failed to plan the sandbox: the command contains a NUL byte")
        }
        let user = SandboxUser()
        let workspace = try workspaceGrant(request)
        let readOnlyPaths = try resolveReadOnlyPaths(request.policy.readOnlyPaths)
        let limits = resolveLimits(request)
        // --toolset replaces the policy's toolset; neither means the whole system view.
        let toolset = try (request.toolset ?? request.policy.toolset).map { try toolsetRoot($0, environment: request.callerEnvironment) }
        var mounts = systemView(user: user, readOnlyPaths: readOnlyPaths, limits: limits, toolset: toolset)
        mounts.append(.bind(source: workspace.hostPath, path: workspace.sandboxPath, readOnly: workspace.readOnly))
        for entry in workspace.hiddenEntries {
            mounts.append(.mask(base: workspace.sandboxPath, relativePath: entry))
        }
        mounts += protectionMounts(workspace)
        // A policy kept inside a writable workspace must not be rewritable by the
        // command it constrains (the next run would load the loosened policy). The
        // whole top-level entry that holds it is made read-only: protecting only the
        // file would let the command rename its directory and put another in its place.
        if let relative = policyInsideWorkspace(request.policy, workspace: workspace), !workspace.readOnly,
           let topLevel = relative.split(separator: "/").first {
            mounts.append(.readOnlyBeneath(base: workspace.sandboxPath, relativePath: String(topLevel)))
        }
        return SandboxPlan(
            command: request.command,
            environment: try environment(request, user: user),
            workingDirectory: workingDirectory(request, workspace: workspace),
            hostname: "stockade",
            user: user,
            mounts: mounts,
            workspace: workspace,
            network: networkMode(request.policy),
            limits: limits,
            seccomp: .default,
            toolset: toolset.map { ToolsetGrant(names: ToolsetResolver.uniqueNames($0.names), key: $0.root.key, rootPath: $0.root.path) }
        )
    }

    /// Resolves a policy's read_only paths (symlinks included) and refuses those that
    /// would expose the host's root, processes, devices or sockets: checked on the
    /// resolved path, since a symlink (one a sandbox planted in its workspace, say)
    /// could otherwise lead a harmless-looking path to /run. Returns (host path,
    /// sandbox path) pairs: the resolved path is bound at the path the policy named.
    static func resolveReadOnlyPaths(_ paths: [String]) throws -> [(source: String, path: String)] {
        let forbidden = ["/proc", "/sys", "/dev", "/run", "/var/run"]
        return try paths.map { path in
            guard let resolved = realpath(path, nil) else {
                throw StockadeError(.invalidPolicy, "failed to grant read_only path \(path): it does not exist on this host. Remove it from the policy or create it")
            }
            let source = String(cString: resolved)
            free(resolved)
            for candidate in [path, source] where candidate == "/" || forbidden.contains(where: { candidate == $0 || candidate.hasPrefix($0 + "/") }) {
                throw StockadeError(.invalidPolicy, "failed to grant read_only path \(path)\(source == path ? "" : " (\(source))"): it would expose the host's root, processes, devices or sockets. Grant a narrower directory")
            }
            return (source, path)
        }
    }

    static func resolveLimits(_ request: RunRequest) -> ResourceLimits {
        let flags = request.limits
        let policy = request.policy.limits
        let base = defaultLimits
        return ResourceLimits(
            wallMilliseconds: flags.wallMilliseconds ?? policy.wallMilliseconds ?? base.wallMilliseconds,
            cpuMilliseconds: flags.cpuMilliseconds ?? policy.cpuMilliseconds ?? base.cpuMilliseconds,
            memoryBytes: flags.memoryBytes ?? policy.memoryBytes ?? base.memoryBytes,
            pids: flags.pids ?? policy.pids ?? base.pids,
            openFiles: flags.openFiles ?? policy.openFiles ?? base.openFiles,
            fileSizeBytes: flags.fileSizeBytes ?? policy.fileSizeBytes ?? base.fileSizeBytes,
            outputBytes: flags.outputBytes ?? policy.outputBytes ?? base.outputBytes,
            tmpBytes: flags.tmpBytes ?? policy.tmpBytes ?? base.tmpBytes,
            shmBytes: flags.shmBytes ?? policy.shmBytes ?? base.shmBytes
        )
    }

    /// The cached root of a toolset (built on first use).
    static func toolsetRoot(_ names: [String], environment: [String: String]) throws -> (names: [String], root: ToolsetRoot) {
        if names.isEmpty {
            throw StockadeError(.invalidPolicy, "failed to plan the sandbox: the toolset is empty, so no program could run. Name at least one program (sh, say)")
        }
        let cache = try ToolsetCache(base: try ToolsetCache.defaultBase(environment: environment))
        return (names, try cache.root(for: names))
    }

    /// The read-only system view. Host paths that are symlinks (merged /usr) are
    /// recreated as the same symlinks; missing ones are left out. With a toolset, its
    /// root's top-level directories are bound instead of the host's /usr, /bin and /lib*:
    /// a program outside the toolset does not exist inside.
    static func systemView(
        user: SandboxUser, readOnlyPaths: [(source: String, path: String)], limits: ResourceLimits,
        toolset: (names: [String], root: ToolsetRoot)? = nil
    ) -> [MountOperation] {
        var mounts: [MountOperation] = []
        var placed = Set<String>()
        if toolset == nil { mounts.append(.bind(source: resolved("/usr") ?? "/usr", path: "/usr", readOnly: true)) }
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: top) {
                mounts.append(.symlink(target: target, path: top))
                placed.insert(top)
            } else if toolset == nil, isDirectory(top) {
                mounts.append(.bind(source: top, path: top, readOnly: true))
            }
        }
        if let root = toolset?.root {
            for entry in root.topLevel {
                switch entry {
                case .directory(let name) where !placed.contains("/" + name):
                    mounts.append(.bind(source: root.path + "/" + name, path: "/" + name, readOnly: true))
                case .symlink(let name, let target) where !placed.contains("/" + name):
                    mounts.append(.symlink(target: target, path: "/" + name))
                default:
                    break
                }
            }
        }
        mounts += etcView(user: user)
        mounts += [
            .proc(path: "/proc"),
            // Kernel knobs stay read-only and kernel memory unreadable even if some
            // other fence failed.
            .readOnly(path: "/proc/sys"),
            .readOnly(path: "/proc/sysrq-trigger"),
            .readOnly(path: "/proc/irq"),
            .readOnly(path: "/proc/bus"),
            .mask(base: "/proc", relativePath: "kcore"),
            .mask(base: "/proc", relativePath: "keys"),
            .mask(base: "/proc", relativePath: "timer_list"),
            .directory(path: "/dev", mode: 0o755),
        ]
        for device in ["null", "zero", "full", "random", "urandom", "tty"] {
            mounts.append(.device(source: "/dev/" + device, path: "/dev/" + device))
        }
        mounts += [
            .devpts(path: "/dev/pts"),
            .symlink(target: "pts/ptmx", path: "/dev/ptmx"),
            .tmpfs(path: "/dev/shm", sizeBytes: limits.shmBytes, inodes: 4096, mode: 0o1777, ownedBySandboxUser: false),
            .symlink(target: "/proc/self/fd", path: "/dev/fd"),
            .symlink(target: "/proc/self/fd/0", path: "/dev/stdin"),
            .symlink(target: "/proc/self/fd/1", path: "/dev/stdout"),
            .symlink(target: "/proc/self/fd/2", path: "/dev/stderr"),
            .tmpfs(path: "/tmp", sizeBytes: limits.tmpBytes, inodes: 65536, mode: 0o1777, ownedBySandboxUser: false),
            .symlink(target: "/tmp", path: "/var/tmp"),
            .tmpfs(path: user.home, sizeBytes: 64 << 20, inodes: 8192, mode: 0o700, ownedBySandboxUser: true),
        ]
        for grant in readOnlyPaths {
            mounts.append(.bind(source: grant.source, path: grant.path, readOnly: true))
        }
        return mounts
    }

    /// A synthesized /etc: only what programs need to run, nothing of the host's
    /// accounts, secrets or configuration.
    static func etcView(user: SandboxUser) -> [MountOperation] {
        var mounts: [MountOperation] = [
            .directory(path: "/etc", mode: 0o755),
            .file(path: "/etc/passwd", contents: """
                root:x:0:0:root:/root:/usr/sbin/nologin
                \(user.name):x:\(user.uid):\(user.gid):stockade sandbox:\(user.home):/bin/sh
                nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin

                """, mode: 0o644),
            .file(path: "/etc/group", contents: """
                root:x:0:
                \(user.name):x:\(user.gid):
                nogroup:x:65534:

                """, mode: 0o644),
            .file(path: "/etc/hostname", contents: "stockade\n", mode: 0o644),
            .file(path: "/etc/hosts", contents: "127.0.0.1\tlocalhost stockade\n::1\tlocalhost ip6-localhost ip6-loopback\n", mode: 0o644),
            .file(path: "/etc/nsswitch.conf", contents: "passwd: files\ngroup: files\nhosts: files dns\n", mode: 0o644),
        ]
        // Host files that hold no secrets and that programs need: the dynamic linker
        // cache, Debian's alternatives links, CA certificates, TLS defaults, time zone.
        for path in ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/ssl/certs",
                     "/etc/ssl/openssl.cnf", "/etc/pki/tls/certs", "/etc/ca-certificates.conf"] {
            // Bind sources are resolved now; the child refuses any symlink on them later.
            if let source = resolved(path) { mounts.append(.bind(source: source, path: path, readOnly: true)) }
        }
        if let zone = try? FileManager.default.destinationOfSymbolicLink(atPath: "/etc/localtime") {
            mounts.append(.symlink(target: zone, path: "/etc/localtime"))
        }
        return mounts
    }

    /// An allowlist puts the egress bridge in the sandbox; anything else, nothing.
    static func networkMode(_ policy: PolicyDocument) -> NetworkMode {
        (policy.network?.grantsAccess ?? false) ? .proxy : .none
    }

    static func environment(_ request: RunRequest, user: SandboxUser) throws -> [EnvironmentVariable] {
        var values: [(String, String)] = [
            ("PATH", searchPath),
            ("HOME", user.home),
            ("LANG", request.callerEnvironment["LANG"] ?? "C.UTF-8"),
        ]
        if let term = request.callerEnvironment["TERM"] { values.append(("TERM", term)) }
        if networkMode(request.policy) == .proxy {
            values += EgressBridge.environment.map { ($0.name, $0.value) }
        }
        func set(_ name: String, _ value: String) {
            values.removeAll { $0.0 == name }
            values.append((name, value))
        }
        for variable in request.policy.environmentSet { set(variable.name, variable.value) }
        for name in request.policy.environmentPass {
            if let value = request.callerEnvironment[name] { set(name, value) }
        }
        for entry in request.environment {
            if let equals = entry.firstIndex(of: "=") {
                let name = String(entry[..<equals])
                try validateName(name, entry: entry)
                set(name, String(entry[entry.index(after: equals)...]))
            } else {
                try validateName(entry, entry: entry)
                if let value = request.callerEnvironment[entry] { set(entry, value) }
            }
        }
        return values.map { EnvironmentVariable(name: $0.0, value: $0.1) }
    }

    private static func validateName(_ name: String, entry: String) throws {
        let valid = !name.isEmpty && name.utf8.allSatisfy { $0 == 95 || ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }
            && !(name.utf8.first.map { $0 >= 48 && $0 <= 57 } ?? true)
        if !valid || entry.utf8.contains(0) {
            throw StockadeError(.invalidArgument, "failed to pass --env \(entry): '\(name)' is not a valid variable name. Use NAME=VALUE or NAME (letters, digits, underscore)")
        }
    }

    static func workingDirectory(_ request: RunRequest, workspace: WorkspaceGrant) -> String {
        guard let resolved = realpath(request.currentDirectory, nil) else { return workspace.sandboxPath }
        let current = String(cString: resolved)
        free(resolved)
        if current == workspace.hostPath { return workspace.sandboxPath }
        if current.hasPrefix(workspace.hostPath + "/") {
            let relative = String(current.dropFirst(workspace.hostPath.count + 1))
            // Inside a hidden directory there is nothing to work in.
            if !workspace.hiddenEntries.contains(where: { relative == $0 || relative.hasPrefix($0 + "/") }) {
                return workspace.sandboxPath + "/" + relative
            }
        }
        return workspace.sandboxPath
    }

    /// The path with every symlink resolved, or nil when it does not exist.
    static func resolved(_ path: String) -> String? {
        guard let result = realpath(path, nil) else { return nil }
        defer { free(result) }
        return String(cString: result)
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
