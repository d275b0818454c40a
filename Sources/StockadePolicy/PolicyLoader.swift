import Foundation
import StockadeCore
import Yams

/// Reads version-1 policy files.
///
/// Loading is strict: an unknown key, a value of the wrong type, a duplicate key and a
/// YAML syntax error are all errors (deny by default; a typo must never loosen a policy
/// silently). Every such error is a `StockadeError` with code `.invalidPolicy` whose
/// message starts with `file:line:column:` and names the key, for example
/// `policy.yaml:4:3: unknown key 'memroy' in 'limits'; expected one of: wall, cpu, ...`.
///
/// The functions keep no state and are safe to call from any thread.
public enum PolicyLoader {
    /// The largest policy file accepted. Policies are short; the cap keeps a path such
    /// as `/dev/zero` from being read forever.
    public static let maximumFileSize = 1 << 20

    /// Reads and parses the policy file at `path`. A relative workspace path in the file
    /// is resolved against the directory that contains the file.
    ///
    /// - Throws: `StockadeError` `.invalidArgument` naming the path if the file does not
    ///   exist, is a directory, cannot be read or is larger than `maximumFileSize`;
    ///   `.invalidPolicy` if it is not UTF-8 text or not a valid policy.
    public static func load(contentsOf path: String) throws -> PolicyDocument {
        let text = try readText(at: path)
        return try parse(text, sourcePath: path, baseDirectory: PolicyPaths.directory(containing: path))
    }

    /// Parses policy text.
    ///
    /// - Parameters:
    ///   - sourcePath: the file name to use in messages and to record in the document.
    ///   - baseDirectory: the directory a relative workspace path is resolved against;
    ///     if it is itself relative, it is taken relative to the current directory.
    /// - Throws: `StockadeError` `.invalidPolicy` with the position and the key at fault.
    public static func parse(_ yaml: String, sourcePath: String, baseDirectory: String) throws -> PolicyDocument {
        let reader = PolicyReader(sourcePath: sourcePath)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw syntaxError(error, sourcePath: sourcePath, yaml: yaml)
        }
        var document = try reader.document(
            from: root, baseDirectory: PolicyPaths.absolute(baseDirectory, relativeTo: currentDirectory))
        document.sourcePath = sourcePath
        return document
    }

    private static var currentDirectory: String {
        FileManager.default.currentDirectoryPath
    }

    private static func readText(at path: String) throws -> String {
        func failure(_ why: String, cause: (any Error)? = nil) -> StockadeError {
            StockadeError(
                .invalidArgument, "failed to read policy file '\(path.printableForMessages)': \(why). Check the path",
                cause: cause)
        }
        guard !path.isEmpty else { throw failure("no such file") }
        // O_NONBLOCK and a regular-file check before reading: a FIFO or a device put
        // where the policy should be (by a sandbox writing its workspace, say) must not
        // hang stockade or feed it endless input.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let error = errno
            if error == ENOENT || error == ENOTDIR { throw failure("no such file") }
            throw failure("it cannot be read (\(String(cString: strerror(error))); is it readable by this user?)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("it cannot be inspected") }
        guard (info.st_mode & S_IFMT) != S_IFDIR else { throw failure("it is a directory, not a file") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw failure("it is not a regular file") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= maximumFileSize {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw failure("it cannot be read (\(String(cString: strerror(errno))))") }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        let data = Data(bytes)
        guard data.count <= maximumFileSize else {
            throw failure("it is larger than \(Quantity.formatBytes(UInt64(maximumFileSize))), too large for a policy")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw StockadeError(.invalidPolicy, "\(path): the file is not UTF-8 text; save it as UTF-8")
        }
        return text
    }

    /// Turns a Yams error into a positioned message. libyaml counts lines and columns
    /// from 1, as editors do.
    static func syntaxError(_ error: YamlError, sourcePath: String, yaml: String) -> StockadeError {
        func positioned(_ mark: (line: Int, column: Int), _ message: String) -> StockadeError {
            StockadeError(.invalidPolicy, "\(sourcePath):\(mark.line):\(mark.column): \(message)", cause: error)
        }
        switch error {
        case let .scanner(context, problem, mark, _),
            let .parser(context, problem, mark, _),
            let .composer(context, problem, mark, _):
            var message = "invalid YAML: \(problem)"
            if let context, problem.hasPrefix("but ") {
                // libyaml splits some messages in two: "expected a single document in
                // the stream" + "but found another document".
                message = "invalid YAML: \(context.text), \(problem)"
            } else if let context {
                message += " (\(context.text) at \(context.mark.line):\(context.mark.column))"
            }
            if problem.contains("another document") {
                message += "; a policy file holds one document, so remove the '---' and what follows it"
            } else if problem.contains("alias") || (context?.text.contains("alias") ?? false) {
                message += "; a value that starts with '*' must be quoted, as in \"*.pem\""
            } else if problem.contains("cannot start any token") {
                message += "; quote values that start with characters such as '@' or '`', and indent with spaces, not tabs"
            }
            return positioned((mark.line, mark.column), message)
        case let .reader(problem, offset, _, _):
            return positioned(position(ofCharacterOffset: offset ?? 0, in: yaml), "invalid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map { "'\($0.printableForMessages)'" }.joined(separator: ", ")
            return positioned(
                (context.mark.line, context.mark.column),
                "key \(keys) appears more than once in the same mapping; each key may be given only once")
        default:
            return StockadeError(.invalidPolicy, "\(sourcePath): invalid YAML: \(error)", cause: error)
        }
    }

    /// The line and column of the character at `offset` (counted in `Character`s, as
    /// Yams reports reader errors).
    private static func position(ofCharacterOffset offset: Int, in text: String) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for character in text.prefix(offset) {
            if character == "\n" || character == "\r\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }
}

/// Lexical path handling for the loader. Nothing here touches the file system.
enum PolicyPaths {
    /// `path` made absolute against `base`, without empty or `.` components and without a
    /// trailing slash. `..` is kept: only the kernel knows what it means after a symbolic
    /// link, so it is left for `realpath` when the plan is compiled.
    static func absolute(_ path: String, relativeTo base: String) -> String {
        let joined = path.hasPrefix("/") ? path : base + "/" + path
        let parts = joined.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    /// The directory that contains `path`, as written (relative if `path` is).
    static func directory(containing path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = path[..<slash]
        return directory.isEmpty ? "/" : String(directory)
    }
}
