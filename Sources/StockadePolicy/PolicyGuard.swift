import StockadeCore

/// The labels a session carries. They only rise (`raising`); lowering one takes an
/// approved `declassify` action.
public struct SessionLabel: Hashable, Sendable, Codable, CustomStringConvertible {
    /// One bit per `Label` (a set would allocate on every decision).
    private var bits: UInt8

    public init(_ labels: Set<Label> = []) {
        bits = labels.reduce(0) { $0 | Self.bit($1) }
    }

    private init(bits: UInt8) {
        self.bits = bits
    }

    fileprivate init(bits: UInt8, _ marker: Void = ()) {
        self.bits = bits
    }

    fileprivate static func bitOf(_ label: Label) -> UInt8 { bit(label) }

    private static func bit(_ label: Label) -> UInt8 {
        label == .secret ? 1 : 2
    }

    /// A new session: public and trusted.
    public static let initial = SessionLabel()

    public var labels: Set<Label> { Set(Label.allCases.filter(contains)) }

    public func contains(_ label: Label) -> Bool { bits & Self.bit(label) != 0 }

    public func raising(_ others: Set<Label>) -> SessionLabel { raising(SessionLabel(others)) }

    public func raising(_ other: SessionLabel) -> SessionLabel { SessionLabel(bits: bits | other.bits) }

    /// Only `PolicyGuard.label(afterApproved:)` lowers a label, for an approved
    /// declassify rule.
    func lowering(_ label: Label) -> SessionLabel { SessionLabel(bits: bits & ~Self.bit(label)) }

    public var description: String {
        labels.isEmpty ? "public, trusted" : Label.allCases.filter(labels.contains).map(\.rawValue).joined(separator: ", ")
    }
}

/// A decision and what made it.
public struct Verdict: Equatable, Sendable, CustomStringConvertible {
    /// What the decision rests on.
    public enum Basis: String, Equatable, Sendable {
        /// A rule of `rules`.
        case rule
        /// An invariant of `labels.invariants`.
        case invariant
        /// No rule allowed the action.
        case defaultDeny = "default"
        /// The action itself is malformed (an empty command, a URL without a host).
        case malformed
        /// A `declassify` rule (always `ask`).
        case declassify
        /// The path is hidden (`filesystem.hidden`): it does not exist for the sandbox.
        case hidden
        /// The path is protected (`filesystem.protected`): it cannot be written.
        case protected
    }

    public var decision: Decision
    public var basis: Basis
    /// The id of the rule, invariant or declassify rule; nil for `defaultDeny` and `malformed`.
    public var ruleID: String?
    /// Why, in words: the rule's `reason`, or stockade's own explanation.
    public var reason: String

    public init(decision: Decision, basis: Basis, ruleID: String? = nil, reason: String) {
        self.decision = decision
        self.basis = basis
        self.ruleID = ruleID
        self.reason = reason
    }

    /// One line for the agent and the log: "denied by rule no-push: git push needs approval".
    public var description: String {
        let verb: String
        switch decision {
        case .allow: verb = "allowed"
        case .deny: verb = "denied"
        case .ask: verb = "needs approval"
        }
        switch basis {
        case .rule, .invariant, .declassify:
            let kind = basis == .declassify ? "declassify rule" : basis.rawValue
            return "\(verb) by \(kind) \(ruleID ?? "?"): \(reason)"
        case .defaultDeny:
            return "\(verb) by default: \(reason)"
        case .malformed, .hidden, .protected:
            return "\(verb): \(reason)"
        }
    }
}

/// The validation layer: decides each action before it runs, and computes the label a
/// session carries after it.
///
/// Order: malformed actions are denied; then invariants (a `deny_flow` whose label the
/// session carries, or would carry after this very action, denies every action reaching
/// its sink; a `when` guard denies or asks); then `deny` rules, `ask` rules, `allow`
/// rules, and finally the default, deny. An invariant's `ask` turns an allow into an ask
/// and never loosens anything.
///
/// Pure and immutable: no I/O, safe to share between threads; a decision takes a few
/// microseconds.
public struct PolicyGuard: Sendable {
    /// The resolved policy (profile applied).
    public let policy: PolicyDocument
    let denyRules: [CompiledRule]
    let askRules: [CompiledRule]
    let allowRules: [CompiledRule]
    let invariants: [CompiledInvariant]
    let sources: [CompiledSource]
    let hidden: GlobSet
    let protected: GlobSet
    /// True when `exec` can reach the network.
    public let networkGranted: Bool
    /// True when `exec` can write the workspace.
    public let workspaceWritable: Bool
    let execSinks: Set<Sink>

    /// Compiles a policy. Takes the document as loaded and applies its profile.
    /// - Throws: `StockadeError` `.invalidPolicy` if a pattern does not compile (only
    ///   for documents built in code; the loader checks every pattern).
    public init(_ document: PolicyDocument) throws {
        let policy = document.resolved()
        self.policy = policy
        let rules = try policy.rules.map(CompiledRule.init)
        denyRules = rules.filter { $0.rule.decision == .deny }
        askRules = rules.filter { $0.rule.decision == .ask }
        allowRules = rules.filter { $0.rule.decision == .allow }
        networkGranted = policy.network?.grantsAccess ?? false
        workspaceWritable = !(policy.workspaceReadOnly ?? false)
        var execSinks: Set<Sink> = [.exec]
        if networkGranted { execSinks.insert(.network) }
        if workspaceWritable { execSinks.insert(.workspace) }
        self.execSinks = execSinks
        invariants = try policy.labels.invariants.map(CompiledInvariant.init)
        let hidden = try GlobSet(patterns: HiddenDefaults.patterns + policy.hiddenPatterns)
        self.hidden = hidden
        protected = try GlobSet(patterns: ProtectedDefaults.patterns + policy.protectedPatterns)
        sources = try policy.labels.sources.map { try CompiledSource($0, hidden: hidden) }
    }

