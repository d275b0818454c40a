import StockadeCore
import StockadePolicy
import Testing

/// One invalid policy: where the error must point and what the message must say.
struct PolicyErrorCase: CustomTestStringConvertible, Sendable {
    let label: String
    let yaml: String
    /// "line:column" that must follow "policy.yaml:".
    let position: String
    /// Fragments the message must contain (the key, what was expected).
    let fragments: [String]

    var testDescription: String { label }
}

let policyErrorCases: [PolicyErrorCase] = [
    // Structure.
    PolicyErrorCase(
        label: "empty file", yaml: "# nothing here\n", position: "1:1",
        fragments: ["the policy is empty", "version: 1"]),
    PolicyErrorCase(
        label: "top level is a list", yaml: "- version: 1\n", position: "1:1",
        fragments: ["the policy must be a mapping", "got a list"]),
    PolicyErrorCase(
        label: "top level is a string", yaml: "hello\n", position: "1:1",
        fragments: ["the policy must be a mapping", "got 'hello'"]),
    PolicyErrorCase(
        label: "missing version", yaml: "limits: {wall: 1s}\n", position: "1:1",
        fragments: ["missing required key 'version'"]),
    PolicyErrorCase(
        label: "version 2", yaml: "version: 2\n", position: "1:10",
        fragments: ["'version' must be 1, got '2'"]),
    PolicyErrorCase(
        label: "version 1.0", yaml: "version: 1.0\n", position: "1:10",
        fragments: ["'version' must be 1, got '1.0'"]),
    PolicyErrorCase(
        label: "version is a list", yaml: "version: [1]\n", position: "1:10",
        fragments: ["'version' must be 1, got a list"]),
    PolicyErrorCase(
        label: "unknown top-level key", yaml: "version: 1\nnetwrok: none\n", position: "2:1",
        fragments: ["unknown key 'netwrok' at the top level", "expected one of: version, extends, isolation, toolset, filesystem"]),
    PolicyErrorCase(
        label: "empty toolset", yaml: "version: 1\ntoolset: []\n", position: "2:10",
        fragments: ["'toolset' is empty"]),
    PolicyErrorCase(
        label: "unknown key holding an anchor", yaml: "version: 1\nbase: &b {wall: 1s}\n", position: "2:1",
        fragments: ["unknown key 'base' at the top level"]),
    PolicyErrorCase(
        label: "YAML merge key in limits", yaml: "version: 1\nlimits:\n  <<: {wall: 1s}\n", position: "3:3",
        fragments: ["merge keys", "'limits'"]),
    PolicyErrorCase(
        label: "key that is a list", yaml: "version: 1\n? [a, b]\n: c\n", position: "2:3",
        fragments: ["keys at the top level must be plain names, got a list"]),
    PolicyErrorCase(
        label: "duplicate key found by Yams", yaml: "version: 1\nlimits:\n  wall: 1s\n  cpu: 1s\n  wall: 2s\n", position: "3:3",
        fragments: ["key 'wall' appears more than once"]),
    PolicyErrorCase(
        label: "duplicate key Yams lets through (bool vs string)",
        yaml: "version: 1\nenvironment:\n  set:\n    ON: \"1\"\n    \"ON\": \"2\"\n", position: "5:5",
        fragments: ["key 'ON' appears more than once in 'environment.set'"]),

    // YAML syntax.
    PolicyErrorCase(
        label: "unclosed flow mapping", yaml: "version: 1\nlimits: {wall: 30s\nnetwork: none\n", position: "3:8",
        fragments: ["invalid YAML"]),
    PolicyErrorCase(
        label: "bad indentation", yaml: "version: 1\nlimits:\n  wall: 1s\n cpu: 1s\n", position: "4:2",
        fragments: ["invalid YAML"]),
    PolicyErrorCase(
        label: "unquoted glob read as an alias", yaml: "version: 1\nfilesystem:\n  hidden: [*.pem]\n", position: "3:13",
        fragments: ["invalid YAML", "must be quoted", "\"*.pem\""]),
    PolicyErrorCase(
        label: "tab indentation", yaml: "version: 1\nlimits:\n\twall: 1s\n", position: "3:1",
        fragments: ["invalid YAML", "tabs"]),
    PolicyErrorCase(
        label: "two documents", yaml: "version: 1\n---\nversion: 1\n", position: "2:1",
        fragments: ["invalid YAML: expected a single document in the stream, but found another document", "remove the '---'"]),
    PolicyErrorCase(
        label: "custom tag", yaml: "version: 1\nenvironment:\n  set: {TOKEN: !env SECRET}\n", position: "3:16",
        fragments: ["the YAML tag '!env' is not supported"]),
    PolicyErrorCase(
        label: "custom tag on a section", yaml: "version: 1\nlimits: !include limits.yaml\n", position: "2:9",
        fragments: ["the YAML tag '!include' is not supported"]),
    PolicyErrorCase(
        label: "control character", yaml: "version: 1\nnetwork: \u{7}none\n", position: "2:10",
        fragments: ["invalid YAML", "control characters"]),

    // filesystem.
    PolicyErrorCase(
        label: "filesystem is a list", yaml: "version: 1\nfilesystem: [a]\n", position: "2:13",
        fragments: ["'filesystem' must be a mapping", "got a list"]),
    PolicyErrorCase(
        label: "unknown key in filesystem", yaml: "version: 1\nfilesystem:\n  readonly: [/x]\n", position: "3:3",
        fragments: ["unknown key 'readonly' in 'filesystem'", "expected one of: workspace, read_only, hidden"]),
    PolicyErrorCase(
        label: "workspace is a string", yaml: "version: 1\nfilesystem:\n  workspace: .\n", position: "3:14",
        fragments: ["'filesystem.workspace' must be a mapping such as {path: ., mode: rw}", "got '.'"]),
    PolicyErrorCase(
        label: "unknown key in workspace", yaml: "version: 1\nfilesystem:\n  workspace: {path: ., mod: rw}\n", position: "3:24",
        fragments: ["unknown key 'mod' in 'filesystem.workspace'", "expected one of: path, mode"]),
    PolicyErrorCase(
        label: "workspace mode rwx", yaml: "version: 1\nfilesystem:\n  workspace: {path: ., mode: rwx}\n", position: "3:30",
        fragments: ["'filesystem.workspace.mode' must be rw or ro, got 'rwx'"]),
    PolicyErrorCase(
        label: "workspace mode is a list", yaml: "version: 1\nfilesystem:\n  workspace:\n    mode: [rw]\n", position: "4:11",
        fragments: ["'filesystem.workspace.mode' must be rw or ro, got a list"]),
    PolicyErrorCase(
        label: "workspace path empty", yaml: "version: 1\nfilesystem:\n  workspace: {path: \"\"}\n", position: "3:21",
        fragments: ["'filesystem.workspace.path' must be a path", "got nothing"]),
    PolicyErrorCase(
        label: "workspace path with tilde", yaml: "version: 1\nfilesystem:\n  workspace: {path: ~/proj}\n", position: "3:21",
        fragments: ["'filesystem.workspace.path' starts with '~'"]),
    PolicyErrorCase(
        label: "workspace path with NUL", yaml: "version: 1\nfilesystem:\n  workspace: {path: \"a\\0b\"}\n", position: "3:21",
        fragments: ["'filesystem.workspace.path' contains a NUL byte"]),
    PolicyErrorCase(
        label: "read_only is a string", yaml: "version: 1\nfilesystem:\n  read_only: /usr\n", position: "3:14",
        fragments: ["'filesystem.read_only' must be a list", "got '/usr'"]),
    PolicyErrorCase(
        label: "read_only path not absolute", yaml: "version: 1\nfilesystem:\n  read_only: [/etc/ssl, usr/share]\n", position: "3:25",
        fragments: ["'filesystem.read_only[1]' must be an absolute host path", "got 'usr/share'"]),
    PolicyErrorCase(
        label: "read_only path with ..", yaml: "version: 1\nfilesystem:\n  read_only: [/usr/../etc]\n", position: "3:15",
        fragments: ["'filesystem.read_only[0]' must not contain '..'"]),
    PolicyErrorCase(
        label: "read_only item is a mapping", yaml: "version: 1\nfilesystem:\n  read_only:\n    - {path: /x}\n", position: "4:7",
        fragments: ["'filesystem.read_only[0]' must be an absolute path, got a mapping"]),
    PolicyErrorCase(
        label: "empty glob", yaml: "version: 1\nfilesystem:\n  hidden: [\"*.db\", \"\"]\n", position: "3:20",
        fragments: ["'filesystem.hidden[1]' is not a valid glob", "the pattern is empty"]),
    PolicyErrorCase(
        label: "missing glob", yaml: "version: 1\nfilesystem:\n  hidden:\n    -\n", position: "4:6",
        fragments: ["'filesystem.hidden[0]' must be a glob", "got nothing"]),
    PolicyErrorCase(
        label: "glob with NUL", yaml: "version: 1\nfilesystem:\n  hidden: [\"a\\0b\"]\n", position: "3:12",
        fragments: ["'filesystem.hidden[0]' is not a valid glob", "NUL byte", "a\\u{0}b"]),
    PolicyErrorCase(
        label: "glob with unclosed bracket", yaml: "version: 1\nfilesystem:\n  hidden:\n    - \"[abc\"\n", position: "4:7",
        fragments: ["'filesystem.hidden[0]' is not a valid glob, got '[abc'", "never closed"]),
    PolicyErrorCase(
        label: "glob negation", yaml: "version: 1\nfilesystem:\n  hidden: [\"!keep\"]\n", position: "3:12",
        fragments: ["'filesystem.hidden[0]'", "negation"]),

    // environment.
    PolicyErrorCase(
        label: "unknown key in environment", yaml: "version: 1\nenvironment:\n  inherit: [HOME]\n", position: "3:3",
        fragments: ["unknown key 'inherit' in 'environment'", "expected one of: set, pass"]),
    PolicyErrorCase(
        label: "set is a list", yaml: "version: 1\nenvironment:\n  set: [A=1]\n", position: "3:8",
        fragments: ["'environment.set' must be a mapping", "got a list"]),
    PolicyErrorCase(
        label: "number value", yaml: "version: 1\nenvironment:\n  set: {PORT: 8080}\n", position: "3:15",
        fragments: ["'environment.set.PORT' must be a string, got '8080'", "quote the value", "PORT: \"8080\""]),
    PolicyErrorCase(
        label: "boolean value", yaml: "version: 1\nenvironment:\n  set:\n    DEBUG: true\n", position: "4:12",
        fragments: ["'environment.set.DEBUG' must be a string, got 'true'", "quote the value"]),
    PolicyErrorCase(
        label: "float value", yaml: "version: 1\nenvironment:\n  set:\n    RATIO: 0.5\n", position: "4:12",
        fragments: ["'environment.set.RATIO' must be a string", "quote the value"]),
    PolicyErrorCase(
        label: "null value", yaml: "version: 1\nenvironment:\n  set:\n    EMPTY:\n  pass: []\n", position: "4:11",
        fragments: ["'environment.set.EMPTY' must be a string, got nothing", "quote the value"]),
    PolicyErrorCase(
        label: "list value", yaml: "version: 1\nenvironment:\n  set: {PATH: [/bin]}\n", position: "3:15",
        fragments: ["'environment.set.PATH' must be a string, got a list"]),
    PolicyErrorCase(
        label: "invalid variable name", yaml: "version: 1\nenvironment:\n  set: {1ST: x}\n", position: "3:9",
        fragments: ["'environment.set' has an invalid variable name '1ST'"]),
    PolicyErrorCase(
        label: "variable name with '='", yaml: "version: 1\nenvironment:\n  set: {\"A=B\": x}\n", position: "3:9",
        fragments: ["'environment.set' has an invalid variable name 'A=B'"]),
    PolicyErrorCase(
        label: "value with NUL", yaml: "version: 1\nenvironment:\n  set: {A: \"x\\0y\"}\n", position: "3:12",
        fragments: ["'environment.set.A' contains a NUL byte"]),
    PolicyErrorCase(
        label: "pass is a string", yaml: "version: 1\nenvironment:\n  pass: HOME\n", position: "3:9",
        fragments: ["'environment.pass' must be a list", "got 'HOME'"]),
    PolicyErrorCase(
        label: "invalid pass name", yaml: "version: 1\nenvironment:\n  pass: [HOME, \"MY VAR\"]\n", position: "3:16",
        fragments: ["'environment.pass' has an invalid variable name 'MY VAR'"]),
    PolicyErrorCase(
        label: "pass name listed twice", yaml: "version: 1\nenvironment:\n  pass: [HOME, USER, HOME]\n", position: "3:22",
        fragments: ["'HOME' is listed more than once in 'environment.pass'"]),
    PolicyErrorCase(
        label: "set and passed", yaml: "version: 1\nenvironment:\n  pass: [HOME]\n  set: {HOME: /h}\n", position: "3:10",
        fragments: ["'HOME' is both in 'environment.set' and in 'environment.pass'"]),

    // limits.
    PolicyErrorCase(
        label: "unknown limit", yaml: "version: 1\nlimits:\n  wall: 30s\n  memroy: 512MiB\n", position: "4:3",
        fragments: ["unknown key 'memroy' in 'limits'; expected one of: wall, cpu, memory, pids, open_files, file_size, output, tmp, shm"]),
    PolicyErrorCase(
        label: "limits is a list", yaml: "version: 1\nlimits: [30s]\n", position: "2:9",
        fragments: ["'limits' must be a mapping", "got a list"]),
    PolicyErrorCase(
        label: "size that is not a size", yaml: "version: 1\nlimits: {memory: lots}\n", position: "2:18",
        fragments: ["'limits.memory' must be a size such as 512MiB or 2G, got 'lots'"]),
    PolicyErrorCase(
        label: "size with unknown unit", yaml: "version: 1\nlimits:\n  tmp: 5 parsecs\n", position: "3:8",
        fragments: ["'limits.tmp' must be a size such as 512MiB or 2G, got '5 parsecs'"]),
    PolicyErrorCase(
        label: "zero size", yaml: "version: 1\nlimits:\n  shm: 0\n", position: "3:8",
        fragments: ["'limits.shm' must be greater than zero, got '0'"]),
    PolicyErrorCase(
        label: "negative size", yaml: "version: 1\nlimits:\n  output: -1MiB\n", position: "3:11",
        fragments: ["'limits.output' must be greater than zero, got '-1MiB'"]),
    PolicyErrorCase(
        label: "size too large", yaml: "version: 1\nlimits:\n  file_size: 99999999T\n", position: "3:14",
        fragments: ["'limits.file_size' must be a size such as 512MiB or 2G"]),
    PolicyErrorCase(
        label: "empty size", yaml: "version: 1\nlimits:\n  memory:\n", position: "3:10",
        fragments: ["'limits.memory' must be a size such as 512MiB or 2G, got nothing"]),
    PolicyErrorCase(
        label: "size is a mapping", yaml: "version: 1\nlimits:\n  memory: {soft: 1G}\n", position: "3:11",
        fragments: ["'limits.memory' must be a size such as 512MiB or 2G, got a mapping"]),
    PolicyErrorCase(
        label: "duration that is not a duration", yaml: "version: 1\nlimits: {wall: soon}\n", position: "2:16",
        fragments: ["'limits.wall' must be a duration such as 30s, 250ms or 2m, got 'soon'"]),
    PolicyErrorCase(
        label: "duration with unknown unit", yaml: "version: 1\nlimits: {cpu: 3 days}\n", position: "2:15",
        fragments: ["'limits.cpu' must be a duration", "got '3 days'"]),
    PolicyErrorCase(
        label: "zero duration", yaml: "version: 1\nlimits: {wall: 0s}\n", position: "2:16",
        fragments: ["'limits.wall' must be greater than zero, got '0s'"]),
    PolicyErrorCase(
        label: "negative duration", yaml: "version: 1\nlimits: {cpu: -5s}\n", position: "2:15",
        fragments: ["'limits.cpu' must be greater than zero, got '-5s'"]),
    PolicyErrorCase(
        label: "fractional pids", yaml: "version: 1\nlimits: {pids: 1.5}\n", position: "2:16",
        fragments: ["'limits.pids' must be a whole number greater than zero, got '1.5'"]),
    PolicyErrorCase(
        label: "zero pids", yaml: "version: 1\nlimits: {pids: 0}\n", position: "2:16",
        fragments: ["'limits.pids' must be greater than zero, got '0'"]),
    PolicyErrorCase(
        label: "pids with a unit", yaml: "version: 1\nlimits: {pids: 64k}\n", position: "2:16",
        fragments: ["'limits.pids' must be a whole number greater than zero, got '64k'"]),
    PolicyErrorCase(
        label: "open_files not a number", yaml: "version: 1\nlimits:\n  open_files: many\n", position: "3:15",
        fragments: ["'limits.open_files' must be a whole number greater than zero, got 'many'"]),
    PolicyErrorCase(
        label: "negative open_files", yaml: "version: 1\nlimits:\n  open_files: -1\n", position: "3:15",
        fragments: ["'limits.open_files' must be greater than zero, got '-1'"]),
    PolicyErrorCase(
        label: "pids too large for 64 bits", yaml: "version: 1\nlimits: {pids: 99999999999999999999}\n", position: "2:16",
        fragments: ["'limits.pids' must be a whole number greater than zero"]),

    // network.
    PolicyErrorCase(
        label: "network allowlist without hosts", yaml: "version: 1\nnetwork: allowlist\n", position: "2:10",
        fragments: ["'network' must be one of none, got 'allowlist'"]),
    PolicyErrorCase(
        label: "network mode allowlist with no host", yaml: "version: 1\nnetwork: {mode: allowlist, allow: []}\n", position: "2:17",
        fragments: ["'network.mode' is allowlist but 'network.allow' lists no host"]),
    PolicyErrorCase(
        label: "network allow key", yaml: "version: 1\nnetwork: {mode: none, allow: [pypi.org]}\n", position: "2:23",
        fragments: ["'network.allow' has no effect with 'mode: none'"]),
    PolicyErrorCase(
        label: "network host", yaml: "version: 1\nnetwork: host\n", position: "2:10",
        fragments: ["'network' must be one of none, got 'host'"]),
    PolicyErrorCase(
        label: "network mapping without mode", yaml: "version: 1\nnetwork: {}\n", position: "2:10",
        fragments: ["'network' needs a 'mode'"]),
    PolicyErrorCase(
        label: "network unknown key", yaml: "version: 1\nnetwork:\n  mode: none\n  proxy: x\n", position: "4:3",
        fragments: ["unknown key 'proxy' in 'network'; expected one of: mode"]),
    PolicyErrorCase(
        label: "declassify is not a rule's tool", yaml: "version: 1\nrules: [{id: a, tool: declassify, decision: allow}]\n", position: "2:23",
        fragments: ["'rules[0].tool' cannot be declassify", "labels.declassify"]),
    PolicyErrorCase(
        label: "null host in an allowlist", yaml: "version: 1\nnetwork: {mode: allowlist, allow: [{host: null}]}\n", position: "2:36",
        fragments: ["'network.allow[0]' needs a 'host'"]),
    PolicyErrorCase(
        label: "empty reason", yaml: "version: 1\nrules: [{id: a, tool: exec, decision: deny, reason: }]\n", position: "2:53",
        fragments: ["'rules[0].reason' is empty"]),
    PolicyErrorCase(
        label: "unknown profile", yaml: "version: 1\nextends: permissive\n", position: "2:10",
        fragments: ["'extends' must be one of read-only, workspace-write, networked, got 'permissive'"]),
    PolicyErrorCase(
        label: "rule without id", yaml: "version: 1\nrules: [{tool: exec, decision: deny}]\n", position: "2:9",
        fragments: ["'rules[0]' needs an 'id'"]),
    PolicyErrorCase(
        label: "duplicate rule id", yaml: "version: 1\nrules:\n  - {id: a, decision: deny, tool: exec}\n  - {id: a, decision: allow, tool: exec}\n", position: "4:10",
        fragments: ["rule id 'a' is used twice (first at line 3)"]),
    PolicyErrorCase(
        label: "rule without decision", yaml: "version: 1\nrules: [{id: a, tool: exec}]\n", position: "2:9",
        fragments: ["'rules[0]' (rule 'a') needs a 'decision': allow, deny or ask"]),
    PolicyErrorCase(
        label: "rule decision misspelt", yaml: "version: 1\nrules: [{id: a, tool: exec, decision: alow}]\n", position: "2:39",
        fragments: ["'rules[0].decision' must be one of allow, deny, ask, got 'alow'"]),
    PolicyErrorCase(
        label: "unknown tool", yaml: "version: 1\nrules: [{id: a, tool: shell, decision: deny}]\n", position: "2:23",
        fragments: ["'rules[0].tool' names an unknown tool 'shell'", "expected one of: exec, read_file"]),
    PolicyErrorCase(
        label: "condition the tool does not carry", yaml: "version: 1\nrules: [{id: a, tool: exec, where: {path: x}, decision: deny}]\n", position: "2:36",
        fragments: ["conditions that exec actions do not carry", "remove exec from 'tool' or the condition"]),
    PolicyErrorCase(
        label: "conditions no tool carries together", yaml: "version: 1\nrules: [{id: a, where: {path: x, host: y.com}, decision: deny}]\n", position: "2:24",
        fragments: ["mixes conditions that no single tool's actions carry"]),
    PolicyErrorCase(
        label: "unknown condition", yaml: "version: 1\nrules: [{id: a, tool: exec, where: {args: x}, decision: deny}]\n", position: "2:37",
        fragments: ["unknown key 'args' in 'rules[0].where'", "expected one of: command, argv, path"]),
    PolicyErrorCase(
        label: "bad argument pattern", yaml: "version: 1\nrules: [{id: a, tool: exec, where: {argv: {prefix: [\"[git\"]}}, decision: deny}]\n", position: "2:53",
        fragments: ["'rules[0].where.argv.prefix' has an invalid pattern '[git'"]),
    PolicyErrorCase(
        label: "bad host", yaml: "version: 1\nrules: [{id: a, tool: http, where: {host: \"https://x.com\"}, decision: deny}]\n", position: "2:43",
        fragments: ["'rules[0].where.host' must be a host name"]),
    PolicyErrorCase(
        label: "lower-case method", yaml: "version: 1\nrules: [{id: a, tool: http, where: {method: get}, decision: deny}]\n", position: "2:45",
        fragments: ["HTTP methods in capitals"]),
    PolicyErrorCase(
        label: "source without label", yaml: "version: 1\nlabels: {sources: [{tool: http}]}\n", position: "2:20",
        fragments: ["must say which label it raises"]),
    PolicyErrorCase(
        label: "source with both labels", yaml: "version: 1\nlabels: {sources: [{tool: http, integrity: untrusted, confidentiality: secret}]}\n", position: "2:20",
        fragments: ["gives both 'confidentiality' and 'integrity'"]),
    PolicyErrorCase(
        label: "invariant flow to nowhere", yaml: "version: 1\nlabels: {invariants: [{id: x, deny_flow: {from: secret, to: email}}]}\n", position: "2:61",
        fragments: ["'labels.invariants[0].deny_flow.to' must be one of network, workspace, exec, got 'email'"]),
    PolicyErrorCase(
        label: "invariant of both forms", yaml: "version: 1\nlabels: {invariants: [{id: x, deny_flow: {from: secret, to: network}, when: secret}]}\n", position: "2:71",
        fragments: ["has both 'deny_flow' and 'when'"]),
    PolicyErrorCase(
        label: "invariant that allows", yaml: "version: 1\nlabels: {invariants: [{id: x, when: untrusted, tool: exec, decision: allow}]}\n", position: "2:70",
        fragments: ["must be one of ask, deny, got 'allow'"]),
    PolicyErrorCase(
        label: "approval command without mode", yaml: "version: 1\napproval: {command: [/bin/approve]}\n", position: "2:11",
        fragments: ["'approval.command' is given but 'approval.mode' is not command"]),
    PolicyErrorCase(
        label: "approval command not absolute", yaml: "version: 1\napproval: {mode: command, command: [approve]}\n", position: "2:36",
        fragments: ["must start with the absolute path of the approver program"]),
    PolicyErrorCase(
        label: "secret of unknown kind", yaml: "version: 1\nsecrets: {known: [\"vault:x\"]}\n", position: "2:19",
        fragments: ["entries must be env:NAME, file:PATH or literal:VALUE"]),
    PolicyErrorCase(
        label: "toolset with a path escape", yaml: "version: 1\ntoolset: [/usr/../etc/x]\n", position: "2:11",
        fragments: ["'toolset' entries must be program names"]),
    PolicyErrorCase(
        label: "isolation tier unknown", yaml: "version: 1\nisolation: {tier: docker}\n", position: "2:19",
        fragments: ["'isolation.tier' must be one of auto, namespaces, gvisor, microvm, wasm, got 'docker'"]),
    PolicyErrorCase(
        label: "network is a list", yaml: "version: 1\nnetwork: [none]\n", position: "2:10",
        fragments: ["'network' must be a mapping such as {mode: allowlist, allow: [pypi.org]}, got a list"]),
]

