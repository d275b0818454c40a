import StockadeCore
import Yams

/// The decoders of `extends`, `isolation`, `toolset`, `network`, `approval`, `secrets`
/// and `audit`.
extension PolicyReader {
    static let isolationKeys = ["tier", "latency_budget"]
    static let networkKeys = ["mode", "allow", "max_bytes", "max_requests", "timeout"]
    static let hostGrantKeys = ["host", "ports", "methods", "inject_headers"]
    static let approvalKeys = ["mode", "command", "timeout"]
    static let secretsKeys = ["known", "on_leak", "patterns", "entropy"]
    static let auditKeys = ["path", "checkpoint_every", "signing_key"]

    func readExtends(_ section: Entry) throws -> PolicyProfile {
        PolicyProfile(rawValue: try choice(section, PolicyProfile.allCases.map(\.rawValue)))!
    }

    func readIsolation(_ node: Node) throws -> IsolationSettings {
        var settings = IsolationSettings()
        for field in try entries(of: node, at: "isolation", allowed: Self.isolationKeys, example: "{tier: auto, latency_budget: 300ms}") {
            switch field.key {
            case "tier": settings.tier = IsolationSettings.Tier(rawValue: try choice(field, IsolationSettings.Tier.allCases.map(\.rawValue)))
            case "latency_budget": settings.latencyBudgetMilliseconds = try duration(field)
            default: break
            }
        }
        return settings
    }

