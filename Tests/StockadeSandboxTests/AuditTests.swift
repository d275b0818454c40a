import Crypto
import Foundation
import StockadeAudit
import StockadeRuntime
import Testing

/// The audit log alone: chains written here, then tampered with as an attacker would.
@Suite("Audit log") struct AuditLogTests {
    static func makeLog(entries: Int = 10, checkpointEvery: UInt64 = 4) throws -> (path: String, key: Curve25519.Signing.PrivateKey, directory: String) {
        let directory = try Harness.temporaryDirectory("audit")
        let key = Curve25519.Signing.PrivateKey()
        let log = try AuditLog(path: directory + "/audit.jsonl", signingKey: key, checkpointEvery: checkpointEvery)
        try log.append(AuditEntry(session: "s1", kind: .sessionStart))
        for index in 0..<entries {
            var entry = AuditEntry(session: "s1", kind: .action)
            entry.tool = "exec"
            entry.action = "exec echo \(index)"
            entry.decision = index % 3 == 0 ? "deny" : "allow"
            try log.append(entry)
        }
        try log.append(AuditEntry(session: "s1", kind: .sessionEnd))
        try log.checkpoint(session: "s1")
        return (directory + "/audit.jsonl", key, directory)
    }

    static func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    static func write(_ lines: [String], to path: String) throws {
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    }

    @Test("an untouched log verifies, its signatures too")
    func intact() throws {
        let (path, key, directory) = try Self.makeLog()
        defer { Harness.remove(directory) }
        let result = try AuditVerifier.verify(path: path, key: key.publicKey)
        #expect(result.valid, "\(result.problem ?? "")")
        #expect(result.entries == 16)  // start, 10 actions, end, a checkpoint after every 4 of them, a final one
        #expect(result.checkpoints == 4 && result.verifiedSignatures == 4)
        #expect(result.openSessions.isEmpty && !result.tornTail && result.unsignedTail == 0)
    }

    @Test("an edit, a deletion, a reordering, a forged checkpoint or another key is found and the first bad line named", arguments: [
        "edit", "delete", "reorder", "insert", "rewrite-checkpoint", "wrong-key", "reformat",
    ])
    func tampering(attack: String) throws {
        let (path, key, directory) = try Self.makeLog()
        defer { Harness.remove(directory) }
        var lines = try Self.lines(path)
        var verifyingKey = key.publicKey
        var expected: String
        switch attack {
        case "edit":
            lines[5] = lines[5].replacingOccurrences(of: "echo", with: "rm -rf")
            expected = "line 7: entry 7 does not follow line 6"
        case "delete":
            lines.remove(at: 6)
            expected = "line 7: entry 8 comes where entry 7 was expected"
        case "reorder":
            lines.swapAt(2, 3)
            expected = "line 3: entry 4 comes where entry 3 was expected"
        case "insert":
            lines.insert(lines[2], at: 3)
            expected = "line 4: entry 3 comes again"
        case "rewrite-checkpoint":
            // The last line is the final checkpoint: make it claim less, keep its signature.
            let last = lines.count - 1
            lines[last] = lines[last].replacingOccurrences(of: "\"through\":15", with: "\"through\":14")
            expected = "line 16: checkpoint 16 does not cover the entry before it"
        case "wrong-key":
            verifyingKey = Curve25519.Signing.PrivateKey().publicKey
            expected = "was signed by another key"
        default:
            // Same content, different spelling: a line rewritten by some other tool.
            lines[2] = lines[2].replacingOccurrences(of: "{\"action\"", with: "{ \"action\"")
            expected = "line 3: entry 3 is not in the form stockade writes"
        }
        try Self.write(lines, to: path)
        let result = try AuditVerifier.verify(path: path, key: verifyingKey)
        #expect(!result.valid)
        #expect(result.problem?.contains(expected) == true, "\(attack): \(result.problem ?? "valid")")
    }

    /// Someone who can write the file but has no key: rewrites an entry, recomputes the
    /// whole chain, and drops the signatures it cannot make.
    @Test("a rewritten chain without signatures fails verification against the key")
    func forgedChain() throws {
        let (path, key, directory) = try Self.makeLog()
        defer { Harness.remove(directory) }
        var previous = AuditEntry.genesis
        var forged: [String] = []
        for line in try Self.lines(path) {
            var entry = try JSONDecoder().decode(AuditEntry.self, from: Data(line.utf8))
            if entry.seq == 3 { entry.decision = "allow" }
            entry.checkpoint?.signature = nil
            entry.prev = previous
            let bytes = try entry.line()
            previous = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            forged.append(String(decoding: bytes, as: UTF8.self))
        }
        try Self.write(forged, to: path)
        let withKey = try AuditVerifier.verify(path: path, key: key.publicKey)
        #expect(!withKey.valid && withKey.problem?.contains("carries no signature") == true, "\(withKey.problem ?? "valid")")
        // Without a key only the chain is checked: it holds, and nothing is vouched for.
        let withoutKey = try AuditVerifier.verify(path: path, key: nil)
        #expect(withoutKey.valid && withoutKey.unsignedTail == withoutKey.entries)
    }