@Test("invalid policies are rejected with file:line:column and the key", arguments: policyErrorCases)
func policyErrors(_ row: PolicyErrorCase) {
    do {
        let document = try PolicyLoader.parse(row.yaml, sourcePath: "policy.yaml", baseDirectory: "/home/u/proj")
        Issue.record("expected an error, got \(document)")
    } catch let error as StockadeError {
        #expect(error.code == .invalidPolicy)
        #expect(error.message.hasPrefix("policy.yaml:\(row.position): "), "message: \(error.message)")
        for fragment in row.fragments {
            #expect(error.message.contains(fragment), "message: \(error.message)")
        }
        #expect(!error.message.contains("\n"), "message spans lines: \(error.message)")
    } catch {
        Issue.record("expected a StockadeError, got \(error)")
    }
}

@Test("the example messages of the brief, exactly")
func exactMessages() {
    let cases: [(yaml: String, message: String)] = [
        (
            "version: 1\nlimits:\n  wall: 30s\n  memroy: 512MiB\n",
            "policy.yaml:4:3: unknown key 'memroy' in 'limits'; expected one of: wall, cpu, memory, pids, open_files, file_size, output, tmp, shm"
        ),
        (
            "version: 1\nlimits: {memory: lots}\n",
            "policy.yaml:2:18: 'limits.memory' must be a size such as 512MiB or 2G, got 'lots'"
        ),
    ]
    for row in cases {
        #expect {
            _ = try PolicyLoader.parse(row.yaml, sourcePath: "policy.yaml", baseDirectory: "/")
        } throws: { error in
            (error as? StockadeError)?.message == row.message
        }
    }
}

