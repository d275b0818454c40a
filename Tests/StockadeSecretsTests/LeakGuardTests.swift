import Foundation
import Testing
@testable import StockadeSecrets

/// The known secrets of the corpus: an API key, a password with punctuation, a short
/// token, and a multi-line value.
let corpusSecrets = [
    KnownSecret(name: "env:OPENAI_API_KEY", value: Array("sk-test-4f9aQ7LmZ2xWc8VbN3kT6yRr1pHd0Jg5".utf8)),
    KnownSecret(name: "file:~/.pgpass", value: Array("p@ss/w0rd\"with&odd chars".utf8)),
    KnownSecret(name: "literal:short", value: Array("hunter2!x".utf8)),
    KnownSecret(name: "env:DEPLOY_TOKEN", value: Array("deploy-9c1e7b2a44f0d13e".utf8)),
]

/// Every spelling a program might use to get a secret out: what the guard must find.
func encodings(of text: [UInt8]) -> [(String, [UInt8])] {
    let data = Data(text)
    var result: [(String, [UInt8])] = [("raw", text), ("reversed", text.reversed())]
    result.append(("hex", Array(text.map { String(format: "%02x", $0) }.joined().utf8)))
    result.append(("HEX", Array(text.map { String(format: "%02X", $0) }.joined().utf8)))
    let base64 = data.base64EncodedString()
    result.append(("base64", Array(base64.utf8)))
    result.append(("base64 wrapped", Array(data.base64EncodedString(options: [.lineLength76Characters, .endLineWithLineFeed]).utf8)))
    result.append(("base64url", Array(base64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "").utf8)))
    result.append(("percent", Array(text.map { String(format: "%%%02X", $0) }.joined().utf8)))
    let urlEncoded = String(decoding: text, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))!
    result.append(("url", Array(urlEncoded.utf8)))
    let json = try! JSONSerialization.data(withJSONObject: [String(decoding: text, as: UTF8.self)])
    result.append(("json", Array(json)))
    return result
}

@Suite("Leak guard") struct LeakGuardTests {
    let leakGuard = LeakGuard(secrets: corpusSecrets)

    @Test("every known secret is found in every encoding, at every base64 alignment, wrapped and in context")
    func knownSecrets() {
        for secret in corpusSecrets {
            for prefix in ["", "a", "ab", "export X='", "{\"token\": \""] {
                let text = Array(prefix.utf8) + secret.value + Array("' and more text after it".utf8)
                for (name, encoded) in encodings(of: text) {
                    let findings = leakGuard.scan(Array("some output: ".utf8) + encoded + Array("\nend\n".utf8))
                    #expect(findings.contains { $0.rule == "known-secret" && $0.secret == secret.name }, "\(secret.name) as \(name) after '\(prefix)'")
                }
            }
        }
    }

    @Test("a secret split between chunks, at every split point, is found by a stream")
    func streaming() {
        let secret = corpusSecrets[0]
        for encoded in [secret.value, Array(Data(secret.value).base64EncodedString().utf8)] {
            let text = Array("leading text ".utf8) + encoded + Array(" trailing".utf8)
            for split in 1..<text.count {
                var stream = leakGuard.stream()
                let found = stream.feed(Array(text[..<split])) + stream.feed(Array(text[split...]))
                #expect(found.contains { $0.rule == "known-secret" }, "split at \(split)")
            }
        }
        // One byte at a time.
        var stream = leakGuard.stream()
        var found: [LeakFinding] = []
        for byte in Array("x ".utf8) + corpusSecrets[3].value { found += stream.feed([byte]) }
        #expect(found.contains { $0.secret == "env:DEPLOY_TOKEN" })
    }

    @Test("a credential split between chunks is found by a stream")
    func streamingRules() {
        let text = Array("token: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 end".utf8)
        for split in 1..<text.count {
            var stream = LeakGuard(secrets: [], entropy: false).stream()
            let found = stream.feed(Array(text[..<split])) + stream.feed(Array(text[split...]))
            #expect(found.contains { $0.rule == "github-token" }, "split at \(split)")
        }
    }

