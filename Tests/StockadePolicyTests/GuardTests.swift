import StockadeCore
import Testing

@testable import StockadePolicy

private func guardFor(_ yaml: String) throws -> PolicyGuard {
    try PolicyGuard(PolicyLoader.parse(yaml, sourcePath: "policy.yaml", baseDirectory: "/project"))
}

private func exec(_ argv: String...) -> Action { .exec(argv: argv) }

/// One row: a policy, an action, a label, and the decision with the id that made it.
struct DecisionCase: CustomTestStringConvertible, Sendable {
    let label: String
    let policy: String
    let action: Action
    var session: Set<Label> = []
    let decision: Decision
    let ruleID: String?
    var testDescription: String { label }
}

private let gitPolicy = """
    version: 1
    rules:
      - {id: no-push, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask, reason: git push needs approval}
      - {id: no-curl, tool: exec, where: {command: [curl, wget]}, decision: deny}
      - {id: no-force, tool: exec, where: {argv: {contains: ["--force*"]}}, decision: deny}
      - {id: only-ls-root, tool: exec, where: {argv: {exact: [ls, /]}}, decision: ask}
      - {id: no-secrets, tool: [read_file, list_files], where: {path: "secrets/**"}, decision: deny}
      - {id: no-etc-write, tool: write_file, where: {path: "/etc/**"}, decision: deny}
      - {id: pypi, tool: http, where: {host: ["pypi.org", "*.pythonhosted.org"], method: [GET]}, decision: allow}
      - {id: no-admin, tool: http, where: {url_path: "/admin/**"}, decision: deny}
      - {id: api-by-host, where: {host: api.example.com}, decision: allow}
    """

private let labelPolicy = """
    version: 1
    network: {mode: allowlist, allow: [pypi.org]}
    rules:
      - {id: fetch, tool: http, decision: allow}
    labels:
      sources:
        - {path: "secrets/**", confidentiality: secret}
        - {tool: http, integrity: untrusted}
      invariants:
        - {id: no-secret-egress, deny_flow: {from: secret, to: network}}
        - {id: push-after-untrusted, when: untrusted, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask}
      declassify:
        - {id: publish, clears: secret, reason: the report is public}
    """

private let hiddenLabelPolicy = labelPolicy.replacingOccurrences(of: "version: 1\n", with: "version: 1\nfilesystem: {hidden: [secrets]}\n")

