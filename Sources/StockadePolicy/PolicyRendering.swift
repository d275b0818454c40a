import StockadeCore
import Yams

extension PolicyDocument {
    /// The document as version-1 policy YAML, for `stockade policy show` and dry runs.
    ///
    /// Parsing the result gives back an equal document (apart from `sourcePath`, which is
    /// not part of the file): the workspace path is written absolute, sizes and durations
    /// exactly (`512MiB`, `1500ms`), and every user-supplied string is quoted so that YAML
    /// cannot read it as a number or a boolean. Sections with nothing set are left out.
    ///
    /// - Throws: `StockadeError` `.internalError` if the YAML emitter fails.
    public func renderedYAML() throws -> String {
        var sections: [(Node, Node)] = [(key("version"), Node(String(version)))]

        var filesystem: [(Node, Node)] = []
        var workspace: [(Node, Node)] = []
        if let workspacePath { workspace.append((key("path"), quoted(workspacePath))) }
        if let workspaceReadOnly { workspace.append((key("mode"), Node(workspaceReadOnly ? "ro" : "rw"))) }
        if !workspace.isEmpty { filesystem.append((key("workspace"), Node(workspace))) }
        if !readOnlyPaths.isEmpty { filesystem.append((key("read_only"), Node(readOnlyPaths.map(quoted)))) }
        if !hiddenPatterns.isEmpty { filesystem.append((key("hidden"), Node(hiddenPatterns.map(quoted)))) }
        if !filesystem.isEmpty { sections.append((key("filesystem"), Node(filesystem))) }

        var environment: [(Node, Node)] = []
        if !environmentSet.isEmpty {
            environment.append((key("set"), Node(environmentSet.map { (key($0.name), quoted($0.value)) })))
        }
        if !environmentPass.isEmpty { environment.append((key("pass"), Node(environmentPass.map(quoted)))) }
        if !environment.isEmpty { sections.append((key("environment"), Node(environment))) }

        // In the order of the schema, each written the way it is read.
        let limitValues: [(String, String?)] = [
            ("wall", limits.wallMilliseconds.map(Self.exactDuration)),
            ("cpu", limits.cpuMilliseconds.map(Self.exactDuration)),
            ("memory", limits.memoryBytes.map(Self.exactSize)),
            ("pids", limits.pids.map { String($0) }),
            ("open_files", limits.openFiles.map { String($0) }),
            ("file_size", limits.fileSizeBytes.map(Self.exactSize)),
            ("output", limits.outputBytes.map(Self.exactSize)),
            ("tmp", limits.tmpBytes.map(Self.exactSize)),
            ("shm", limits.shmBytes.map(Self.exactSize)),
        ]
        let limitEntries = limitValues.compactMap { name, text in text.map { (key(name), Node($0)) } }
        if !limitEntries.isEmpty { sections.append((key("limits"), Node(limitEntries))) }

        if let network {
            switch network.mode {
            case .none:
                sections.append((key("network"), Node("none")))
            case .allowlist:
                var fields: [(Node, Node)] = [(key("mode"), Node("allowlist"))]
                fields.append((key("allow"), Node(network.allow.map { grant -> Node in
                    var entry: [(Node, Node)] = [(key("host"), quoted(grant.host))]
                    if !grant.ports.isEmpty { entry.append((key("ports"), Node(grant.ports.map { Node(String($0)) }))) }
                    if !grant.methods.isEmpty { entry.append((key("methods"), Node(grant.methods.map(quoted)))) }
                    if !grant.injectHeaders.isEmpty {
                        entry.append((key("inject_headers"), Node(grant.injectHeaders.map { (quoted($0.name), quoted($0.value.text)) })))
                    }
                    return Node(entry)
                })))
                if let maxBytes = network.maxBytes { fields.append((key("max_bytes"), Node(Self.exactSize(maxBytes)))) }
                if let maxRequests = network.maxRequests { fields.append((key("max_requests"), Node(String(maxRequests)))) }
                if let timeout = network.timeoutMilliseconds { fields.append((key("timeout"), Node(Self.exactDuration(timeout)))) }
                sections.append((key("network"), Node(fields)))
            }
        }
        do {
            return try Yams.serialize(node: Node(sections))
        } catch {
            throw StockadeError(.internalError, "failed to render the policy as YAML: the emitter failed. Report this bug", cause: error)
        }
    }

    private func key(_ name: String) -> Node { Node(name) }

    private func quoted(_ text: String) -> Node { Node(text, Tag(.str), .doubleQuoted) }

    /// `2h`, `30s`, `1500ms`: the largest unit that represents the value exactly.
    static func exactDuration(_ milliseconds: UInt64) -> String {
        for (size, unit) in [(UInt64(3_600_000), "h"), (60_000, "m"), (1000, "s")] where milliseconds % size == 0 {
            return "\(milliseconds / size)\(unit)"
        }
        return "\(milliseconds)ms"
    }

    /// `2GiB`, `512MiB`, `1000`: the largest unit that represents the value exactly.
    static func exactSize(_ bytes: UInt64) -> String {
        for (size, unit) in [(UInt64(1) << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        where bytes % size == 0 {
            return "\(bytes / size)\(unit)"
        }
        return "\(bytes)"
    }
}
