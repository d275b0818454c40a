import StockadeCore
import StockadePolicy
import Testing

/// One row of the matcher table: does `pattern` match `path` (a file unless `directory`)?
struct GlobCase: CustomTestStringConvertible, Sendable {
    let pattern: String
    let path: String
    let directory: Bool
    let expected: Bool

    init(_ pattern: String, _ path: String, directory: Bool = false, _ expected: Bool) {
        self.pattern = pattern
        self.path = path
        self.directory = directory
        self.expected = expected
    }

    var testDescription: String {
        "'\(pattern)' \(expected ? "matches" : "does not match") '\(path)'\(directory ? " (dir)" : "")"
    }
}

let globCases: [GlobCase] = [
    // A name without '/' matches at any depth, and only a whole name.
    GlobCase(".env", ".env", true),
    GlobCase(".env", "sub/dir/.env", true),
    GlobCase(".env", ".envrc", false),
    GlobCase(".env", "x.env", false),
    GlobCase(".env", ".env/inner", false),
    GlobCase(".env.*", ".env.local", true),
    GlobCase(".env.*", "deep/.env.production", true),
    GlobCase(".env.*", ".env", false),
    // Dotfiles are matched by '*'.
    GlobCase("*.pem", "a/.hidden.pem", true),
    GlobCase("*.pem", "cert.pem", true),
    GlobCase("*.pem", ".pem", true),
    GlobCase("*.pem", "cert.pem.bak", false),
    GlobCase("*", ".bashrc", true),
    GlobCase("*.key", "keys/server.key", true),
    GlobCase("*.key", "server.keys", false),
    // Prefix globs.
    GlobCase("id_rsa*", "id_rsa", true),
    GlobCase("id_rsa*", "id_rsa.pub", true),
    GlobCase("id_rsa*", "home/.ssh/id_rsa.pub", true),
    GlobCase("id_rsa*", "my_id_rsa", false),
    GlobCase("id_ed25519*", ".ssh/id_ed25519", true),
    // A '/' anchors the pattern at the root.
    GlobCase("config/*.json", "config/a.json", true),
    GlobCase("config/*.json", "x/config/a.json", false),
    GlobCase("config/*.json", "config/sub/a.json", false),
    GlobCase("/build", "build", true),
    GlobCase("/build", "src/build", false),
    GlobCase("/*.txt", "notes.txt", true),
    GlobCase("/*.txt", "docs/notes.txt", false),
    // '*' and '?' never cross '/'.
    GlobCase("a*b", "a/b", false),
    GlobCase("a?b", "a/b", false),
    GlobCase("a?b", "axb", true),
    GlobCase("a?b", "ab", false),
    GlobCase("a?b", "axxb", false),
    GlobCase("???", "abc", true),
    GlobCase("???", "abcd", false),
    GlobCase("src/*", "src/a/b", false),
    GlobCase("src/*", "src/a", true),
    // '**' spans any number of components, zero included.
    GlobCase("**/x", "x", true),
    GlobCase("**/x", "a/x", true),
    GlobCase("**/x", "a/b/c/x", true),
    GlobCase("**/x", "a/xy", false),
    GlobCase("a/**/b", "a/b", true),
    GlobCase("a/**/b", "a/x/b", true),
    GlobCase("a/**/b", "a/x/y/z/b", true),
    GlobCase("a/**/b", "a/x/y/z/c", false),
    GlobCase("a/**/b", "x/a/b", false),
    GlobCase("a/**/b", "ab", false),
    GlobCase("secrets/**", "secrets/token", true),
    GlobCase("secrets/**", "secrets/a/b/c.txt", true),
    GlobCase("secrets/**", "secrets", directory: true, true),
    GlobCase("secrets/**", "other/secrets/token", false),
    GlobCase("secrets/**", "secrets-old/token", false),
    GlobCase("**", "anything/at/all", true),
    GlobCase("**/*.sqlite", "db/main.sqlite", true),
    GlobCase("**/.git/config", "vendor/lib/.git/config", true),
    GlobCase("**/.git/config", ".git/config", true),
    GlobCase("a/**/**/b", "a/b", true),
    GlobCase("a/**/x/**/b", "a/1/x/2/3/b", true),
    GlobCase("a/**/x/**/b", "a/1/2/3/b", false),
    GlobCase("a**b", "axxb", true),
    GlobCase("a**b", "a/b", false),
    // Character classes.
    GlobCase("[abc].txt", "b.txt", true),
    GlobCase("[abc].txt", "d.txt", false),
    GlobCase("file[0-9]", "file7", true),
    GlobCase("file[0-9]", "filex", false),
    GlobCase("file[0-9]", "file10", false),
    GlobCase("[!x]y", "ay", true),
    GlobCase("[!x]y", "xy", false),
    GlobCase("[^x]y", "xy", false),
    GlobCase("[a-cx-z]", "y", true),
    GlobCase("[a-cx-z]", "m", false),
    GlobCase("[]]", "]", true),
    GlobCase("[!]]", "]", false),
    GlobCase("[a-]", "-", true),
    GlobCase("[.]env", ".env", true),
    // Escapes make the next character literal.
    GlobCase("\\*.txt", "*.txt", true),
    GlobCase("\\*.txt", "a.txt", false),
    GlobCase("\\!keep", "!keep", true),
    GlobCase("a\\?", "a?", true),
    GlobCase("a\\?", "ab", false),
    // Stars backtrack correctly.
    GlobCase("*a*b*c", "xxaxxbxxc", true),
    GlobCase("*a*b*c", "xxaxxcxxb", false),
    GlobCase("*.tar.gz", "backup.tar.tar.gz", true),
    GlobCase("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
    // A trailing '/' matches directories only; the name still matches at any depth.
    GlobCase("cache/", "cache", directory: true, true),
    GlobCase("cache/", "a/cache", directory: true, true),
    GlobCase("cache/", "cache", false),
    GlobCase("/out/", "out", directory: true, true),
    GlobCase("/out/", "src/out", directory: true, false),
    // Other patterns match directories too.
    GlobCase(".git", ".git", directory: true, true),
    // Paths are normalized before matching.
    GlobCase("secrets/**", "./secrets/key", true),
    GlobCase("secrets/**", "a/../secrets/key", true),
    GlobCase("secrets/**", "secrets//key", true),
    GlobCase(".env", "", false),
    GlobCase("**", "", false),
    // Case matters, as on Linux file systems.
    GlobCase(".env", ".ENV", false),
    // Non-ASCII names are matched character by character.
    GlobCase("caf?.txt", "café.txt", true),
    GlobCase("[é]", "é", true),
]

@Test("glob matcher table", arguments: globCases)
func globMatches(_ row: GlobCase) throws {
    let glob = try Glob(row.pattern)
    #expect(glob.matches(row.path, isDirectory: row.directory) == row.expected)
}

@Test("matches(_:) treats the path as a file")
func globMatchesWithoutKind() throws {
    #expect(try Glob(".env").matches("a/.env"))
    #expect(try !Glob("cache/").matches("cache"))
    #expect(try Glob("cache/").matchesDirectoriesOnly)
}

/// Patterns that must not compile, and a word the message must contain.
let invalidGlobs: [(pattern: String, reason: String)] = [
    ("", "empty"),
    ("a\0b", "NUL"),
    ("[abc", "never closed"),
    ("x[", "never closed"),
    ("[]", "never closed"),
    ("[!]", "never closed"),
    ("[z-a]", "reversed"),
    ("abc\\", "escapes nothing"),
    ("!important", "negation"),
    ("/", "names no file"),
    ("//", "names no file"),
    ("a/../b", "'..'"),
    ("./x", "'.'"),
]

@Test("invalid globs are rejected with a reason", arguments: invalidGlobs)
func globRejects(_ row: (pattern: String, reason: String)) {
    #expect {
        _ = try Glob(row.pattern)
    } throws: { error in
        guard let error = error as? StockadeError else { return false }
        return error.code == .invalidArgument && error.message.contains(row.reason)
            && error.message.hasPrefix("failed to parse glob")
    }
}

