import Foundation
import StockadeSecrets

/// Leak guard throughput: mixed text (logs, code, JSON, base64 blobs, hashes, UUIDs)
/// with 20 known secrets placed in it in several encodings, scanned by one thread with
/// every rule on. Writes the text to `corpusPath` (for a peer tool to scan the same
/// bytes) and prints JSON.
enum LeakBench {
    static func run(corpusPath: String, megabytes: Int) throws {
        var generator = SplitMix(seed: 42)
        let secrets = (0..<20).map { index in
            KnownSecret(name: "env:SECRET_\(index)", value: Array(randomToken(&generator, length: 20 + index).utf8))
        }
        let target = megabytes << 20
        var text: [UInt8] = []
        text.reserveCapacity(target + 4096)
        var planted = 0
        var line = 0
        while text.count < target {
            line += 1
            switch generator.next() % 8 {
            case 0: text += Array("2026-11-29T08:\(line % 60):00Z INFO request id=\(uuid(&generator)) path=/api/v1/items/\(line) status=200 took=\(generator.next() % 900)ms\n".utf8)
            case 1: text += Array("    let value\(line) = compute(input: items[\(line % 97)], scale: \(generator.next() % 1000)) // keep the cache warm\n".utf8)
            case 2: text += Array("{\"id\": \(line), \"name\": \"item \(line)\", \"tags\": [\"alpha\", \"beta\"], \"sha256\": \"\(hex(&generator, bytes: 32))\"}\n".utf8)
            case 3: text += Array("commit \(hex(&generator, bytes: 20))\nAuthor: Someone <someone@example.com>\n".utf8)
            case 4: text += Array(Data((0..<48).map { _ in UInt8(truncatingIfNeeded: generator.next()) }).base64EncodedString().utf8) + [0x0A]
            case 5: text += Array("The quick brown fox jumps over the lazy dog while the build runs step \(line) of many.\n".utf8)
            case 6 where line % 500 == 0:
                let secret = secrets[planted % secrets.count].value
                planted += 1
                switch planted % 4 {
                case 0: text += Array("export TOKEN=".utf8) + secret + [0x0A]
                case 1: text += Array("data: \(Data(secret).base64EncodedString())\n".utf8)
                case 2: text += Array("hex: \(secret.map { String(format: "%02x", $0) }.joined())\n".utf8)
                default: text += Array("url: https://example.com/?q=\(String(decoding: secret, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")\n".utf8)
                }
            default: text += Array("- [ ] write the release notes for version 1.\(line % 40).\(line % 7)\n".utf8)
            }
        }
        try Data(text).write(to: URL(fileURLWithPath: corpusPath))
        func measure(_ leakGuard: LeakGuard) -> (seconds: Double, findings: Int) {
            var samples: [Double] = []
            var findings = 0
            for _ in 0..<5 {
                let start = DispatchTime.now().uptimeNanoseconds
                findings = leakGuard.scan(text).count
                samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            samples.sort()
            return (samples[samples.count / 2], findings)
        }
        let megabytes = Double(text.count) / Double(1 << 20)
        let all = measure(LeakGuard(secrets: secrets))
        // The parts: known secrets alone, and with the credential rules but no entropy.
        let secretsOnly = measure(LeakGuard(secrets: secrets, credentialRules: false, entropy: false))
        let noEntropy = measure(LeakGuard(secrets: secrets, credentialRules: true, entropy: false))
        let object: [String: Any] = [
            "megabytes": megabytes, "seconds_median": all.seconds,
            "mib_per_second": megabytes / all.seconds, "findings": all.findings, "planted": planted,
            "secrets": secrets.count,
            "mib_per_second_known_secrets_only": megabytes / secretsOnly.seconds,
            "mib_per_second_without_entropy": megabytes / noEntropy.seconds,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }

    static func randomToken(_ generator: inout SplitMix, length: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }

    static func hex(_ generator: inout SplitMix, bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8(truncatingIfNeeded: generator.next())) }.joined()
    }

    static func uuid(_ generator: inout SplitMix) -> String {
        let h = hex(&generator, bytes: 16)
        let c = Array(h)
        return "\(String(c[0..<8]))-\(String(c[8..<12]))-\(String(c[12..<16]))-\(String(c[16..<20]))-\(String(c[20..<32]))"
    }
}

/// A small seeded generator, so that every run scans the same text.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
