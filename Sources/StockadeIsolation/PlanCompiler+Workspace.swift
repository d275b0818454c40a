import Foundation
import StockadeCore
import StockadePolicy

/// The workspace part of a plan: the grant, its hidden and protected entries, the
/// placeholders and pins that keep them so.
extension PlanCompiler {
    static func workspaceGrant(_ request: RunRequest) throws -> WorkspaceGrant {
        let requested = request.workspace ?? request.policy.workspacePath ?? request.currentDirectory
        let absolute = requested.hasPrefix("/") ? requested : request.currentDirectory + "/" + requested
        guard let resolved = realpath(absolute, nil) else {
            throw StockadeError(.invalidArgument, "failed to use workspace \(requested): \(String(cString: strerror(errno))). Pass an existing directory with --workspace")
        }
        let hostPath = String(cString: resolved)
        free(resolved)
        guard isDirectory(hostPath) else {
            throw StockadeError(.invalidArgument, "failed to use workspace \(requested): not a directory. Pass a directory with --workspace")
        }
        if hostPath == "/" {
            throw StockadeError(.invalidArgument, "failed to use workspace /: granting the whole host file system defeats the sandbox. Pass a project directory with --workspace")
        }
        let patterns = HiddenDefaults.patterns + request.policy.hiddenPatterns + request.hide
        let globs = try GlobSet(patterns: patterns)
        let readOnly = request.readOnlyWorkspace ?? request.policy.workspaceReadOnly ?? false
        let protectedPatterns = ProtectedDefaults.patterns + request.policy.protectedPatterns
        // One walk finds both; in a read-only workspace nothing needs protecting.
        let found = WorkspaceScanner.entries(
            in: hostPath, matching: readOnly ? [globs] : [globs, try GlobSet(patterns: protectedPatterns)])
        let hidden = found[0]
        // Each hidden entry is a mount, and the kernel caps mounts per namespace
        // (fs.mount-max, 100,000 by default): a workspace full of matching files (one a
        // sandbox may have made on purpose) must fail clearly, not half-way.
        if hidden.count > maximumHiddenEntries {
            throw StockadeError(
                .invalidArgument,
                "failed to hide workspace entries: \(hidden.count) match the hidden patterns, more than \(maximumHiddenEntries). Hide their directory instead (--hide DIR) or remove them"
            )
        }
        var protectedEntries: [String] = []
        var placeholders: [WorkspacePlaceholder] = []
        var watched: [WatchedEntry] = []
        if !readOnly {
            protectedEntries = found[1].filter { entry in !hidden.contains { entry == $0 || entry.hasPrefix($0 + "/") } }
            (placeholders, watched) = Self.placeholders(for: protectedPatterns, in: hostPath, hidden: hidden)
        }
        if hidden.count + protectedEntries.count > maximumHiddenEntries {
            throw StockadeError(
                .invalidArgument,
                "failed to protect workspace entries: \(protectedEntries.count) match the protected patterns. Protect their directory instead")
        }
        var grant = WorkspaceGrant(
            hostPath: hostPath, sandboxPath: sandboxPath, readOnly: readOnly,
            hiddenPatterns: patterns, hiddenEntries: hidden,
            protectedPatterns: protectedPatterns, protectedEntries: protectedEntries, placeholders: placeholders
        )
        grant.watched = watched
        return grant
    }

    /// The policy file's path relative to the workspace, when it lies inside it.
    static func policyInsideWorkspace(_ policy: PolicyDocument, workspace: WorkspaceGrant) -> String? {
        guard let source = policy.sourcePath, let resolved = realpath(source, nil) else { return nil }
        let path = String(cString: resolved)
        free(resolved)
        guard path.hasPrefix(workspace.hostPath + "/") else { return nil }
        let relative = String(path.dropFirst(workspace.hostPath.count + 1))
        if workspace.hiddenEntries.contains(where: { relative == $0 || relative.hasPrefix($0 + "/") }) { return nil }
        return relative
    }

    /// Read-only binds of the protected entries (existing ones and placeholders), after
    /// pins of the directories that hold them: parents first, so that a pin (a
    /// recursive bind) never covers a protection made before it.
    static func protectionMounts(_ workspace: WorkspaceGrant) -> [MountOperation] {
        guard !workspace.readOnly else { return [] }
        let entries = workspace.protectedEntries + workspace.placeholders.map(\.relativePath)
        var parents = Set<String>()
        // Hidden entries' parents too: renamed, a directory would carry a hidden file
        // to a name its pattern does not match (`mv config cfg`).
        for entry in entries + workspace.hiddenEntries {
            let names = entry.split(separator: "/")
            for length in stride(from: 1, to: names.count, by: 1) {
                parents.insert(names[..<length].joined(separator: "/"))
            }
        }
        var mounts: [MountOperation] = parents.sorted { $0.split(separator: "/").count < $1.split(separator: "/").count || ($0.split(separator: "/").count == $1.split(separator: "/").count && $0 < $1) }
            .map { .pinBeneath(base: workspace.sandboxPath, relativePath: $0) }
        mounts += Array(Set(entries)).sorted().map { .readOnlyBeneath(base: workspace.sandboxPath, relativePath: $0) }
        return mounts
    }

    /// Protected directories to stand in for, when missing: literal patterns only, at
    /// the workspace root (`.vscode/`) or below an existing directory (`.git/hooks/`).
    /// Empty directories are invisible to git and to most tools. An empty file
    /// (`.mcp.json`) would not be, and could break the tool that reads it; and a
    /// placeholder `.git` would forbid `git init`. Those missing names are watched
    /// instead (`watched`): reported after the run if the command created them. So is a
    /// protected name that is a symbolic link: a mount cannot sit on a link, so its
    /// target is protected and the link itself only watched.
    static func placeholders(for patterns: [String], in root: String, hidden: [String]) -> (directories: [WorkspacePlaceholder], watched: [WatchedEntry]) {
        var result: [WorkspacePlaceholder] = []
        var watched: [WatchedEntry] = []
        func watch(_ relative: String, signature: String?) {
            if !watched.contains(where: { $0.relativePath == relative }) {
                watched.append(WatchedEntry(relativePath: relative, signature: signature))
            }
        }
        for pattern in patterns where !pattern.contains(where: { "*?[\\".contains($0) }) {
            let directoryOnly = pattern.hasSuffix("/")
            let names = pattern.split(separator: "/").map(String.init)
            guard !names.isEmpty, !names.contains("."), !names.contains("..") else { continue }
            var relative = ""
            for (index, name) in names.enumerated() {
                relative = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                if lstat(root + "/" + relative, &info) == 0 {
                    // Present: go on below it if it is a real directory, else stop.
                    if (info.st_mode & S_IFMT) == S_IFLNK, index == names.count - 1 { watch(relative, signature: WatchedEntry.signature(of: info)) }
                    if (info.st_mode & S_IFMT) != S_IFDIR { break }
                    continue
                }
                let isDirectory = index < names.count - 1 || directoryOnly
                if hidden.contains(where: { relative == $0 || relative.hasPrefix($0 + "/") }) { break }
                if isDirectory && (index > 0 || names.count == 1) {
                    if !result.contains(where: { $0.relativePath == relative }) {
                        result.append(WorkspacePlaceholder(relativePath: relative, isDirectory: true))
                    }
                } else {
                    watch(relative, signature: nil)
                }
                break
            }
        }
        return (result, watched)
    }
}
