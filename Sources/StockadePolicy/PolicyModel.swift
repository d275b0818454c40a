/// The sections of the policy language beyond the file system, the environment and the
/// limits: rules, labels, approval, network, isolation, secrets and audit. Plain data,
/// validated by `PolicyLoader`; `PolicyGuard` compiles rules and labels for decisions.

/// What a rule decides.
public enum Decision: String, Codable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case allow, deny, ask
    public var description: String { rawValue }
}

/// The argument constraints of a rule (`where:`) or of a label source. Every condition
/// that is given must hold; each list is "any of". A condition on an argument that the
/// action does not carry is false (an `exec` action has no path): never fail open.
public struct Conditions: Codable, Equatable, Sendable {
    /// `command`: patterns of the program. Without `/` a pattern is matched against the
    /// program's name (`git` matches `/usr/bin/git`), with `/` against the path given.
    public var command: [String]?
    /// `argv.prefix`: the first arguments, `argv[0]` included, one pattern each.
    public var argvPrefix: [String]?
    /// `argv.contains`: each pattern matches some argument after `argv[0]`.
    public var argvContains: [String]?
    /// `argv.exact`: the whole command, one pattern per argument.
    public var argvExact: [String]?
    /// `path`: globs of sandbox paths. Relative ones are relative to `/workspace` and
    /// follow `Glob` syntax; absolute ones match from the root. A path matches when it or
    /// a directory that contains it matches.
    public var paths: [String]?
    /// `host`: host names, exact or `*.example.com` (any name below, not the name itself).
    public var hosts: [String]?
    /// `method`: HTTP methods, upper case.
    public var methods: [String]?
    /// `url_path`: globs of the URL path (`/simple/**`).
    public var urlPaths: [String]?

    public init(
        command: [String]? = nil, argvPrefix: [String]? = nil, argvContains: [String]? = nil, argvExact: [String]? = nil,
        paths: [String]? = nil, hosts: [String]? = nil, methods: [String]? = nil, urlPaths: [String]? = nil
    ) {
        self.command = command
        self.argvPrefix = argvPrefix
        self.argvContains = argvContains
        self.argvExact = argvExact
        self.paths = paths
        self.hosts = hosts
        self.methods = methods
        self.urlPaths = urlPaths
    }

    /// True when no condition is given: the rule applies to every action of its tools.
    public var isEmpty: Bool { self == Conditions() }

    /// The tools whose actions carry every argument these conditions name.
    var toolsCarryingArguments: Set<Tool> {
        var tools = Set(Tool.allCases).subtracting([.declassify])
        if command != nil || argvPrefix != nil || argvContains != nil || argvExact != nil { tools.formIntersection([.exec]) }
        if paths != nil { tools.formIntersection([.readFile, .writeFile, .listFiles]) }
        if hosts != nil || methods != nil || urlPaths != nil { tools.formIntersection([.http]) }
        return tools
    }
}

/// One entry of `rules`.
public struct Rule: Codable, Equatable, Sendable {
    /// Unique among the rules; named in decisions, denials and the audit log.
    public var id: String
    /// The tools the rule applies to; empty means every tool.
    public var tools: [Tool]
    public var conditions: Conditions
    public var decision: Decision
    /// Shown with a denial or an approval prompt: "git push needs approval".
    public var reason: String?

    public init(id: String, tools: [Tool] = [], conditions: Conditions = Conditions(), decision: Decision, reason: String? = nil) {
        self.id = id
        self.tools = tools
        self.conditions = conditions
        self.decision = decision
        self.reason = reason
    }
}

/// The two labels a session can carry. Each only rises during a session.
public enum Label: String, Codable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Confidentiality: the session has seen data marked secret.
    case secret
    /// Integrity: the session has taken in data from an untrusted source.
    case untrusted

    public var description: String { rawValue }
}

/// Where a `deny_flow` invariant forbids labelled data to go.
public enum Sink: String, Codable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// `http` actions, and `exec` when the policy grants network access.
    case network
    /// `write_file`, and `exec` when the workspace is writable.
    case workspace
    /// Any `exec`.
    case exec

    public var description: String { rawValue }
}

/// One entry of `labels.sources`: actions that raise the session's label.
public struct LabelSource: Codable, Equatable, Sendable {
    /// The tools this source applies to; empty means those its conditions fit.
    public var tools: [Tool]
    public var conditions: Conditions
    public var raises: Label