    /// Program names (`git`), absolute paths (`/opt/tool/bin/tool`) or named sets
    /// (`python`); which of them exist is checked when the toolset is built.
    func readToolset(_ node: Node) throws -> [String] {
        var names: [String] = []
        for (name, item) in try stringList(node, at: "toolset", example: "sh") {
            let valid = name.hasPrefix("/")
                ? !name.split(separator: "/").contains("..")
                : name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "+-._".unicodeScalars.contains($0) }
            guard valid, name != ".", name != ".." else {
                throw error(at: item, "'toolset' entries must be program names such as git, named sets such as python, or absolute paths without '..', got \(describe(item))")
            }
            guard !names.contains(name) else {
                throw error(at: item, "'\(name.printableForMessages)' is listed more than once in 'toolset'")
            }
            names.append(name)
        }
        guard !names.isEmpty else {
            throw error(at: node, "'toolset' is empty, so nothing could run; list programs such as [sh, ls, cat], or leave the key out for the whole system view")
        }
        return names
    }

    // MARK: network

    func readNetwork(_ node: Node) throws -> NetworkPolicy {
        if case .scalar = node {
            _ = try choice(Entry(key: "network", keyPath: "network", keyNode: node, value: node), ["none"])
            return .none
        }
        var policy = NetworkPolicy()
        let fields = try entries(of: node, at: "network", allowed: Self.networkKeys, example: "{mode: allowlist, allow: [pypi.org]}")
        guard let modeField = fields.first(where: { $0.key == "mode" }) else {
            throw error(at: node, "'network' needs a 'mode': none, or allowlist with the hosts in 'allow'")
        }
        policy.mode = NetworkPolicy.Mode(rawValue: try choice(modeField, ["none", "allowlist"]))!
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "allow":
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[pypi.org, \"*.pythonhosted.org\"]").enumerated() {
                    policy.allow.append(try hostGrant(item, at: "\(field.keyPath)[\(index)]"))
                }
            case "max_bytes": policy.maxBytes = try size(field)
            case "max_requests": policy.maxRequests = try count(field)
            case "timeout": policy.timeoutMilliseconds = try duration(field)
            default: break
            }
        }
        switch policy.mode {
        case .none:
            if let extra = fields.first(where: { $0.key != "mode" }) {
                throw error(at: extra.keyNode, "'network.\(extra.key)' has no effect with 'mode: none'; use 'mode: allowlist' or remove it")
            }
        case .allowlist:
            if policy.allow.isEmpty {
                throw error(at: modeField.value, "'network.mode' is allowlist but 'network.allow' lists no host; list hosts such as pypi.org, or use 'mode: none'")
            }
        }
        return policy
    }

    private func hostGrant(_ node: Node, at keyPath: String) throws -> NetworkPolicy.HostGrant {
        if case .scalar = node, !isNull(node) {
            let host = try text(of: node, at: keyPath, expected: "a host name")
            return NetworkPolicy.HostGrant(host: try hostPattern(host, node: node, at: keyPath))
        }
        let fields = try entries(of: node, at: keyPath, allowed: Self.hostGrantKeys, example: "{host: pypi.org, ports: [443], methods: [GET]}")
        guard let hostField = fields.first(where: { $0.key == "host" }), !isNull(hostField.value) else {
            throw error(at: node, "'\(keyPath)' needs a 'host', such as pypi.org")
        }
        var grant = NetworkPolicy.HostGrant(
            host: try hostPattern(try text(of: hostField.value, at: hostField.keyPath, expected: "a host name"), node: hostField.value, at: hostField.keyPath))
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "ports":
                grant.ports = try stringList(field.value, at: field.keyPath, example: "443").map { value, item in
                    guard let port = Int(value), (1...65535).contains(port) else {
                        throw error(at: item, "'\(field.keyPath)' must be port numbers from 1 to 65535, got \(describe(item))")
                    }
                    return port
                }
            case "methods":
                grant.methods = try httpMethods(field)
            case "inject_headers":
                for header in try entries(of: field.value, at: field.keyPath, allowed: nil, example: "{Authorization: \"Bearer ${env:API_TOKEN}\"}") {
                    let tokenCharacters = "!#$%&'*+-.^_`|~"
                    guard !header.key.isEmpty, header.key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || tokenCharacters.unicodeScalars.contains($0)) }) else {
                        throw error(at: header.keyNode, "'\(field.keyPath)': '\(header.key.printableForMessages)' is not an HTTP header name")
                    }
                    let lowered = header.key.lowercased()
                    guard !["host", "content-length", "transfer-encoding", "connection", "proxy-authorization"].contains(lowered) else {
                        throw error(at: header.keyNode, "'\(field.keyPath)': the proxy sets '\(header.key)' itself; inject credentials such as Authorization instead")
                    }
                    let value = try text(of: header.value, at: header.keyPath, expected: "a header value with ${env:NAME} or ${file:PATH} references")
                    guard !value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                        throw error(at: header.value, "'\(header.keyPath)' must not contain line breaks or NUL bytes")
                    }
                    switch SecretTemplate.parse(value) {
                    case .success(let template):
                        grant.injectHeaders.append(NetworkPolicy.HeaderInjection(name: header.key, value: template))
                    case .failure(let problem):
                        throw error(at: header.value, "'\(header.keyPath)': \(problem.reason)")
                    }
                }
            default: break
            }
        }
        if !grant.injectHeaders.isEmpty && HostPattern(grant.host)?.wildcard == true {
            throw error(at: node, "'\(keyPath)': inject_headers needs an exact host, not a wildcard: a credential must go to the one host it is for")
        }
        return grant
    }

    // MARK: approval, secrets, audit

    func readApproval(_ node: Node) throws -> ApprovalSettings {
        var settings = ApprovalSettings()
        let fields = try entries(of: node, at: "approval", allowed: Self.approvalKeys, example: "{mode: command, command: [notify-approver], timeout: 2m}")
        for field in fields {
            switch field.key {
            case "mode": settings.mode = ApprovalSettings.Mode(rawValue: try choice(field, ApprovalSettings.Mode.allCases.map(\.rawValue)))
            case "command":
                let argv = try stringList(field.value, at: field.keyPath, example: "/usr/local/bin/approve").map(\.0)
                guard let program = argv.first, program.hasPrefix("/") else {
                    throw error(at: field.value, "'\(field.keyPath)' must start with the absolute path of the approver program, as in [/usr/local/bin/approve, --channel, ops]")
                }
                settings.command = argv
            case "timeout": settings.timeoutMilliseconds = try duration(field)
            default: break
            }
        }
        if settings.mode == .command && settings.command == nil {
            throw error(at: node, "'approval.mode' is command but 'approval.command' is missing; give the approver's argv, as in [/usr/local/bin/approve]")
        }
        if settings.command != nil && settings.mode != .command {
            throw error(at: node, "'approval.command' is given but 'approval.mode' is not command; add 'mode: command' or remove the command")
        }
        return settings
    }

    func readSecrets(_ node: Node) throws -> SecretsPolicy {
        var policy = SecretsPolicy()
        let fields = try entries(of: node, at: "secrets", allowed: Self.secretsKeys, example: "{known: [\"env:OPENAI_API_KEY\"], on_leak: redact}")
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "known":
                for (value, item) in try stringList(field.value, at: field.keyPath, example: "\"env:OPENAI_API_KEY\"") {
                    if value.hasPrefix("env:"), value.count > 4 {
                        policy.known.append(.environment(String(value.dropFirst(4))))
                    } else if value.hasPrefix("file:"), value.count > 5 {
                        let path = String(value.dropFirst(5))
                        guard path.hasPrefix("/") || path.hasPrefix("~/") else {
                            throw error(at: item, "'\(field.keyPath)': a file secret needs an absolute path or one under ~/, as in \"file:~/.aws/credentials\"")
                        }
                        policy.known.append(.file(path))
                    } else if value.hasPrefix("literal:"), value.count > 8 {
                        policy.known.append(.literal(String(value.dropFirst(8))))
                    } else {
                        throw error(at: item, "'\(field.keyPath)' entries must be env:NAME, file:PATH or literal:VALUE, got \(describe(item))")
                    }
                }
            case "on_leak":
                policy.onLeak = SecretsPolicy.LeakAction(rawValue: try choice(field, SecretsPolicy.LeakAction.allCases.map(\.rawValue)))
            case "patterns":
                policy.patterns = try choice(field, ["true", "false"]) == "true"
            case "entropy":
                policy.entropy = try choice(field, ["true", "false"]) == "true"
            default: break
            }
        }
        return policy
    }

    func readAudit(_ node: Node, baseDirectory: String) throws -> AuditSettings {
        var settings = AuditSettings()
        let fields = try entries(of: node, at: "audit", allowed: Self.auditKeys, example: "{path: .stockade/audit.jsonl, checkpoint_every: 100}")
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "path", "signing_key":
                let path = try text(of: field.value, at: field.keyPath, expected: "a path")
                try checkPathText(path, at: field)
                let absolute = PolicyPaths.absolute(path, relativeTo: baseDirectory)
                if field.key == "path" { settings.path = absolute } else { settings.signingKey = absolute }
            case "checkpoint_every": settings.checkpointEvery = try count(field)
            default: break
            }
        }
        return settings
    }
}
