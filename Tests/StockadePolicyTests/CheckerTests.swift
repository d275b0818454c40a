import StockadeCore
import Testing

@testable import StockadePolicy

private func check(_ yaml: String) throws -> PolicyChecker.Report {
    let document = try PolicyLoader.parse(yaml, sourcePath: "policy.yaml", baseDirectory: "/project")
    return PolicyChecker(try PolicyGuard(document)).run()
}

private func kinds(_ report: PolicyChecker.Report) -> [PolicyChecker.Finding.Kind] {
    report.findings.map(\.kind)
}

@Test("the default policy is clean")
func defaultIsClean() throws {
    let report = try check("version: 1")
    #expect(report.isClean, "\(report.findings)")
    #expect(report.states.count == 1)
}

@Test("a clean networked policy: secrets hidden, invariant given, no exfiltrating tool")
func cleanNetworked() throws {
    let report = try check("""
        version: 1
        extends: networked
        toolset: [sh, ls, cat]
        filesystem: {hidden: [secrets]}
        labels:
          sources: [{path: "secrets/**", confidentiality: secret}]
          invariants: [{id: no-secret-egress, deny_flow: {from: secret, to: network}}]
        """)
    #expect(report.isClean, "\(report.findings)")
    // Public-untrusted is reachable (a fetch); secret is not (the files are hidden).
    #expect(report.states.map(\.labels) == [[], ["untrusted"]])
}

@Test("a planted flow is found, with the actions that reach it")
func plantedFlow() throws {
    let report = try check("""
        version: 1
        toolset: [sh, cat]
        network: {mode: allowlist, allow: [paste.example.com]}
        rules: [{id: fetch, tool: http, decision: allow}]
        labels:
          sources: [{tool: read_file, path: "notes/private/**", confidentiality: secret}]
        """)
    // A command can read the visible notes and send them in one action.
    let flow = try #require(report.findings.first { $0.kind == .unguardedFlow })
    #expect(flow.trace == ["exec sh → allow"], "\(flow.trace)")
    #expect(!report.isClean)
    // Without commands, the flow takes two steps: read, then fetch.
    let noExec = try check("""
        version: 1
        network: {mode: allowlist, allow: [paste.example.com]}
        rules: [{id: fetch, tool: http, decision: allow}, {id: allow-exec, tool: exec, decision: deny}]
        labels:
          sources: [{tool: read_file, path: "notes/private/**", confidentiality: secret}]
        """)
    let twoSteps = try #require(noExec.findings.first { $0.kind == .unguardedFlow })
    #expect(twoSteps.trace == ["read_file /workspace/notes/private/x → allow", "http GET https://example.com/ → allow"], "\(twoSteps.trace)")
}

@Test("the same flow with an invariant is clean, and the secret state is reachable")
func guardedFlow() throws {
    let report = try check("""
        version: 1
        network: {mode: allowlist, allow: [paste.example.com]}
        rules: [{id: fetch, tool: http, decision: allow}, {id: allow-exec, tool: exec, decision: deny}]
        labels:
          sources: [{tool: read_file, path: "notes/private/**", confidentiality: secret}]
          invariants: [{id: no-secret-egress, deny_flow: {from: secret, to: network}}]
        """)
    #expect(report.isClean, "\(report.findings)")
    #expect(report.states.contains { $0.labels == ["secret"] })
}

@Test("an invariant that denies every command from the start is reported")
func blocksEverything() throws {
    let report = try check("""
        version: 1
        extends: networked
        toolset: [sh]
        labels:
          sources: [{path: "secrets/**", confidentiality: secret}]
          invariants: [{id: no-secret-egress, deny_flow: {from: secret, to: network}}]
        """)
    let finding = try #require(report.findings.first { $0.kind == .blocksEverything })
    #expect(finding.message.contains("secrets/** is visible to commands"))
}

@Test("a rule shadowed by a broader denial never fires")
func neverFires() throws {
    let report = try check("""
        version: 1
        rules:
          - {id: no-git, tool: exec, where: {command: git}, decision: deny}
          - {id: git-status, tool: exec, where: {argv: {prefix: [git, status]}}, decision: allow}
        """)
    let finding = try #require(report.findings.first { $0.kind == .neverFires })
    #expect(finding.subjects == ["git-status", "no-git"])
}

@Test("a rule inside another of the same decision is redundant, not a finding")
func sameDecisionShadow() throws {
    let report = try check("""
        version: 1
        rules: [{id: docs, tool: write_file, where: {path: "docs/**"}, decision: allow}]
        """)
    #expect(report.isClean, "\(report.findings)")
}

@Test("http rules without a network and exec rules outside the toolset never fire")
func unreachableTools() throws {
    let report = try check("""
        version: 1
        toolset: [sh, ls]
        rules:
          - {id: fetch, tool: http, decision: allow}
          - {id: no-curl, tool: exec, where: {command: curl}, decision: ask}
        """)
    #expect(Set(report.findings.filter { $0.kind == .neverFires }.flatMap(\.subjects)) == ["fetch", "no-curl"])
}

@Test("rules with opposite decisions that cross are reported; a narrower exception is not")
func overlaps() throws {
    let crossing = try check("""
        version: 1
        extends: read-only
        rules:
          - {id: docs, tool: write_file, where: {path: "docs/**"}, decision: allow}
          - {id: no-markdown, tool: write_file, where: {path: "*.md"}, decision: deny}
        """)
    let finding = try #require(crossing.findings.first { $0.kind == .overlap })
    #expect(finding.message.contains("/workspace/docs/x.md"), "\(finding.message)")
    let nested = try check("""
        version: 1
        rules:
          - {id: no-push, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask}
          - {id: force, tool: exec, where: {argv: {prefix: [git, push], contains: ["--force"]}}, decision: deny}
        """)
    #expect(!nested.findings.contains { $0.kind == .overlap }, "\(nested.findings)")
}

@Test("interpreters and network clients in a networked toolset are over-permissive")
func overPermissive() throws {
    let report = try check("""
        version: 1
        extends: networked
        toolset: [sh, python3, ls]
        rules: [{id: allow-exec, tool: exec, where: {command: [sh, python3]}, decision: allow}]
        """)
    #expect(report.findings.filter { $0.kind == .overPermissiveTool }.map(\.subjects) == [["python3"]])
    let noToolset = try check("version: 1\nextends: networked")
    #expect(noToolset.findings.contains { $0.kind == .overPermissiveTool && $0.subjects == ["(no toolset)"] })
    let denied = try check("""
        version: 1
        extends: networked
        toolset: [sh, python3]
        rules: [{id: no-python, tool: exec, where: {command: python3}, decision: deny}]
        """)
    #expect(!denied.findings.contains { $0.kind == .overPermissiveTool })
}

@Test("a grant that limits methods on port 443 without CONNECT is reported as unusable over HTTPS")
func unusableGrant() throws {
    let report = try check("""
        version: 1
        network:
          mode: allowlist
          allow:
            - {host: api.github.com, methods: [GET]}
            - {host: plain.example.com, ports: [80], methods: [GET]}
            - {host: pypi.org, methods: [GET, CONNECT]}
        """)
    #expect(report.findings.filter { $0.kind == .unusableGrant }.map(\.subjects) == [["network.allow[0]"]], "\(report.findings)")
    #expect(!(try check("version: 1\nextends: networked")).findings.contains { $0.kind == .unusableGrant })
}