    public init(tools: [Tool] = [], conditions: Conditions = Conditions(), raises: Label) {
        self.tools = tools
        self.conditions = conditions
        self.raises = raises
    }
}

/// One entry of `labels.invariants`. Invariants are checked before any rule and can
/// only make a decision stricter.
public struct Invariant: Codable, Equatable, Sendable {
    public enum Kind: Codable, Equatable, Sendable {
        /// `deny_flow: {from: secret, to: network}`: once the session carries `from`,
        /// every action that reaches `to` is denied.
        case denyFlow(from: Label, to: Sink)
        /// `{when: untrusted, tool: exec, where: {...}, decision: ask}`: once the session
        /// carries `when`, matching actions need approval (`ask`) or are denied.
        case guarded(when: Label, tools: [Tool], conditions: Conditions, decision: Decision)
    }

    public var id: String
    public var kind: Kind
    public var reason: String?

    public init(id: String, kind: Kind, reason: String? = nil) {
        self.id = id
        self.kind = kind
        self.reason = reason
    }
}

/// One entry of `labels.declassify`: an approved way to clear a label.
public struct DeclassifyRule: Codable, Equatable, Sendable {
    public var id: String
    public var clears: Label
    public var reason: String?

    public init(id: String, clears: Label, reason: String? = nil) {
        self.id = id
        self.clears = clears
        self.reason = reason
    }
}

/// The `labels` section.
public struct LabelPolicy: Codable, Equatable, Sendable {
    public var sources: [LabelSource]
    public var invariants: [Invariant]
    public var declassify: [DeclassifyRule]

    public init(sources: [LabelSource] = [], invariants: [Invariant] = [], declassify: [DeclassifyRule] = []) {
        self.sources = sources
        self.invariants = invariants
        self.declassify = declassify
    }
}

/// The `approval` section: who answers an `ask`.
public struct ApprovalSettings: Codable, Equatable, Sendable {
    public enum Mode: String, Codable, Equatable, Sendable, CaseIterable {
        /// A terminal prompt when stockade has a controlling terminal, else deny.
        case auto
        /// A terminal prompt; with no terminal, every `ask` is denied with a reason that
        /// says the configured prompt had no terminal (`auto` denies silently as
        /// unattended).
        case prompt
        /// An external command reads the request as JSON and answers.
        case command
        /// Nobody is attending: every `ask` is a denial.
        case deny
    }

    public var mode: Mode?
    /// The approver command (`mode: command`), as argv.
    public var command: [String]?
    /// How long to wait for an answer; no answer in time is a denial.
    public var timeoutMilliseconds: UInt64?