let decisionCases: [DecisionCase] = [
    // The default profile (workspace-write) and its rules.
    DecisionCase(label: "default profile runs commands", policy: "version: 1", action: exec("make", "test"), decision: .allow, ruleID: "allow-exec"),
    DecisionCase(label: "default profile writes files", policy: "version: 1", action: .writeFile(path: "a.txt"), decision: .allow, ruleID: "allow-write"),
    DecisionCase(label: "default profile has no http rule", policy: "version: 1", action: .http(method: "GET", url: "https://pypi.org/"), decision: .deny, ruleID: nil),
    DecisionCase(label: "read-only profile denies writes by default", policy: "version: 1\nextends: read-only", action: .writeFile(path: "a.txt"), decision: .deny, ruleID: nil),
    DecisionCase(label: "read-only profile still reads", policy: "version: 1\nextends: read-only", action: .readFile(path: "a.txt"), decision: .allow, ruleID: "allow-read"),
    DecisionCase(label: "a rule with a profile rule's id replaces it", policy: "version: 1\nrules: [{id: allow-exec, tool: exec, where: {command: git}, decision: allow}]", action: exec("rm", "-rf", "/"), decision: .deny, ruleID: nil),
    DecisionCase(label: "networked profile fetches from registries", policy: "version: 1\nextends: networked", action: .http(method: "GET", url: "https://pypi.org/simple/"), decision: .allow, ruleID: "allow-http"),
    DecisionCase(label: "networked profile: only the registries", policy: "version: 1\nextends: networked", action: .http(method: "GET", url: "https://evil.example/upload"), decision: .deny, ruleID: nil),
    DecisionCase(label: "networked profile: no POST", policy: "version: 1\nextends: networked", action: .http(method: "POST", url: "https://pypi.org/"), decision: .deny, ruleID: nil),

    // exec conditions.
    DecisionCase(label: "argv prefix asks", policy: gitPolicy, action: exec("git", "push", "origin"), decision: .ask, ruleID: "no-push"),
    DecisionCase(label: "argv prefix by program path", policy: gitPolicy, action: exec("/usr/bin/git", "push"), decision: .ask, ruleID: "no-push"),
    DecisionCase(label: "argv prefix does not match other subcommands", policy: gitPolicy, action: exec("git", "status"), decision: .allow, ruleID: "allow-exec"),
    DecisionCase(label: "command list denies", policy: gitPolicy, action: exec("/usr/bin/wget", "x"), decision: .deny, ruleID: "no-curl"),
    DecisionCase(label: "contains pattern denies", policy: gitPolicy, action: exec("git", "push", "--force-with-lease"), decision: .deny, ruleID: "no-force"),
    DecisionCase(label: "deny beats ask", policy: gitPolicy, action: exec("git", "push", "--force"), decision: .deny, ruleID: "no-force"),
    DecisionCase(label: "exact needs the whole argv", policy: gitPolicy, action: exec("ls", "/", "-l"), decision: .allow, ruleID: "allow-exec"),
    DecisionCase(label: "exact matches", policy: gitPolicy, action: exec("ls", "/"), decision: .ask, ruleID: "only-ls-root"),
    DecisionCase(label: "an empty command is malformed", policy: gitPolicy, action: .exec(argv: []), decision: .deny, ruleID: nil),
    DecisionCase(label: "a NUL in an argument is malformed", policy: gitPolicy, action: exec("ls", "a\0b"), decision: .deny, ruleID: nil),

    // Paths: relative to the workspace, normalized, parents count.
    DecisionCase(label: "path below a denied directory", policy: gitPolicy, action: .readFile(path: "secrets/db/key"), decision: .deny, ruleID: "no-secrets"),
    DecisionCase(label: "absolute workspace path", policy: gitPolicy, action: .readFile(path: "/workspace/secrets/key"), decision: .deny, ruleID: "no-secrets"),
    DecisionCase(label: "dot-dot does not escape a rule", policy: gitPolicy, action: .readFile(path: "docs/../secrets/key"), decision: .deny, ruleID: "no-secrets"),
    DecisionCase(label: "dot-dot from the root stays at the root", policy: gitPolicy, action: .writeFile(path: "/../../etc/passwd"), decision: .deny, ruleID: "no-etc-write"),
    DecisionCase(label: "a sibling with a longer name is not below", policy: gitPolicy, action: .readFile(path: "secrets-public/a"), decision: .allow, ruleID: "allow-read"),
    DecisionCase(label: "listing the denied directory", policy: gitPolicy, action: .listFiles(path: "secrets"), decision: .deny, ruleID: "no-secrets"),

    // Hidden and protected paths hold before any rule.
    DecisionCase(label: "a hidden file cannot be read, whatever the rules", policy: "version: 1\nrules: [{id: env, tool: read_file, where: {path: .env}, decision: allow}]", action: .readFile(path: "app/.env"), decision: .deny, ruleID: nil),
    DecisionCase(label: "inside a hidden directory", policy: "version: 1\nfilesystem: {hidden: [secrets]}", action: .listFiles(path: "secrets/sub"), decision: .deny, ruleID: nil),
    DecisionCase(label: "git hooks cannot be written", policy: "version: 1", action: .writeFile(path: ".git/hooks/pre-commit"), decision: .deny, ruleID: nil),
    DecisionCase(label: "editor settings cannot be written", policy: "version: 1", action: .writeFile(path: "/workspace/.vscode/tasks.json"), decision: .deny, ruleID: nil),
    DecisionCase(label: "a policy's protected paths add to the defaults", policy: "version: 1\nfilesystem: {protected: [Makefile]}", action: .writeFile(path: "sub/Makefile"), decision: .deny, ruleID: nil),
    DecisionCase(label: "protected files can still be read", policy: "version: 1", action: .readFile(path: ".git/config"), decision: .allow, ruleID: "allow-read"),
    DecisionCase(label: "a read-only workspace is not written, whatever the rules", policy: "version: 1\nfilesystem: {workspace: {mode: ro}}", action: .writeFile(path: "a.txt"), decision: .deny, ruleID: nil),

    // http: hosts, methods, URL paths.
    DecisionCase(label: "allowed host and method", policy: gitPolicy, action: .http(method: "GET", url: "https://files.pythonhosted.org/x.whl"), decision: .allow, ruleID: "pypi"),
    DecisionCase(label: "host names are case-insensitive", policy: gitPolicy, action: .http(method: "GET", url: "https://PyPI.org./simple/"), decision: .allow, ruleID: "pypi"),
    DecisionCase(label: "a wildcard does not match the apex", policy: gitPolicy, action: .http(method: "GET", url: "https://pythonhosted.org/"), decision: .deny, ruleID: nil),
    DecisionCase(label: "a look-alike suffix is not below", policy: gitPolicy, action: .http(method: "GET", url: "https://evilpythonhosted.org/"), decision: .deny, ruleID: nil),
    DecisionCase(label: "the method is a condition", policy: gitPolicy, action: .http(method: "POST", url: "https://pypi.org/"), decision: .deny, ruleID: nil),
    DecisionCase(label: "user information before the host is malformed", policy: gitPolicy, action: .http(method: "GET", url: "https://pypi.org@evil.example/"), decision: .deny, ruleID: nil),
    DecisionCase(label: "percent-encoding does not dodge a path rule", policy: gitPolicy, action: .http(method: "GET", url: "https://pypi.org/%61dmin/users"), decision: .deny, ruleID: "no-admin"),
    DecisionCase(label: "not http(s)", policy: gitPolicy, action: .http(method: "GET", url: "file:///etc/passwd"), decision: .deny, ruleID: nil),

    // The fail-open trap: a condition on an argument the action does not carry is false.
    DecisionCase(label: "a host condition never allows an exec", policy: "version: 1\nrules: [{id: allow-exec, where: {host: api.example.com}, decision: allow}]", action: exec("true", "api.example.com"), decision: .deny, ruleID: nil),
    DecisionCase(label: "a host condition never allows a file read", policy: "version: 1\nextends: read-only\nrules: [{id: allow-read, where: {host: api.example.com}, decision: allow}]", action: .readFile(path: "api.example.com"), decision: .deny, ruleID: nil),
    DecisionCase(label: "a path condition never allows an http call", policy: "version: 1\nrules: [{id: docs, where: {path: \"docs/**\"}, decision: allow}]", action: .http(method: "GET", url: "https://example.com/docs/a"), decision: .deny, ruleID: nil),
    DecisionCase(label: "the rule without a tool applies where its conditions fit", policy: gitPolicy, action: .http(method: "GET", url: "https://api.example.com/v1"), decision: .allow, ruleID: "api-by-host"),

    // Labels and invariants.
    DecisionCase(label: "a fresh session may fetch", policy: labelPolicy, action: .http(method: "GET", url: "https://pypi.org/"), decision: .allow, ruleID: "fetch"),
    DecisionCase(label: "after a secret, no fetch", policy: labelPolicy, action: .http(method: "GET", url: "https://pypi.org/"), session: [.secret], decision: .deny, ruleID: "no-secret-egress"),
    DecisionCase(label: "a command with the network and a visible secret is a flow in one action", policy: labelPolicy, action: exec("python3", "x.py"), decision: .deny, ruleID: "no-secret-egress"),
    DecisionCase(label: "with the secret hidden, commands run", policy: hiddenLabelPolicy, action: exec("python3", "x.py"), decision: .allow, ruleID: "allow-exec"),
    DecisionCase(label: "reading a secret file is itself allowed", policy: labelPolicy, action: .readFile(path: "secrets/key"), decision: .allow, ruleID: "allow-read"),
    DecisionCase(label: "after untrusted input, git push needs approval", policy: hiddenLabelPolicy, action: exec("git", "push"), session: [.untrusted], decision: .ask, ruleID: "push-after-untrusted"),
    DecisionCase(label: "a command that can fetch is untrusted input in itself", policy: hiddenLabelPolicy, action: exec("git", "push"), decision: .ask, ruleID: "push-after-untrusted"),
    DecisionCase(label: "a guard invariant does not fire without its label", policy: hiddenLabelPolicy.replacingOccurrences(of: "network: {mode: allowlist, allow: [pypi.org]}", with: "network: none"), action: exec("git", "push"), decision: .allow, ruleID: "allow-exec"),
    DecisionCase(label: "declassify always asks", policy: labelPolicy, action: .declassify(rule: "publish"), session: [.secret], decision: .ask, ruleID: "publish"),
    DecisionCase(label: "an unknown declassify rule is denied", policy: labelPolicy, action: .declassify(rule: "everything"), session: [.secret], decision: .deny, ruleID: nil),
]

