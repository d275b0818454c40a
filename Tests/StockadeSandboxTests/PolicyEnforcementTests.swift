import Foundation
import StockadePolicy
import StockadeRuntime
import Testing

/// The validation layer in front of `stockade run`, protected paths in a writable
/// workspace, and the approvers.
extension SandboxSuite.Functional {
    private static let rules = """
        version: 1
        rules:
          - {id: no-push, tool: exec, where: {argv: {prefix: [git, push]}}, decision: ask, reason: git push needs approval}
          - {id: no-curl, tool: exec, where: {command: curl}, decision: deny, reason: no downloads here}
          - {id: approve-me, tool: exec, where: {argv: {prefix: [echo, approved]}}, decision: ask}
        approval: {mode: deny}
        """

    @Test("a denied command never starts: exit 125 and the rule named")
    func deniedCommand() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write(Self.rules, to: directory + "/policy.yaml")
        // The marker would appear if the command had run at all.
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--workspace", directory, "--",
                                        "curl", "-o", "/workspace/marker", "http://example.com"])
        #expect(out.status == 125)
        #expect(out.stderr == "stockade: denied by rule no-curl: no downloads here\n")
        #expect(!FileManager.default.fileExists(atPath: directory + "/marker"))
        let json = try Harness.stockade(["run", "--json", "--policy", directory + "/policy.yaml", "--", "/usr/bin/curl"])
        let refused = json.json["refused"] as? [String: Any]
        #expect(refused?["rule"] as? String == "no-curl")
        #expect(refused?["decision"] as? String == "deny")
    }

    @Test("ask with nobody attending is a denial that says why")
    func askUnattended() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write(Self.rules, to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "git", "push", "origin"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("needs approval by rule no-push: git push needs approval; not approved: nobody is attending"), "\(out.stderr)")
    }

    @Test("an approver command sees the exact action and its answer decides")
    func approverCommand() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        // The approver records what it was asked and approves only `echo approved`.
        try Harness.write("""
            #!/bin/sh
            cat > "\(directory)/request.json"
            if grep -q '"argv":\\["echo","approved"' "\(directory)/request.json"; then
              echo '{"decision": "allow", "approver": "test"}'
            else
              echo '{"decision": "deny", "reason": "not this one"}'
            fi
            """, to: directory + "/approve")
        chmod(directory + "/approve", 0o755)
        try Harness.write(Self.rules.replacingOccurrences(of: "approval: {mode: deny}", with: "approval: {mode: command, command: [\(directory)/approve], timeout: 10s}"), to: directory + "/policy.yaml")
        let approved = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "echo", "approved"])
        #expect(approved.status == 0, "\(approved.stderr)")
        #expect(approved.stdout == "approved\n")
        let request = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/request.json"))) as? [String: Any]
        #expect(request?["rule"] as? String == "approve-me")
        #expect(request?["cwd"] as? String == "/workspace")
        #expect(request?["digest"] as? String == Action.exec(argv: ["echo", "approved"], workingDirectory: "/workspace").digest)
        let refused = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "git", "push"])
        #expect(refused.status == 125)
        #expect(refused.stderr.contains("not approved: not this one"), "\(refused.stderr)")
    }

    @Test("an approver that does not answer in time is a denial")
    func approverTimeout() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write("#!/bin/sh\nsleep 30\necho '{\"decision\": \"allow\"}'\n", to: directory + "/approve")
        chmod(directory + "/approve", 0o755)
        try Harness.write(Self.rules.replacingOccurrences(of: "approval: {mode: deny}", with: "approval: {mode: command, command: [\(directory)/approve], timeout: 300ms}"), to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "echo", "approved"])
        #expect(out.status == 125)
        #expect(out.stdout.isEmpty)
        #expect(out.stderr.contains("not approved: no answer in time"), "\(out.stderr)")
    }

    @Test("the terminal approver reads y or n from its terminal, and silence is a no")
    func terminalApprover() throws {
        let request = ApprovalRequest(
            action: .exec(argv: ["git", "push"]), verdict: Verdict(decision: .ask, basis: .rule, ruleID: "no-push", reason: "r"), label: .initial)
        func answer(_ typed: String?, timeout: Duration = .seconds(5)) throws -> ApprovalAnswer {
            let input = Pipe()
            let output = Pipe()
            if let typed {
                input.fileHandleForWriting.write(Data(typed.utf8))
            }
            let answer = TerminalApprover(input: input.fileHandleForReading.fileDescriptor, output: output.fileHandleForWriting.fileDescriptor)
                .review(request, timeout: timeout)
            try output.fileHandleForWriting.close()
            let prompt = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(prompt.contains("action: exec git push"))
            return answer
        }
        #expect(try answer("y\n") == .approved(by: "terminal"))
        #expect(try answer("yes\n") == .approved(by: "terminal"))
        #expect(try answer("n\n") == .denied(reason: "refused at the terminal"))
        #expect(try answer("sure\n") == .denied(reason: "refused at the terminal"))
        #expect(try answer(nil, timeout: .milliseconds(200)) == .timedOut)
    }

    @Test("the policy's toolset is what exists inside; --toolset replaces it")
    func policyToolset() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write("version: 1\ntoolset: [sh, ls]\n", to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "/bin/sh", "-c",
                                        "ls / >/dev/null && echo ls-ok; command -v cat || echo no-cat; test -e /usr/bin/python3 || echo no-python"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "ls-ok\nno-cat\nno-python\n")
        let replaced = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--toolset", "sh", "--toolset", "cat", "--",
                                             "/bin/sh", "-c", "command -v ls || echo no-ls; command -v cat"])
        #expect(replaced.stdout == "no-ls\n/usr/bin/cat\n", "\(replaced.stdout) \(replaced.stderr)")
    }

    @Test("an allowlist runs with loopback and the proxy's bridge only, and the CLI names what the proxy refused")
    func allowlistThroughProxy() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write("version: 1\nextends: networked\n", to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "/bin/sh", "-c", """
            grep -c : /proc/net/dev; env | grep -c '^HTTPS_PROXY=http://127.0.0.1:3128$'; \
            curl -s -o /dev/null -w '%{http_code}\\n' http://example.com/
            """])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "1\n1\n403\n", "\(out.stdout)")
        #expect(out.stderr.contains("stockade: network: refused GET example.com:80 by network.allow: no entry of network.allow names example.com"), "\(out.stderr)")
        let json = try Harness.stockade(["run", "--json", "--policy", directory + "/policy.yaml", "--", "curl", "-s", "http://example.com/"])
        let events = json.json["egress"] as? [[String: Any]] ?? []
        #expect(events.count == 1 && events[0]["allowed"] as? Bool == false && events[0]["rule"] as? String == "network.allow", "\(json.stdout)")
    }

    @Test("--dry-run shows the decision and starts nothing, not even an approver")
    func dryRunDecision() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write(Self.rules, to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--dry-run", "--policy", directory + "/policy.yaml", "--", "git", "push"])
        #expect(out.status == 0)
        #expect(out.stderr.contains("decision: needs approval by rule no-push"))
    }

    @Test("a policy naming a tier this version lacks fails closed")
    func unavailableTier() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write("version: 1\nisolation: {tier: wasm}\n", to: directory + "/policy.yaml")
        let out = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("the policy's isolation.tier asks for the wasm tier, which this host cannot run: this version of stockade has no wasm tier"), "\(out.stderr)")
    }

    @Test("stockade policy check exits 1 on findings and shows the trace; explain names the rule")
    func policyCommands() throws {
        let directory = try Harness.temporaryDirectory("policy")
        defer { Harness.remove(directory) }
        try Harness.write("""
            version: 1
            extends: networked
            toolset: [sh, python3]
            labels:
              sources: [{path: "notes/**", confidentiality: secret}]
            """, to: directory + "/risky.yaml")
        let risky = try Harness.stockade(["policy", "check", directory + "/risky.yaml"])
        #expect(risky.status == 1)
        #expect(risky.stdout.contains("over-permissive-tool: python3 can read any file"), "\(risky.stdout)")
        #expect(risky.stdout.contains("unguarded-flow"))
        #expect(risky.stdout.contains("1. exec"))
        try Harness.write("version: 1\n", to: directory + "/clean.yaml")
        let clean = try Harness.stockade(["policy", "check", "--json", directory + "/clean.yaml"])
        #expect(clean.status == 0)
        #expect((clean.json["findings"] as? [Any])?.isEmpty == true)
        try Harness.write(Self.rules, to: directory + "/rules.yaml")
        let explain = try Harness.stockade(["policy", "explain", directory + "/rules.yaml", "--", "exec", "/usr/bin/git", "push"])
        #expect(explain.status == 0)
        #expect(explain.stdout.contains("needs approval by rule no-push: git push needs approval"))
        let broken = try Harness.stockade(["policy", "check", directory + "/missing.yaml"])
        #expect(broken.status == 125)
    }
}