    public init(mode: Mode? = nil, command: [String]? = nil, timeoutMilliseconds: UInt64? = nil) {
        self.mode = mode
        self.command = command
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

/// The `network` section. Version 1 parses allowlists; the egress proxy enforces them.
public struct NetworkPolicy: Codable, Equatable, Sendable {
    public enum Mode: String, Codable, Equatable, Sendable {
        case none, allowlist
    }

    /// One host the sandbox may reach.
    public struct HostGrant: Codable, Equatable, Sendable {
        /// An exact name, `*.example.com`, or a literal IP address.
        public var host: String
        /// Ports; empty means 80 and 443.
        public var ports: [Int]
        /// Methods allowed; empty means any. The proxy sees the method of plain HTTP
        /// only: a grant that lists methods refuses HTTPS tunnels unless it lists CONNECT.
        public var methods: [String]
        /// Headers the supervisor adds on the way out (plain HTTP through the proxy, and
        /// the supervisor's own `http` actions): credentials that never enter the sandbox.
        public var injectHeaders: [HeaderInjection]

        public init(host: String, ports: [Int] = [], methods: [String] = [], injectHeaders: [HeaderInjection] = []) {
            self.host = host
            self.ports = ports
            self.methods = methods
            self.injectHeaders = injectHeaders
        }
    }

    /// `inject_headers: {Authorization: "Bearer ${env:API_TOKEN}"}`.
    public struct HeaderInjection: Codable, Equatable, Sendable {
        public var name: String
        public var value: SecretTemplate
        public init(name: String, value: SecretTemplate) {
            self.name = name
            self.value = value
        }
    }

    public var mode: Mode
    public var allow: [HostGrant]
    public var maxBytes: UInt64?
    public var maxRequests: UInt64?
    public var timeoutMilliseconds: UInt64?

    public init(mode: Mode = .none, allow: [HostGrant] = [], maxBytes: UInt64? = nil, maxRequests: UInt64? = nil, timeoutMilliseconds: UInt64? = nil) {
        self.mode = mode
        self.allow = allow
        self.maxBytes = maxBytes
        self.maxRequests = maxRequests
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    public static let none = NetworkPolicy()

    /// True when the sandbox can reach anything beyond its own loopback.
    public var grantsAccess: Bool { mode == .allowlist && !allow.isEmpty }
}

/// A value with `${env:NAME}` and `${file:PATH}` references, filled in by the
/// supervisor (never by the sandbox) when it needs the value.
public struct SecretTemplate: Codable, Equatable, Sendable {
    public enum Part: Codable, Equatable, Sendable {
        case text(String)
        case environment(String)
        case file(String)
    }

    public var parts: [Part]

    public init(parts: [Part]) {
        self.parts = parts
    }

    /// Parses `text`; nil with a reason for a broken reference.
    public static func parse(_ text: String) -> Result<SecretTemplate, TemplateProblem> {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                return .failure(TemplateProblem(reason: "a '${' is not closed by '}'"))
            }
            let reference = rest[open.upperBound..<close]
            if reference.hasPrefix("env:"), reference.count > 4 {
                let name = String(reference.dropFirst(4))
                guard name.unicodeScalars.allSatisfy({ $0 == "_" || ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) }) else {
                    return .failure(TemplateProblem(reason: "'\(name)' is not a variable name"))
                }
                parts.append(.environment(name))
            } else if reference.hasPrefix("file:"), reference.count > 5 {
                let path = String(reference.dropFirst(5))
                guard path.hasPrefix("/") || path.hasPrefix("~/") else {
                    return .failure(TemplateProblem(reason: "a file reference needs an absolute path or one under ~/, as in ${file:~/.config/token}"))
                }
                parts.append(.file(path))
            } else {
                return .failure(TemplateProblem(reason: "'${\(reference)}' is neither ${env:NAME} nor ${file:PATH}"))
            }
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return .success(SecretTemplate(parts: parts))
    }

    /// The template as written, for policies printed back.
    public var text: String {
        parts.map { part in
            switch part {
            case .text(let text): return text
            case .environment(let name): return "${env:\(name)}"
            case .file(let path): return "${file:\(path)}"
            }
        }.joined()
    }

    public struct TemplateProblem: Error, Sendable {
        public let reason: String
    }
}

/// The `isolation` section.
public struct IsolationSettings: Codable, Equatable, Sendable {
    public enum Tier: String, Codable, Equatable, Sendable, CaseIterable {
        case auto, namespaces, gvisor, microvm, wasm
    }

    public var tier: Tier?
    public var latencyBudgetMilliseconds: UInt64?

    public init(tier: Tier? = nil, latencyBudgetMilliseconds: UInt64? = nil) {
        self.tier = tier
        self.latencyBudgetMilliseconds = latencyBudgetMilliseconds
    }
}

/// The `secrets` section (the leak guard enforces it).
public struct SecretsPolicy: Codable, Equatable, Sendable {
    public enum Source: Codable, Equatable, Sendable {
        case environment(String)
        case file(String)
        case literal(String)
    }

    public enum LeakAction: String, Codable, Equatable, Sendable, CaseIterable {
        case redact, block, alert
    }

    public var known: [Source]
    /// What a leak does; nil: redact.
    public var onLeak: LeakAction?
    /// Look for credential formats (default true).
    public var patterns: Bool?
    /// Look for high-entropy tokens (default true).
    public var entropy: Bool?

    public init(known: [Source] = [], onLeak: LeakAction? = nil, patterns: Bool? = nil, entropy: Bool? = nil) {
        self.known = known
        self.onLeak = onLeak
        self.patterns = patterns
        self.entropy = entropy
    }
}

/// The `audit` section (the audit log enforces it).
public struct AuditSettings: Codable, Equatable, Sendable {
    public var path: String?
    public var checkpointEvery: UInt64?
    public var signingKey: String?

    public init(path: String? = nil, checkpointEvery: UInt64? = nil, signingKey: String? = nil) {
        self.path = path
        self.checkpointEvery = checkpointEvery
        self.signingKey = signingKey
    }
}