    @Test("a head recorded earlier proves that nothing up to it was cut or rewritten")
    func knownHead() throws {
        let (path, key, directory) = try Self.makeLog()
        defer { Harness.remove(directory) }
        let head = try AuditVerifier.verify(path: path, key: key.publicKey).head
        #expect(try AuditVerifier.verify(path: path, key: key.publicKey, knownHead: head).valid)
        try Self.write(Array(try Self.lines(path).dropLast()), to: path)
        let cut = try AuditVerifier.verify(path: path, key: key.publicKey, knownHead: head)
        #expect(!cut.valid && cut.problem?.contains("no longer in the log") == true, "\(cut.problem ?? "valid")")
    }

    @Test("a log cut at a line boundary still chains, and shows the session that has no end")
    func truncation() throws {
        let (path, key, directory) = try Self.makeLog()
        defer { Harness.remove(directory) }
        let lines = try Self.lines(path)
        try Self.write(Array(lines.prefix(9)), to: path)
        let result = try AuditVerifier.verify(path: path, key: key.publicKey)
        #expect(result.valid)
        #expect(result.openSessions == ["s1"])
        #expect(result.unsignedTail > 0)
    }

    @Test("a torn last line is reported, then cut off by the next writer, and the chain goes on")
    func tornLine() throws {
        let (path, key, directory) = try Self.makeLog()
        defer { Harness.remove(directory) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"seq\":18,\"kind\":\"act".utf8))
        try handle.close()
        let torn = try AuditVerifier.verify(path: path, key: key.publicKey)
        #expect(torn.valid && torn.tornTail)
        let log = try AuditLog(path: path, signingKey: key)
        try log.append(AuditEntry(session: "s2", kind: .sessionStart))
        let repaired = try AuditVerifier.verify(path: path, key: key.publicKey)
        #expect(repaired.valid && !repaired.tornTail && repaired.entries == 17, "\(repaired.problem ?? "")")
    }

    @Test("two writers on one file keep one chain")
    func twoWriters() async throws {
        let directory = try Harness.temporaryDirectory("audit")
        defer { Harness.remove(directory) }
        let path = directory + "/audit.jsonl"
        let first = try AuditLog(path: path)
        let second = try AuditLog(path: path)
        await withTaskGroup(of: Void.self) { group in
            for (index, log) in [first, second].enumerated() {
                group.addTask {
                    for step in 0..<50 {
                        var entry = AuditEntry(session: "w\(index)", kind: .action)
                        entry.action = "step \(step)"
                        _ = try? log.append(entry)
                    }
                }
            }
        }
        let result = try AuditVerifier.verify(path: path, key: nil)
        #expect(result.valid && result.entries == 100, "\(result.problem ?? "") \(result.entries)")
    }
}

extension SandboxSuite {
    @Suite("Audit trail") struct AuditTrailTests {
        @Test("a session records every action, decided and done, before returning it; the log verifies")
        func sessionActions() async throws {
            let workspace = try Harness.temporaryDirectory()
            let logs = try Harness.temporaryDirectory("audit")
            defer {
                Harness.remove(workspace)
                Harness.remove(logs)
            }
            let key = Curve25519.Signing.PrivateKey()
            let log = try AuditLog(path: logs + "/audit.jsonl", signingKey: key)
            try Harness.write("TOKEN=x\n", to: workspace + "/.env")
            let policy = try PolicyLoader.parse(
                "version: 1\nrules: [{id: no-curl, tool: exec, where: {command: curl}, decision: deny, reason: no downloads}]\n",
                sourcePath: "policy.yaml", baseDirectory: "/")
            let session = try await Session.start(policy: policy, options: SessionOptions(workspace: workspace, auditLog: log))
            let ran = try await session.perform(.exec(["sh", "-c", "echo hi; exit 3"]))
            let lines = try String(contentsOfFile: logs + "/audit.jsonl", encoding: .utf8).split(separator: "\n")
            // The record was on disk when perform returned.
            #expect(lines.count == 2 && lines[1].contains("\"exit_code\":3"), "\(lines)")
            #expect(ran.exitCode == 3)
            _ = try await session.perform(.exec(["curl", "http://example.com"]))
            _ = try await session.perform(.writeFile("a.txt", content: Array("x".utf8)))
            _ = try await session.perform(.readFile(".env"))
            session.close()
            let entries = try String(contentsOfFile: logs + "/audit.jsonl", encoding: .utf8).split(separator: "\n").map {
                try JSONDecoder().decode(AuditEntry.self, from: Data($0.utf8))
            }
            #expect(entries.map(\.kind) == [.sessionStart, .action, .action, .action, .action, .sessionEnd, .checkpoint])
            #expect(entries[2].decision == "deny" && entries[2].rule == "no-curl" && entries[2].result?.performed == false)
            #expect(entries[2].actionSHA256 == Action.exec(argv: ["curl", "http://example.com"], workingDirectory: "/workspace").digest)
            #expect(entries[3].result?.bytesWritten == 1)
            #expect(entries[0].policySHA256 != nil && entries[0].planSHA256 != nil && entries[0].tier == "namespaces")
            let result = try AuditVerifier.verify(path: logs + "/audit.jsonl", key: key.publicKey)
            #expect(result.valid && result.verifiedSignatures == 1 && result.openSessions.isEmpty, "\(result.problem ?? "")")
        }

