import StockadeCore

/// An action taken apart once, so that every rule tests prepared values.
struct ActionFacts {
    let tool: Tool
    var argv: [String] = []
    /// The name of `argv[0]` (after its last `/`).
    var programName = ""
    var path: SandboxPath?
    var isDirectory = false
    var host: String?
    var method: String?
    var urlPath: SandboxPath?

    struct Problem: Error {
        let reason: String
    }

    /// The action's arguments as a rule sees them, or why the action is malformed.
    static func make(_ action: Action) -> Result<ActionFacts, Problem> {
        var facts = ActionFacts(tool: action.tool)
        switch action {
        case .exec(let argv, _):
            guard let program = argv.first, !program.isEmpty else { return .failure(Problem(reason: "the command is empty")) }
            if argv.contains(where: { $0.unicodeScalars.contains("\0") }) {
                return .failure(Problem(reason: "the command contains a NUL byte"))
            }
            facts.argv = argv
            facts.programName = program.split(separator: "/").last.map(String.init) ?? program
        case .readFile(let path), .writeFile(let path), .listFiles(let path):
            guard !path.isEmpty, !path.unicodeScalars.contains("\0") else {
                return .failure(Problem(reason: "the path is empty or contains a NUL byte"))
            }
            facts.path = SandboxPath(path)
            facts.isDirectory = action.tool == .listFiles
        case .http(let method, let url):
            guard !method.isEmpty, method.count <= 32, method.unicodeScalars.allSatisfy({ ("A"..."Z").contains($0) }) else {
                return .failure(Problem(reason: "the HTTP method '\(method.printableForMessages)' is not a method in capitals such as GET"))
            }
            guard let parsed = ParsedURL(url) else {
                return .failure(Problem(reason: "the URL '\(url.printableForMessages)' is not an absolute http or https URL with a host"))
            }
            facts.method = method
            facts.host = parsed.host
            facts.urlPath = SandboxPath(parsed.path)
        case .declassify(let rule):
            guard !rule.isEmpty else { return .failure(Problem(reason: "the declassify rule is not named")) }
        }
        return .success(facts)
    }

    /// What a default denial quotes: the program, the path or the host.
    var summary: String {
        switch tool {
        case .exec: return programName.printableForMessages
        case .readFile, .writeFile, .listFiles: return path?.text.printableForMessages ?? ""
        case .http: return "\(method ?? "") \(host ?? "")"
        case .declassify: return ""
        }
    }
}

/// An absolute http(s) URL, taken apart strictly: a URL that could be read two ways
/// (user information before the host, a backslash, white space) is refused rather than
/// guessed at, since the proxy and the guard must agree on the host.
public struct ParsedURL: Sendable {
    /// Lower case, without a trailing dot; an IPv6 address without its brackets.
    public let host: String
    /// True for https.
    public let secure: Bool
    /// The port given, or 80/443.
    public let port: Int
    /// The path, percent-decoded, `/` if empty.
    public let path: String
    /// Path and query as written (what a request line carries), `/` if empty; no fragment.
    public let target: String

    public init?(_ text: String) {
        // Byte-wise: the URL is ASCII when it is well formed, and this runs on every
        // http decision.
        let bytes = Array(text.utf8)
        if bytes.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "\\") }) { return nil }
        func hasPrefix(_ prefix: String) -> Bool {
            let scheme = Array(prefix.utf8)
            guard bytes.count >= scheme.count else { return false }
            for (index, byte) in scheme.enumerated() where Self.lower(bytes[index]) != byte { return false }
            return true
        }
        let start: Int
        if hasPrefix("https://") {
            start = 8
        } else if hasPrefix("http://") {
            start = 7
        } else {
            return nil
        }
        secure = start == 8
        var port = secure ? 443 : 80
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?"), bytes[end] != UInt8(ascii: "#") { end += 1 }
        let authority = bytes[start..<end]
        // User information and non-ASCII hosts (an IDN must come as its xn-- form) are
        // refused: either could be read as two different hosts.
        if authority.contains(UInt8(ascii: "@")) || authority.contains(where: { $0 >= 0x80 }) { return nil }
        var host: ArraySlice<UInt8>
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            host = authority[(authority.startIndex + 1)..<close]
            let after = authority[(close + 1)...]
            guard after.isEmpty || (after.first == UInt8(ascii: ":") && Self.isPort(after.dropFirst())) else { return nil }
            if !after.isEmpty { port = Self.portValue(after.dropFirst()) }
        } else if let colon = authority.firstIndex(of: UInt8(ascii: ":")) {
            guard Self.isPort(authority[(colon + 1)...]) else { return nil }
            host = authority[..<colon]
            port = Self.portValue(authority[(colon + 1)...])
        } else {
            host = authority
        }
        if host.last == UInt8(ascii: ".") { host = host.dropLast() }
        guard !host.isEmpty, let hostText = String(validating: host.map(Self.lower), as: UTF8.self) else { return nil }
        self.host = hostText
        self.port = port
        var pathEnd = end
        while pathEnd < bytes.count, bytes[pathEnd] != UInt8(ascii: "?"), bytes[pathEnd] != UInt8(ascii: "#") { pathEnd += 1 }
        guard let decoded = Self.percentDecoded(end == pathEnd ? [UInt8(ascii: "/")][...] : bytes[end..<pathEnd]) else { return nil }
        self.path = decoded
        var targetEnd = pathEnd
        while targetEnd < bytes.count, bytes[targetEnd] != UInt8(ascii: "#") { targetEnd += 1 }
        let rawTarget = String(decoding: bytes[end..<targetEnd], as: UTF8.self)
        target = rawTarget.hasPrefix("/") ? rawTarget : "/" + rawTarget
    }

    private static func portValue(_ text: ArraySlice<UInt8>) -> Int {
        text.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }

    private static func lower(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
    }

    private static func isPort(_ text: ArraySlice<UInt8>) -> Bool {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return false }
        let value = text.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return value > 0 && value <= 65535
    }

    /// `%41` → `A`, so that `/%61dmin` meets the rules for `/admin`. Nil for a broken
    /// escape or bytes that are not UTF-8.
    private static func percentDecoded(_ text: ArraySlice<UInt8>) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count)
        var iterator = text.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        guard !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// A set of tools as bits: tested on every rule of every decision, where a `Set` would
