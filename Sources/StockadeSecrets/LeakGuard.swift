/// Where a leak was found, and by which rule.
public struct LeakFinding: Equatable, Sendable {
    /// `known-secret`, a credential rule's id (`github-token`), or `high-entropy`.
    public let rule: String
    /// For known secrets: the secret's name and the spelling found (`base64url`).
    public let secret: String?
    public let encoding: String?
    /// Byte offsets in the scanned text (absolute, for a stream).
    public let range: Range<Int>

    public init(rule: String, secret: String?, encoding: String?, range: Range<Int>) {
        self.rule = rule
        self.secret = secret
        self.encoding = encoding
        self.range = range
    }
}

/// The leak guard: known secret values in every spelling, credential formats, and
/// high-entropy tokens, found in one pass of one automaton (plus the token pass for
/// entropy). Immutable and shareable; `stream()` gives a scanner that keeps state
/// between chunks.
public struct LeakGuard: Sendable {
    enum Pattern: Sendable {
        case secret(name: String, encoding: String)
        case trigger(rule: Int)
    }

    let automaton: PatternAutomaton
    let patterns: [Pattern]
    let rules: [CredentialRule]
    let entropy: Bool
    /// The longest a match can be: what a stream must keep of the previous chunk.
    let window: Int
    public let secretCount: Int

    /// - Parameters:
    ///   - secrets: values to find in every spelling.
    ///   - credentialRules: also look for the credential formats.
    ///   - entropy: also report high-entropy tokens.
    public init(secrets: [KnownSecret], credentialRules: Bool = true, entropy: Bool = true) {
        var bytes: [[UInt8]] = []
        var patterns: [Pattern] = []
        for secret in secrets {
            for (encoding, variant) in SecretVariants.variants(of: secret.value) {
                bytes.append(variant)
                patterns.append(.secret(name: secret.name, encoding: encoding))
            }
        }
        let rules = credentialRules ? CredentialRules.all : []
        for (index, rule) in rules.enumerated() {
            for trigger in rule.triggers {
                bytes.append(Array(trigger.utf8))
                patterns.append(.trigger(rule: index))
            }
        }
        automaton = PatternAutomaton(patterns: bytes)
        self.patterns = patterns
        self.rules = rules
        self.entropy = entropy
        window = max(1024, (bytes.map(\.count).max() ?? 0) * 2)
        secretCount = secrets.count
    }

    /// Every leak in `text`.
    public func scan(_ text: [UInt8]) -> [LeakFinding] {
        var state: Int32 = 0
        return text.withUnsafeBufferPointer { buffer in
            scan(buffer, state: &state, offset: 0, rulesFrom: 0, reportFrom: 0)
        }
    }

    /// `text` with each leak replaced by `[REDACTED:rule]`, and the findings.
    public func redact(_ text: [UInt8]) -> (text: [UInt8], findings: [LeakFinding]) {
        let findings = scan(text)
        return (Self.apply(findings, to: text), findings)
    }

    /// `text` with each of `findings` replaced by `[REDACTED:rule]`.
    public static func apply(_ findings: [LeakFinding], to text: [UInt8]) -> [UInt8] {
        guard !findings.isEmpty else { return text }
        var output: [UInt8] = []
        output.reserveCapacity(text.count)
        var position = 0
        for finding in Self.merged(findings) {
            guard finding.range.lowerBound >= position else { continue }
            output += text[position..<finding.range.lowerBound]
            output += Array("[REDACTED:\(finding.rule)]".utf8)
            position = finding.range.upperBound
        }
        output += text[position...]
        return output
    }

    /// Overlapping findings folded, known secrets first, then rules, then entropy.
    static func merged(_ findings: [LeakFinding]) -> [LeakFinding] {
        func rank(_ finding: LeakFinding) -> Int { finding.rule == "known-secret" ? 0 : finding.rule == "high-entropy" ? 2 : 1 }
        var result: [LeakFinding] = []
        for finding in findings.sorted(by: { ($0.range.lowerBound, rank($0)) < ($1.range.lowerBound, rank($1)) }) {
            if let last = result.last, finding.range.lowerBound < last.range.upperBound {
                let upper = max(last.range.upperBound, finding.range.upperBound)
                let named = rank(finding) < rank(last) ? finding : last
                result[result.count - 1] = LeakFinding(rule: named.rule, secret: named.secret, encoding: named.encoding, range: last.range.lowerBound..<upper)
            } else {
                result.append(finding)
            }
        }
        return result
    }

