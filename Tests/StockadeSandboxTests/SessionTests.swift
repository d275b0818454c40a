import Foundation
import StockadePolicy
import StockadeRuntime
import Testing

/// Sessions: one sandbox across many actions, through the policy, with file actions
/// that symlinks, hard links and `..` cannot lead outside the workspace.
extension SandboxSuite {
    @Suite("Sessions: state between actions, file actions, limits, lifetime")
    struct Sessions {
        static func policy(_ yaml: String = "version: 1") throws -> PolicyDocument {
            try PolicyLoader.parse(yaml, sourcePath: "policy.yaml", baseDirectory: "/")
        }

        static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

        @Test("state persists between actions, and a background server outlives the action that started it")
        func statePersists() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let session = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace))
            defer { session.close() }
            let write = try await session.perform(.exec(["/bin/sh", "-c", "echo kept > /tmp/state; echo $$"]))
            #expect(write.exitCode == 0, "\(Self.text(write.stderr))")
            let read = try await session.perform(.exec(["cat", "/tmp/state"]))
            #expect(Self.text(read.stdout) == "kept\n")
            // A server started in the background keeps running after its action ends.
            let server = try await session.perform(.exec([Harness.python, "-c", """
                import os, socket, sys
                s = socket.socket(); s.bind(("127.0.0.1", 8123)); s.listen()
                if os.fork() == 0:
                    sys.stdout.write("child\\n"); sys.stdout.flush()
                    while True:
                        c, _ = s.accept(); c.sendall(b"pong"); c.close()
                print("started")
                """]))
            #expect(server.exitCode == 0, "\(Self.text(server.stderr))")
            #expect(Self.text(server.stdout).contains("started"))
            let client = try await session.perform(.exec([Harness.python, "-c",
                "import socket; s = socket.create_connection(('127.0.0.1', 8123)); print(s.recv(4).decode())"]))
            #expect(Self.text(client.stdout) == "pong\n", "\(Self.text(client.stderr))")
        }

        @Test("write then read a file, binary-safe; list it; the workspace holds it")
        func fileActions() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("SECRET=1\n", to: workspace + "/.env")
            let session = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace))
            defer { session.close() }
            let bytes: [UInt8] = [0, 1, 2, 255, 254, 10, 13, 0]
            let written = try await session.perform(.writeFile("data/blob.bin", content: bytes))
            #expect(written.performed, "\(written.message)")
            #expect(written.bytesWritten == bytes.count)
            #expect(try Data(contentsOf: URL(fileURLWithPath: workspace + "/data/blob.bin")) == Data(bytes))
            let read = try await session.perform(.readFile("/workspace/data/blob.bin"))
            #expect(read.content == bytes)
            // The sandbox sees the same file.
            let seen = try await session.perform(.exec(["od", "-An", "-tu1", "data/blob.bin"]))
            #expect(Self.text(seen.stdout).split(whereSeparator: \.isWhitespace) == ["0", "1", "2", "255", "254", "10", "13", "0"])
            let listing = try await session.perform(.listFiles("."))
            // Hidden .env is not listed, not even by name (the empty placeholders of
            // protected directories are, as the sandbox sees them).
            #expect(listing.entries?.map(\.name).contains("data") == true)
            #expect(listing.entries?.map(\.name).contains(".env") == false, "\(listing.entries ?? [])")
            let hidden = try await session.perform(.readFile(".env"))
            #expect(!hidden.performed)
            #expect(hidden.message.contains("hidden"))
        }

        @Test("planted symlinks, hard links, .. and absolute paths lead nowhere outside the workspace")
        func fileEscapes() async throws {
            let workspace = try Harness.temporaryDirectory()
            let outside = try Harness.temporaryDirectory("outside")
            defer { Harness.remove(workspace); Harness.remove(outside) }
            try Harness.write("host secret\n", to: outside + "/secret")
            try Harness.write("hidden\n", to: workspace + "/.env")
            let session = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace))
            defer { session.close() }
            // The sandboxed program plants links; the supervisor must not follow them out.
            let plant = try await session.perform(.exec(["/bin/sh", "-c", """
                ln -s \(outside)/secret abs-link; ln -s ../../../../../../\(outside)/secret rel-link
                ln -s \(outside) dir-link; ln -s .env env-link; ln -s /proc/self/root root-link; echo x > own; ln own hard
                """]))
            #expect(plant.exitCode == 0, "\(Self.text(plant.stderr))")
            for path in ["abs-link", "rel-link", "dir-link/secret", "../\(URL(fileURLWithPath: outside).lastPathComponent)/secret",
                         "/workspace/../\(outside)/secret", "\(outside)/secret", "root-link/etc/passwd", "/etc/passwd"] {
                do {
                    let result = try await session.perform(.readFile(path))
                    #expect(!result.performed || result.content.map { !Self.text($0).contains("host secret") } == true, "\(path): \(result)")
                } catch let error as StockadeError {
                    #expect(error.code == .invalidArgument || error.code == .notFound, "\(path): \(error)")
                }
            }
            // A link to a hidden file is judged where it leads.
            let viaLink = try await session.perform(.readFile("env-link"))
            #expect(!viaLink.performed && viaLink.message.contains("hidden"), "\(viaLink.message)")
            // Writes: never through a link, never into a hard-linked file, never outside.
            for path in ["abs-link", "dir-link/new", "hard", "../escape", "/tmp/x"] {
                do {
                    let result = try await session.perform(.writeFile(path, content: Array("evil".utf8)))
                    #expect(!result.performed, "\(path) was written: \(result)")
                } catch let error as StockadeError {
                    #expect(error.code == .invalidArgument || error.code == .notFound, "\(path): \(error)")
                }
            }
            #expect(try String(contentsOfFile: outside + "/secret", encoding: .utf8) == "host secret\n")
            #expect(!FileManager.default.fileExists(atPath: outside + "/new"))
            do {
                _ = try await session.perform(.readFile("a\0b"))
                Issue.record("a NUL byte in a path was accepted")
            } catch let error as StockadeError {
                #expect(error.code == .invalidArgument)
            }
        }

        @Test("a hidden file cannot be carried to another name by renaming its directory")
        func hiddenRename() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("password: hunter2\n", to: workspace + "/config/creds.yaml")
            let policy = try Self.policy("version: 1\nfilesystem: {hidden: [config/creds.yaml]}")
            let session = try await Session.start(policy: policy, options: SessionOptions(workspace: workspace))
            defer { session.close() }
            let moved = try await session.perform(.exec(["/bin/sh", "-c", "mv config cfg; ln config/creds.yaml alias 2>/dev/null; ls"]))
            #expect(Self.text(moved.stdout).contains("config"), "\(Self.text(moved.stdout)) \(Self.text(moved.stderr))")
            for path in ["cfg/creds.yaml", "config/creds.yaml", "alias"] {
                let result = try? await session.perform(.readFile(path))
                #expect(result.map { !$0.performed || !Self.text($0.content ?? []).contains("hunter2") } ?? true, "\(path)")
            }
        }

        @Test("file actions have the workspace owner's permissions, not the supervisor's")
        func ownerPermissions() async throws {
            guard Harness.isRoot else { return }
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("someone else's\n", to: workspace + "/private.txt")
            #expect(chown(workspace + "/private.txt", 65534, 65534) == 0)
            #expect(chmod(workspace + "/private.txt", 0o600) == 0)
            try Harness.write("read-only\n", to: workspace + "/fixed.txt")
            #expect(chown(workspace + "/fixed.txt", 65534, 65534) == 0)
            #expect(chmod(workspace + "/fixed.txt", 0o644) == 0)
            // The workspace belongs to an unprivileged user, as a project does.
            #expect(chown(workspace, 65533, 65533) == 0)
            let session = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace))
            defer { session.close() }
            for action in [SessionAction.readFile("private.txt"), .writeFile("fixed.txt", content: Array("evil".utf8))] {
                do {
                    let result = try await session.perform(action)
                    #expect(!result.performed, "\(result)")
                } catch let error as StockadeError {
                    #expect(error.message.contains("Permission denied"), "\(error)")
                }
            }
            #expect(try String(contentsOfFile: workspace + "/fixed.txt", encoding: .utf8) == "read-only\n")
            let made = try await session.perform(.writeFile("new.txt", content: [65]))
            #expect(made.performed)
            var info = stat()
            #expect(stat(workspace + "/new.txt", &info) == 0 && info.st_uid == 65533, "owned by the workspace owner")
        }

        @Test("actions go through the policy with the session's labels")
        func policyAndLabels() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            try Harness.write("k\n", to: workspace + "/notes/private/key")
            let policy = try Self.policy("""
                version: 1
                rules:
                  - {id: no-curl, tool: exec, where: {command: curl}, decision: deny, reason: no downloads}
                labels:
                  sources: [{tool: read_file, path: "notes/private/**", confidentiality: secret}]
                  invariants: [{id: no-secret-writes, when: secret, tool: write_file, decision: deny}]
                approval: {mode: deny}
                """)
            let session = try await Session.start(policy: policy, options: SessionOptions(workspace: workspace))
            defer { session.close() }
            let denied = try await session.perform(.exec(["curl", "http://example.com"]))
            #expect(!denied.performed && denied.rule == "no-curl" && denied.message == "denied by rule no-curl: no downloads", "\(denied)")
            #expect(try await session.perform(.writeFile("a.txt", content: [65])).performed)
            let secret = try await session.perform(.readFile("notes/private/key"))
            #expect(secret.performed && secret.labels == ["secret"])
            #expect(session.label.contains(.secret))
            let blocked = try await session.perform(.writeFile("b.txt", content: [66]))
            #expect(!blocked.performed && blocked.rule == "no-secret-writes", "\(blocked.message)")
        }

        @Test("per-action limits end the action, not the session")
        func limits() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let session = try await Session.start(
                policy: Self.policy("version: 1\nlimits: {wall: 1s, output: 64KiB}"), options: SessionOptions(workspace: workspace))
            defer { session.close() }
            let slow = try await session.perform(.exec(["sleep", "30"]))
            #expect(slow.limit == .wall && slow.limitDescription == "wall time (1s)", "\(slow)")
            let loud = try await session.perform(.exec(["/bin/sh", "-c", "yes | head -c 1000000"]))
            #expect(loud.limit == .output, "\(loud.limit as Any)")
            #expect(loud.stdout.count == 64 << 10)
            let fine = try await session.perform(.exec(["echo", "still here"]))
            #expect(Self.text(fine.stdout) == "still here\n")
            let missing = try? await session.perform(.exec(["no-such-program"]))
            #expect(missing == nil)
        }

        @Test("closing, idling and the time to live end the session and every process in it")
        func lifetime() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            // A sleep of an unlikely length is its own marker in the host's process list.
            let marker = "3000.\(UInt32.random(in: 1...UInt32.max))"
            let session = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace, idleTimeout: .milliseconds(700)))
            let background = try await session.perform(.exec(["/bin/sh", "-c", "sleep \(marker) &"]))
            #expect(background.exitCode == 0)
            #expect(Self.hostProcesses(named: marker) == 1)
            try await Task.sleep(for: .seconds(2))
            #expect(session.endReason?.contains("idle") == true, "\(session.endReason ?? "open")")
            #expect(Self.hostProcesses(named: marker) == 0)
            do {
                _ = try await session.perform(.exec(["true"]))
                Issue.record("an ended session ran an action")
            } catch let error as StockadeError {
                #expect(error.message.contains("the session has ended"))
            }
            let lived = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace, timeToLive: .milliseconds(500)))
            try await Task.sleep(for: .seconds(2))
            #expect(lived.endReason?.contains("time to live") == true)
        }

        @Test("nothing of a closed session is there in the next one")
        func nothingPersists() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let first = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace))
            let made = try await first.perform(.exec(["/bin/sh", "-c", "echo x > /tmp/left; echo y > $HOME/left"]))
            #expect(made.exitCode == 0)
            first.close()
            let second = try await Session.start(policy: Self.policy(), options: SessionOptions(workspace: workspace))
            defer { second.close() }
            let look = try await second.perform(.exec(["/bin/sh", "-c", "ls /tmp $HOME"]))
            #expect(!Self.text(look.stdout).contains("left"), "\(Self.text(look.stdout))")
        }

        @Test("50 sessions at once")
        func manySessions() async throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let policy = try Self.policy()
            let sessions = try await withThrowingTaskGroup(of: Session.self) { group in
                for _ in 0..<50 {
                    group.addTask { try await Session.start(policy: policy, options: SessionOptions(workspace: workspace)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            defer { sessions.forEach { $0.close() } }
            let outputs = try await withThrowingTaskGroup(of: String.self) { group in
                for (index, session) in sessions.enumerated() {
                    group.addTask { Self.text(try await session.perform(.exec(["echo", "\(index)"])).stdout) }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(outputs.count == 50)
        }

        static func hostProcesses(named name: String) -> Int {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return entries.filter { Int($0) != nil }.filter { pid in
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
                return String(decoding: data, as: UTF8.self).split(separator: "\0").contains { $0 == name }
            }.count
        }
    }
}

extension SandboxSuite.Functional {
    @Test("stockade shell runs lines as session actions: state, cd, denials")
    func shellCommand() throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try Harness.write("version: 1\nrules: [{id: no-curl, tool: exec, where: {command: curl}, decision: deny, reason: no downloads}]\n", to: workspace + ".policy.yaml")
        defer { Harness.remove(workspace + ".policy.yaml") }
        let out = try Harness.stockade(
            ["shell", "--policy", workspace + ".policy.yaml", "--workspace", workspace],
            input: "echo one > /tmp/kept\ncat /tmp/kept\ncd /tmp\npwd\ncurl http://example.com\necho $((1 + 2)) | tr 3 x\nexit\necho never\n")
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "one\n/tmp\nx\n", "\(out.stdout)")
        #expect(out.stderr.contains("stockade: denied by rule no-curl: no downloads"))
    }
}
