import StockadeCore

/// A gitignore-like pattern over paths relative to the workspace root, used to hide
/// workspace entries (`filesystem.hidden`, `HiddenDefaults`).
///
/// Syntax:
/// - A pattern without `/` (other than a trailing one) matches a name at any depth:
///   `.env` matches `.env` and `sub/dir/.env`.
/// - A pattern with a `/` at the start or in the middle is anchored at the workspace root:
///   `config/*.json` matches `config/a.json` but not `x/config/a.json`. A leading `/` only
///   anchors and is dropped.
/// - `*` matches any run of characters within one name, `?` exactly one character; neither
///   matches `/`. Both match a leading dot: `*.pem` matches `.hidden.pem`.
/// - A component that is exactly `**` matches any number of names, zero included:
///   `**/x`, `a/**/b`, and `secrets/**`, which matches `secrets` itself and everything
///   under it.
/// - `[abc]`, `[a-z]`, `[!x]` (or `[^x]`) match one character of, or not of, a set.
/// - `\` makes the next character literal.
/// - A trailing `/` restricts the pattern to directories.
///
/// Matching is by name only and is case-sensitive. It never touches the file system:
/// callers that start from host paths resolve symbolic links first. Values are immutable
/// and safe to share between threads.
public struct Glob: Equatable, Sendable, CustomStringConvertible {
    /// The pattern as written.
    public let pattern: String
    /// True if the pattern ended in `/` and so matches directories only.
    public let matchesDirectoriesOnly: Bool
    let segments: [GlobSegment]

    /// Compiles a pattern.
    ///
    /// - Throws: `StockadeError` with code `.invalidArgument` if the pattern is empty,
    ///   contains a NUL byte, starts with `!` (negation is not supported), has an unclosed
    ///   `[` or a reversed range, ends in a lone `\`, or uses `.` or `..` as a component.
    public init(_ pattern: String) throws {
        do {
            try self.init(compiling: pattern)
        } catch {
            throw StockadeError(
                .invalidArgument,
                "failed to parse glob '\(pattern.printableForMessages)': \(error.reason). \(error.hint)")
        }
    }

    init(compiling pattern: String) throws(GlobSyntaxError) {
        self.pattern = pattern
        guard !pattern.isEmpty else {
            throw GlobSyntaxError(
                reason: "the pattern is empty",
                hint: "Write a name such as '.env' or a path such as 'secrets/**'")
        }
        guard !pattern.unicodeScalars.contains("\0") else {
            throw GlobSyntaxError(
                reason: "the pattern contains a NUL byte",
                hint: "File names cannot contain NUL; remove it")
        }
        guard !pattern.hasPrefix("!") else {
            throw GlobSyntaxError(
                reason: "patterns starting with '!' (negation) are not supported",
                hint: "Hidden paths can only be added, never removed; write '\\!' to match a name starting with '!'")
        }
        var body = Substring(pattern)
        var directoriesOnly = false
        while body.hasSuffix("/") {
            body.removeLast()
            directoriesOnly = true
        }
        var anchored = false
        while body.hasPrefix("/") {
            body.removeFirst()
            anchored = true
        }
        if body.contains("/") { anchored = true }
        let parts = body.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.isEmpty else {
            throw GlobSyntaxError(
                reason: "the pattern names no file",
                hint: "Write a name such as '.env' or a path such as 'secrets/**'")
        }
        var compiled: [GlobSegment] = anchored ? [] : [.anyDepth]
        for part in parts {
            if part == "." || part == ".." {
                throw GlobSyntaxError(
                    reason: "'.' and '..' cannot be components of a pattern",
                    hint: "Write paths relative to the workspace root, such as 'config/*.json'")
            }
            compiled.append(part == "**" ? .anyDepth : .name(try GlobToken.parse(part)))
        }
        self.matchesDirectoriesOnly = directoriesOnly
        self.segments = compiled
    }

    /// Whether the pattern matches a file (not a directory) at `relativePath`.
    /// Same as `matches(relativePath, isDirectory: false)`.
    public func matches(_ relativePath: String) -> Bool {
        matches(relativePath, isDirectory: false)
    }

    /// Whether the pattern matches the entry at `relativePath`, a path relative to the
    /// workspace root such as `a/b/.env`. Empty and `.` components are ignored and `..`
    /// removes the name before it, so `a/../secrets/key` is tested as `secrets/key`. The
    /// root itself (an empty path) never matches.
    public func matches(_ relativePath: String, isDirectory: Bool) -> Bool {
        matches(components: GlobPath.components(of: relativePath), isDirectory: isDirectory)
    }

    func matches(components: [[Unicode.Scalar]], isDirectory: Bool) -> Bool {
        matches(components: components, count: components.count, isDirectory: isDirectory)
    }

