import StockadeCore
import Yams

/// The decoders of the version-1 sections. Each one checks its keys against a fixed list
/// (an unknown key is an error, never ignored) and every value against its type.
extension PolicyReader {
    static let topLevelKeys = [
        "version", "extends", "isolation", "toolset", "filesystem", "environment", "limits", "network",
        "rules", "labels", "approval", "secrets", "audit",
    ]
    static let filesystemKeys = ["workspace", "read_only", "hidden", "protected"]
    static let workspaceKeys = ["path", "mode"]
    static let environmentKeys = ["set", "pass"]
    static let limitKeys = ["wall", "cpu", "memory", "pids", "open_files", "file_size", "output", "tmp", "shm"]

    func document(from root: Node?, baseDirectory: String) throws -> PolicyDocument {
        guard let root else {
            throw error(at: nil, "the policy is empty; it needs at least 'version: 1'")
        }
        guard case .mapping(let mapping) = root else {
            throw error(at: root, "the policy must be a mapping of sections starting with 'version: 1', got \(describe(root))")
        }
        // The version comes first: a file written for another version should be told so,
        // not be given a list of keys it does not know.
        guard let versionNode = mapping["version"] else {
            throw error(at: root, "missing required key 'version'; add 'version: 1' at the top of the file")
        }
        let versionText = try text(of: versionNode, at: "version", expected: "1")
        guard versionText == "1" else {
            throw error(at: versionNode, "'version' must be 1, got \(describe(versionNode)); this stockade reads version 1 policies only")
        }

        try checkTree(root)

        var document = PolicyDocument(version: 1)
        let sections = try entries(of: root, at: "", allowed: Self.topLevelKeys, example: "{version: 1}")
        for section in sections where !isNull(section.value) {
            switch section.key {
            case "filesystem": try readFilesystem(section.value, into: &document, baseDirectory: baseDirectory)
            case "environment": try readEnvironment(section.value, into: &document)
            case "limits": document.limits = try readLimits(section.value)
            case "network": document.network = try readNetwork(section.value)
            case "extends": document.extends = try readExtends(section)
            case "isolation": document.isolation = try readIsolation(section.value)
            case "toolset": document.toolset = try readToolset(section.value)
            case "rules": document.rules = try readRules(section.value)
            case "labels": document.labels = try readLabels(section.value)
            case "approval": document.approval = try readApproval(section.value)
            case "secrets": document.secrets = try readSecrets(section.value)
            case "audit": document.audit = try readAudit(section.value, baseDirectory: baseDirectory)
            default: break
            }
        }
        return document
    }

    // MARK: filesystem

