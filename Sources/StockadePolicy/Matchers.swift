/// A pattern over one command-line argument: `*` any run of characters, `?` one
/// character, `[...]` a class, `\` escapes. Unlike a path glob, `*` also matches `/`:
/// an argument is one string, not a path.
struct ArgumentPattern: Equatable, Sendable {
    let tokens: [GlobToken]
    /// The text when the pattern has no wildcard: then matching is plain equality.
    let literal: String?

    init(compiling pattern: String) throws(GlobSyntaxError) {
        tokens = try GlobToken.parse(Substring(pattern))
        var literalText = String.UnicodeScalarView()
        for token in tokens {
            if case .literal(let scalar) = token { literalText.append(scalar) }
        }
        literal = literalText.count == tokens.count ? String(literalText) : nil
    }

    static func compile(_ pattern: String) -> Result<ArgumentPattern, GlobSyntaxError> {
        do throws(GlobSyntaxError) {
            return .success(try ArgumentPattern(compiling: pattern))
        } catch {
            return .failure(error)
        }
    }

    func matches(_ argument: String) -> Bool {
        // Scalar-wise, as the wildcard path is: no Unicode normalization either way.
        if let literal { return argument.unicodeScalars.elementsEqual(literal.unicodeScalars) }
        let scalars = Array(argument.unicodeScalars)
        // `GlobToken.match` treats `/` as an ordinary character; a whole argument is
        // simply one long name.
        return GlobToken.match(tokens, scalars)
    }

    /// Whether the pattern contains `/`: then it names a program by path, not by name.
    var namesPath: Bool {
        tokens.contains { $0 == .literal("/") }
    }
}

/// A host in a rule or a grant: an exact name, `*.` and a name (any name below it, not
/// the name itself), or a literal IP address. Names are compared in lower case and
/// without a trailing dot.
public struct HostPattern: Equatable, Sendable {
    /// The name (or address) after any `*.`.
    public let suffix: String
    /// `.` and the suffix, for wildcard matching without building it each time.
    let dottedSuffix: String
    public let wildcard: Bool

    public init?(_ pattern: String) {
        var text = pattern.lowercased()
        if text.hasSuffix(".") { text.removeLast() }
        if text.hasPrefix("*.") {
            wildcard = true
            text.removeFirst(2)
        } else {
            wildcard = false
        }
        guard Self.isHostName(text) || (!wildcard && Self.isAddressLiteral(text)) else { return nil }
        suffix = text
        dottedSuffix = "." + text
    }

    /// `host` is lower case without a trailing dot (as `ParsedURL` gives it).
    public func matches(_ host: String) -> Bool {
        if wildcard { return host.utf8.count > dottedSuffix.utf8.count && host.hasSuffix(dottedSuffix) }
        return host == suffix
    }

    /// Letters, digits and `-` in dot-separated labels of 1 to 63 characters, not all
    /// digits in the last label (that would be a number, not a name).
    public static func isHostName(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty, label.utf8.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-") else { return false }
            guard label.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else { return false }
        }
        return !(labels.last!.unicodeScalars.allSatisfy { ("0"..."9").contains($0) })
    }

    /// A dotted-quad IPv4 address or an IPv6 address of hex digits and colons.
    static func isAddressLiteral(_ text: String) -> Bool {
        let quads = text.split(separator: ".", omittingEmptySubsequences: false)
        if quads.count == 4, quads.allSatisfy({ UInt8($0) != nil && ($0 == "0" || !$0.hasPrefix("0")) }) { return true }
        return text.contains(":") && text.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) || $0 == ":" || $0 == "." }
    }
}

/// A path glob in a rule or label source: relative ones apply below `/workspace`
/// (with `Glob`'s name-at-any-depth rule), absolute ones from the sandbox root.
struct PathPattern: Sendable {
    let glob: Glob
    let absolute: Bool

    init(_ pattern: String) throws {
        glob = try Glob(pattern)
        absolute = pattern.hasPrefix("/")
    }

    /// Whether the pattern matches `path` (normalized, absolute in the sandbox view) or
    /// a directory that contains it.
    func matches(_ path: SandboxPath, isDirectory: Bool) -> Bool {
        guard let components = absolute ? path.components : path.workspaceRelative, !components.isEmpty else { return false }
        for length in 1...components.count {
            if glob.matches(components: components, count: length, isDirectory: length < components.count || isDirectory) { return true }
        }
        return false
    }
}

/// A sandbox path split into names, with `.`, `..` and empty names resolved lexically.
/// Relative paths are taken relative to the workspace.
struct SandboxPath: Sendable {
    static let workspace = Array("workspace".unicodeScalars)

    let components: [[Unicode.Scalar]]
    /// The names below `/workspace`, or nil for a path outside it (empty for
    /// `/workspace` itself). Computed once: every path rule asks for it.
    let workspaceRelative: [[Unicode.Scalar]]?

    init(_ path: String) {
        // A relative path starts below /workspace; `..` may still climb out of it.
        components = GlobPath.components(of: path, startingWith: path.hasPrefix("/") ? [] : [Self.workspace])
        workspaceRelative = components.first == Self.workspace ? Array(components.dropFirst()) : nil
    }

    var text: String {
        "/" + components.map { String(String.UnicodeScalarView($0)) }.joined(separator: "/")
    }
}
