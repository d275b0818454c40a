/// `stockade policy check`: static analysis of a policy.
///
/// The label lattice is finite (each of `secret` and `untrusted` set or not: four
/// states) and labels only rise (a declassify only after approval), so the checker
/// visits every reachable label state. Actions are infinite, so it works on witnesses:
/// for every rule, invariant and label source, concrete actions that satisfy its
/// conditions, plus one plain action per tool and one `exec` per toolset program. In
/// each state it asks the real guard for the decision on each witness, so what it
/// reports is what enforcement does. Findings about rule overlap and rules that never
/// fire rest on these witnesses (a finding is always backed by a concrete action; an
/// overlap no witness hits can go unreported); invariant checks are exact over states.
public struct PolicyChecker {
    /// One problem, with the actions that lead to it.
    public struct Finding: Codable, Equatable, Sendable {
        public enum Kind: String, Codable, Sendable {
            /// A `deny_flow` invariant would be broken (a defect in enforcement).
            case invariantViolated = "invariant-violated"
            /// Secret data can reach the network and no invariant stops it.
            case unguardedFlow = "unguarded-flow"
            /// An invariant denies every command from the start.
            case blocksEverything = "blocks-everything"
            /// Two rules with opposite decisions match the same action, neither inside the other.
            case overlap
            /// A rule can never decide anything.
            case neverFires = "never-fires"
            /// A granted program can read any visible file and send it out.
            case overPermissiveTool = "over-permissive-tool"
            /// A network grant that cannot be used the way it reads (HTTPS to a grant
            /// whose methods leave out CONNECT).
            case unusableGrant = "unusable-grant"
        }

        public var kind: Kind
        /// The rules, invariants or programs concerned.
        public var subjects: [String]
        public var message: String
        /// The actions that reach the finding, each with its decision, in order.
        public var trace: [String]
    }

    /// A label state and how a session gets there.
    public struct State: Codable, Equatable, Sendable {
        public var labels: [String]
        public var trace: [String]
    }

    public struct Report: Codable, Equatable, Sendable {
        public var findings: [Finding]
        public var states: [State]
        public var isClean: Bool { findings.isEmpty }
    }

    let policyGuard: PolicyGuard

    public init(_ policyGuard: PolicyGuard) {
        self.policyGuard = policyGuard
    }

    /// Programs that can read any file they are shown and send it over the network by
    /// themselves: interpreters (bash through /dev/tcp, awk through /inet in gawk) and
    /// network clients.
    public static let exfiltratingPrograms: Set<String> = [
        "python", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "tclsh", "bash", "zsh", "ksh",
        "awk", "gawk", "busybox", "curl", "wget", "nc", "ncat", "netcat", "socat", "ssh", "scp", "sftp", "rsync",
        "ftp", "telnet", "openssl", "git", "pip", "pip3", "npm", "npx", "java", "go",
    ]

    public func run() -> Report {
        var findings: [Finding] = []
        let witnesses = self.witnesses()
        let states = reachableStates(witnesses)

        // Invariants hold in every reachable state: no allowed witness reaches a sink an
        // invariant closes for the labels the session carries (after the action, for exec).
        for state in states {
            let label = SessionLabel(Set(state.labels.compactMap(Label.init(rawValue:))))
            for action in witnesses {
                let verdict = policyGuard.decide(action, label: label)
                guard verdict.decision != .deny else { continue }
                let effective = action.tool == .exec ? policyGuard.label(after: action, from: label) : label
                let sinks = policyGuard.sinks(of: action.tool)
                for invariant in policyGuard.policy.labels.invariants {
                    guard case .denyFlow(let from, let to) = invariant.kind, effective.contains(from), sinks.contains(to) else { continue }
                    findings.append(Finding(
                        kind: .invariantViolated, subjects: [invariant.id],
                        message: "invariant \(invariant.id) is broken: \(action) is \(verdict.decision) with '\(from)' data, which reaches \(to)",
                        trace: state.trace + ["\(action) → \(verdict.decision)"]))
                }
                // Secret data reaching the network with no invariant to stop it.
                if effective.contains(.secret), sinks.contains(.network),
                   !policyGuard.policy.labels.invariants.contains(where: { if case .denyFlow(.secret, .network) = $0.kind { return true } else { return false } }),
                   !findings.contains(where: { $0.kind == .unguardedFlow }) {
                    findings.append(Finding(
                        kind: .unguardedFlow, subjects: [],
                        message: "secret data can reach the network: \(action) is \(verdict.decision) in a session that has read a secret, and no invariant denies the flow; add {id: no-secret-egress, deny_flow: {from: secret, to: network}} to labels.invariants",
                        trace: state.trace + ["\(action) → \(verdict.decision)"]))
                }
            }
        }

        findings += blockedCommands()
        findings += ruleFindings(witnesses)
        findings += toolFindings()
        findings += grantFindings()
        return Report(findings: findings, states: states)
    }

