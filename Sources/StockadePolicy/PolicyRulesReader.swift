import StockadeCore
import Yams

/// The decoders of `rules`, `labels` and the argument conditions they share.
extension PolicyReader {
    static let ruleKeys = ["id", "tool", "where", "decision", "reason"]
    static let conditionKeys = ["command", "argv", "path", "host", "method", "url_path"]
    static let argvKeys = ["prefix", "contains", "exact"]
    static let labelKeys = ["sources", "invariants", "declassify"]
    static let sourceKeys = ["tool", "where", "path", "host", "confidentiality", "integrity"]
    static let invariantKeys = ["id", "deny_flow", "when", "tool", "where", "decision", "reason"]
    static let flowKeys = ["from", "to"]
    static let declassifyKeys = ["id", "clears", "reason"]

    // MARK: rules

    func readRules(_ node: Node) throws -> [Rule] {
        var rules: [Rule] = []
        var seen: [String: Node] = [:]
        let example = "[{id: no-push, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask}]"
        for (index, item) in try items(of: node, at: "rules", example: example).enumerated() {
            let keyPath = "rules[\(index)]"
            let fields = try entries(of: item, at: keyPath, allowed: Self.ruleKeys, example: "{id: no-push, tool: exec, decision: deny}")
            let id = try identifier(in: fields, of: item, at: keyPath, seen: &seen, kind: "rule")
            let tools = try toolList(fields.first { $0.key == "tool" })
            let conditions = try fields.first { $0.key == "where" }.map { try readConditions($0.value, at: $0.keyPath, tools: tools, tag: "rule '\(id)'") } ?? Conditions()
            guard let decisionField = fields.first(where: { $0.key == "decision" }) else {
                throw error(at: item, "'\(keyPath)' (rule '\(id)') needs a 'decision': allow, deny or ask")
            }
            let decision = Decision(rawValue: try choice(decisionField, Decision.allCases.map(\.rawValue)))!
            let reason = try fields.first { $0.key == "reason" }.map { try plainText($0) }
            rules.append(Rule(id: id, tools: tools, conditions: conditions, decision: decision, reason: reason))
        }
        return rules
    }

