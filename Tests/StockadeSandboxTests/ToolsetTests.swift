import Foundation
import StockadeCore
import StockadeSystem
import Testing

/// Toolsets: resolution of names into host files, the ELF and ld.so.cache readers, and
/// the cache's refusal of directories others could write. No sandbox is started here.
@Suite("Toolset resolution") struct ToolsetResolutionTests {
    /// The resolved path of a host file (links followed).
    static func real(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func entry(_ closure: ToolsetClosure, _ path: String) -> ToolsetEntry? {
        closure.entries.first { $0.path == path }
    }

    @Test("sh brings its program, the link to it, its dynamic loader and libc")
    func shell() throws {
        let closure = try ToolsetResolver.resolve(["sh"])
        let program = Self.real("/bin/sh")
        #expect(Self.entry(closure, program)?.reason.kind == .program)
        let loader = try #require(try ELFReader.read(path: program).interpreter)
        #expect(Self.entry(closure, Self.real(loader))?.reason.kind == .interpreter)
        let libc = try #require(closure.entries.first { $0.path.hasSuffix("/libc.so.6") })
        #expect(libc.kind == .file)
        #expect(libc.reason.kind == .library)
        // /usr/bin/sh is a link on Debian (to dash): kept as a link in the root.
        if let link = Self.entry(closure, "/usr/bin/sh") {
            #expect(link.kind == .symlink)
        }
        #expect(!closure.entries.contains { $0.path.hasSuffix("/python3") || $0.path.hasSuffix("/ls") })
        #expect(closure.key.count == 64)
    }

    @Test("python3 brings its standard library with lib-dynload, not third-party packages")
    func python() throws {
        let closure = try ToolsetResolver.resolve(["python3"])
        let interpreter = Self.real("/usr/bin/python3")
        let name = (interpreter as NSString).lastPathComponent
        let library = "/usr/lib/" + name
        #expect(Self.entry(closure, library)?.kind == .directory)
        #expect(Self.entry(closure, library + "/os.py")?.kind == .file)
        #expect(Self.entry(closure, library + "/lib-dynload")?.kind == .directory)
        #expect(!closure.entries.contains { $0.path.hasPrefix(library + "/dist-packages/") })
        // ssl's compiled module needs OpenSSL: it must come along.
        #expect(closure.entries.contains { $0.path.contains("/libssl.so") })
    }

    @Test("a link chain through /etc/alternatives becomes one link to the real program")
    func alternatives() throws {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/usr/bin/awk"), target.hasPrefix("/etc/") else { return }
        let closure = try ToolsetResolver.resolve(["awk"])
        let link = try #require(Self.entry(closure, "/usr/bin/awk"))
        #expect(link.linkTarget == Self.real("/usr/bin/awk"))
        #expect(!closure.entries.contains { $0.path.hasPrefix("/etc/") })
    }

    @Test("a #! script brings its interpreter")
    func script() throws {
        // Any host script in /usr/bin serves; the toolset may hold only system paths.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/bin")) ?? []
        var found: (path: String, interpreter: String)?
        for name in names.sorted() {
            let path = "/usr/bin/" + name
            guard let handle = FileHandle(forReadingAtPath: path) else { continue }
            let head = handle.readData(ofLength: 64)
            try? handle.close()
            guard head.starts(with: Data("#!/".utf8)), let line = String(data: head, encoding: .utf8)?.split(separator: "\n").first else { continue }
            let interpreter = String(line.dropFirst(2).split(separator: " ").first ?? "")
            if interpreter == "/bin/sh" || interpreter == "/usr/bin/perl" {
                found = (path, interpreter)
                break
            }
        }
        let script = try #require(found, "this host has no #! script in /usr/bin")
        let closure = try ToolsetResolver.resolve([script.path])
        let interpreter = try #require(Self.entry(closure, Self.real(script.interpreter)))
        #expect(interpreter.reason.kind == .interpreter)
        #expect(closure.entries.contains { $0.path.hasSuffix("/libc.so.6") })
    }

    @Test("an unknown name is refused, naming it and what to do", arguments: ["curll", "/usr/bin/no-such-tool", "bin/ls", "../sh", ""])
    func unknownName(name: String) throws {
        let error = try #require(throws: StockadeError.self) { try ToolsetResolver.resolve(["sh", name]) }
        #expect(error.code == .invalidPolicy)
        #expect(error.message.contains("'\(name)'"), "\(error.message)")
        #expect(error.message.contains("absolute path") || error.message.contains("Check the path"), "\(error.message)")
    }

    @Test("a program outside the system directories is refused")
    func outsideSystemDirectories() throws {
        let directory = try Harness.temporaryDirectory("toolset-prog")
        defer { Harness.remove(directory) }
        let program = directory + "/tool"
        try FileManager.default.copyItem(atPath: Self.real("/bin/true"), toPath: program)
        let error = try #require(throws: StockadeError.self) { try ToolsetResolver.resolve([program]) }
        #expect(error.message.contains("outside the system directories"), "\(error.message)")
    }

    @Test("the ELF reader takes a real program")
    func elfReal() throws {
        let info = try ELFReader.read(path: Self.real("/bin/sh"))
        #expect(info.needed.contains("libc.so.6"))
        #expect(info.interpreter?.hasPrefix("/") == true)
    }

    @Test("truncated, foreign and garbage ELF bytes give a clear error, never a crash")
    func elfMalformed() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.real("/bin/sh"))))
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("not ELF", Array("#!/bin/sh\necho hi\n".utf8)),
            ("magic only", Array(bytes.prefix(4))),
            ("truncated header", Array(bytes.prefix(40))),
            ("truncated program headers", Array(bytes.prefix(100))),
            ("truncated before the dynamic section", Array(bytes.prefix(1024))),
        ]
        var thirtyTwo = bytes
        thirtyTwo[4] = 1
        cases.append(("32-bit", thirtyTwo))
        var bigEndian = bytes
        bigEndian[5] = 2
        cases.append(("big-endian", bigEndian))
        var huge = bytes
        huge[56] = 0xFF
        huge[57] = 0xFF
        cases.append(("absurd program header count", huge))
        var farAway = bytes
        for index in 32..<40 { farAway[index] = 0xFF }
        cases.append(("program headers past the end", farAway))
        for (name, input) in cases {
            let error = try #require(throws: StockadeError.self, "\(name)") { try ELFReader.parse(bytes: input, name: name) }
            #expect(error.message.contains("failed to read the ELF file \(name)"), "\(error.message)")
        }
        // Random damage to the headers and the dynamic section: parse or refuse, but
        // never trap (a trap ends the test process).
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            var damaged = Array(bytes.prefix(16384))
            for _ in 0..<8 {
                let index = Int.random(in: 16..<min(damaged.count, 4096), using: &generator)
                damaged[index] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = try? ELFReader.parse(bytes: damaged)
        }
        for length in stride(from: 0, to: min(bytes.count, 20000), by: 97) {
            _ = try? ELFReader.parse(bytes: Array(bytes.prefix(length)))
        }
    }

    @Test("the host's ld.so.cache parses; garbage gives an empty cache")
    func linkerCache() throws {
        let cache = LinkerCache.load()
        if FileManager.default.fileExists(atPath: LinkerCache.defaultPath) {
            #expect(cache.paths["libc.so.6"]?.isEmpty == false)
        }
        #expect(LinkerCache.parse(Array("glibc-ld.so.cache1.1".utf8) + [UInt8](repeating: 0xFF, count: 200)).paths.isEmpty)
        #expect(LinkerCache.parse([1, 2, 3]).paths.isEmpty)
    }

    @Test("a cache directory others can write, or that belongs to another user, is refused")
    func unsafeCache() throws {
        let directory = try Harness.temporaryDirectory("toolset-cache")
        defer { Harness.remove(directory) }
        let base = directory + "/cache"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: false)
        chmod(base, 0o777)
        let writable = try #require(throws: StockadeError.self) { try ToolsetCache(base: base) }
        #expect(writable.message.contains("writable by other users"), "\(writable.message)")
        chmod(base, 0o700)
        _ = try ToolsetCache(base: base)
        chmod(base + "/toolsets", 0o770)
        #expect(throws: StockadeError.self) { try ToolsetCache(base: base) }
        chmod(base + "/toolsets", 0o700)
        guard Harness.isRoot else { return }
        chown(base, 65534, 65534)
        let foreign = try #require(throws: StockadeError.self) { try ToolsetCache(base: base) }
        #expect(foreign.message.contains("belongs to uid 65534"), "\(foreign.message)")
        // A directory above the cache that others could rename things in.
        chown(base, 0, 0)
        chmod(directory, 0o777)
        let above = try #require(throws: StockadeError.self) { try ToolsetCache(base: base) }
        #expect(above.message.contains("writable by other users"), "\(above.message)")
    }

    @Test("a cache on another file system holds copies, with their modes", .enabled(if: FileManager.default.fileExists(atPath: "/dev/shm")))
    func copies() throws {
        let base = "/dev/shm/stockade-test-toolset-\(UUID().uuidString.prefix(8))"
        defer { Harness.remove(base) }
        let root = try ToolsetCache(base: base).root(for: ["sh"])
        let program = Self.real("/bin/sh")
        let host = try FileManager.default.attributesOfItem(atPath: program)
        let copy = try FileManager.default.attributesOfItem(atPath: root.path + program)
        guard host[.systemNumber] as? Int != copy[.systemNumber] as? Int else { return }  // /dev/shm shares the file system
        #expect(host[.systemFileNumber] as? Int != copy[.systemFileNumber] as? Int)
        #expect(copy[.posixPermissions] as? Int == (host[.posixPermissions] as? Int ?? 0) & 0o755)
        #expect(FileManager.default.contentsEqual(atPath: program, andPath: root.path + program))
    }

    @Test("a second request hits the cache and builds nothing")
    func cacheHit() throws {
        let directory = try Harness.temporaryDirectory("toolset-cache")
        defer { Harness.remove(directory) }
        let cache = try ToolsetCache(base: directory + "/cache")
        let first = try cache.root(for: ["sh"])
        #expect(!first.cacheHit)
        #expect(first.topLevel.contains(.directory(name: "usr")))
        #expect(FileManager.default.fileExists(atPath: first.path + Self.real("/bin/sh")))
        let second = try cache.root(for: ["sh"])
        #expect(second.cacheHit)
        #expect(second == ToolsetRoot(key: first.key, path: first.path, topLevel: first.topLevel, cacheHit: true))
        let roots = try FileManager.default.contentsOfDirectory(atPath: cache.directory).filter { $0 != "index" }
        #expect(roots == [first.key])
    }
}

