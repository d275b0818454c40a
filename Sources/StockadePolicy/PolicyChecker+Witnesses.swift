/// The concrete actions the checker tries: samples of what each rule, source and
/// invariant matches, and the structural tests of one rule covering another.
extension PolicyChecker {
    // MARK: witnesses

    func facts(_ action: Action) -> ActionFacts {
        (try? ActionFacts.make(action).get()) ?? ActionFacts(tool: action.tool)
    }

    func witnesses() -> [Action] {
        var actions: [Action] = [
            .exec(argv: ["sh"]), .readFile(path: "/workspace/file"), .writeFile(path: "/workspace/file"),
            .listFiles(path: "/workspace"), .http(method: "GET", url: "https://example.com/"),
        ]
        let policy = policyGuard.policy
        for rule in policy.rules {
            actions += Self.witnesses(for: rule.tools.isEmpty ? Array(rule.conditions.toolsCarryingArguments) : rule.tools, rule.conditions)
        }
        for source in policy.labels.sources {
            actions += Self.witnesses(for: source.tools.isEmpty ? Array(source.conditions.toolsCarryingArguments) : source.tools, source.conditions)
        }
        for invariant in policy.labels.invariants {
            if case .guarded(_, let tools, let conditions, _) = invariant.kind {
                actions += Self.witnesses(for: tools.isEmpty ? Array(conditions.toolsCarryingArguments) : tools, conditions)
            }
        }
        for grant in policy.network?.allow ?? [] {
            actions.append(.http(method: grant.methods.first ?? "GET", url: "https://\(Self.sampleHost(grant.host))/"))
        }
        for program in (policy.toolset ?? []) + Self.namedSetPrograms(policy.toolset ?? []) {
            actions.append(.exec(argv: [program]))
        }
        for rule in policy.labels.declassify { actions.append(.declassify(rule: rule.id)) }
        var unique: [Action] = []
        var seen = Set<Action>()
        for action in actions where seen.insert(action).inserted { unique.append(action) }
        return unique
    }

    /// Concrete actions of `tools` that satisfy `conditions` (as far as samples go).
    static func witnesses(for tools: [Tool], _ conditions: Conditions) -> [Action] {
        var actions: [Action] = []
        for tool in tools {
            switch tool {
            case .exec:
                var argv: [String]
                if let exact = conditions.argvExact {
                    argv = exact.map(sample)
                } else {
                    argv = (conditions.argvPrefix ?? conditions.command.map { [$0[0]] } ?? ["sh"]).map(sample)
                    if let command = conditions.command, conditions.argvPrefix == nil { argv[0] = sample(command[0]) }
                    argv += (conditions.argvContains ?? []).map(sample)
                }
                actions.append(.exec(argv: argv))
            case .readFile, .writeFile, .listFiles:
                for path in conditions.paths ?? ["file"] {
                    let sampled = samplePath(path)
                    actions.append(tool == .readFile ? .readFile(path: sampled) : tool == .writeFile ? .writeFile(path: sampled) : .listFiles(path: sampled))
                }
            case .http:
                let host = sampleHost(conditions.hosts?.first ?? "example.com")
                let path = conditions.urlPaths.map { samplePath($0[0]) } ?? "/"
                actions.append(.http(method: conditions.methods?.first ?? "GET", url: "https://\(host)\(path)"))
            case .declassify:
                break
            }
        }
        return actions
    }

    /// Actions built from the parts of two rules, so that an overlap of, say, a
    /// directory rule and a file-name rule has a witness (`docs/x.md`).
    static func crossWitnesses(_ first: CompiledRule, _ second: CompiledRule) -> [Action] {
        var actions: [Action] = []
        let a = first.rule.conditions
        let b = second.rule.conditions
        if let pathsA = a.paths, let pathsB = b.paths {
            for (x, y) in pathsA.flatMap({ x in pathsB.map { (x, $0) } }) + pathsB.flatMap({ x in pathsA.map { (x, $0) } }) {
                let directory = samplePath(x)
                guard directory.hasSuffix("/x") else { continue }
                let joined = String(directory.dropLast(2)) + "/" + sample(String(y.split(separator: "/").last ?? "x"))
                for tool in first.tools.intersection(second.tools) {
                    switch tool {
                    case .readFile: actions.append(.readFile(path: joined))
                    case .writeFile: actions.append(.writeFile(path: joined))
                    case .listFiles: actions.append(.listFiles(path: joined))
                    default: break
                    }
                }
            }
        }
        if first.tools.contains(.exec) && second.tools.contains(.exec) {
            let head = (a.argvPrefix ?? b.argvPrefix ?? a.command.map { [$0[0]] } ?? b.command.map { [$0[0]] } ?? ["sh"]).map(sample)
            let tail = ((a.argvContains ?? []) + (b.argvContains ?? [])).map(sample)
            actions.append(.exec(argv: head + tail))
        }
        return actions
    }

