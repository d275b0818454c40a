import Crypto
import Foundation
import StockadeCore

/// One line of the audit log: a JSON object with sorted keys, no spaces, on one line.
/// Its SHA-256 (of the line's exact bytes) is the next line's `prev`: a hash chain, so
/// that an edit, a deletion or a reordering anywhere breaks every link after it.
public struct AuditEntry: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// A session (or a one-shot run) began: its policy and plan digests.
        case sessionStart = "session_start"
        /// An action was decided, and if allowed, performed.
        case action
        /// A connection or request through the egress proxy.
        case egress
        /// A session (or run) ended.
        case sessionEnd = "session_end"
        /// A signed statement of the chain's head.
        case checkpoint
    }

    /// 1, 2, 3, ... over the whole file.
    public var seq: UInt64
    /// UTC, ISO 8601 with milliseconds.
    public var time: String
    public var session: String
    public var kind: Kind
    public var tool: String?
    /// The action in one line (long arguments cut; the digest covers them whole).
    public var action: String?
    /// SHA-256 of the action's canonical JSON: the exact action, whatever `action` shows.
    public var actionSHA256: String?
    public var decision: String?
    public var rule: String?
    public var reason: String?
    public var approver: String?
    public var policySHA256: String?
    public var planSHA256: String?
    public var tier: String?
    public var workspace: String?
    public var result: AuditResult?
    public var egress: EgressEvent?
    public var checkpoint: AuditCheckpoint?
    /// SHA-256 (hex) of the previous line; 64 zeros for the first.
    public var prev: String

    enum CodingKeys: String, CodingKey {
        case seq, time, session, kind, tool, action
        case actionSHA256 = "action_sha256"
        case decision, rule, reason, approver
        case policySHA256 = "policy_sha256"
        case planSHA256 = "plan_sha256"
        case tier, workspace, result, egress, checkpoint, prev
    }

    public init(session: String, kind: Kind) {
        seq = 0
        time = ""
        self.session = session
        self.kind = kind
        prev = AuditEntry.genesis
    }

    /// The `prev` of the first entry.
    public static let genesis = String(repeating: "0", count: 64)

    /// The line as written (no newline): canonical, so a checkpoint's signature can be
    /// checked by encoding the entry again.
    public func line() throws -> [UInt8] {
        Array(try Self.encoder.encode(self))
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func hash(_ bytes: some Sequence<UInt8>) -> String {
        SHA256.hash(data: Array(bytes)).map { String(format: "%02x", $0) }.joined()
    }

    static func timestamp(_ date: Date = Date()) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(milliseconds % 1000))
    }

    /// `text` cut to about `limit` bytes of UTF-8 (on a character boundary), saying so:
    /// a line stays small whatever the characters (combining marks included).
    static func cut(_ text: String?, _ limit: Int = 2000) -> String? {
        guard let text, text.utf8.count > limit else { return text }
        var result = ""
        var bytes = 0
        for scalar in text.unicodeScalars {
            bytes += String(scalar).utf8.count
            if bytes > limit { break }
            result.unicodeScalars.append(scalar)
        }
        return result + "…[cut]"
    }
}

/// What an action did.
public struct AuditResult: Codable, Equatable, Sendable {
    public var performed: Bool
    public var exitCode: Int32?
    public var signal: Int32?
    public var limit: String?
    public var wallMilliseconds: UInt64?
    public var stdoutBytes: Int?
    public var stderrBytes: Int?
    /// The path a file action resolved to, bytes written, an HTTP status.
    public var path: String?
    public var bytesWritten: Int?
    public var httpStatus: Int?
    /// Labels the session carries afterwards.
    public var labels: [String]?
    /// The leak guard's rules that fired (redacted, withheld or only noted).
    public var leaks: [String]?

    enum CodingKeys: String, CodingKey {
        case performed
        case exitCode = "exit_code"
        case signal, limit
        case wallMilliseconds = "wall_ms"
        case stdoutBytes = "stdout_bytes"
        case stderrBytes = "stderr_bytes"
        case path
        case bytesWritten = "bytes_written"
        case httpStatus = "http_status"
        case labels, leaks
    }

    public init(performed: Bool) {
        self.performed = performed
    }
}

/// A checkpoint: the chain's length and head, signed (Ed25519) when the log has a key.
public struct AuditCheckpoint: Codable, Equatable, Sendable {
    /// The last entry it covers (the one before it).
    public var through: UInt64
    /// Base64 Ed25519 signature of the checkpoint entry encoded without it; nil when the
    /// log has no signing key.
    public var signature: String?
    /// The first 16 hex digits of the SHA-256 of the public key that verifies it.
    public var key: String?
}
