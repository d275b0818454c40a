import Foundation
import StockadeCore
import StockadePolicy
import Testing

/// Parses `yaml` as if it came from /home/u/proj/policy.yaml.
func parsePolicy(_ yaml: String) throws -> PolicyDocument {
    try PolicyLoader.parse(yaml, sourcePath: "policy.yaml", baseDirectory: "/home/u/proj")
}

let fullPolicy = """
    # every key of version 1
    version: 1
    filesystem:
      workspace: {path: ., mode: rw}
      read_only: [/usr/share/zoneinfo, /etc/ssl/certs/]
      hidden: ["*.sqlite", "secrets/**", "build/"]
    environment:
      set: {LOG_LEVEL: debug, PORT: "8080", EMPTY: "", GREETING: 'hello: world'}
      pass: [GITHUB_ACTOR, HOME]
    limits: {wall: 30s, cpu: 10s, memory: 512MiB, pids: 64, open_files: 256, file_size: 100MiB, output: 1MiB, tmp: 256MiB, shm: 64MiB}
    network: none
    """

let fullPolicyDocument = PolicyDocument(
    version: 1,
    sourcePath: "policy.yaml",
    workspacePath: "/home/u/proj",
    workspaceReadOnly: false,
    readOnlyPaths: ["/usr/share/zoneinfo", "/etc/ssl/certs"],
    hiddenPatterns: ["*.sqlite", "secrets/**", "build/"],
    environmentSet: [
        EnvironmentVariable(name: "LOG_LEVEL", value: "debug"),
        EnvironmentVariable(name: "PORT", value: "8080"),
        EnvironmentVariable(name: "EMPTY", value: ""),
        EnvironmentVariable(name: "GREETING", value: "hello: world"),
    ],
    environmentPass: ["GITHUB_ACTOR", "HOME"],
    limits: PolicyLimits(
        wallMilliseconds: 30_000, cpuMilliseconds: 10_000, memoryBytes: 512 << 20, pids: 64, openFiles: 256,
        fileSizeBytes: 100 << 20, outputBytes: 1 << 20, tmpBytes: 256 << 20, shmBytes: 64 << 20),
    network: NetworkPolicy.none)

@Test("a full version-1 policy parses into every field")
func fullPolicyParses() throws {
    #expect(try parsePolicy(fullPolicy) == fullPolicyDocument)
}

@Test("a full policy survives rendering to YAML and parsing again")
func fullPolicyRoundTrips() throws {
    let rendered = try fullPolicyDocument.renderedYAML()
    let again = try PolicyLoader.parse(rendered, sourcePath: "policy.yaml", baseDirectory: "/elsewhere")
    #expect(again == fullPolicyDocument, "rendered:\n\(rendered)")
}

@Test("odd values survive rendering: numbers-as-text, quotes, odd sizes")
func oddValuesRoundTrip() throws {
    let document = PolicyDocument(
        sourcePath: "policy.yaml",
        workspacePath: "/w s/\"q\"",
        workspaceReadOnly: true,
        hiddenPatterns: ["[!a]*", "\\*star", "#not-a-comment"],
        environmentSet: [
            EnvironmentVariable(name: "A", value: "true"), EnvironmentVariable(name: "B", value: "010"),
            EnvironmentVariable(name: "C", value: "line1\nline2"), EnvironmentVariable(name: "D", value: "~"),
        ],
        limits: PolicyLimits(wallMilliseconds: 1500, cpuMilliseconds: 7_200_000, memoryBytes: 1000, outputBytes: 3 << 40))
    let rendered = try document.renderedYAML()
    #expect(try PolicyLoader.parse(rendered, sourcePath: "policy.yaml", baseDirectory: "/") == document, "rendered:\n\(rendered)")
}

@Test("the default policy is empty version 1 with no network")
func defaultPolicy() throws {
    let document = PolicyDocument.default
    #expect(document.version == 1)
    #expect(document.sourcePath == nil)
    #expect(document.workspacePath == nil && document.workspaceReadOnly == nil)
    #expect(document.readOnlyPaths.isEmpty && document.hiddenPatterns.isEmpty)
    #expect(document.environmentSet.isEmpty && document.environmentPass.isEmpty)
    #expect(document.limits == PolicyLimits())
    #expect(document.network == nil)
    #expect(document.resolved().network == NetworkPolicy.none)
    var minimal = try parsePolicy("version: 1")
    minimal.sourcePath = nil
    #expect(minimal == .default)
}

