/// The built-in profiles a policy `extends`. Each is a whole policy document; a file that
/// extends one says only what differs.
public enum PolicyProfile: String, Codable, CaseIterable, Sendable, CustomStringConvertible {
    /// The workspace read-only; commands run, files can be read and listed, nothing written.
    case readOnly = "read-only"
    /// The default: the workspace read-write; commands run, files read, written, listed.
    case workspaceWrite = "workspace-write"
    /// `workspace-write` plus HTTP(S) to common package registries; data fetched from the
    /// network marks the session untrusted.
    case networked

    public var description: String { rawValue }

    /// The hosts `networked` grants: package indexes and their file hosts, for reading
    /// (GET and HEAD over plain HTTP, and HTTPS tunnels, inside which the proxy cannot
    /// see the method).
    public static let registryHosts = [
        "pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "crates.io", "index.crates.io",
        "static.crates.io", "proxy.golang.org", "sum.golang.org",
    ]

    /// The profile as a policy document.
    public var document: PolicyDocument {
        let read = Rule(id: "allow-read", tools: [.readFile, .listFiles], decision: .allow)
        let exec = Rule(id: "allow-exec", tools: [.exec], decision: .allow)
        let write = Rule(id: "allow-write", tools: [.writeFile], decision: .allow)
        switch self {
        case .readOnly:
            return PolicyDocument(workspaceReadOnly: true, network: NetworkPolicy.none, rules: [exec, read])
        case .workspaceWrite:
            return PolicyDocument(workspaceReadOnly: false, network: NetworkPolicy.none, rules: [exec, read, write])
        case .networked:
            return PolicyDocument(
                workspaceReadOnly: false,
                network: NetworkPolicy(
                    mode: .allowlist, allow: Self.registryHosts.map { NetworkPolicy.HostGrant(host: $0, methods: ["GET", "HEAD", "CONNECT"]) }),
                rules: [exec, read, write, Rule(id: "allow-http", tools: [.http], conditions: Conditions(hosts: Self.registryHosts, methods: ["GET", "HEAD"]), decision: .allow)],
                labels: LabelPolicy(sources: [LabelSource(tools: [.http], raises: .untrusted)])
            )
        }
    }
}

extension PolicyDocument {
    /// The document laid over the profile it extends (`workspace-write` when it names
    /// none): what the guard and the plan compiler enforce.
    ///
    /// Scalars and sections the file gives replace the profile's; lists of paths and
    /// patterns add to it; rules, invariants and declassify rules with the id of one of
    /// the profile's replace that one (so `allow-exec` can be narrowed or turned into a
    /// denial), others are added.
    public func resolved() -> PolicyDocument {
        let profile = extends ?? .workspaceWrite
        let base = profile.document
        var result = self
        result.extends = profile
        result.workspaceReadOnly = workspaceReadOnly ?? base.workspaceReadOnly
        result.readOnlyPaths = base.readOnlyPaths + readOnlyPaths
        result.hiddenPatterns = base.hiddenPatterns + hiddenPatterns
        result.protectedPatterns = base.protectedPatterns + protectedPatterns
        result.network = network ?? base.network
        result.rules = Self.merged(base.rules, rules, id: \.id)
        result.labels = LabelPolicy(
            sources: base.labels.sources + labels.sources,
            invariants: Self.merged(base.labels.invariants, labels.invariants, id: \.id),
            declassify: Self.merged(base.labels.declassify, labels.declassify, id: \.id))
        return result
    }

    /// `base` with every element whose id `overrides` also has replaced in place, then
    /// the rest of `overrides` in their order.
    static func merged<Element>(_ base: [Element], _ overrides: [Element], id: KeyPath<Element, String>) -> [Element] {
        var result = base.map { element in overrides.first { $0[keyPath: id] == element[keyPath: id] } ?? element }
        let baseIDs = Set(base.map { $0[keyPath: id] })
        result += overrides.filter { !baseIDs.contains($0[keyPath: id]) }
        return result
    }
}