    /// Scans `text` (whose first byte is at `offset` in the whole stream) from `state`.
    /// Rules and entropy look at the text from `rulesFrom`; only findings that end at or
    /// after `reportFrom` are reported (a stream's overlap was reported already).
    func scan(_ text: UnsafeBufferPointer<UInt8>, state: inout Int32, offset: Int, rulesFrom: Int, reportFrom: Int) -> [LeakFinding] {
        var findings: [LeakFinding] = []
        var current = Int(state)
        let width = automaton.width
        let entropy = self.entropy
        // One pass: the automaton's step, and the token boundaries of the entropy
        // detector (a token is judged when it ends).
        EntropyDetector.tokenTable.withUnsafeBufferPointer { tokens in
          withUnsafeTemporaryAllocation(of: Int32.self, capacity: 256) { counts in
            counts.initialize(repeating: 0)
            var tokenStart = -1
            func judge(_ end: Int) {
                if offset + end > reportFrom, EntropyDetector.looksRandom(UnsafeBufferPointer(rebasing: text[tokenStart..<end]), counts: counts) {
                    findings.append(LeakFinding(rule: "high-entropy", secret: nil, encoding: nil, range: (offset + tokenStart)..<(offset + end)))
                }
                tokenStart = -1
            }
            automaton.transitions.withUnsafeBufferPointer { table in
              automaton.classes.withUnsafeBufferPointer { classes in
                automaton.outputStart.withUnsafeBufferPointer { outputStart in
                    for index in rulesFrom..<text.count {
                        let byte = text[index]
                        if entropy {
                            if tokens[Int(byte)] {
                                if tokenStart < 0 { tokenStart = index }
                            } else if tokenStart >= 0 {
                                // Most tokens are words: too short to judge.
                                if index &- tokenStart >= EntropyDetector.minimumLength { judge(index) } else { tokenStart = -1 }
                            }
                        }
                        // Line breaks are not part of any spelling: a value wrapped over
                        // lines (base64 at 76 columns, a PEM body) is found whole.
                        if byte == 0x0A || byte == 0x0D { continue }
                        current = Int(table[current &* width &+ Int(classes[Int(byte)])])
                        let first = Int(outputStart[current])
                        let last = Int(outputStart[current &+ 1])
                        if first == last { continue }
                        for pattern in automaton.outputList[first..<last] {
                            let length = automaton.lengths[Int(pattern)]
                            let start = Self.start(of: length, endingAt: index, in: text)
                            switch patterns[Int(pattern)] {
                            case .secret(let name, let encoding):
                                if index + 1 + offset > reportFrom {
                                    findings.append(LeakFinding(rule: "known-secret", secret: name, encoding: encoding, range: (offset + start)..<(offset + index + 1)))
                                }
                            case .trigger(let rule):
                                if let range = rules[rule].check(text, start, index + 1), offset + range.upperBound > reportFrom {
                                    findings.append(LeakFinding(rule: rules[rule].id, secret: nil, encoding: nil, range: (offset + range.lowerBound)..<(offset + range.upperBound)))
                                }
                            }
                        }
                    }
                }
              }
            }
            if entropy && tokenStart >= 0 { judge(text.count) }
          }
        }
        state = Int32(current)
        return findings
    }

    /// Where a match of `length` bytes (line breaks not counted) ending at `end` starts.
    static func start(of length: Int, endingAt end: Int, in text: UnsafeBufferPointer<UInt8>) -> Int {
        var remaining = length
        var index = end
        while index >= 0 {
            let byte = text[index]
            if byte != 0x0A && byte != 0x0D {
                remaining -= 1
                if remaining == 0 { return index }
            }
            index -= 1
        }
        return 0
    }

    public func stream() -> LeakStream { LeakStream(guard: self) }

    /// How many bytes a streaming consumer must hold back, so that no byte of a known
    /// secret leaves before the guard has seen all of it.
    public var holdBack: Int { max(64, (automaton.lengths.max() ?? 0) + 8) }
}

/// A leak guard over a stream (an HTTP body, a command's output as it comes): known
/// secrets are matched across chunk boundaries by the automaton's state; rules and
/// entropy see each chunk with the end of the one before, so a credential split
/// between two chunks is found too. Memory stays bounded by the guard's window.
public struct LeakStream: Sendable {
    let leakGuard: LeakGuard
    var state: Int32 = 0
    var consumed = 0
    var tail: [UInt8] = []

    init(guard leakGuard: LeakGuard) {
        self.leakGuard = leakGuard
    }

    /// The leaks that `chunk` completes (offsets count from the stream's start).
    public mutating func feed(_ chunk: [UInt8]) -> [LeakFinding] {
        let text = tail + chunk
        let tailCount = tail.count
        let offset = consumed - tailCount
        // The automaton runs over the new bytes only (its state carries the old); rules
        // and entropy over the tail too, reporting only what reaches into the new bytes.
        var automatonState = state
        let findings: [LeakFinding] = text.withUnsafeBufferPointer { buffer in
            var secretsState = automatonState
            var found = leakGuard.scan(buffer, state: &secretsState, offset: offset, rulesFrom: tailCount, reportFrom: consumed)
            automatonState = secretsState
            if tailCount > 0 {
                // Rules and entropy again from the tail's start, for what straddles.
                var scratch: Int32 = 0
                found += leakGuard.scan(buffer, state: &scratch, offset: offset, rulesFrom: 0, reportFrom: consumed)
                    .filter { $0.rule != "known-secret" && $0.range.lowerBound < consumed }
            }
            return found
        }
        state = automatonState
        consumed += chunk.count
        tail = Array(text.suffix(leakGuard.window))
        var seen = Set<String>()
        return findings.filter { seen.insert("\($0.rule)\($0.range)").inserted }
    }
}