@Test("sections may be left empty")
func emptySections() throws {
    let document = try parsePolicy("version: 1\nfilesystem:\nenvironment:\n  set:\n  pass: []\nlimits: {}\nnetwork:\n")
    #expect(document.workspacePath == nil)
    #expect(document.environmentSet.isEmpty)
    #expect(document.limits == PolicyLimits())
    #expect(document.network == nil)
}

let sizeCases: [(text: String, bytes: UInt64)] = [
    ("512MiB", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("4096", 4096), ("64k", 64 << 10),
    ("100MB", 100 << 20), ("1T", 1 << 40), ("\"256M\"", 256 << 20), ("1KiB", 1024), ("7", 7),
]

@Test("sizes in limits", arguments: sizeCases)
func sizesParse(_ row: (text: String, bytes: UInt64)) throws {
    let limits = try parsePolicy("version: 1\nlimits:\n  memory: \(row.text)\n  file_size: \(row.text)\n  output: \(row.text)\n  tmp: \(row.text)\n  shm: \(row.text)").limits
    #expect(limits.memoryBytes == row.bytes)
    #expect(limits.fileSizeBytes == row.bytes)
    #expect(limits.outputBytes == row.bytes)
    #expect(limits.tmpBytes == row.bytes)
    #expect(limits.shmBytes == row.bytes)
}

let durationCases: [(text: String, milliseconds: UInt64)] = [
    ("30s", 30_000), ("250ms", 250), ("2m", 120_000), ("1h", 3_600_000), ("1.5s", 1500), ("10", 10_000),
    ("0.5", 500), ("90sec", 90_000), ("5min", 300_000),
]

@Test("durations in limits", arguments: durationCases)
func durationsParse(_ row: (text: String, milliseconds: UInt64)) throws {
    let limits = try parsePolicy("version: 1\nlimits: {wall: \(row.text), cpu: \(row.text)}").limits
    #expect(limits.wallMilliseconds == row.milliseconds)
    #expect(limits.cpuMilliseconds == row.milliseconds)
}

@Test("process and file counts in limits")
func countsParse() throws {
    let limits = try parsePolicy("version: 1\nlimits: {pids: 1, open_files: 1048576}").limits
    #expect(limits.pids == 1)
    #expect(limits.openFiles == 1_048_576)
}

let workspacePathCases: [(written: String, base: String, resolved: String)] = [
    (".", "/home/u/proj", "/home/u/proj"),
    ("src", "/home/u/proj", "/home/u/proj/src"),
    ("./src/", "/home/u/proj/", "/home/u/proj/src"),
    // '..' is kept for realpath: after a symlink it does not mean "drop the last name".
    ("../shared", "/home/u/proj", "/home/u/proj/../shared"),
    ("/abs//x/./y/", "/home/u/proj", "/abs/x/y"),
    ("/", "/home/u/proj", "/"),
    (".", "/", "/"),
]

@Test("the workspace path is resolved against the policy's directory", arguments: workspacePathCases)
func workspacePathResolves(_ row: (written: String, base: String, resolved: String)) throws {
    let document = try PolicyLoader.parse(
        "version: 1\nfilesystem:\n  workspace: {path: \"\(row.written)\"}", sourcePath: "p.yaml", baseDirectory: row.base)
    #expect(document.workspacePath == row.resolved)
    #expect(document.workspaceReadOnly == nil)
}

@Test("a relative base directory is taken from the current directory")
func relativeBaseDirectory() throws {
    let document = try PolicyLoader.parse(
        "version: 1\nfilesystem: {workspace: {path: ws}}", sourcePath: "p.yaml", baseDirectory: "conf")
    let cwd = FileManager.default.currentDirectoryPath
    #expect(document.workspacePath == (cwd == "/" ? "" : cwd) + "/conf/ws")
}

@Test("workspace mode ro and rw; mode alone is allowed")
func workspaceModes() throws {
    #expect(try parsePolicy("version: 1\nfilesystem: {workspace: {mode: ro}}").workspaceReadOnly == true)
    #expect(try parsePolicy("version: 1\nfilesystem: {workspace: {mode: rw}}").workspaceReadOnly == false)
    #expect(try parsePolicy("version: 1\nfilesystem: {workspace: {mode: ro}}").workspacePath == nil)
}

@Test("network accepts none and {mode: none}")
func networkForms() throws {
    #expect(try parsePolicy("version: 1\nnetwork: none").network == NetworkPolicy.none)
    #expect(try parsePolicy("version: 1\nnetwork: {mode: none}").network == NetworkPolicy.none)
    #expect(try parsePolicy("version: 1").network == nil)
}

@Test("environment variables keep the order of the file")
func environmentOrder() throws {
    let document = try parsePolicy("version: 1\nenvironment:\n  set:\n    Z: a\n    A: b\n    M_1: c\n  pass: [Z2, A2]")
    #expect(document.environmentSet.map(\.name) == ["Z", "A", "M_1"])
    #expect(document.environmentPass == ["Z2", "A2"])
}

@Test("anchors and aliases are resolved like any YAML")
func aliasesResolve() throws {
    let document = try parsePolicy("version: 1\nfilesystem:\n  read_only: [&zone /usr/share/zoneinfo]\n  hidden: [*zone]")
    #expect(document.hiddenPatterns == ["/usr/share/zoneinfo"])
}

// MARK: files

/// A fresh directory under the system temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("stockade-policy-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Test("load(contentsOf:) reads a file and resolves the workspace next to it")
func loadFromFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/policy.yaml"
    try fullPolicy.write(toFile: path, atomically: true, encoding: .utf8)
    var expected = fullPolicyDocument
    expected.sourcePath = path
    expected.workspacePath = directory
    #expect(try PolicyLoader.load(contentsOf: path) == expected)
}