    /// `id:`, required, unique within its list, of letters, digits, `.`, `_` and `-`.
    private func identifier(in fields: [Entry], of item: Node, at keyPath: String, seen: inout [String: Node], kind: String) throws -> String {
        guard let field = fields.first(where: { $0.key == "id" }) else {
            throw error(at: item, "'\(keyPath)' needs an 'id', a short name such as no-push that denials and the audit log quote")
        }
        let id = try text(of: field.value, at: field.keyPath, expected: "a name such as no-push")
        let valid = !id.isEmpty && id.count <= 64 && id.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == "."
        }
        guard valid, !isNull(field.value) else {
            throw error(at: field.value, "'\(field.keyPath)' must be a name of letters, digits, '.', '_' and '-' (at most 64), got \(describe(field.value))")
        }
        if let first = seen[id] {
            throw error(at: field.value, "\(kind) id '\(id)' is used twice (first at line \(first.mark?.line ?? 0)); ids must be unique")
        }
        seen[id] = field.value
        return id
    }

    /// `tool: exec` or `tool: [read_file, write_file]`; absent means every tool.
    private func toolList(_ field: Entry?) throws -> [Tool] {
        guard let field, !isNull(field.value) else { return [] }
        let names = Tool.allCases.filter { $0 != .declassify }.map(\.rawValue) + Tool.aliases.keys.sorted()
        return try stringList(field.value, at: field.keyPath, example: "exec or [read_file, write_file]").map { name, node in
            guard let tool = Tool(policyName: name) else {
                throw error(at: node, "'\(field.keyPath)' names an unknown tool '\(name.printableForMessages)'; expected one of: \(names.joined(separator: ", "))")
            }
            guard tool != .declassify else {
                throw error(at: node, "'\(field.keyPath)' cannot be declassify: lowering a label always asks for approval, and is granted only by an entry of labels.declassify")
            }
            return tool
        }
    }

    // MARK: conditions

    /// Reads `where:`. Every key must be one that the rule's tools carry: a condition on
    /// an argument no matching action has could never hold, which in a `deny` rule
    /// would quietly deny nothing.
    func readConditions(_ node: Node, at keyPath: String, tools: [Tool], tag: String) throws -> Conditions {
        var conditions = Conditions()
        let fields = try entries(of: node, at: keyPath, allowed: Self.conditionKeys, example: "{argv: {prefix: [git, push]}}")
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "command":
                conditions.command = try argumentPatterns(field.value, at: field.keyPath)
            case "argv":
                let argv = try entries(of: field.value, at: field.keyPath, allowed: Self.argvKeys, example: "{prefix: [git, push]}")
                for part in argv where !isNull(part.value) {
                    let patterns = try argumentPatterns(part.value, at: part.keyPath)
                    guard !patterns.isEmpty else {
                        throw error(at: part.value, "'\(part.keyPath)' must list at least one argument pattern, as in [git, push]")
                    }
                    switch part.key {
                    case "prefix": conditions.argvPrefix = patterns
                    case "contains": conditions.argvContains = patterns
                    default: conditions.argvExact = patterns
                    }
                }
            case "path":
                conditions.paths = try stringList(field.value, at: field.keyPath, example: "\"secrets/**\"").map { pattern, node in
                    try checkPathGlob(pattern, node: node, at: field.keyPath)
                    return pattern
                }
            case "host":
                conditions.hosts = try stringList(field.value, at: field.keyPath, example: "\"*.github.com\"").map { host, node in
                    try hostPattern(host, node: node, at: field.keyPath)
                }
            case "method":
                conditions.methods = try httpMethods(field)
            case "url_path":
                conditions.urlPaths = try stringList(field.value, at: field.keyPath, example: "\"/simple/**\"").map { pattern, node in
                    guard pattern.hasPrefix("/") else {
                        throw error(at: node, "'\(field.keyPath)' must be a URL path glob starting with '/', such as \"/simple/**\", got \(describe(node))")
                    }
                    try checkPathGlob(pattern, node: node, at: field.keyPath)
                    return pattern
                }
            default: break
            }
        }
        let toolsGiven = tools.isEmpty ? Set(Tool.allCases).subtracting([.declassify]) : Set(tools)
        let carrying = conditions.toolsCarryingArguments
        if conditions.toolsCarryingArguments.isEmpty {
            throw error(at: node, "'\(keyPath)' of \(tag) mixes conditions that no single tool's actions carry (exec has command and argv, file tools have path, http has host, method and url_path); split it into separate rules")
        }
        if !tools.isEmpty, let stray = toolsGiven.subtracting(carrying).sorted(by: { $0.rawValue < $1.rawValue }).first {
            throw error(at: node, "'\(keyPath)' of \(tag) has conditions that \(stray) actions do not carry, so it could never apply to them; remove \(stray) from 'tool' or the condition")
        }
        return conditions
    }

    /// Patterns of single arguments: `*`, `?` and `[...]` as in globs, over the whole
    /// argument (a `/` in it is an ordinary character).
    private func argumentPatterns(_ node: Node, at keyPath: String) throws -> [String] {
        try stringList(node, at: keyPath, example: "[git, push]").map { pattern, item in
            if case .failure(let error) = ArgumentPattern.compile(pattern) {
                throw self.error(at: item, "'\(keyPath)' has an invalid pattern '\(pattern.printableForMessages)': \(error.reason). \(error.hint)")
            }
            return pattern
        }
    }

    private func checkPathGlob(_ pattern: String, node: Node, at keyPath: String) throws {
        do {
            _ = try Glob(compiling: pattern)
        } catch {
            throw self.error(at: node, "'\(keyPath)' is not a valid glob, got '\(pattern.printableForMessages)': \(error.reason). \(error.hint)")
        }
    }

    /// A host name, `*.` and a name, or a literal IPv4 or bracket-less IPv6 address;
    /// returned in lower case.
    func hostPattern(_ host: String, node: Node, at keyPath: String) throws -> String {
        var lowered = host.lowercased()
        if lowered.hasSuffix(".") { lowered.removeLast() }
        guard HostPattern(lowered) != nil else {
            throw error(at: node, "'\(keyPath)' must be a host name such as pypi.org or *.pythonhosted.org, or an IP address, got \(describe(node))")
        }
        return lowered
    }

    // MARK: labels

    func readLabels(_ node: Node) throws -> LabelPolicy {
        var labels = LabelPolicy()
        let fields = try entries(of: node, at: "labels", allowed: Self.labelKeys, example: "{sources: [{tool: http, integrity: untrusted}]}")
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "sources":
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[{tool: http, integrity: untrusted}]").enumerated() {
                    labels.sources.append(try readSource(item, at: "\(field.keyPath)[\(index)]"))
                }
            case "invariants":
                var seen: [String: Node] = [:]
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[{id: no-secret-egress, deny_flow: {from: secret, to: network}}]").enumerated() {
                    labels.invariants.append(try readInvariant(item, at: "\(field.keyPath)[\(index)]", seen: &seen))
                }
            case "declassify":
                var seen: [String: Node] = [:]
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[{id: publish, clears: secret}]").enumerated() {
                    let keyPath = "\(field.keyPath)[\(index)]"
                    let entries = try entries(of: item, at: keyPath, allowed: Self.declassifyKeys, example: "{id: publish, clears: secret}")
                    let id = try identifier(in: entries, of: item, at: keyPath, seen: &seen, kind: "declassify rule")
                    guard let clears = entries.first(where: { $0.key == "clears" }) else {
                        throw error(at: item, "'\(keyPath)' needs 'clears': secret or untrusted, the label it lowers")
                    }
                    let label = Label(rawValue: try choice(clears, Label.allCases.map(\.rawValue)))!
                    let reason = try entries.first { $0.key == "reason" }.map { try plainText($0) }
                    labels.declassify.append(DeclassifyRule(id: id, clears: label, reason: reason))
                }
            default: break
            }
        }
        return labels
    }

    private func readSource(_ node: Node, at keyPath: String) throws -> LabelSource {
        let fields = try entries(of: node, at: keyPath, allowed: Self.sourceKeys, example: "{path: \"secrets/**\", confidentiality: secret}")
        let tools = try toolList(fields.first { $0.key == "tool" })
        var conditions = Conditions()
        if let whereField = fields.first(where: { $0.key == "where" }) {
            conditions = try readConditions(whereField.value, at: whereField.keyPath, tools: tools, tag: "this source")
        }
        // `path:` and `host:` directly in the source are short for the same under `where`.
        for field in fields where field.key == "path" || field.key == "host" {
            let shorthand = try readConditions(Node([(Node(field.key), field.value)]), at: keyPath, tools: tools, tag: "this source")
            if field.key == "path" { conditions.paths = (conditions.paths ?? []) + (shorthand.paths ?? []) }
            if field.key == "host" { conditions.hosts = (conditions.hosts ?? []) + (shorthand.hosts ?? []) }
        }
        let confidentiality = fields.first { $0.key == "confidentiality" }
        let integrity = fields.first { $0.key == "integrity" }
        let raises: Label
        switch (confidentiality, integrity) {
        case (let field?, nil):
            _ = try choice(field, ["secret"])
            raises = .secret
        case (nil, let field?):
            _ = try choice(field, ["untrusted"])
            raises = .untrusted
        case (.some, .some):
            throw error(at: node, "'\(keyPath)' gives both 'confidentiality' and 'integrity'; a source raises one label, so write two sources")
        case (nil, nil):
            throw error(at: node, "'\(keyPath)' must say which label it raises: 'confidentiality: secret' or 'integrity: untrusted'")
        }
        if tools.isEmpty && conditions.isEmpty {
            throw error(at: node, "'\(keyPath)' must say which actions it applies to, with 'tool', 'path', 'host' or 'where'")
        }
        return LabelSource(tools: tools, conditions: conditions, raises: raises)
    }

    private func readInvariant(_ node: Node, at keyPath: String, seen: inout [String: Node]) throws -> Invariant {
        let fields = try entries(of: node, at: keyPath, allowed: Self.invariantKeys, example: "{id: no-secret-egress, deny_flow: {from: secret, to: network}}")
        let id = try identifier(in: fields, of: node, at: keyPath, seen: &seen, kind: "invariant")
        let reason = try fields.first { $0.key == "reason" }.map { try plainText($0) }
        if let flow = fields.first(where: { $0.key == "deny_flow" }) {
            if let extra = fields.first(where: { ["when", "tool", "where", "decision"].contains($0.key) }) {
                throw error(at: extra.keyNode, "'\(keyPath)' has both 'deny_flow' and '\(extra.key)'; an invariant is either a deny_flow or a 'when' guard, so write two invariants")
            }
            let parts = try entries(of: flow.value, at: flow.keyPath, allowed: Self.flowKeys, example: "{from: secret, to: network}")
            guard let from = parts.first(where: { $0.key == "from" }), let to = parts.first(where: { $0.key == "to" }) else {
                throw error(at: flow.value, "'\(flow.keyPath)' needs 'from' (secret or untrusted) and 'to' (network, workspace or exec)")
            }
            let label = Label(rawValue: try choice(from, Label.allCases.map(\.rawValue)))!
            let sink = Sink(rawValue: try choice(to, Sink.allCases.map(\.rawValue)))!
            return Invariant(id: id, kind: .denyFlow(from: label, to: sink), reason: reason)
        }
        guard let when = fields.first(where: { $0.key == "when" }) else {
            throw error(at: node, "'\(keyPath)' needs either 'deny_flow: {from: ..., to: ...}' or 'when: secret|untrusted' with the actions it guards")
        }
        let label = Label(rawValue: try choice(when, Label.allCases.map(\.rawValue)))!
        let tools = try toolList(fields.first { $0.key == "tool" })
        let conditions = try fields.first { $0.key == "where" }.map { try readConditions($0.value, at: $0.keyPath, tools: tools, tag: "invariant '\(id)'") } ?? Conditions()
        guard let decisionField = fields.first(where: { $0.key == "decision" }) else {
            throw error(at: node, "'\(keyPath)' (invariant '\(id)') needs a 'decision': ask or deny")
        }
        let decision = Decision(rawValue: try choice(decisionField, ["ask", "deny"]))!
        if tools.isEmpty && conditions.isEmpty {
            throw error(at: node, "'\(keyPath)' (invariant '\(id)') must say which actions it guards, with 'tool' or 'where'")
        }
        return Invariant(id: id, kind: .guarded(when: label, tools: tools, conditions: conditions, decision: decision), reason: reason)
    }

    // MARK: helpers

    /// A scalar or a list of scalars, each with its node for messages.
    func stringList(_ node: Node, at keyPath: String, example: String) throws -> [(String, Node)] {
        if case .scalar = node, !isNull(node) {
            return [(try text(of: node, at: keyPath, expected: example), node)]
        }
        return try items(of: node, at: keyPath, example: "[\(example)]").enumerated().map { index, item in
            let value = try text(of: item, at: "\(keyPath)[\(index)]", expected: "a string such as \(example)")
            guard !isNull(item), !value.isEmpty else {
                throw error(at: item, "'\(keyPath)[\(index)]' is empty; write a value such as \(example)")
            }
            guard !value.unicodeScalars.contains("\0") else {
                throw error(at: item, "'\(keyPath)[\(index)]' contains a NUL byte")
            }
            return (value, item)
        }
    }

    /// `GET` or `[GET, HEAD]`: HTTP method names in capitals.
    func httpMethods(_ field: Entry) throws -> [String] {
        try stringList(field.value, at: field.keyPath, example: "[GET, HEAD]").map { method, node in
            guard !method.isEmpty, method.count <= 32, method.unicodeScalars.allSatisfy({ ("A"..."Z").contains($0) }) else {
                throw error(at: node, "'\(field.keyPath)' must be HTTP methods in capitals such as GET, got \(describe(node))")
            }
            return method
        }
    }

    /// A scalar that must be one of `choices`; returns it.
    func choice(_ field: Entry, _ choices: [String]) throws -> String {
        let value = try text(of: field.value, at: field.keyPath, expected: choices.joined(separator: ", "))
        guard choices.contains(value), !isNull(field.value) else {
            throw error(at: field.value, "'\(field.keyPath)' must be one of \(choices.joined(separator: ", ")), got \(describe(field.value))")
        }
        return value
    }

    /// A string value (quoted or not) without NUL bytes.
    func plainText(_ field: Entry) throws -> String {
        let value = try text(of: field.value, at: field.keyPath, expected: "a string")
        guard !isNull(field.value), !value.isEmpty else {
            throw error(at: field.value, "'\(field.keyPath)' is empty; write the text, or leave the key out")
        }
        guard !value.unicodeScalars.contains("\0") else {
            throw error(at: field.value, "'\(field.keyPath)' contains a NUL byte")
        }
        return value
    }
}