    private func readFilesystem(_ node: Node, into document: inout PolicyDocument, baseDirectory: String) throws {
        let fields = try entries(
            of: node, at: "filesystem", allowed: Self.filesystemKeys,
            example: "{workspace: {path: ., mode: rw}}")
        for field in fields {
            switch field.key {
            case "workspace":
                if isNull(field.value) { continue }
                try readWorkspace(field.value, into: &document, baseDirectory: baseDirectory)
            case "read_only":
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[/usr/share/zoneinfo]").enumerated() {
                    document.readOnlyPaths.append(try readOnlyPath(item, at: "\(field.keyPath)[\(index)]"))
                }
            case "hidden":
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[\"*.sqlite\", \"secrets/**\"]").enumerated() {
                    document.hiddenPatterns.append(try hiddenPattern(item, at: "\(field.keyPath)[\(index)]"))
                }
            case "protected":
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[\"Makefile\", \".github/workflows/\"]").enumerated() {
                    document.protectedPatterns.append(try hiddenPattern(item, at: "\(field.keyPath)[\(index)]"))
                }
            default: break
            }
        }
    }

    private func readWorkspace(_ node: Node, into document: inout PolicyDocument, baseDirectory: String) throws {
        let fields = try entries(
            of: node, at: "filesystem.workspace", allowed: Self.workspaceKeys, example: "{path: ., mode: rw}")
        for field in fields {
            let value = try text(of: field.value, at: field.keyPath, expected: field.key == "mode" ? "rw or ro" : "a path")
            switch field.key {
            case "path":
                guard !isNull(field.value), !value.isEmpty else {
                    throw error(at: field.value, "'\(field.keyPath)' must be a path such as '.', got nothing")
                }
                try checkPathText(value, at: field)
                document.workspacePath = PolicyPaths.absolute(value, relativeTo: baseDirectory)
            case "mode":
                switch value {
                case "rw": document.workspaceReadOnly = false
                case "ro": document.workspaceReadOnly = true
                default:
                    throw error(at: field.value, "'\(field.keyPath)' must be rw or ro, got \(describe(field.value))")
                }
            default: break
            }
        }
    }

    private func readOnlyPath(_ node: Node, at keyPath: String) throws -> String {
        let path = try text(of: node, at: keyPath, expected: "an absolute path")
        guard path.hasPrefix("/") else {
            throw error(at: node, "'\(keyPath)' must be an absolute host path such as /usr/share/zoneinfo, got \(describe(node))")
        }
        guard !path.unicodeScalars.contains("\0") else {
            throw error(at: node, "'\(keyPath)' contains a NUL byte, which no path can contain")
        }
        // The path is also the mount point inside the sandbox; '..' there would be
        // resolved against a different tree than the host's, so it is refused outright.
        guard !path.split(separator: "/").contains("..") else {
            throw error(at: node, "'\(keyPath)' must not contain '..', got \(describe(node)); write the path without it")
        }
        return PolicyPaths.absolute(path, relativeTo: "/")
    }

    private func hiddenPattern(_ node: Node, at keyPath: String) throws -> String {
        let pattern = try text(of: node, at: keyPath, expected: "a glob such as \"*.sqlite\"")
        if isNull(node) {
            throw error(at: node, "'\(keyPath)' must be a glob such as \"*.sqlite\", got nothing")
        }
        do {
            _ = try Glob(compiling: pattern)
        } catch {
            throw self.error(
                at: node,
                "'\(keyPath)' is not a valid glob, got '\(pattern.printableForMessages)': \(error.reason). \(error.hint)")
        }
        return pattern
    }

    func checkPathText(_ path: String, at field: Entry) throws {
        if path.unicodeScalars.contains("\0") {
            throw error(at: field.value, "'\(field.keyPath)' contains a NUL byte, which no path can contain")
        }
        if path.hasPrefix("~") {
            throw error(
                at: field.value,
                "'\(field.keyPath)' starts with '~', which is not expanded; write an absolute path or one relative to the policy file")
        }
    }

    // MARK: environment

    private func readEnvironment(_ node: Node, into document: inout PolicyDocument) throws {
        let fields = try entries(
            of: node, at: "environment", allowed: Self.environmentKeys, example: "{set: {LOG_LEVEL: debug}}")
        var namesSet = Set<String>()
        var namesPassed: [(name: String, node: Node)] = []
        for field in fields where !isNull(field.value) {
            switch field.key {
            case "set":
                for variable in try entries(of: field.value, at: field.keyPath, allowed: nil, example: "{LOG_LEVEL: debug}") {
                    try checkVariableName(variable.key, at: variable.keyNode, in: field.keyPath)
                    document.environmentSet.append(
                        EnvironmentVariable(name: variable.key, value: try variableValue(variable)))
                    namesSet.insert(variable.key)
                }
            case "pass":
                for (index, item) in try items(of: field.value, at: field.keyPath, example: "[GITHUB_ACTOR]").enumerated() {
                    let name = try text(of: item, at: "\(field.keyPath)[\(index)]", expected: "a variable name")
                    try checkVariableName(name, at: item, in: field.keyPath)
                    if namesPassed.contains(where: { $0.name == name }) {
                        throw error(at: item, "'\(name)' is listed more than once in '\(field.keyPath)'")
                    }
                    namesPassed.append((name, item))
                    document.environmentPass.append(name)
                }
            default: break
            }
        }
        for passed in namesPassed where namesSet.contains(passed.name) {
            throw error(
                at: passed.node,
                "'\(passed.name)' is both in 'environment.set' and in 'environment.pass'; keep it in one of them")
        }
    }

    private func checkVariableName(_ name: String, at node: Node, in keyPath: String) throws {
        let scalars = Array(name.unicodeScalars)
        let valid = !scalars.isEmpty
            && scalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
            && !("0"..."9").contains(scalars[0])
        guard valid else {
            throw error(
                at: node,
                "'\(keyPath)' has an invalid variable name '\(name.printableForMessages)'; "
                    + "a name is ASCII letters, digits and '_', and does not start with a digit")
        }
    }

    private func variableValue(_ variable: Entry) throws -> String {
        let value = try text(of: variable.value, at: variable.keyPath, expected: "a string")
        // YAML reads `8080`, `true` and an empty value as a number, a boolean and null;
        // guessing the intended text would be wrong for `010` or `1e3`, so ask for quotes.
        guard variable.value.tag == Tag(.str) else {
            throw error(
                at: variable.value,
                "'\(variable.keyPath)' must be a string, got \(describe(variable.value)); "
                    + "quote the value, as in \(variable.key): \"\(value.printableForMessages)\"")
        }
        guard !value.unicodeScalars.contains("\0") else {
            throw error(at: variable.value, "'\(variable.keyPath)' contains a NUL byte, which no environment variable can hold")
        }
        return value
    }

    // MARK: limits

    private func readLimits(_ node: Node) throws -> PolicyLimits {
        var limits = PolicyLimits()
        let fields = try entries(
            of: node, at: "limits", allowed: Self.limitKeys, example: "{wall: 30s, memory: 512MiB}")
        for field in fields {
            switch field.key {
            case "wall": limits.wallMilliseconds = try duration(field)
            case "cpu": limits.cpuMilliseconds = try duration(field)
            case "memory": limits.memoryBytes = try size(field)
            case "pids": limits.pids = try count(field)
            case "open_files": limits.openFiles = try count(field)
            case "file_size": limits.fileSizeBytes = try size(field)
            case "output": limits.outputBytes = try size(field)
            case "tmp": limits.tmpBytes = try size(field)
            case "shm": limits.shmBytes = try size(field)
            default: break
            }
        }
        return limits
    }

    func duration(_ field: Entry) throws -> UInt64 {
        let expected = "a duration such as 30s, 250ms or 2m"
        let value = try text(of: field.value, at: field.keyPath, expected: expected)
        if let milliseconds = Quantity.parseMilliseconds(value), !isNull(field.value) { return milliseconds }
        throw quantityError(field, value: value, expected: expected)
    }

    func size(_ field: Entry) throws -> UInt64 {
        let expected = "a size such as 512MiB or 2G"
        let value = try text(of: field.value, at: field.keyPath, expected: expected)
        if let bytes = Quantity.parseBytes(value), !isNull(field.value) { return bytes }
        throw quantityError(field, value: value, expected: expected)
    }

    func count(_ field: Entry) throws -> UInt64 {
        let expected = "a whole number greater than zero"
        let value = try text(of: field.value, at: field.keyPath, expected: expected)
        if value.allSatisfy(\.isASCIIDigit), let number = UInt64(value), number > 0 { return number }
        throw quantityError(field, value: value, expected: expected)
    }

    /// "must be greater than zero" for `0` and `-5M`, "must be <expected>" for anything else.
    private func quantityError(_ field: Entry, value: String, expected: String) -> StockadeError {
        let numericPrefix = value.drop(while: { $0 == " " }).prefix { $0.isASCIIDigit || $0 == "." || $0 == "-" || $0 == "+" }
        if let number = Double(numericPrefix), number <= 0 {
            return error(at: field.value, "'\(field.keyPath)' must be greater than zero, got \(describe(field.value))")
        }
        return error(at: field.value, "'\(field.keyPath)' must be \(expected), got \(describe(field.value))")
    }

}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isWholeNumber }
}
