import Foundation
import StockadeIsolation
import StockadePolicy
import StockadeSecrets

/// The leak guard as a policy's `secrets` section sets it up: the known values loaded
/// by the supervisor (never passed into the sandbox), the rules, and what a leak does.
public struct LeakControl: Sendable {
    public let leakGuard: LeakGuard
    public let action: SecretsPolicy.LeakAction

    public init(leakGuard: LeakGuard, action: SecretsPolicy.LeakAction) {
        self.leakGuard = leakGuard
        self.action = action
    }

    /// Loads the values `policy` names. A variable that is not set, or a file that
    /// cannot be read, holds nothing to protect and is skipped.
    public static func make(_ policy: SecretsPolicy?, environment: [String: String]) -> LeakControl {
        var secrets: [KnownSecret] = []
        for source in policy?.known ?? [] {
            switch source {
            case .environment(let name):
                if let value = environment[name], !value.isEmpty { secrets.append(KnownSecret(name: "env:\(name)", value: Array(value.utf8))) }
            case .literal(let value):
                secrets.append(KnownSecret(name: "literal", value: Array(value.utf8)))
            case .file(let path):
                let expanded = path.hasPrefix("~/") ? (environment["HOME"] ?? NSHomeDirectory()) + path.dropFirst(1) : path
                guard let data = FileManager.default.contents(atPath: expanded), data.count <= 1 << 20 else { continue }
                secrets += fileSecrets("file:\(path)", data: [UInt8](data))
            }
        }
        let leakGuard = LeakGuard(secrets: secrets, credentialRules: policy?.patterns ?? true, entropy: policy?.entropy ?? true)
        return LeakControl(leakGuard: leakGuard, action: policy?.onLeak ?? .redact)
    }

    /// A credentials file holds several values (`aws_secret_access_key = ...`,
    /// `host:port:db:user:password`): each value of eight bytes or more is a secret of
    /// its own, and so is the whole file when it is short.
    static func fileSecrets(_ name: String, data: [UInt8]) -> [KnownSecret] {
        var secrets: [KnownSecret] = []
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#"), !trimmed.hasPrefix("[") else { continue }
            var values: [Substring] = []
            if let equals = trimmed.firstIndex(of: "=") {
                values.append(trimmed[trimmed.index(after: equals)...])
            } else if trimmed.contains(":") {
                values += trimmed.split(separator: ":")
            } else {
                values.append(Substring(trimmed))
            }
            for value in values {
                let cleaned = value.trimmingCharacters(in: CharacterSet.whitespaces.union(CharacterSet(charactersIn: "\"'")))
                // Values beyond 4 KiB are not credentials; they would only swell the automaton.
                if cleaned.utf8.count >= 8 && cleaned.utf8.count <= 4096 { secrets.append(KnownSecret(name: name, value: Array(cleaned.utf8))) }
            }
        }
        let whole = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if whole.utf8.count >= 8 && whole.utf8.count <= 4096 { secrets.append(KnownSecret(name: name, value: Array(whole.utf8))) }
        return secrets
    }

    /// The rules that guess (a random-looking token, `password = ...`): on file contents
    /// they only note, since an agent that writes redacted source back would corrupt it.
    static let heuristicRules: Set<String> = ["high-entropy", "password-assignment"]

    /// What leaves toward an agent (output, a file read, a response): terminal escapes
    /// that act on the reader stripped, then the leaks handled per the policy.
    /// - Parameter fileContent: the text is a file's (heuristic findings only noted).
    public func outgoing(_ bytes: [UInt8], fileContent: Bool = false) -> Outgoing {
        let stripped = fileContent ? (bytes: bytes, removed: 0) : TerminalEscapes.strip(bytes)
        let findings = leakGuard.scan(stripped.bytes)
        let acted = fileContent ? findings.filter { !Self.heuristicRules.contains($0.rule) } : findings
        switch action {
        case .alert:
            return Outgoing(bytes: stripped.bytes, findings: findings, withheld: false, escapes: stripped.removed)
        case .redact:
            return Outgoing(bytes: LeakGuard.apply(acted, to: stripped.bytes), findings: findings, withheld: false, escapes: stripped.removed)
        case .block:
            return Outgoing(bytes: acted.isEmpty ? stripped.bytes : [], findings: findings, withheld: !acted.isEmpty, escapes: stripped.removed)
        }
    }

    public struct Outgoing: Sendable {
        public var bytes: [UInt8]
        public var findings: [LeakFinding]
        /// True when `block` withheld the whole text.
        public var withheld: Bool
        /// Terminal escape sequences removed.
        public var escapes: Int

        /// The rules that found something, each once.
        public var rules: [String] {
            var seen = Set<String>()
            return findings.map(\.rule).filter { seen.insert($0).inserted }
        }
    }
}

/// The leak guard over output streamed as it comes (`stockade run` without `--json`):
/// the last bytes are held back until the guard has seen enough after them, so a known
/// secret is redacted before any of it is written; the rest flows at once.
public final class StreamRedactor: OutputFilter {
    let control: LeakControl
    var stream: LeakStream
    var pending: [UInt8] = []
    /// Where `pending` starts in the whole stream.
    var pendingStart = 0
    var open: [LeakFinding] = []
    let window: Int
    /// The rules that fired, each once.
    public private(set) var rules: [String] = []

    public init(_ control: LeakControl) {
        self.control = control
        stream = control.leakGuard.stream()
        window = control.leakGuard.holdBack
    }

    public func pass(_ chunk: [UInt8]) -> [UInt8] {
        for finding in stream.feed(chunk) {
            open.append(finding)
            if !rules.contains(finding.rule) { rules.append(finding.rule) }
        }
        pending += chunk
        // Keep `window` bytes the guard counts (line breaks are not).
        var kept = 0
        var cut = pending.count
        while cut > 0 && kept < window {
            cut -= 1
            if pending[cut] != 0x0A && pending[cut] != 0x0D { kept += 1 }
        }
        var end = pendingStart + cut
        // A leak across the cut is complete (findings are): write it out redacted whole.
        for finding in open where finding.range.lowerBound < end && finding.range.upperBound > end {
            end = finding.range.upperBound
        }
        return emit(upTo: end)
    }

    public func finish() -> [UInt8] {
        emit(upTo: pendingStart + pending.count)
    }

    private func emit(upTo end: Int) -> [UInt8] {
        let count = end - pendingStart
        guard count > 0 else { return [] }
        let slice = Array(pending[0..<count])
        let local = open.compactMap { finding -> LeakFinding? in
            let lower = max(finding.range.lowerBound, pendingStart)
            let upper = min(finding.range.upperBound, end)
            guard lower < upper else { return nil }
            return LeakFinding(rule: finding.rule, secret: finding.secret, encoding: finding.encoding, range: (lower - pendingStart)..<(upper - pendingStart))
        }
        open.removeAll { $0.range.upperBound <= end }
        pending.removeFirst(count)
        pendingStart = end
        // Output that already streamed cannot be withheld: `block` redacts here too.
        let out = control.action == .alert ? slice : LeakGuard.apply(local, to: slice)
        return TerminalEscapes.strip(out).bytes
    }
}