    static let positives: [(rule: String, text: String)] = [
        ("aws-access-key-id", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"),
        ("aws-access-key-id", "ASIAY34FZKBOKMUTVV7A"),
        ("aws-secret-access-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("private-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY-----"),
        ("private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"),
        ("private-key", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1du\n-----END EC PRIVATE KEY-----"),
        ("github-token", "GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
        ("github-token", "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
        ("github-token", "github_pat_11ABCDEFG0123456789abcdefghijKLMNOPQRSTUVWXYZ"),
        ("gitlab-token", "glpat-xYzAbCdEfGhIjKlMnOp1"),
        ("slack-token", "xoxb-2390234234-2342342342342-aBcDeFgHiJkLmNoP"),
        ("slack-token", "xoxp-12345678901-12345678901-123456789012-abcdef"),
        ("slack-webhook", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
        ("stripe-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("stripe-key", "rk_live_51H8bNvKz2eZvKYlo2C0aBcDeF"),
        ("openai-key", "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
        ("openai-key", "sk-T3BlbkFJ4x9Qz2Lm8Nw5Vb7Cd1Ef3Gh6Jk0Pq"),
        ("anthropic-key", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd"),
        ("jwt", "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
        ("password-assignment", "DB_PASSWORD=Tr0ub4dor&3horse"),
        ("password-assignment", "password: \"correct-horse-battery\""),
        ("password-assignment", "client_secret=9f8e7d6c5b4a3f2e1d0c"),
        ("high-entropy", "export SESSION=Zq8Lm3Xv9Tb2Ny7Kc4Wd1Fh6Gj5Pr0Ss"),
        ("high-entropy", "key: hK8s2LqP0vX7mB4nR9tY3wZ6cD1fG5jA"),
    ]

    static let negatives: [String] = [
        "sha256 digest: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "request id 550e8400-e29b-41d4-a716-446655440000",
        "integrity: sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
        "/usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/share/zoneinfo/America/Los_Angeles",
        "The quick brown fox jumps over the lazy dog; ThisIsAVeryLongIdentifierName in camelCase.",
        "password = $DB_PASSWORD", "password: <your password here>", "password=********", "api_key = {{ api_key }}",
        "AKIA is a prefix, AKIAXXXX is too short", "sk-learn is a library; sk-12 is short",
        "eyJ alone is not a token", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "base64 of hello: aGVsbG8gd29ybGQ=", "Version 1.2.3-beta.4+build.5678",
        "ghp_short", "https://hooks.slack.com/services/", "pwd is /home/user",
    ]

    @Test("each credential rule finds its format and only that")
    func rules() {
        for (rule, text) in Self.positives {
            let findings = leakGuard.scan(Array(text.utf8))
            #expect(findings.contains { $0.rule == rule }, "\(rule) missed in: \(text)")
        }
        for text in Self.negatives {
            let findings = leakGuard.scan(Array(text.utf8))
            #expect(findings.isEmpty, "false alarm in: \(text): \(findings.map(\.rule))")
        }
    }

    @Test("a short secret the policy names is found raw")
    func shortSecret() {
        let short = LeakGuard(secrets: [KnownSecret(name: "literal", value: Array("hunter2".utf8))], credentialRules: false, entropy: false)
        #expect(short.scan(Array("echo hunter2".utf8)).count == 1)
    }

    @Test("removing one escape sequence cannot assemble another")
    func nestedEscapes() {
        let input = Array("a\u{1B}\u{1B}]8;;\u{07}]52;c;ZXZpbA==\u{07}b".utf8)
        let stripped = TerminalEscapes.strip(input)
        #expect(!String(decoding: stripped.bytes, as: UTF8.self).contains("]52;"), "\(stripped.bytes)")
        #expect(stripped.removed == 2)
    }

    @Test("redaction replaces exactly the leaks, naming the rule")
    func redaction() {
        let text = Array("key=\(String(decoding: corpusSecrets[0].value, as: UTF8.self)) token ghp_16C7e42F292c6912E7710c838347Ae178B4a ok".utf8)
        let (redacted, findings) = leakGuard.redact(text)
        #expect(String(decoding: redacted, as: UTF8.self) == "key=[REDACTED:known-secret] token [REDACTED:github-token] ok")
        #expect(findings.count >= 2)
    }

    /// Recall and precision over a corpus built here: every encoding of every known
    /// secret in context, every rule's examples, and innocent text with hashes and
    /// UUIDs. Printed, so that the figures are in the test output.
    @Test("recall and precision on the labelled corpus")
    func corpus() {
        var positives: [[UInt8]] = []
        for secret in corpusSecrets {
            for prefix in ["", "x", "xy"] {
                for (_, encoded) in encodings(of: Array(prefix.utf8) + secret.value + Array(" tail".utf8)) {
                    positives.append(Array("output: ".utf8) + encoded)
                }
            }
        }
        positives += Self.positives.map { Array($0.text.utf8) }
        var negatives = Self.negatives.map { Array($0.utf8) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            negatives.append(Array("sha256: \(bytes.map { String(format: "%02x", $0) }.joined())".utf8))
            negatives.append(Array("id: \(UUID().uuidString.lowercased()) at line \(Int.random(in: 1...9999))".utf8))
        }
        let truePositives = positives.filter { !leakGuard.scan($0).isEmpty }.count
        let falsePositives = negatives.filter { !leakGuard.scan($0).isEmpty }.count
        let recall = Double(truePositives) / Double(positives.count)
        let precision = Double(truePositives) / Double(max(1, truePositives + falsePositives))
        print("leak guard corpus: \(positives.count) leaking texts, \(negatives.count) innocent ones; recall \(String(format: "%.1f", recall * 100))%, precision \(String(format: "%.1f", precision * 100))% (\(falsePositives) false alarms)")
        #expect(recall == 1.0)
        #expect(falsePositives == 0)
    }
}
