import Crypto
import Foundation
import StockadeCore

/// What `stockade audit verify` found.
public struct AuditVerification: Sendable {
    /// True when every entry is where the chain says and every checkpoint's signature
    /// that could be checked holds.
    public var valid: Bool { problem == nil }
    /// The first bad entry and what is wrong with it ("entry 12 (line 12): ...").
    public var problem: String?
    public var entries = 0
    public var checkpoints = 0
    /// Checkpoints whose signature was checked against the given key.
    public var verifiedSignatures = 0
    /// Checkpoints with no signature, or whose signature could not be checked (no key).
    public var uncheckedCheckpoints = 0
    /// Sessions that started and never ended: still running, killed, or the log was
    /// cut after them.
    public var openSessions: [String] = []
    /// A last line without its newline: a writer died while writing it.
    public var tornTail = false
    /// SHA-256 of the last entry: keep it elsewhere to prove later that nothing was cut.
    public var head = AuditEntry.genesis
    /// Entries after the last signed checkpoint (nothing vouches for them but the chain,
    /// which anyone who can write the file can recompute); all of them without a key.
    public var unsignedTail = 0
}

public enum AuditVerifier {
    /// Checks the whole file at `path`: every line parses, numbers run 1, 2, 3, ...,
    /// every `prev` is the hash of the line before, and each checkpoint covers the
    /// entry before it and, given `key`, carries a valid signature by it.
    /// - Parameter knownHead: a head an earlier verify printed: the log must still hold
    ///   that entry, unchanged.
    public static func verify(path: String, key: Curve25519.Signing.PublicKey?, knownHead: String? = nil) throws -> AuditVerification {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StockadeError(.invalidArgument, "failed to read the audit log \(path): it does not exist or cannot be read")
        }
        var result = AuditVerification()
        var bytes = [UInt8](data)
        if let last = bytes.last, last != UInt8(ascii: "\n") {
            result.tornTail = true
            bytes = Array(bytes[0..<(bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0)])
        }
        let keyID = key.map(AuditKeys.keyID)
        var previousHash = AuditEntry.genesis
        var expected: UInt64 = 1
        var open: [String] = []
        var sinceSigned = 0
        var headFound = false
        let decoder = JSONDecoder()
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast().enumerated() {
            let lineNumber = index + 1
            func fail(_ what: String) -> AuditVerification {
                var failed = result
                failed.problem = "line \(lineNumber): \(what)"
                return failed
            }
            guard let entry = try? decoder.decode(AuditEntry.self, from: Data(line)) else {
                return fail("not an audit entry (edited, or not a stockade audit log)")
            }
            guard entry.seq == expected else {
                return fail(entry.seq < expected
                    ? "entry \(entry.seq) comes again or out of order (expected \(expected))"
                    : "entry \(entry.seq) comes where entry \(expected) was expected: entries were deleted or moved")
            }
            guard entry.prev == previousHash else {
                return fail(lineNumber == 1
                    ? "entry \(entry.seq) is first but its prev is not the chain's start: entries before it were deleted"
                    : "entry \(entry.seq) does not follow line \(lineNumber - 1): line \(lineNumber - 1) was edited, or entries were deleted or moved")
            }
            // The line must be exactly what stockade writes for its content: a line that
            // decodes to the same entry but is spelled differently was rewritten.
            guard let canonical = try? entry.line(), canonical.elementsEqual(line) else {
                return fail("entry \(entry.seq) is not in the form stockade writes (rewritten)")
            }
            switch entry.kind {
            case .sessionStart: open.append(entry.session)
            case .sessionEnd: open.removeAll { $0 == entry.session }
            case .checkpoint:
                result.checkpoints += 1
                guard let checkpoint = entry.checkpoint, checkpoint.through == entry.seq - 1 else {
                    return fail("checkpoint \(entry.seq) does not cover the entry before it")
                }
                if let key {
                    // With a key, every checkpoint must be signed by it: dropping the
                    // signatures must not turn a forged chain into a quiet pass.
                    guard let signature = checkpoint.signature else {
                        return fail("checkpoint \(entry.seq) carries no signature, but the log is checked against a key")
                    }
                    guard checkpoint.key == keyID else {
                        return fail("checkpoint \(entry.seq) was signed by another key (\(checkpoint.key ?? "none"), not \(keyID ?? ""))")
                    }
                    var unsigned = entry
                    unsigned.checkpoint?.signature = nil
                    guard let raw = Data(base64Encoded: signature), let message = try? unsigned.line(),
                          key.isValidSignature(raw, for: message) else {
                        return fail("checkpoint \(entry.seq) has a signature that does not verify")
                    }
                    result.verifiedSignatures += 1
                    sinceSigned = -1
                } else {
                    result.uncheckedCheckpoints += 1
                }
            case .action, .egress:
                break
            }
            sinceSigned += 1
            result.entries += 1
            previousHash = AuditEntry.hash(line)
            if previousHash == knownHead { headFound = true }
            expected += 1
        }
        if let knownHead, !headFound, knownHead != AuditEntry.genesis {
            result.problem = "the head \(knownHead.prefix(16))… recorded earlier is no longer in the log: entries up to it were cut or rewritten"
        }
        result.openSessions = open
        result.head = previousHash
        result.unsignedTail = key == nil ? result.entries : sinceSigned
        if key != nil && result.entries > 0 && result.verifiedSignatures == 0 {
            result.problem = "no checkpoint is signed by the key: nothing in the log is vouched for"
        }
        return result
    }
}