extension SandboxSuite.Escape {
    @Test("protected paths stay read-only in a writable workspace, and cannot be moved aside")
    func protectedPaths() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try Harness.write("[core]\n", to: workspace + "/.git/config")
        try Harness.write("#!/bin/sh\n", to: workspace + "/.git/hooks/pre-commit")
        try Harness.write("{}\n", to: workspace + "/.vscode/settings.json")
        try Harness.write("keep\n", to: workspace + "/Makefile")
        try Harness.write("version: 1\nfilesystem: {protected: [Makefile]}\n", to: workspace + ".policy.yaml")
        let out = try Harness.stockade(["run", "--policy", workspace + ".policy.yaml", "--workspace", workspace, "--", "/bin/sh", "-c", """
            echo evil > .git/hooks/post-checkout
            echo evil >> .git/hooks/pre-commit
            echo '[alias] x = !evil' >> .git/config
            echo '{"tasks": 1}' > .vscode/tasks.json
            echo evil > Makefile
            mv .git .git-aside; mkdir -p .git/hooks; echo evil > .git/hooks/post-checkout
            mv .vscode .vscode-aside
            mkdir -p .claude && echo evil > .claude/settings.json
            echo fine > ordinary.txt
            true
            """])
        defer { Harness.remove(workspace + ".policy.yaml") }
        #expect(out.status == 0, "\(out.stderr)")
        #expect(try String(contentsOfFile: workspace + "/.git/config", encoding: .utf8) == "[core]\n")
        #expect(try String(contentsOfFile: workspace + "/.git/hooks/pre-commit", encoding: .utf8) == "#!/bin/sh\n")
        #expect(try String(contentsOfFile: workspace + "/Makefile", encoding: .utf8) == "keep\n")
        for path in [".git/hooks/post-checkout", ".vscode/tasks.json", ".git-aside", ".vscode-aside", ".claude/settings.json"] {
            #expect(!FileManager.default.fileExists(atPath: workspace + "/" + path), "\(path) was created")
        }
        // The ordinary workspace stays writable, and the .claude placeholder is gone.
        #expect(try String(contentsOfFile: workspace + "/ordinary.txt", encoding: .utf8) == "fine\n")
        #expect(!FileManager.default.fileExists(atPath: workspace + "/.claude"))
    }

    @Test("protected names the command creates where they were missing are reported")
    func missingProtectedNames() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        let out = try Harness.stockade(["run", "--json", "--workspace", workspace, "--", "/bin/sh", "-c",
                                        "mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; echo '{}' > .mcp.json; true"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.json["created_protected"] as? [String] == [".git", ".mcp.json"])
        // A missing file inside an existing directory, and a protected name that is a
        // symbolic link (a mount cannot sit on a link): both watched.
        try FileManager.default.removeItem(atPath: workspace + "/.mcp.json")
        try FileManager.default.removeItem(atPath: workspace + "/.git/hooks/pre-commit")
        try Harness.write("real\n", to: workspace + "/real-envrc")
        try FileManager.default.createSymbolicLink(atPath: workspace + "/.envrc", withDestinationPath: "real-envrc")
        let replaced = try Harness.stockade(["run", "--json", "--workspace", workspace, "--", "/bin/sh", "-c",
                                             "echo '[core]' > .git/config 2>/dev/null; rm .envrc && echo evil > .envrc; echo changed > real-envrc; true"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(replaced.json["created_protected"] as? [String] == [".git/config", ".envrc"], "\(replaced.stdout)")
        // The link's target was protected by its mount.
        #expect(try String(contentsOfFile: workspace + "/real-envrc", encoding: .utf8) == "real\n")
        let text = try Harness.stockade(["run", "--workspace", workspace, "--", "true"])
        #expect(!text.stderr.contains("warning"), "existing entries are protected, not reported: \(text.stderr)")
    }
}