    /// A string the pattern matches: wildcards become `x`, classes their first member.
    static func sample(_ pattern: String) -> String {
        guard case .success(let compiled) = ArgumentPattern.compile(pattern) else { return pattern }
        var text = String.UnicodeScalarView()
        for token in compiled.tokens {
            switch token {
            case .literal(let scalar): text.append(scalar)
            case .anyCharacter, .anyRun: text.append("x")
            case .characterClass(let negated, let ranges):
                if negated {
                    let candidate = "abcdefghijklmnopqrstuvwxyz0123456789".unicodeScalars.first { c in !ranges.contains { $0.contains(c) } }
                    text.append(candidate ?? "_")
                } else {
                    text.append(ranges.first?.lowerBound ?? "x")
                }
            }
        }
        return String(text)
    }

    /// A path the glob matches: `**` becomes nothing (or `x` at the end).
    static func samplePath(_ pattern: String) -> String {
        let absolute = pattern.hasPrefix("/")
        var parts = pattern.split(separator: "/").map(String.init)
        if parts.last == "**" { parts[parts.count - 1] = "x" }
        let sampled = parts.filter { $0 != "**" }.map(sample)
        return (absolute ? "/" : "/workspace/") + sampled.joined(separator: "/")
    }

    static func sampleHost(_ pattern: String) -> String {
        pattern.hasPrefix("*.") ? "x." + pattern.dropFirst(2) : pattern
    }

    /// The programs a rule's conditions name literally (no wildcards), if they all do.
    static func literalPrograms(_ conditions: Conditions) -> [String]? {
        let names = conditions.command ?? conditions.argvPrefix.map { [$0[0]] } ?? conditions.argvExact.map { [$0[0]] }
        guard let names, names.allSatisfy({ !$0.contains(where: { "*?[\\/".contains($0) }) }) else { return nil }
        return names
    }

    /// Programs that named sets bring (the part the checker needs to know of them).
    static func namedSetPrograms(_ toolset: [String]) -> [String] {
        var programs: [String] = []
        if toolset.contains("python") { programs.append("python3") }
        if toolset.contains("git") { programs.append("git") }
        if toolset.contains("build-essential") { programs += ["make", "gcc", "cc"] }
        return programs.filter { !toolset.contains($0) }
    }

    /// Whether every action `inner` matches is also matched by `outer`, judged on the
    /// structure of their conditions (conservative: false when unsure).
    static func covers(_ outer: CompiledRule, _ inner: CompiledRule) -> Bool {
        guard inner.tools.isSubset(of: outer.tools) else { return false }
        let o = outer.rule.conditions
        let i = inner.rule.conditions
        func prefixCovers(_ outerList: [String]?, _ innerList: [String]?) -> Bool {
            guard let outerList else { return true }
            guard let innerList, innerList.count >= outerList.count else { return false }
            return zip(outerList, innerList).allSatisfy { $0 == $1 || $0 == "*" }
        }
        if let command = o.command {
            guard let innerProgram = i.command ?? i.argvPrefix.map({ [$0[0]] }) ?? i.argvExact.map({ [$0[0]] }),
                  Set(innerProgram).isSubset(of: Set(command)) || command.contains("*") else { return false }
        }
        guard prefixCovers(o.argvPrefix, i.argvPrefix ?? i.argvExact) else { return false }
        if let contains = o.argvContains {
            guard let innerContains = i.argvContains, Set(contains).isSubset(of: Set(innerContains)) else { return false }
        }
        if let exact = o.argvExact { guard exact == i.argvExact else { return false } }
        if let paths = o.paths {
            guard let innerPaths = i.paths else { return false }
            let outerSet = (try? GlobSet(patterns: paths)) ?? GlobSet([])
            for path in innerPaths {
                guard paths.contains(path) || outerSet.matchesPathOrAnyParentComponents(literalPrefix(path), isDirectory: true) else { return false }
            }
        }
        if let hosts = o.hosts {
            guard let innerHosts = i.hosts else { return false }
            let patterns = hosts.compactMap(HostPattern.init)
            guard innerHosts.allSatisfy({ host in hosts.contains(host) || (!host.hasPrefix("*.") && patterns.contains { $0.matches(host) }) }) else { return false }
        }
        if let methods = o.methods { guard let innerMethods = i.methods, Set(innerMethods).isSubset(of: Set(methods)) else { return false } }
        if let urlPaths = o.urlPaths { guard urlPaths == i.urlPaths else { return false } }
        return true
    }

    /// The leading names of a relative glob that hold no wildcard; empty when the glob
    /// starts with one or is absolute.
    static func literalPrefix(_ pattern: String) -> [[Unicode.Scalar]] {
        guard !pattern.hasPrefix("/"), pattern.contains("/") else { return [] }
        var names: [[Unicode.Scalar]] = []
        for part in pattern.split(separator: "/") {
            guard !part.contains(where: { "*?[\\".contains($0) }) else { break }
            names.append(Array(part.unicodeScalars))
        }
        return names
    }
}
