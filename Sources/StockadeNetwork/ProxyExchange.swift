import Foundation
import NIOCore
import NIOHTTP1
import StockadeCore
import StockadePolicy
import StockadeSecrets
import Synchronization

/// The event of one exchange, finished once (when its client connection closes).
final class ExchangeRecord: Sendable {
    private let state: Mutex<(event: EgressEvent, finished: Bool)>
    private let started = DispatchTime.now()

    init(_ event: EgressEvent) {
        state = Mutex((event, false))
    }

    func update(_ change: (inout EgressEvent) -> Void) {
        state.withLock { change(&$0.event) }
    }

    func finish(_ proxy: EgressProxy) {
        let event: EgressEvent? = state.withLock { state in
            guard !state.finished else { return nil }
            state.finished = true
            state.event.milliseconds = (DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000
            return state.event
        }
        if let event { proxy.record(event) }
    }
}

/// Headers that belong to one connection, not to the message: never forwarded.
enum HopByHop {
    static let names: Set<String> = [
        "connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "trailer",
        "upgrade", "transfer-encoding", "expect",
    ]

    /// `headers` without the hop-by-hop ones and those the Connection header lists.
    /// Never dropped because a Connection header lists them: without its framing a
    /// body would reach the host as a request of its own.
    static let kept: Set<String> = ["content-length", "host"]

    static func strip(_ headers: HTTPHeaders) -> HTTPHeaders {
        var listed = names
        for value in headers["connection"] {
            for token in value.split(separator: ",") {
                let name = token.trimmingCharacters(in: .whitespaces).lowercased()
                if !kept.contains(name) { listed.insert(name) }
            }
        }
        var result = HTTPHeaders()
        for (name, value) in headers where !listed.contains(name.lowercased()) { result.add(name: name, value: value) }
        return result
    }
}

/// The leak guard over a request body as it streams: bytes go on only once the guard
/// has seen enough after them (its window) to know that no secret ends there, so a
/// leak is stopped before any of its bytes leave.
struct BodyGuard {
    var stream: LeakStream?
    var held: [UInt8] = []
    let window: Int
    let alertOnly: Bool

    init(_ leakGuard: LeakGuard?, alertOnly: Bool) {
        stream = leakGuard?.stream()
        window = leakGuard?.holdBack ?? 0
        self.alertOnly = alertOnly
    }

    /// What may go on now (nil inside: nothing yet), or nil outside when the body leaks.
    mutating func pass(_ buffer: ByteBuffer, into record: ExchangeRecord?, proxy: EgressProxy?) -> ByteBuffer?? {
        guard stream != nil else { return .some(buffer) }
        let bytes = Array(buffer.readableBytesView)
        let findings = stream!.feed(bytes)
        if !findings.isEmpty {
            let rules = Array(Set(findings.map(\.rule))).sorted()
            record?.update { $0.leaks = Array(Set(($0.leaks ?? []) + rules)).sorted() }
            if !alertOnly { return nil }
        }
        held += bytes
        // The guard skips line breaks, so the window counts the other bytes: a secret
        // padded with line breaks is still held back whole.
        var kept = 0
        var cut = held.count
        while cut > 0 && kept < window {
            cut -= 1
            if held[cut] != 0x0A && held[cut] != 0x0D { kept += 1 }
        }
        guard cut > 0 else { return .some(nil) }
        let out = ByteBuffer(bytes: held[0..<cut])
        held.removeFirst(cut)
        return .some(out)
    }

    mutating func finish() -> ByteBuffer? {
        defer { held = [] }
        return held.isEmpty ? nil : ByteBuffer(bytes: held)
    }
}