    /// Whether the pattern matches the path made of the first `count` components (the
    /// callers that test every parent of a path use this to avoid copying prefixes).
    func matches(components: [[Unicode.Scalar]], count: Int, isDirectory: Bool) -> Bool {
        if count == 0 { return false }
        if matchesDirectoriesOnly && !isDirectory { return false }
        // The common case (every default pattern): a name at any depth. Only the last
        // component matters; this runs once per workspace entry on every start.
        if segments.count == 2, case .anyDepth = segments[0], case .name(let tokens) = segments[1] {
            return GlobToken.match(tokens, components[count - 1])
        }
        // An anchored first name that does not match rules the path out at once.
        if case .name(let first) = segments[0], !GlobToken.match(first, components[0]) { return false }
        // Anchored names without `**`: one component each, compared in order.
        if segments.count == count, !segments.contains(.anyDepth) {
            for (index, segment) in segments.enumerated() {
                guard case .name(let tokens) = segment, GlobToken.match(tokens, components[index]) else { return false }
            }
            return true
        }
        // reachable[j]: the segments seen so far match exactly the first j components.
        // One pass per segment keeps `**` linear instead of backtracking. The two rows
        // live on the stack: this runs for every rule on every decision.
        return withUnsafeTemporaryAllocation(of: Bool.self, capacity: 2 * (count + 1)) { buffer in
            var reachable = UnsafeMutableBufferPointer(rebasing: buffer[0...count])
            var next = UnsafeMutableBufferPointer(rebasing: buffer[(count + 1)...])
            reachable.initialize(repeating: false)
            reachable[0] = true
            for segment in segments {
                next.initialize(repeating: false)
                switch segment {
                case .anyDepth:
                    var seen = false
                    for index in 0...count {
                        seen = seen || reachable[index]
                        next[index] = seen
                    }
                case .name(let tokens):
                    for index in 0..<count where reachable[index] {
                        next[index + 1] = GlobToken.match(tokens, components[index])
                    }
                }
                swap(&reachable, &next)
                if !reachable.contains(true) { return false }
            }
            return reachable[count]
        }
    }

    public var description: String { pattern }
}

/// Several globs; a path matches the set if it matches any of them. Immutable and safe to
/// share between threads.
public struct GlobSet: Equatable, Sendable {
    /// The globs, in the order given.
    public let globs: [Glob]

    /// Compiles every pattern.
    ///
    /// - Throws: the `StockadeError` (`.invalidArgument`) of the first pattern that does
    ///   not compile; see `Glob.init(_:)`.
    public init(patterns: [String]) throws {
        self.globs = try patterns.map { try Glob($0) }
    }

    /// A set of globs that are already compiled.
    public init(_ globs: [Glob]) {
        self.globs = globs
    }

    /// Whether any glob matches the entry at `relativePath` itself.
    public func matches(_ relativePath: String, isDirectory: Bool) -> Bool {
        matches(components: GlobPath.components(of: relativePath), isDirectory: isDirectory)
    }

    /// The same for a path already split into its names (no `.`, `..` or empty ones),
    /// for callers that walk a tree and extend the parent's components by one name.
    public func matches(components: [[Unicode.Scalar]], isDirectory: Bool) -> Bool {
        globs.contains { $0.matches(components: components, isDirectory: isDirectory) }
    }

    /// Whether any glob matches the entry at `relativePath` or one of the directories
    /// that contain it. This is the question "is this path hidden?": an entry inside a
    /// hidden directory is hidden too (`secrets` hides `secrets/a/key`).
    public func matchesPathOrAnyParent(_ relativePath: String, isDirectory: Bool) -> Bool {
        matchesPathOrAnyParentComponents(GlobPath.components(of: relativePath), isDirectory: isDirectory)
    }

    /// `matchesPathOrAnyParent` for a path already split into names.
    func matchesPathOrAnyParentComponents(_ components: [[Unicode.Scalar]], isDirectory: Bool) -> Bool {
        guard !components.isEmpty else { return false }
        for length in 1...components.count {
            let prefixIsDirectory = length < components.count || isDirectory
            if globs.contains(where: { $0.matches(components: components, count: length, isDirectory: prefixIsDirectory) }) {
                return true
            }
        }
        return false
    }
}

/// Why a pattern does not compile, in two parts so that the policy loader can put the
/// file position in front.
struct GlobSyntaxError: Error {
    /// What is wrong, without a trailing period: "the pattern is empty".
    var reason: String
    /// What to do about it, without a trailing period.
    var hint: String
}

/// One `/`-separated component of a compiled pattern.
enum GlobSegment: Equatable, Sendable {
    /// `**`: any number of path components, zero included.
    case anyDepth
    /// One path component matched by these tokens.
    case name([GlobToken])
}

/// One element of a pattern component.
enum GlobToken: Equatable, Sendable {
    case literal(Unicode.Scalar)
    /// `?`
    case anyCharacter
    /// `*` (runs of `*` inside a component are folded into one).
    case anyRun
    /// `[...]`
    case characterClass(negated: Bool, ranges: [ClosedRange<Unicode.Scalar>])