        @Test("stockade run records its decision, result and egress; audit keygen, verify, show and export work")
        func cli() throws {
            let directory = try Harness.temporaryDirectory("audit")
            defer { Harness.remove(directory) }
            let keygen = try Harness.stockade(["audit", "keygen", "--out", directory + "/key"])
            #expect(keygen.status == 0, "\(keygen.stderr)")
            try Harness.write("""
                version: 1
                network: {mode: allowlist, allow: [pypi.org]}
                rules: [{id: no-rm, tool: exec, where: {command: rm}, decision: deny}]
                audit: {path: \(directory)/audit.jsonl, signing_key: \(directory)/key}
                """, to: directory + "/policy.yaml")
            let ran = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "sh", "-c", "curl -s http://example.com/ >/dev/null; exit 4"])
            #expect(ran.status == 4, "\(ran.stderr)")
            let refused = try Harness.stockade(["run", "--policy", directory + "/policy.yaml", "--", "rm", "-rf", "/workspace"])
            #expect(refused.status == 125)
            let verify = try Harness.stockade(["audit", "verify", "--key", directory + "/key.pub", directory + "/audit.jsonl"])
            #expect(verify.status == 0 && verify.stdout.contains("2 signatures verified"), "\(verify.stdout)\(verify.stderr)")
            let show = try Harness.stockade(["audit", "show", "--decision", "deny", directory + "/audit.jsonl"])
            #expect(show.stdout.contains("no-rm") && show.stdout.contains("GET example.com:80 refused"), "\(show.stdout)")
            let csv = try Harness.stockade(["audit", "export", "--format", "csv", directory + "/audit.jsonl"])
            // Two runs: start, the command, its refused request, end, checkpoint; then
            // start, the refusal, end, checkpoint.
            #expect(csv.stdout.hasPrefix("seq,time,session,kind,") && csv.stdout.split(separator: "\n").count == 10, "\(csv.stdout)")
            // Tampered: verify exits 1 and names the line.
            var lines = try String(contentsOfFile: directory + "/audit.jsonl", encoding: .utf8).split(separator: "\n").map(String.init)
            lines[1] = lines[1].replacingOccurrences(of: "\"exit_code\":4", with: "\"exit_code\":0")
            try (lines.joined(separator: "\n") + "\n").write(toFile: directory + "/audit.jsonl", atomically: false, encoding: .utf8)
            let broken = try Harness.stockade(["audit", "verify", "--key", directory + "/key.pub", directory + "/audit.jsonl"])
            #expect(broken.status == 1 && broken.stderr.contains("line 3: entry 3 does not follow line 2"), "\(broken.stderr)")
        }

        /// Crash safety: the supervisor killed with SIGKILL at arbitrary moments, in a
        /// loop; every time the log still verifies, and the next run appends to it.
        @Test("the log survives kill -9 of stockade at any moment")
        func killLoop() throws {
            let directory = try Harness.temporaryDirectory("audit")
            defer { Harness.remove(directory) }
            try Harness.write("version: 1\naudit: {path: \(directory)/audit.jsonl, checkpoint_every: 2}\n", to: directory + "/policy.yaml")
            try FileManager.default.createDirectory(atPath: directory + "/ws", withIntermediateDirectories: true)
            var kills = 0
            for round in 0..<25 {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                process.arguments = ["-c", "while :; do '\(Harness.binary)' run --workspace '\(directory)/ws' --policy '\(directory)/policy.yaml' -- true; done"]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                try process.run()
                usleep(UInt32(150_000 + (round * 7919) % 100_000))
                // Kill the loop and every stockade it started, wherever each one is.
                _ = try Harness.run(["/usr/bin/pkill", "-KILL", "-f", "\(directory)/policy.yaml"], environment: ["PATH": "/usr/bin:/bin"])
                process.waitUntilExit()
                kills += 1
                guard FileManager.default.fileExists(atPath: directory + "/audit.jsonl") else { continue }
                let result = try AuditVerifier.verify(path: directory + "/audit.jsonl", key: nil)
                #expect(result.valid, "round \(round): \(result.problem ?? "")")
            }
            let final = try AuditVerifier.verify(path: directory + "/audit.jsonl", key: nil)
            #expect(final.entries > 20, "only \(final.entries) entries after \(kills) rounds")
        }
    }
}