/// hash.
struct ToolMask: Sendable, Equatable {
    private(set) var bits: UInt8 = 0

    init<S: Sequence>(_ tools: S) where S.Element == Tool {
        for tool in tools { bits |= Self.bit(tool) }
    }

    static func bit(_ tool: Tool) -> UInt8 {
        UInt8(1) << UInt8(Tool.allCases.firstIndex(of: tool)!)
    }

    func contains(_ tool: Tool) -> Bool { bits & Self.bit(tool) != 0 }

    var tools: Set<Tool> { Set(Tool.allCases.filter(contains)) }
}

/// `Conditions` with every pattern compiled. A class, so that scanning rules does not
/// copy (and retain) every pattern array on each decision.
final class CompiledConditions: Sendable {
    let command: [ArgumentPattern]?
    let argvPrefix: [ArgumentPattern]?
    let argvContains: [ArgumentPattern]?
    let argvExact: [ArgumentPattern]?
    let paths: [PathPattern]?
    let hosts: [HostPattern]?
    let methods: Set<String>?
    let urlPaths: [PathPattern]?

    init(_ conditions: Conditions) throws {
        func arguments(_ patterns: [String]?) throws -> [ArgumentPattern]? {
            try patterns?.map { pattern in
                switch ArgumentPattern.compile(pattern) {
                case .success(let compiled): return compiled
                case .failure(let error):
                    throw StockadeError(.invalidPolicy, "failed to compile argument pattern '\(pattern.printableForMessages)': \(error.reason). \(error.hint)")
                }
            }
        }
        command = try arguments(conditions.command)
        argvPrefix = try arguments(conditions.argvPrefix)
        argvContains = try arguments(conditions.argvContains)
        argvExact = try arguments(conditions.argvExact)
        paths = try conditions.paths?.map(PathPattern.init)
        hosts = try conditions.hosts?.map { host in
            guard let pattern = HostPattern(host) else {
                throw StockadeError(.invalidPolicy, "failed to compile host pattern '\(host.printableForMessages)': not a host name or address")
            }
            return pattern
        }
        methods = conditions.methods.map(Set.init)
        urlPaths = try conditions.urlPaths?.map(PathPattern.init)
    }

    /// Every condition given holds. One on an argument the action does not carry is false.
    func matches(_ facts: ActionFacts) -> Bool {
        if let command {
            guard !facts.argv.isEmpty, command.contains(where: { Self.matchesProgram($0, facts) }) else { return false }
        }
        if let argvPrefix {
            guard facts.argv.count >= argvPrefix.count else { return false }
            for (index, pattern) in argvPrefix.enumerated() {
                let matched = index == 0 ? Self.matchesProgram(pattern, facts) : pattern.matches(facts.argv[index])
                if !matched { return false }
            }
        }
        if let argvExact {
            guard facts.argv.count == argvExact.count else { return false }
            for (index, pattern) in argvExact.enumerated() {
                let matched = index == 0 ? Self.matchesProgram(pattern, facts) : pattern.matches(facts.argv[index])
                if !matched { return false }
            }
        }
        if let argvContains {
            guard facts.argv.count > 1 else { return false }
            let arguments = facts.argv.dropFirst()
            for pattern in argvContains where !arguments.contains(where: pattern.matches) { return false }
        }
        if let paths {
            guard let path = facts.path, paths.contains(where: { $0.matches(path, isDirectory: facts.isDirectory) }) else { return false }
        }
        if let hosts {
            guard let host = facts.host, hosts.contains(where: { $0.matches(host) }) else { return false }
        }
        if let methods {
            guard let method = facts.method, methods.contains(method) else { return false }
        }
        if let urlPaths {
            guard let path = facts.urlPath, urlPaths.contains(where: { $0.matches(path, isDirectory: false) }) else { return false }
        }
        return true
    }