    func matches(_ character: Unicode.Scalar) -> Bool {
        switch self {
        case .literal(let expected): return character == expected
        case .anyCharacter: return true
        case .anyRun: return false
        case .characterClass(let negated, let ranges):
            return ranges.contains { $0.contains(character) } != negated
        }
    }

    /// Whether `tokens` match the whole of `name`. Each `*` is retried from one character
    /// further on only when what follows fails, which is enough because `*` never has to
    /// cross a `/` here.
    static func match(_ tokens: [GlobToken], _ name: [Unicode.Scalar]) -> Bool {
        var token = 0
        var position = 0
        var lastRun: (token: Int, position: Int)?
        while position < name.count {
            if token < tokens.count, tokens[token] == .anyRun {
                lastRun = (token, position)
                token += 1
            } else if token < tokens.count, tokens[token].matches(name[position]) {
                token += 1
                position += 1
            } else if let run = lastRun {
                lastRun = (run.token, run.position + 1)
                token = run.token + 1
                position = run.position + 1
            } else {
                return false
            }
        }
        while token < tokens.count, tokens[token] == .anyRun { token += 1 }
        return token == tokens.count
    }

    /// Parses one component of a pattern (it contains no `/`).
    static func parse(_ component: Substring) throws(GlobSyntaxError) -> [GlobToken] {
        let scalars = Array(component.unicodeScalars)
        var tokens: [GlobToken] = []
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar {
            case "\\":
                guard index + 1 < scalars.count else { throw trailingBackslash }
                tokens.append(.literal(scalars[index + 1]))
                index += 2
            case "*":
                if tokens.last != .anyRun { tokens.append(.anyRun) }
                index += 1
            case "?":
                tokens.append(.anyCharacter)
                index += 1
            case "[":
                let (token, end) = try parseClass(scalars, openingAt: index)
                tokens.append(token)
                index = end
            default:
                tokens.append(.literal(scalar))
                index += 1
            }
        }
        return tokens
    }

    /// Parses `[...]` starting at `scalars[opening]`; returns the token and the index
    /// just past the closing `]`. A `]` right after `[` or `[!` is a literal member.
    private static func parseClass(
        _ scalars: [Unicode.Scalar], openingAt opening: Int
    ) throws(GlobSyntaxError) -> (GlobToken, Int) {
        var index = opening + 1
        var negated = false
        if index < scalars.count, scalars[index] == "!" || scalars[index] == "^" {
            negated = true
            index += 1
        }
        var ranges: [ClosedRange<Unicode.Scalar>] = []
        var first = true
        while true {
            guard index < scalars.count else {
                throw GlobSyntaxError(
                    reason: "the '[' that starts a character class is never closed",
                    hint: "Close the class with ']' or write '\\[' for a literal '['")
            }
            if scalars[index] == "]" && !first {
                return (.characterClass(negated: negated, ranges: ranges), index + 1)
            }
            first = false
            let low = try classMember(scalars, at: &index)
            if index + 1 < scalars.count, scalars[index] == "-", scalars[index + 1] != "]" {
                index += 1
                let high = try classMember(scalars, at: &index)
                guard low <= high else {
                    throw GlobSyntaxError(
                        reason: "the range '\(low)-\(high)' in a character class is reversed",
                        hint: "Write the lower character first, as in 'a-z'")
                }
                ranges.append(low...high)
            } else {
                ranges.append(low...low)
            }
        }
    }

    private static func classMember(
        _ scalars: [Unicode.Scalar], at index: inout Int
    ) throws(GlobSyntaxError) -> Unicode.Scalar {
        if scalars[index] == "\\" {
            guard index + 1 < scalars.count else { throw trailingBackslash }
            index += 2
            return scalars[index - 1]
        }
        index += 1
        return scalars[index - 1]
    }

    private static var trailingBackslash: GlobSyntaxError {
        GlobSyntaxError(
            reason: "a '\\' at the end of a component escapes nothing",
            hint: "Remove it, or write '\\\\' for a literal backslash")
    }
}

/// Splitting of the paths that globs are matched against.
enum GlobPath {
    /// The names in `path`, with empty and `.` components dropped and `..` applied.
    static func components(of path: String, startingWith first: [[Unicode.Scalar]] = []) -> [[Unicode.Scalar]] {
        // One pass over the scalars: this runs for every path of every decision.
        var names = first
        var current: [Unicode.Scalar] = []
        func finish() {
            if current.isEmpty || current == [Unicode.Scalar(".")] {
            } else if current == [Unicode.Scalar("."), Unicode.Scalar(".")] {
                if !names.isEmpty { names.removeLast() }
            } else {
                names.append(current)
            }
            current.removeAll(keepingCapacity: true)
        }
        for scalar in path.unicodeScalars {
            if scalar == "/" { finish() } else { current.append(scalar) }
        }
        finish()
        return names
    }
}

extension String {
    /// The string with control characters (NUL included) written as `\u{..}`, so that a
    /// message quoting user input stays on one line and shows what is there.
    public var printableForMessages: String {
        var result = ""
        for scalar in unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
