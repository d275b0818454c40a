import Foundation
import Testing

/// THREATS.md 3 (the part issue 1 covers): secrets never enter the sandbox.
extension SandboxSuite {
    @Suite("Secrets never enter") struct Secrets {
        static let secret = "AKIAIOSFODNN7EXAMPLE-\(UUID().uuidString)"

        @Test("the caller's environment stays outside, /proc/*/environ included")
        func environment() throws {
            let out = try Harness.sandboxed(
                "env; cat /proc/self/environ /proc/1/environ 2>/dev/null | tr '\\0' '\\n'",
                environment: ["PATH": "/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": Self.secret, "GITHUB_TOKEN": Self.secret]
            )
            #expect(out.status == 0)
            #expect(!out.stdout.contains(Self.secret))
            let names = Set(out.stdout.split(separator: "\n").compactMap { $0.split(separator: "=").first.map(String.init) })
            #expect(names.isSubset(of: ["PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "_", "OLDPWD"]), "\(names)")
        }

        @Test("--env passes exactly what is named")
        func explicitEnvironment() throws {
            let out = try Harness.stockade(
                ["run", "--env", "GREETING=hi there", "--env", "PASSED", "--env", "ABSENT", "--", "/bin/sh", "-c", "echo \"$GREETING|$PASSED|${ABSENT-unset}|$OTHER\""],
                environment: ["PATH": "/usr/bin:/bin", "PASSED": "yes", "OTHER": Self.secret]
            )
            #expect(out.stdout == "hi there|yes|unset|\n")
        }

        @Test("credential files in the caller's home are not there")
        func homeCredentials() throws {
            let home = try Harness.temporaryDirectory("home")
            defer { Harness.remove(home) }
            for file in [".ssh/id_ed25519", ".aws/credentials", ".netrc", ".git-credentials", ".docker/config.json", ".kube/config"] {
                try Harness.write(Self.secret, to: home + "/" + file)
            }
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            let out = try Harness.stockade(
                ["run", "--", "/bin/sh", "-c", "echo $HOME; ls -A $HOME; cat \(home)/.aws/credentials ~/.aws/credentials 2>/dev/null; grep -rsF '\(Self.secret)' / --exclude-dir=proc --exclude-dir=usr --exclude-dir=sys 2>/dev/null | head -1"],
                in: workspace, environment: ["PATH": "/usr/bin:/bin", "HOME": home]
            )
            #expect(out.stdout == "/home/sandbox\n", "\(out.stdout)")
        }

        @Test("hidden workspace files are not readable: defaults and --hide, at any depth")
        func hiddenFiles() throws {
            let workspace = try Harness.temporaryDirectory()
            defer { Harness.remove(workspace) }
            for file in [".env", ".env.local", "deploy/server.pem", "keys/api.key", "sub/dir/id_rsa", "id_ed25519.pub", "config/secrets.yaml", "visible.txt"] {
                try Harness.write(file == "visible.txt" ? "fine" : Self.secret, to: workspace + "/" + file)
            }
            try FileManager.default.createDirectory(atPath: workspace + "/vault", withIntermediateDirectories: true)
            try Harness.write(Self.secret, to: workspace + "/vault/inner.txt")
            let out = try Harness.sandboxed(
                "cat visible.txt; echo; cat .env .env.local deploy/server.pem keys/api.key sub/dir/id_rsa id_ed25519.pub config/secrets.yaml vault/inner.txt 2>/dev/null; grep -rs AKIA . ; ls vault 2>&1 | head -1; echo end",
                flags: ["--hide", "config/secrets.yaml", "--hide", "vault"], in: workspace
            )
            #expect(out.stdout.hasPrefix("fine\n"), "\(out.stdout)")
            #expect(!out.stdout.contains("AKIA"), "\(out.stdout)")
            // The masks cannot be removed or replaced from inside.
            let tamper = try Harness.sandboxed("rm -f .env 2>/dev/null; mv .env x 2>/dev/null; umount .env 2>/dev/null; cat .env x 2>/dev/null; echo end", in: workspace)
            #expect(!tamper.stdout.contains("AKIA"))
            #expect(try String(contentsOfFile: workspace + "/.env", encoding: .utf8) == Self.secret)
        }
    }

    @Suite("Rootless: an unprivileged user gets the same sandbox") struct Rootless {
        static var enabled: Bool { Harness.unprivilegedUser != nil }

        @Test("runs, maps to the caller, writes the workspace, hides secrets", .enabled(if: Harness.isRoot, "needs root to create and switch to an unprivileged test user"))
        func rootless() throws {
            let user = try #require(Harness.unprivilegedUser, "could not create the unprivileged test user")
            let workspace = "/tmp/stockade-rootless-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
            defer { Harness.remove(workspace) }
            try Harness.write("SECRET=\(Secrets.secret)", to: workspace + "/.env")
            _ = try Harness.run(["/bin/chown", "-R", "\(user):\(user)", workspace], environment: [:])
            _ = try Harness.run(["/bin/chmod", "755", workspace], environment: [:])
            let out = try Harness.stockade(
                ["run", "--json", "--workspace", workspace, "--", "/bin/sh", "-c", "id -u; cat /proc/self/uid_map; echo made > new.txt; cat .env 2>/dev/null; grep CapEff /proc/self/status"],
                user: user
            )
            #expect(out.status == 0, "\(out.stdout) \(out.stderr)")
            let stdout = out.json["stdout"] as? String ?? ""
            #expect(stdout.hasPrefix("1000\n"), "\(stdout)")
            let uid = try Harness.run(["/usr/bin/id", "-u", user], environment: [:]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(stdout.contains(" \(uid) "))
            #expect(!stdout.contains("AKIA"))
            #expect(stdout.contains("CapEff:\t0000000000000000"))
            #expect(FileManager.default.fileExists(atPath: workspace + "/new.txt"))
        }
    }
}