@Test("decision table", arguments: decisionCases)
func decisionTable(_ row: DecisionCase) throws {
    let verdict = try guardFor(row.policy).decide(row.action, label: SessionLabel(row.session))
    #expect(verdict.decision == row.decision, "\(verdict)")
    #expect(verdict.ruleID == row.ruleID, "\(verdict)")
}

@Test("a guard invariant with the network: git push is an egress once a secret is visible")
func pushIsEgress() throws {
    // The secret file is hidden, but the session has already read a secret: a command
    // that can reach the network is an egress.
    let verdict = try guardFor(hiddenLabelPolicy).decide(exec("git", "push"), label: SessionLabel([.secret]))
    #expect(verdict.decision == .deny)
    #expect(verdict.ruleID == "no-secret-egress")
    #expect(verdict.description.hasPrefix("denied by invariant no-secret-egress:"))
}

@Test("labels only rise, and an approved declassify lowers exactly its label")
func labelsRise() throws {
    let policyGuard = try guardFor(labelPolicy)
    var label = SessionLabel.initial
    label = policyGuard.label(after: .readFile(path: "docs/readme"), from: label)
    #expect(label == .initial)
    label = policyGuard.label(after: .readFile(path: "/workspace/secrets/../secrets/key"), from: label)
    #expect(label.contains(.secret))
    label = policyGuard.label(after: .http(method: "GET", url: "https://pypi.org/"), from: label)
    #expect(label == SessionLabel([.secret, .untrusted]))
    // Nothing else lowers it: reading public files, or a declassify that was not approved.
    label = policyGuard.label(after: .readFile(path: "docs/readme"), from: label)
    label = policyGuard.label(after: .declassify(rule: "publish"), from: label)
    #expect(label == SessionLabel([.secret, .untrusted]))
    label = policyGuard.label(afterApproved: .declassify(rule: "publish"), from: label)
    #expect(label == SessionLabel([.untrusted]))
}

