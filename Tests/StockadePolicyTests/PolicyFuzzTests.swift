import StockadeCore
import Testing

@testable import StockadePolicy

/// Random and mutated YAML never crashes the loader: every input either loads or fails
/// with a `StockadeError` that starts with `file:line:column:`. A loaded document also
/// compiles into a guard, and the checker runs on it.
private let seeds = [
    """
    version: 1
    extends: networked
    isolation: {tier: auto, latency_budget: 300ms}
    toolset: [sh, ls, python]
    filesystem:
      workspace: {path: ., mode: rw}
      read_only: [/usr/share/zoneinfo]
      hidden: ["**/.env", "secrets/**"]
      protected: [Makefile]
    network: {mode: allowlist, allow: [pypi.org, {host: "*.pythonhosted.org", ports: [443], methods: [GET]}], max_bytes: 50MiB}
    limits: {wall: 30s, cpu: 10s, memory: 512MiB, pids: 64, output: 1MiB, file_size: 100MiB}
    secrets: {known: ["env:OPENAI_API_KEY", "file:~/.aws/credentials"], on_leak: redact}
    rules:
      - {id: no-push, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask}
      - {id: docs, tool: [read_file, write_file], where: {path: ["docs/**", "*.md"]}, decision: allow}
      - {id: api, tool: http, where: {host: "*.github.com", method: [GET], url_path: "/repos/**"}, decision: allow}
    labels:
      sources: [{tool: http, integrity: untrusted}, {path: "secrets/**", confidentiality: secret}]
      invariants:
        - {id: no-secret-egress, deny_flow: {from: secret, to: network}}
        - {id: push-after-untrusted, when: untrusted, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask}
      declassify: [{id: publish, clears: secret}]
    approval: {mode: command, command: [/usr/local/bin/approve], timeout: 2m}
    audit: {path: .stockade/audit.jsonl, checkpoint_every: 100}
    """,
    "version: 1\nlimits: {wall: 1s}\nenvironment: {set: {A: \"b\"}, pass: [HOME]}\n",
]

/// A small deterministic generator, so that a failure can be replayed from its seed.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private let fragments = [
    "{", "}", "[", "]", ":", ",", "-", " ", "\n", "  ", "'", "\"", "&a", "*a", "!!str", "!x", "<<:", "~", "null",
    "0", "-1", "1e9", "99999999999999999999", "ms", "MiB", "**", "*", "?", "\\", "/", "..", "\u{0}", "\u{7}", "é",
    "id", "tool", "where", "decision", "ask", "deny", "allow", "argv", "prefix", "path", "host", "method", "exec",
    "labels", "sources", "invariants", "deny_flow", "from", "to", "secret", "untrusted", "network", "rules",
    "toolset", "extends", "read-only", "version: 1", "version: 2", "#", "|", ">", "%YAML 1.2", "---", "...",
]

private func mutate(_ text: String, _ random: inout SplitMix) -> String {
    var scalars = Array(text.unicodeScalars)
    for _ in 0..<Int.random(in: 1...4, using: &random) {
        let position = scalars.isEmpty ? 0 : Int.random(in: 0..<scalars.count, using: &random)
        switch Int.random(in: 0..<4, using: &random) {
        case 0 where !scalars.isEmpty:
            scalars.remove(at: position)
        case 1:
            scalars.insert(contentsOf: fragments.randomElement(using: &random)!.unicodeScalars, at: position)
        case 2 where !scalars.isEmpty:
            let end = min(scalars.count, position + Int.random(in: 1...20, using: &random))
            scalars.removeSubrange(position..<end)
        default:
            let other = Array(seeds.randomElement(using: &random)!.unicodeScalars)
            let start = Int.random(in: 0..<other.count, using: &random)
            scalars.insert(contentsOf: other[start..<min(other.count, start + 40)], at: position)
        }
    }
    var result = String.UnicodeScalarView()
    result.append(contentsOf: scalars)
    return String(result)
}

private func exercise(_ text: String) -> String? {
    do {
        let document = try PolicyLoader.parse(text, sourcePath: "fuzz.yaml", baseDirectory: "/project")
        let policyGuard = try PolicyGuard(document)
        _ = policyGuard.decide(.exec(argv: ["git", "push"]))
        _ = policyGuard.decide(.readFile(path: "secrets/a"), label: SessionLabel([.secret]))
        _ = PolicyChecker(policyGuard).run()
        return nil
    } catch let error as StockadeError {
        // A clear error: positioned, and on one line.
        if !error.message.hasPrefix("fuzz.yaml:") { return "unpositioned error: \(error.message)" }
        if error.message.contains("\n") { return "multi-line error: \(error.message)" }
        return nil
    } catch {
        return "foreign error type: \(error)"
    }
}

@Test("mutated policies never crash the loader and always fail with a positioned error")
func mutatedPolicies() {
    var random = SplitMix(state: 0x5EED_5EED)
    var problems: [String] = []
    for iteration in 0..<4000 {
        let text = mutate(seeds[iteration % seeds.count], &random)
        if let problem = exercise(text) { problems.append("\(problem)\n--- input:\n\(text)") }
    }
    #expect(problems.isEmpty, "\(problems.prefix(3).joined(separator: "\n\n"))")
}

@Test("random bytes as a policy never crash the loader")
func randomPolicies() {
    var random = SplitMix(state: 0xF00D)
    var problems: [String] = []
    for _ in 0..<2000 {
        let length = Int.random(in: 0..<200, using: &random)
        let text = String((0..<length).map { _ in
            Int.random(in: 0..<3, using: &random) == 0
                ? Character(fragments.randomElement(using: &random)!.unicodeScalars.first ?? " ")
                : Character(Unicode.Scalar(UInt8.random(in: 0x20...0x7e, using: &random)))
        })
        if let problem = exercise(text) { problems.append("\(problem)\n--- input:\n\(text)") }
    }
    #expect(problems.isEmpty, "\(problems.prefix(3).joined(separator: "\n\n"))")
}

@Test("the fuzz seed is a valid policy whose guard and checker work")
func fuzzSeedIsValid() throws {
    let document = try PolicyLoader.parse(seeds[0], sourcePath: "fuzz.yaml", baseDirectory: "/project")
    #expect(document.rules.count == 3)
    #expect(document.labels.invariants.count == 2)
    #expect(document.network?.allow.count == 2)
}
