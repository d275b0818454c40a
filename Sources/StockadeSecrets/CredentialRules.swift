import Foundation

/// Credential formats, each found by a literal trigger (in the same automaton as the
/// known secrets) and checked by the bytes that follow it. Written from the formats'
/// public descriptions: AWS access key ids, PEM private keys, GitHub, GitLab, Slack,
/// Stripe, OpenAI and Anthropic keys, JSON Web Tokens, and `password = value` forms.
struct CredentialRule: Sendable {
    let id: String
    let triggers: [String]
    /// Given the text and where a trigger starts and ends, the range to report, or nil.
    let check: @Sendable (_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ triggerEnd: Int) -> Range<Int>?
}

enum CredentialRules {
    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }

    /// Bytes from `from` while `allowed`, at most `limit`.
    static func run(_ text: UnsafeBufferPointer<UInt8>, from: Int, limit: Int = 4096, _ allowed: (UInt8) -> Bool) -> Int {
        var end = from
        while end < text.count, end - from < limit, allowed(text[end]) { end += 1 }
        return end
    }

    /// True when the byte before `start` does not continue a word (so `XAKIA...` is not an AWS id).
    static func boundaryBefore(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Bool {
        start == 0 || !(isAlphanumeric(text[start - 1]) || text[start - 1] == 0x5F)
    }

    static func token(_ byte: UInt8) -> Bool { isAlphanumeric(byte) || byte == 0x5F || byte == 0x2D }

    /// A trigger followed by `minimum` or more bytes of `allowed` (exactly `exact`, when given).
    static func prefixed(_ id: String, _ triggers: [String], minimum: Int, exact: Int? = nil, _ allowed: @escaping @Sendable (UInt8) -> Bool) -> CredentialRule {
        CredentialRule(id: id, triggers: triggers) { text, start, triggerEnd in
            guard boundaryBefore(text, start) else { return nil }
            let end = run(text, from: triggerEnd, allowed)
            let count = end - triggerEnd
            if let exact { return count == exact ? start..<end : nil }
            return count >= minimum ? start..<end : nil
        }
    }

    static let all: [CredentialRule] = [
        // AWS: a 4-letter prefix saying what kind of id, then 16 base32 characters.
        prefixed("aws-access-key-id", ["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ABIA", "ACCA"], minimum: 16, exact: 16) {
            ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x32 && $0 <= 0x37)
        },
        // AWS secret keys have no prefix: found by the name they are given.
        CredentialRule(id: "aws-secret-access-key", triggers: ["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey"]) { text, start, triggerEnd in
            var position = run(text, from: triggerEnd, limit: 8) { $0 == 0x20 || $0 == 0x22 || $0 == 0x27 || $0 == 0x3A || $0 == 0x3D || $0 == 0x09 }
            guard position > triggerEnd else { return nil }
            let valueStart = position
            position = run(text, from: position, limit: 41) { isAlphanumeric($0) || $0 == 0x2F || $0 == 0x2B }
            return position - valueStart == 40 ? valueStart..<position : nil
        },
        // PEM private keys: the whole block, BEGIN to END.
        CredentialRule(id: "private-key", triggers: ["-----BEGIN "]) { text, start, triggerEnd in
            let line = run(text, from: triggerEnd, limit: 40) { $0 != 0x0A && $0 != 0x2D }
            let label = String(decoding: UnsafeBufferPointer(rebasing: text[triggerEnd..<line]), as: UTF8.self)
            guard label.hasSuffix("PRIVATE KEY") else { return nil }
            let endMarker = Array("-----END ".utf8)
            var index = line
            while index + endMarker.count <= text.count, index - start < 16_384 {
                if text[index] == 0x2D, Array(text[index..<(index + endMarker.count)]) == endMarker {
                    let close = run(text, from: index + endMarker.count, limit: 40) { $0 != 0x0A }
                    return start..<close
                }
                index += 1
            }
            return start..<min(text.count, start + 16_384)
        },
        // GitHub: ghp_ (classic), gho_, ghu_, ghs_, ghr_ with 36 characters; fine-grained github_pat_.
        prefixed("github-token", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], minimum: 36, exact: 36, isAlphanumeric),
        prefixed("github-token", ["github_pat_"], minimum: 22) { isAlphanumeric($0) || $0 == 0x5F },
        // GitLab personal, project and group access tokens.
        prefixed("gitlab-token", ["glpat-", "gldt-", "glptt-", "glrt-"], minimum: 20) { token($0) },
        // Slack: bot, user, app, refresh and configuration tokens; webhook URLs.
        prefixed("slack-token", ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-"], minimum: 10) { isAlphanumeric($0) || $0 == 0x2D },
        CredentialRule(id: "slack-webhook", triggers: ["hooks.slack.com/services/"]) { text, start, triggerEnd in
            let end = run(text, from: triggerEnd) { isAlphanumeric($0) || $0 == 0x2F }
            return end - triggerEnd >= 20 ? start..<end : nil
        },
        // Stripe secret and restricted keys, live and test.
        prefixed("stripe-key", ["sk_live_", "rk_live_", "sk_test_", "rk_test_"], minimum: 20, isAlphanumeric),
        // Anthropic (sk-ant-...) before OpenAI (sk-..., sk-proj-...): both start with sk-.
        prefixed("anthropic-key", ["sk-ant-"], minimum: 32) { token($0) },
        CredentialRule(id: "openai-key", triggers: ["sk-"]) { text, start, triggerEnd in
            guard boundaryBefore(text, start) else { return nil }
            let end = run(text, from: triggerEnd) { token($0) }
            let body = UnsafeBufferPointer(rebasing: text[triggerEnd..<end])
            guard body.count >= 32, !body.starts(with: Array("ant-".utf8)) else { return nil }
            let digits = body.filter { $0 >= 0x30 && $0 <= 0x39 }.count
            let letters = body.filter { ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A }.count
            return digits >= 2 && letters >= 8 ? start..<end : nil
        },
        // JSON Web Tokens: two base64url JSON objects ({"... encodes as eyJ) and a signature.
        CredentialRule(id: "jwt", triggers: ["eyJ"]) { text, start, triggerEnd in
            guard boundaryBefore(text, start) else { return nil }
            let b64url: (UInt8) -> Bool = { isAlphanumeric($0) || $0 == 0x2D || $0 == 0x5F }
            let header = run(text, from: triggerEnd, b64url)
            guard header - start >= 10, header < text.count, text[header] == 0x2E else { return nil }
            let payload = run(text, from: header + 1, b64url)
            guard payload - header > 10, payload < text.count, text[payload] == 0x2E,
                  text[header + 1] == 0x65, text[header + 2] == 0x79 else { return nil }  // "ey"
            let signature = run(text, from: payload + 1, b64url)
            return signature - payload > 10 ? start..<signature : nil
        },
        // `password = value` and the like, in configuration, environment and URLs: the value.
        CredentialRule(id: "password-assignment", triggers: assignmentTriggers) { text, start, triggerEnd in
            // DB_PASSWORD, MYSQL_ROOT_PASSWORD: an underscore may come before the name.
            guard start == 0 || !isAlphanumeric(text[start - 1]) else { return nil }
            var position = run(text, from: triggerEnd, limit: 3) { $0 == 0x22 || $0 == 0x27 || $0 == 0x20 }
            guard position < text.count, text[position] == 0x3D || text[position] == 0x3A else { return nil }
            position = run(text, from: position + 1, limit: 4) { $0 == 0x22 || $0 == 0x27 || $0 == 0x20 || $0 == 0x09 }
            let valueEnd = run(text, from: position, limit: 256) { $0 > 0x20 && $0 != 0x22 && $0 != 0x27 && $0 != 0x2C && $0 != 0x3B && $0 != 0x26 && $0 < 0x7F }
            let value = UnsafeBufferPointer(rebasing: text[position..<valueEnd])
            guard value.count >= 8, let first = value.first,
                  first != 0x24, first != 0x3C, first != 0x7B, first != 0x25,  // $VAR, <placeholder>, {{x}}, %s
                  !value.allSatisfy({ $0 == value.first! }) else { return nil }
            return position..<valueEnd
        },
    ]

    static let assignmentTriggers: [String] = {
        let names = ["password", "passwd", "pwd", "secret", "api_key", "apikey", "access_token", "auth_token", "client_secret", "private_key"]
        return names.flatMap { name in [name, name.uppercased(), name.prefix(1).uppercased() + name.dropFirst()] }
    }()
}