@Test("errors from a loaded file name the file as it was given")
func loadErrorNamesFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/bad.yaml"
    try "version: 1\nlimits: {memory: lots}\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect {
        _ = try PolicyLoader.load(contentsOf: path)
    } throws: { error in
        (error as? StockadeError)?.message.hasPrefix("\(path):2:18: 'limits.memory'") ?? false
    }
}

@Test("a missing, directory or unreadable policy file is an error naming the path")
func loadFailures() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let cases: [(path: String, reason: String)] = [
        (directory + "/missing.yaml", "no such file"),
        (directory, "is a directory"),
        ("", "no such file"),
    ]
    for row in cases {
        #expect {
            _ = try PolicyLoader.load(contentsOf: row.path)
        } throws: { error in
            guard let error = error as? StockadeError else { return false }
            return error.code == .invalidArgument && error.message.contains("'\(row.path)'")
                && error.message.contains(row.reason) && error.message.hasPrefix("failed to read policy file")
        }
    }
}

@Test("a policy file that is not UTF-8 is rejected")
func loadRejectsNonUTF8() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/latin1.yaml"
    try Data([0x76, 0x65, 0x72, 0x73, 0x69, 0x6F, 0x6E, 0x3A, 0x20, 0x31, 0x0A, 0x23, 0xE9, 0xFF, 0x0A]).write(to: URL(fileURLWithPath: path))
    #expect {
        _ = try PolicyLoader.load(contentsOf: path)
    } throws: { error in
        guard let error = error as? StockadeError else { return false }
        return error.code == .invalidPolicy && error.message.contains(path) && error.message.contains("UTF-8")
    }
}

@Test("a policy file larger than the cap is refused without reading it all")
func loadRefusesHugeFiles() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/huge.yaml"
    try Data(repeating: 0x20, count: PolicyLoader.maximumFileSize + 1).write(to: URL(fileURLWithPath: path))
    #expect {
        _ = try PolicyLoader.load(contentsOf: path)
    } throws: { error in
        (error as? StockadeError)?.message.contains("too large") ?? false
    }
}

@Test("core-schema tags are accepted: !!str makes a number a string")
func coreSchemaTags() throws {
    let document = try parsePolicy("version: 1\nenvironment:\n  set: {PORT: !!str 8080}\nlimits: !!map {pids: !!int 8}")
    #expect(document.environmentSet == [EnvironmentVariable(name: "PORT", value: "8080")])
    #expect(document.limits.pids == 8)
}