    // MARK: states

    func reachableStates(_ witnesses: [Action]) -> [State] {
        var states = [State(labels: [], trace: [])]
        var seen: Set<SessionLabel> = [.initial]
        var queue: [(SessionLabel, [String])] = [(.initial, [])]
        while !queue.isEmpty {
            let (label, trace) = queue.removeFirst()
            for action in witnesses {
                let verdict = policyGuard.decide(action, label: label)
                guard verdict.decision != .deny else { continue }
                let next = action.tool == .declassify
                    ? policyGuard.label(afterApproved: action, from: label)
                    : policyGuard.label(after: action, from: label)
                guard seen.insert(next).inserted else { continue }
                let step = "\(action) → \(verdict.decision)\(verdict.decision == .ask ? " (approved)" : "")"
                states.append(State(labels: Label.allCases.filter(next.contains).map(\.rawValue), trace: trace + [step]))
                queue.append((next, trace + [step]))
            }
        }
        return states
    }

    // MARK: findings

    /// An invariant that denies the first command of a fresh session denies them all.
    func blockedCommands() -> [Finding] {
        let probe = Action.exec(argv: ["sh"])
        let verdict = policyGuard.decide(probe, label: .initial)
        guard verdict.decision == .deny, verdict.basis == .invariant, let id = verdict.ruleID,
              policyGuard.ruleVerdict(facts(probe)).decision != .deny else { return [] }
        let visible = policyGuard.sources.filter(\.visibleToCommands).flatMap { $0.source.conditions.paths ?? [] }
        let hint = visible.isEmpty ? "" : " (\(visible.joined(separator: ", ")) is visible to commands; hide it with filesystem.hidden so that commands cannot read it)"
        return [Finding(
            kind: .blocksEverything, subjects: [id],
            message: "invariant \(id) denies every command from the start\(hint)",
            trace: ["\(probe) → deny"])]
    }

    func ruleFindings(_ witnesses: [Action]) -> [Finding] {
        var findings: [Finding] = []
        let rules = policyGuard.denyRules + policyGuard.askRules + policyGuard.allowRules
        let profileIDs = Set((policyGuard.policy.extends ?? .workspaceWrite).document.rules.map(\.id))
        for rule in rules {
            let own = Self.witnesses(for: rule.rule.tools.isEmpty ? Array(rule.tools) : rule.rule.tools, rule.rule.conditions)
                .filter { rule.matches(facts($0)) }
            // Never fires: nothing it matches reaches it.
            if rule.rule.decision != .deny, !own.isEmpty {
                let deciders = own.map { policyGuard.decide($0, label: .initial) }
                if deciders.allSatisfy({ $0.ruleID != rule.rule.id && $0.basis == .rule }),
                   let shadow = deciders.first?.ruleID, deciders.allSatisfy({ $0.ruleID == shadow }),
                   let shadowRule = rules.first(where: { $0.rule.id == shadow }), shadowRule.rule.decision != rule.rule.decision,
                   Self.covers(shadowRule, rule) {
                    findings.append(Finding(
                        kind: .neverFires, subjects: [rule.rule.id, shadow],
                        message: "rule \(rule.rule.id) (\(rule.rule.decision)) never fires: every action it matches is decided first by rule \(shadow) (\(shadowRule.rule.decision))",
                        trace: own.prefix(1).map { "\($0) → \(policyGuard.decide($0, label: .initial))" }))
                }
            }
            if rule.tools == [.http], !policyGuard.networkGranted, rule.rule.decision != .deny {
                findings.append(Finding(
                    kind: .neverFires, subjects: [rule.rule.id],
                    message: "rule \(rule.rule.id) decides http actions, but the network is none: no http action can run; grant hosts under network.allow or remove the rule",
                    trace: []))
            }
            if let toolset = policyGuard.policy.toolset, rule.tools == [.exec], let programs = Self.literalPrograms(rule.rule.conditions),
               programs.allSatisfy({ !toolset.contains($0) && !Self.namedSetPrograms(toolset).contains($0) }) {
                findings.append(Finding(
                    kind: .neverFires, subjects: [rule.rule.id],
                    message: "rule \(rule.rule.id) is about \(programs.joined(separator: ", ")), which the toolset does not hold: the program does not exist inside",
                    trace: []))
            }
        }
        // Overlap: opposite decisions on one action, neither rule inside the other.
        for (index, first) in rules.enumerated() {
            for second in rules[(index + 1)...] where first.rule.decision != second.rule.decision {
                if profileIDs.contains(first.rule.id) || profileIDs.contains(second.rule.id) { continue }
                if Self.covers(first, second) || Self.covers(second, first) { continue }
                let candidates = witnesses + Self.crossWitnesses(first, second)
                guard let shared = candidates.first(where: { first.matches(facts($0)) && second.matches(facts($0)) }) else { continue }
                let verdict = policyGuard.decide(shared, label: .initial)
                findings.append(Finding(
                    kind: .overlap, subjects: [first.rule.id, second.rule.id],
                    message: "rules \(first.rule.id) (\(first.rule.decision)) and \(second.rule.id) (\(second.rule.decision)) both match \(shared); \(verdict.ruleID ?? "the default") decides. Narrow one of them so that the intent is explicit",
                    trace: ["\(shared) → \(verdict.decision)"]))
            }
        }
        return findings
    }