    /// The decision for `action` in a session that carries `label`.
    public func decide(_ action: Action, label: SessionLabel = .initial) -> Verdict {
        let facts: ActionFacts
        switch ActionFacts.make(action) {
        case .success(let made): facts = made
        case .failure(let problem): return Verdict(decision: .deny, basis: .malformed, reason: problem.reason)
        }
        // Hidden and protected paths hold by construction, before any rule.
        if let path = facts.path, let relative = path.workspaceRelative {
            if hidden.matchesPathOrAnyParentComponents(relative, isDirectory: facts.isDirectory) {
                return Verdict(decision: .deny, basis: .hidden, ruleID: nil, reason: "\(path.text.printableForMessages) is hidden by the policy (filesystem.hidden): it does not exist for the sandbox")
            }
            if action.tool == .writeFile && (!workspaceWritable || protected.matchesPathOrAnyParentComponents(relative, isDirectory: false)) {
                let why = workspaceWritable ? "protected by the policy (filesystem.protected)" : "in a read-only workspace"
                return Verdict(decision: .deny, basis: .protected, ruleID: nil, reason: "\(path.text.printableForMessages) is \(why): it cannot be written")
            }
        }
        if case .declassify(let id) = action {
            guard let rule = policy.labels.declassify.first(where: { $0.id == id }) else {
                return Verdict(decision: .deny, basis: .malformed, reason: "there is no declassify rule '\(id.printableForMessages)' in the policy")
            }
            return Verdict(decision: .ask, basis: .declassify, ruleID: id, reason: rule.reason ?? "clearing the label '\(rule.clears)' needs approval")
        }

        // An exec both reads and sends within one action: it is judged with the labels
        // it would add, so that a program cannot read a secret and send it in one go.
        let effective = action.tool == .exec ? label.raising(raisedLabels(facts)) : label
        let sinks = self.sinks(of: action.tool)
        var invariantAsk: Verdict?
        for invariant in invariants {
            switch invariant.invariant.kind {
            case .denyFlow(let from, let to):
                if effective.contains(from) && sinks.contains(to) {
                    let reason = invariant.invariant.reason ?? "the session carries '\(from)' data, which must not flow to \(to)"
                    return Verdict(decision: .deny, basis: .invariant, ruleID: invariant.invariant.id, reason: reason)
                }
            case .guarded(let when, _, _, let decision):
                guard effective.contains(when), invariant.matches(facts) else { continue }
                let reason = invariant.invariant.reason ?? "the session carries '\(when)' data"
                let verdict = Verdict(decision: decision, basis: .invariant, ruleID: invariant.invariant.id, reason: reason)
                if decision == .deny { return verdict }
                if invariantAsk == nil { invariantAsk = verdict }
            }
        }
        let verdict = ruleVerdict(facts)
        if verdict.decision == .allow, let invariantAsk { return invariantAsk }
        return verdict
    }

    /// The decision of the rules alone: deny, ask, allow, default deny.
    func ruleVerdict(_ facts: ActionFacts) -> Verdict {
        if let rule = denyRules.first(where: { $0.matches(facts) }) { return rule.verdict }
        if let rule = askRules.first(where: { $0.matches(facts) }) { return rule.verdict }
        if let rule = allowRules.first(where: { $0.matches(facts) }) { return rule.verdict }
        return Verdict(decision: .deny, basis: .defaultDeny, reason: "no rule allows \(facts.tool) \(facts.summary)")
    }

    /// The invariant that forbids the network to a session carrying `label`, if any:
    /// what the egress proxy asks before each connection of a program that was started
    /// before the session took the label on.
    public func networkBlock(label: SessionLabel) -> Verdict? {
        for invariant in invariants {
            guard case .denyFlow(let from, let to) = invariant.invariant.kind, to == .network, label.contains(from) else { continue }
            let reason = invariant.invariant.reason ?? "the session carries '\(from)' data, which must not flow to the network"
            return Verdict(decision: .deny, basis: .invariant, ruleID: invariant.invariant.id, reason: reason)
        }
        return nil
    }

    /// The label a session carries after `action` ran.
    public func label(after action: Action, from label: SessionLabel) -> SessionLabel {
        guard case .success(let facts) = ActionFacts.make(action) else { return label }
        return label.raising(raisedLabels(facts))
    }

    /// The label after an approved `declassify` action; unchanged for anything else.
    public func label(afterApproved action: Action, from label: SessionLabel) -> SessionLabel {
        guard case .declassify(let id) = action, let rule = policy.labels.declassify.first(where: { $0.id == id }) else {
            return self.label(after: action, from: label)
        }
        return label.lowering(rule.clears)
    }

    /// Where an action of `tool` can send data.
    public func sinks(of tool: Tool) -> Set<Sink> {
        switch tool {
        case .http: return Self.networkSink
        case .writeFile: return Self.workspaceSink
        case .exec: return execSinks
        case .readFile, .listFiles, .declassify: return Self.noSink
        }
    }

    private static let networkSink: Set<Sink> = [.network]
    private static let workspaceSink: Set<Sink> = [.workspace]
    private static let noSink: Set<Sink> = []

    func raisedLabels(_ facts: ActionFacts) -> SessionLabel {
        var raised = SessionLabel.initial
        for source in sources where !raised.contains(source.source.raises) {
            if source.applies(to: facts, networkGranted: networkGranted) { raised = raised.raising(SessionLabel(bits: SessionLabel.bitOf(source.source.raises), ())) }
        }
        return raised
    }
}