/// Toolsets in real sandboxes: what is not in the list does not exist inside.
extension SandboxSuite {
    @Suite("Toolsets") struct Toolsets {
        /// A fresh cache for one test, in the harness's environment.
        static func environment(cache: String) -> [String: String] {
            ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "STOCKADE_CACHE_DIR": cache]
        }

        @Test("with a toolset of sh and ls, ls runs and nothing else exists")
        func onlyTheToolset() throws {
            let directory = try Harness.temporaryDirectory("toolset")
            defer { Harness.remove(directory) }
            let out = try Harness.stockade(
                ["run", "--toolset", "sh", "--toolset", "ls", "--", "/bin/sh", "-c", """
                    ls /usr/bin >/dev/null && echo ls-ran
                    command -v curl || echo curl-absent
                    test -e /usr/bin/python3 || echo python-absent
                    test -e /usr/bin/cat || echo cat-absent
                    ls /usr/lib/x86_64-linux-gnu/libpython3* 2>/dev/null || echo libpython-absent
                    """],
                environment: Self.environment(cache: directory + "/cache")
            )
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == "ls-ran\ncurl-absent\npython-absent\ncat-absent\nlibpython-absent\n", "\(out.stdout)")
        }

        @Test("a program outside the toolset fails as not found, naming the toolset")
        func commandOutside() throws {
            let directory = try Harness.temporaryDirectory("toolset")
            defer { Harness.remove(directory) }
            let out = try Harness.stockade(["run", "--toolset", "sh", "--", "cat", "/etc/hostname"], environment: Self.environment(cache: directory + "/cache"))
            #expect(out.status == 127)
            #expect(out.stderr.contains("toolset holds only sh"), "\(out.stderr)")
        }

        @Test("with the python set, python3 imports json and ssl")
        func python() throws {
            let directory = try Harness.temporaryDirectory("toolset")
            defer { Harness.remove(directory) }
            let out = try Harness.stockade(
                ["run", "--toolset", "python", "--", "python3", "-c", "import json, ssl; print(json.dumps({'ssl': ssl.OPENSSL_VERSION.split()[0]}))"],
                environment: Self.environment(cache: directory + "/cache")
            )
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == "{\"ssl\": \"OpenSSL\"}\n", "\(out.stdout)")
            #expect(out.stderr.isEmpty, "\(out.stderr)")
        }

        @Test("git works with the git set")
        func git() throws {
            let directory = try Harness.temporaryDirectory("toolset")
            defer { Harness.remove(directory) }
            let workspace = directory + "/ws"
            try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
            let out = try Harness.stockade(
                ["run", "--toolset", "git", "--workspace", workspace, "--", "sh", "-c",
                 "git init -q . && git -c user.email=a@b.c -c user.name=t commit -q --allow-empty -m first && git log --format=%s"],
                environment: Self.environment(cache: directory + "/cache")
            )
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == "first\n")
        }

        @Test("a second start uses the cached root and builds nothing")
        func secondStartHitsTheCache() throws {
            let directory = try Harness.temporaryDirectory("toolset")
            defer { Harness.remove(directory) }
            let cache = directory + "/cache"
            let toolsets = cache + "/toolsets"
            func roots() throws -> [String] {
                try FileManager.default.contentsOfDirectory(atPath: toolsets).filter { $0 != "index" }.sorted()
            }
            let first = try Harness.stockade(["run", "--toolset", "sh", "--", "sh", "-c", "echo one"], environment: Self.environment(cache: cache))
            #expect(first.stdout == "one\n", "\(first.stderr)")
            let built = try roots()
            #expect(built.count == 1)
            let root = toolsets + "/" + built[0]
            let before = try FileManager.default.attributesOfItem(atPath: root)
            let second = try Harness.stockade(["run", "--toolset", "sh", "--", "sh", "-c", "echo two"], environment: Self.environment(cache: cache))
            #expect(second.stdout == "two\n", "\(second.stderr)")
            #expect(try roots() == built)
            let after = try FileManager.default.attributesOfItem(atPath: root)
            #expect(before[.systemFileNumber] as? Int == after[.systemFileNumber] as? Int)
            #expect(before[.modificationDate] as? Date == after[.modificationDate] as? Date)
            // --dry-run shows the same toolset and key.
            let plan = try Harness.stockade(["run", "--dry-run", "--toolset", "sh", "--", "true"], environment: Self.environment(cache: cache))
            #expect(plan.stdout.contains("\"key\" : \"\(built[0])\""), "\(plan.stdout)")
        }

        @Test("rootless: an unprivileged user's toolset is its own copy and works the same", .enabled(if: Harness.isRoot, "needs root to create and switch to an unprivileged test user"))
        func rootless() throws {
            let user = try #require(Harness.unprivilegedUser, "could not create the unprivileged test user")
            let directory = "/tmp/stockade-rootless-toolset-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { Harness.remove(directory) }
            _ = try Harness.run(["/bin/chown", "\(user):\(user)", directory], environment: [:])
            let out = try Harness.run(
                ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--reset-env", "--",
                 "/usr/bin/env", "STOCKADE_CACHE_DIR=\(directory)/cache", Harness.binary,
                 "run", "--toolset", "sh", "--toolset", "ls", "--workspace", directory, "--", "sh", "-c", "ls /usr/bin; command -v cat || echo cat-absent"],
                environment: [:]
            )
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout.contains("ls\n"))
            #expect(out.stdout.hasSuffix("cat-absent\n"), "\(out.stdout)")
        }

        @Test("an unknown toolset name or an unsafe cache stops the run with exit 125")
        func badToolset() throws {
            let directory = try Harness.temporaryDirectory("toolset")
            defer { Harness.remove(directory) }
            let cache = directory + "/cache"
            let unknown = try Harness.stockade(["run", "--toolset", "curll", "--", "true"], environment: Self.environment(cache: cache))
            #expect(unknown.status == 125)
            #expect(unknown.stderr.hasPrefix("stockade: failed to resolve toolset program 'curll'"), "\(unknown.stderr)")
            try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
            chmod(cache, 0o777)
            let unsafe = try Harness.stockade(["run", "--toolset", "sh", "--", "true"], environment: Self.environment(cache: cache))
            #expect(unsafe.status == 125)
            #expect(unsafe.stderr.contains("writable by other users"), "\(unsafe.stderr)")
        }

        @Test("toolset show lists programs, libraries and the key; --json too")
        func show() throws {
            let text = try Harness.stockade(["toolset", "show", "sh", "ls"])
            #expect(text.status == 0, "\(text.stderr)")
            #expect(text.stdout.contains("programs:"))
            #expect(text.stdout.contains("libc.so.6"))
            #expect(text.stdout.contains("interpreter of"))
            #expect(text.stdout.contains("key: sha256:"))
            let json = try Harness.stockade(["toolset", "show", "--json", "python"])
            #expect(json.status == 0, "\(json.stderr)")
            let object = json.json
            #expect(object["names"] as? [String] == ["python"])
            #expect((object["file_count"] as? Int ?? 0) > 100)
            let entries = object["entries"] as? [[String: Any]] ?? []
            #expect(entries.contains { ($0["path"] as? String)?.hasSuffix("/os.py") == true })
            let bad = try Harness.stockade(["toolset", "show", "curll"])
            #expect(bad.status == 125)
            #expect(bad.stderr.hasPrefix("stockade: failed to resolve toolset program 'curll'"))
        }
    }
}
