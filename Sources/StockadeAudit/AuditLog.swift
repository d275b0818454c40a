import Crypto
import Foundation
import StockadeCore

/// The append side of an audit log file.
///
/// Each entry is written with one `write(2)` on an `O_APPEND` descriptor and made
/// durable (`fdatasync`) before `append` returns, so the caller can hand the action's
/// result back only once its record is on disk. Several processes may share one file:
/// an exclusive `flock` covers reading the chain's head and appending. A writer killed
/// mid-line leaves a torn last line; the next writer cuts it off before appending (it
/// can only be the entry whose result was never returned), and `verify` reports it.
public final class AuditLog: @unchecked Sendable {
    public let path: String
    let fd: Int32
    let signingKey: Curve25519.Signing.PrivateKey?
    let checkpointEvery: UInt64
    private let lock = NSLock()
    /// The chain's head as this writer last saw it (re-read when the file changed).
    private var knownSize: off_t = -1
    private var lastHash = AuditEntry.genesis
    private var lastSeq: UInt64 = 0
    private var sinceCheckpoint: UInt64 = 0

    /// Opens (or creates, 0600) the log at `path`.
    /// - Throws: `StockadeError` naming the path and what to do.
    public init(path: String, signingKey: Curve25519.Signing.PrivateKey? = nil, checkpointEvery: UInt64 = 100) throws {
        self.path = path
        self.signingKey = signingKey
        self.checkpointEvery = max(1, checkpointEvery)
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw StockadeError(.invalidArgument, "failed to open the audit log \(path): \(String(cString: strerror(errno))). Check audit.path in the policy and that its directory is writable")
        }
    }

    deinit {
        close(fd)
    }

    /// Appends `entry` (its `seq`, `time` and `prev` are filled in here) and returns it
    /// as written. A checkpoint follows every `checkpointEvery` entries.
    @discardableResult
    public func append(_ entry: AuditEntry) throws -> AuditEntry {
        lock.lock()
        defer { lock.unlock() }
        var written = entry
        try locked {
            written = try write(entry)
            sinceCheckpoint += 1
            if sinceCheckpoint >= checkpointEvery {
                _ = try write(checkpointEntry(session: entry.session))
                sinceCheckpoint = 0
            }
        }
        return written
    }

    /// Writes a checkpoint now (at the end of a session, say).
    public func checkpoint(session: String) throws {
        lock.lock()
        defer { lock.unlock() }
        try locked {
            _ = try write(checkpointEntry(session: session))
            sinceCheckpoint = 0
        }
    }

    // MARK: -

    private func locked(_ body: () throws -> Void) throws {
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                throw StockadeError(.hostFacility, "failed to lock the audit log \(path): \(String(cString: strerror(errno)))")
            }
        }
        defer { flock(fd, LOCK_UN) }
        try refreshHead()
        try body()
    }

    /// Reads the chain's head from the file when it changed since this writer last
    /// wrote (another writer appended), and cuts off a torn last line.
    private func refreshHead() throws {
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw StockadeError(.hostFacility, "failed to read the audit log \(path): \(String(cString: strerror(errno)))")
        }
        let size = status.st_size
        if status.st_nlink == 0 {
            throw StockadeError(.hostFacility, "failed to append to the audit log \(path): the file was removed or replaced while stockade had it open. Start stockade again to write the new file")
        }
        guard size != knownSize else { return }
        lastHash = AuditEntry.genesis
        lastSeq = 0
        knownSize = 0
        guard size > 0 else { return }
        // Read through the descriptor appended to: the file it names, even if the
        // path has since been given to another (a rotated log).
        let reader = fd
        let window = Int(min(size, 1 << 20))
        let whole = size <= off_t(window)
        var tail = [UInt8](repeating: 0, count: window)
        let got = tail.withUnsafeMutableBytes { pread(reader, $0.baseAddress, window, size - off_t(window)) }
        guard got == window else {
            throw StockadeError(.hostFacility, "failed to read the audit log \(path)")
        }
        var end = window
        if tail[end - 1] != UInt8(ascii: "\n") {
            // A torn line: a writer died in the middle of it (before its fdatasync, so
            // before its action's result was returned). Cut it off.
            guard let newline = tail.lastIndex(of: UInt8(ascii: "\n")) ?? (whole ? -1 : nil) else {
                throw StockadeError(.hostFacility, "failed to read the audit log \(path): its last line is longer than 1 MiB")
            }
            end = newline + 1
            guard ftruncate(fd, size - off_t(window - end)) == 0 else {
                throw StockadeError(.hostFacility, "failed to cut the torn last line of the audit log \(path): \(String(cString: strerror(errno)))")
            }
        }
        knownSize = size - off_t(window - end)
        guard end > 0 else { return }
        guard let start = tail[0..<(end - 1)].lastIndex(of: UInt8(ascii: "\n")).map({ $0 + 1 }) ?? (whole ? 0 : nil) else {
            throw StockadeError(.hostFacility, "failed to read the audit log \(path): its last line is longer than 1 MiB")
        }
        let line = tail[start..<(end - 1)]
        guard let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(line)) else {
            throw StockadeError(.invalidArgument, "failed to append to the audit log \(path): its last line is not an audit entry. Run 'stockade audit verify \(path)'")
        }
        lastHash = AuditEntry.hash(line)
        lastSeq = entry.seq
    }

    private func checkpointEntry(session: String) -> AuditEntry {
        var entry = AuditEntry(session: session, kind: .checkpoint)
        entry.checkpoint = AuditCheckpoint(through: lastSeq, signature: nil, key: signingKey.map { AuditKeys.keyID($0.publicKey) })
        return entry
    }

    private func write(_ given: AuditEntry) throws -> AuditEntry {
        var entry = given
        entry.seq = lastSeq + 1
        entry.time = AuditEntry.timestamp()
        entry.prev = lastHash
        entry.action = AuditEntry.cut(entry.action)
        entry.reason = AuditEntry.cut(entry.reason)
        if entry.kind == .checkpoint, let signingKey {
            let unsigned = try entry.line()
            let signature = try signingKey.signature(for: unsigned)
            entry.checkpoint?.signature = Data(signature).base64EncodedString()
        }
        var line = try entry.line()
        let hash = AuditEntry.hash(line)
        line.append(UInt8(ascii: "\n"))
        let wrote = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard wrote == line.count else {
            throw StockadeError(.hostFacility, "failed to write the audit log \(path): \(wrote < 0 ? String(cString: strerror(errno)) : "short write"). The action's result is withheld")
        }
        guard fdatasync(fd) == 0 else {
            throw StockadeError(.hostFacility, "failed to make the audit log \(path) durable (fdatasync): \(String(cString: strerror(errno))). The action's result is withheld")
        }
        lastHash = hash
        lastSeq = entry.seq
        knownSize += off_t(line.count)
        return entry
    }
}