@Test("a command raises what it could read or fetch")
func execRaises() throws {
    let visible = try guardFor(labelPolicy)
    #expect(visible.label(after: exec("ls"), from: .initial) == SessionLabel([.secret, .untrusted]))
    let hidden = try guardFor(hiddenLabelPolicy)
    #expect(hidden.label(after: exec("ls"), from: .initial) == SessionLabel([.untrusted]))
    let offline = try guardFor(hiddenLabelPolicy.replacingOccurrences(of: "network: {mode: allowlist, allow: [pypi.org]}", with: "network: none"))
    #expect(offline.label(after: exec("ls"), from: .initial) == .initial)
}

@Test("an approval is bound to the exact action and used once")
func approvalBinding() {
    let ledger = ApprovalLedger()
    let push = Action.exec(argv: ["git", "push", "origin", "main"])
    ledger.grant(push)
    // Replayed for a different action: refused.
    #expect(!ledger.consume(.exec(argv: ["git", "push", "evil", "main"])))
    #expect(!ledger.consume(.exec(argv: ["git", "push", "origin", "main", "--force"])))
    #expect(!ledger.consume(.exec(argv: ["git", "push", "origin main"])))
    // Used for the approved one, once.
    #expect(ledger.consume(push))
    #expect(!ledger.consume(push))
}

@Test("action digests are canonical: equal actions, equal digests; any change, another")
func digests() {
    let a = Action.exec(argv: ["git", "push"])
    #expect(a.digest == Action.exec(argv: ["git", "push"]).digest)
    #expect(a.digest != Action.exec(argv: ["git push"]).digest)
    #expect(a.digest != Action.exec(argv: ["git", "push"], workingDirectory: "/workspace").digest)
    #expect(Action.readFile(path: "a").digest != Action.writeFile(path: "a").digest)
    #expect(a.digest.count == 64)
}

@Test("the unattended approver denies")
func unattended() {
    let request = ApprovalRequest(action: .exec(argv: ["git", "push"]), verdict: Verdict(decision: .ask, basis: .rule, ruleID: "r", reason: "x"), label: .initial)
    #expect(!UnattendedApprover().review(request, timeout: .seconds(1)).isApproved)
}