    /// Grants that limit methods on port 443 without CONNECT: the proxy cannot see a
    /// method inside TLS, so it refuses every HTTPS tunnel to them.
    func grantFindings() -> [Finding] {
        guard policyGuard.networkGranted, let network = policyGuard.policy.network else { return [] }
        var findings: [Finding] = []
        for (index, grant) in network.allow.enumerated() {
            let ports = grant.ports.isEmpty ? [80, 443] : grant.ports
            guard ports.contains(443), !grant.methods.isEmpty, !grant.methods.contains("CONNECT") else { continue }
            findings.append(Finding(
                kind: .unusableGrant, subjects: ["network.allow[\(index)]"],
                message: "network.allow[\(index)] (\(grant.host)) limits methods to \(grant.methods.joined(separator: ", ")) on port 443, but the proxy sees methods on plain HTTP only: every HTTPS connection to it is refused. Add CONNECT to its methods to allow HTTPS (any method inside), or drop port 443",
                trace: ["CONNECT \(grant.host):443 → deny"]))
        }
        return findings
    }

    /// Over-permissive tools: with the network granted, a program that can read what the
    /// sandbox shows and send it is an exfiltration channel whatever the rules say about
    /// `http`.
    func toolFindings() -> [Finding] {
        guard policyGuard.networkGranted else { return [] }
        let hosts = (policyGuard.policy.network?.allow ?? []).map(\.host).joined(separator: ", ")
        guard let toolset = policyGuard.policy.toolset else {
            guard policyGuard.ruleVerdict(facts(.exec(argv: ["sh"]))).decision != .deny else { return [] }
            return [Finding(
                kind: .overPermissiveTool, subjects: ["(no toolset)"],
                message: "the network is granted (\(hosts)) and there is no toolset, so every program of the host is inside, interpreters and network clients included: any of them can read what the sandbox shows and send it. Give a toolset without them, or no network",
                trace: [])]
        }
        var findings: [Finding] = []
        for program in toolset + Self.namedSetPrograms(toolset) where Self.exfiltratingPrograms.contains(program.split(separator: "/").last.map(String.init) ?? program) {
            let action = Action.exec(argv: [program])
            let verdict = policyGuard.ruleVerdict(facts(action))
            guard verdict.decision != .deny else { continue }
            findings.append(Finding(
                kind: .overPermissiveTool, subjects: [program],
                message: "\(program) can read any file the sandbox shows and send it to \(hosts): an exfiltration channel that no http rule sees. Remove it from the toolset, deny it, or grant no network",
                trace: ["\(action) → \(verdict.decision)"]))
        }
        return findings
    }
}