/// High-entropy tokens: runs of base64 characters that look random (letters of both
/// cases and digits, spread over many symbols). Pure hex (hashes, commit ids) and
/// UUIDs are left alone: they are everywhere, and rarely secrets by themselves.
enum EntropyDetector {
    static let minimumLength = 24

    static func tokenByte(_ byte: UInt8) -> Bool { tokenTable[Int(byte)] }

    /// Letters, digits, `+`, `/`, `_`, `-`. ('=', base64's padding, is left out: it would
    /// join `name=value` into one token.)
    static let tokenTable: [Bool] = (0..<256).map { value in
        let byte = UInt8(value)
        return CredentialRules.isAlphanumeric(byte) || byte == 0x2B || byte == 0x2F || byte == 0x5F || byte == 0x2D
    }

    static let digestPrefixes: [[UInt8]] = ["sha256-", "sha384-", "sha512-"].map { Array($0.utf8) }

    /// Whether a token (a maximal run of token bytes) looks random enough to report.
    /// `counts` is 256 zeros on entry and on return.
    @inline(__always)
    static func looksRandom(_ token: UnsafeBufferPointer<UInt8>, counts: UnsafeMutableBufferPointer<Int32>) -> Bool {
        let length = token.count
        guard length >= minimumLength, length <= 512 else { return false }
        // Subresource-integrity digests (sha512-...) are everywhere in lockfiles.
        if token[0] == 0x73, digestPrefixes.contains(where: { token.starts(with: $0) }) { return false }
        var upper = 0, lower = 0, digits = 0, hex = true
        for byte in token {
            if byte >= 0x41 && byte <= 0x5A { upper &+= 1; if byte > 0x46 { hex = false } }
            else if byte >= 0x61 && byte <= 0x7A { lower &+= 1; if byte > 0x66 { hex = false } }
            else if byte >= 0x30 && byte <= 0x39 { digits &+= 1 }
            else if byte != 0x2D { hex = false }
        }
        // Cheap tests first; the entropy only for tokens that pass them.
        guard !hex, upper >= 2, lower >= 2, digits >= 2 else { return false }
        for byte in token { counts[Int(byte)] &+= 1 }
        var entropy = 0.0
        let total = Double(length)
        for byte in token where counts[Int(byte)] > 0 {
            let p = Double(counts[Int(byte)]) / total
            entropy -= p * log2(p)
            counts[Int(byte)] = 0
        }
        return entropy >= min(4.5, 0.85 * log2(total))
    }

    /// The random-looking tokens of `text` from `from` (the leak guard's own scan does
    /// this in its automaton pass; this is the same on its own).
    static func findings(_ text: UnsafeBufferPointer<UInt8>, from: Int = 0) -> [Range<Int>] {
        var result: [Range<Int>] = []
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 256) { counts in
            counts.initialize(repeating: 0)
            var index = from
            while index < text.count {
                guard tokenTable[Int(text[index])] else {
                    index &+= 1
                    continue
                }
                let start = index
                while index < text.count, tokenTable[Int(text[index])] { index &+= 1 }
                if looksRandom(UnsafeBufferPointer(rebasing: text[start..<index]), counts: counts) { result.append(start..<index) }
            }
        }
        return result
    }
}