@Test("a NUL byte is shown escaped in the message, never raw")
func globMessageEscapesNul() {
    #expect {
        _ = try Glob("a\0b")
    } throws: { error in
        guard let error = error as? StockadeError else { return false }
        return error.message.contains("a\\u{0}b") && !error.message.unicodeScalars.contains("\0")
    }
}

@Test("the built-in hidden patterns hide credentials wherever they are")
func hiddenDefaultsCoverCredentials() throws {
    let set = try GlobSet(patterns: HiddenDefaults.patterns)
    for path in [".env", "app/.env", ".env.local", "tls/server.pem", "server.key", ".ssh/id_rsa",
                 ".ssh/id_rsa.pub", "id_ed25519", "deploy/id_ed25519.pub"] {
        #expect(set.matches(path, isDirectory: false), "\(path) must be hidden")
    }
    for path in ["README.md", "src/env.swift", "environment", "keys.txt", "pem", "my_id_rsa"] {
        #expect(!set.matches(path, isDirectory: false), "\(path) must stay visible")
    }
}

@Test("a GlobSet matches if any member matches")
func globSetMatchesAny() throws {
    let set = try GlobSet(patterns: ["*.sqlite", "secrets/**", "build/"])
    #expect(set.matches("data/app.sqlite", isDirectory: false))
    #expect(set.matches("secrets/x", isDirectory: false))
    #expect(set.matches("build", isDirectory: true))
    #expect(!set.matches("build", isDirectory: false))
    #expect(!set.matches("src/main.swift", isDirectory: false))
    #expect(set.globs.map(\.pattern) == ["*.sqlite", "secrets/**", "build/"])
}

@Test("a GlobSet reports the first pattern that does not compile")
func globSetRejectsInvalidPattern() {
    #expect {
        _ = try GlobSet(patterns: ["*.pem", "[oops"])
    } throws: { error in
        (error as? StockadeError)?.message.contains("'[oops'") ?? false
    }
}

@Test("an entry inside a matched directory is covered by matchesPathOrAnyParent")
func globSetCoversChildrenOfMatchedDirectories() throws {
    let set = try GlobSet(patterns: ["secrets", "node_modules/"])
    #expect(!set.matches("secrets/a/key", isDirectory: false))
    #expect(set.matchesPathOrAnyParent("secrets/a/key", isDirectory: false))
    #expect(set.matchesPathOrAnyParent("lib/node_modules/x/index.js", isDirectory: false))
    // A file named like a directory-only pattern is not covered, nor is a sibling.
    #expect(!set.matchesPathOrAnyParent("node_modules", isDirectory: false))
    #expect(!set.matchesPathOrAnyParent("src/secretsx/key", isDirectory: false))
    #expect(!set.matchesPathOrAnyParent("", isDirectory: true))
}