    /// A pattern without `/` names the program (`git` is `/usr/bin/git`); one with `/`
    /// is matched against `argv[0]` as given, normalized.
    static func matchesProgram(_ pattern: ArgumentPattern, _ facts: ActionFacts) -> Bool {
        if pattern.namesPath { return pattern.matches(SandboxPath(facts.argv[0]).text) || pattern.matches(facts.argv[0]) }
        return pattern.matches(facts.programName)
    }
}

/// A rule ready for decisions.
final class CompiledRule: Sendable {
    let rule: Rule
    let tools: Set<Tool>
    let mask: ToolMask
    let conditions: CompiledConditions

    init(_ rule: Rule) throws {
        self.rule = rule
        // No tool named: every tool whose actions carry what the conditions test.
        tools = rule.tools.isEmpty ? rule.conditions.toolsCarryingArguments : Set(rule.tools)
        mask = ToolMask(tools)
        conditions = try CompiledConditions(rule.conditions)
        let reason = rule.reason ?? "\(rule.decision == .allow ? "allowed" : rule.decision == .ask ? "needs approval" : "denied") by the policy"
        verdict = Verdict(decision: rule.decision, basis: .rule, ruleID: rule.id, reason: reason)
    }

    func matches(_ facts: ActionFacts) -> Bool {
        mask.contains(facts.tool) && conditions.matches(facts)
    }

    /// Made once: a decision returns it as it is.
    let verdict: Verdict
}

/// An invariant ready for decisions.
final class CompiledInvariant: Sendable {
    let invariant: Invariant
    let guarded: CompiledRule?

    init(_ invariant: Invariant) throws {
        self.invariant = invariant
        if case .guarded(_, let tools, let conditions, let decision) = invariant.kind {
            guarded = try CompiledRule(Rule(id: invariant.id, tools: tools, conditions: conditions, decision: decision))
        } else {
            guarded = nil
        }
    }

    func matches(_ facts: ActionFacts) -> Bool {
        guarded?.matches(facts) ?? false
    }
}

/// A label source ready for decisions.
final class CompiledSource: Sendable {
    let source: LabelSource
    let tools: ToolMask
    let conditions: CompiledConditions
    /// True when some file this source marks may be visible inside the sandbox, so that
    /// any command could read it.
    let visibleToCommands: Bool
    /// True when the source marks what comes from the network.
    let coversNetwork: Bool

    init(_ source: LabelSource, hidden: GlobSet) throws {
        self.source = source
        var tools = source.tools.isEmpty ? source.conditions.toolsCarryingArguments : Set(source.tools)
        // A path source without a tool marks what is read, not what is written.
        if source.tools.isEmpty && source.conditions.paths != nil { tools.remove(.writeFile) }
        self.tools = ToolMask(tools)
        conditions = try CompiledConditions(source.conditions)
        let readsFiles = tools.contains(.readFile)
        if readsFiles, let paths = source.conditions.paths {
            visibleToCommands = try paths.contains { !(try Self.hidden($0, by: hidden)) }
        } else {
            visibleToCommands = false
        }
        coversNetwork = tools.contains(.http)
    }

    /// Whether the action raises this source's label. A command can read any file the
    /// sandbox shows and fetch from any host the network grants, so `exec` raises what
    /// `read_file` of a visible marked path or `http` would.
    func applies(to facts: ActionFacts, networkGranted: Bool) -> Bool {
        if tools.contains(facts.tool) && conditions.matches(facts) { return true }
        guard facts.tool == .exec else { return false }
        return visibleToCommands || (coversNetwork && networkGranted)
    }

    /// Whether every path `pattern` can match lies inside a hidden entry: the same
    /// pattern is hidden, or the pattern's leading names (without wildcards) are a
    /// hidden directory. Anything else counts as visible: the answer errs toward
    /// raising the label.
    static func hidden(_ pattern: String, by hidden: GlobSet) throws -> Bool {
        if hidden.globs.contains(where: { $0.pattern == pattern }) { return true }
        guard !pattern.hasPrefix("/") else { return false }
        let glob = try Glob(pattern)
        var literal: [[Unicode.Scalar]] = []
        for segment in glob.segments {
            guard case .name(let tokens) = segment else { break }
            let scalars = tokens.compactMap { token -> Unicode.Scalar? in
                if case .literal(let scalar) = token { return scalar }
                return nil
            }
            guard scalars.count == tokens.count else { break }
            literal.append(scalars)
        }
        guard !literal.isEmpty else { return false }
        return hidden.matchesPathOrAnyParentComponents(literal, isDirectory: true)
    }
}