/// Ed25519 keys for checkpoints: raw 32-byte keys, base64 in a text file.
public enum AuditKeys {
    /// Writes a new private key to `path` (0600) and its public key to `path.pub`.
    public static func generate(path: String) throws -> Curve25519.Signing.PublicKey {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw StockadeError(.invalidArgument, "failed to create the key: \(path) exists. Choose another path or remove it")
        }
        let key = Curve25519.Signing.PrivateKey()
        try write(key.rawRepresentation.base64EncodedString() + "\n", to: path, mode: 0o600)
        try write(key.publicKey.rawRepresentation.base64EncodedString() + "\n", to: path + ".pub", mode: 0o644)
        return key.publicKey
    }

    public static func privateKey(at path: String) throws -> Curve25519.Signing.PrivateKey {
        let raw = try read(path, what: "signing key")
        do {
            return try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        } catch {
            throw StockadeError(.invalidArgument, "failed to load the signing key \(path): it is not an Ed25519 private key. Make one with 'stockade audit keygen'")
        }
    }

    public static func publicKey(at path: String) throws -> Curve25519.Signing.PublicKey {
        let raw = try read(path, what: "public key")
        do {
            return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        } catch {
            throw StockadeError(.invalidArgument, "failed to load the public key \(path): it is not an Ed25519 public key (the .pub file 'stockade audit keygen' wrote)")
        }
    }

    /// The first 16 hex digits of the SHA-256 of a public key.
    public static func keyID(_ key: Curve25519.Signing.PublicKey) -> String {
        String(AuditEntry.hash(key.rawRepresentation).prefix(16))
    }

    private static func read(_ path: String, what: String) throws -> Data {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StockadeError(.invalidArgument, "failed to load the \(what) \(path): cannot read it as base64 text. Make one with 'stockade audit keygen'")
        }
        return raw
    }

    private static func write(_ text: String, to path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw StockadeError(.invalidArgument, "failed to write \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count, fsync(fd) == 0 else {
            throw StockadeError(.hostFacility, "failed to write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