@Test("an unknown key is never ignored, whatever section it is in")
func unknownKeysEverywhere() {
    let sections = [
        "typo: 1", "filesystem: {typo: 1}", "filesystem: {workspace: {typo: 1}}", "environment: {typo: 1}",
        "limits: {typo: 1}", "network: {mode: none, typo: 1}",
    ]
    for section in sections {
        #expect(throws: StockadeError.self, "\(section)") {
            _ = try PolicyLoader.parse("version: 1\n\(section)\n", sourcePath: "policy.yaml", baseDirectory: "/")
        }
    }
}

@Test("an alias bomb is refused after a bounded walk, not expanded")
func aliasBombRefused() {
    var lines = ["version: 1", "filesystem:", "  hidden: &a0 [\"x\"]"]
    for level in 1...7 {
        lines.append("x\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]")
    }
    let yaml = lines.joined(separator: "\n")
    let clock = ContinuousClock()
    let elapsed = clock.measure {
        #expect {
            _ = try PolicyLoader.parse(yaml, sourcePath: "policy.yaml", baseDirectory: "/")
        } throws: { error in
            guard let error = error as? StockadeError else { return false }
            return error.code == .invalidPolicy && error.message.hasPrefix("policy.yaml:")
                && error.message.contains("more than 100000 values")
        }
    }
    #expect(elapsed < .seconds(5))
}
