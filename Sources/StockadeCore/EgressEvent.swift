/// One connection or request through a sandbox's egress proxy, allowed or refused:
/// what the audit log records for the network.
public struct EgressEvent: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// A CONNECT tunnel (HTTPS and anything else spoken inside it).
        case tunnel
        /// A plain HTTP request relayed by the proxy.
        case request
        /// The supervisor's own `http` action (`http_fetch`).
        case fetch
    }

    public var kind: Kind
    /// Seconds since 1970 when the request arrived.
    public var time: Double
    public var host: String
    public var port: Int
    /// The HTTP method (CONNECT for tunnels).
    public var method: String
    /// Path and query of a plain request; nil for tunnels.
    public var target: String?
    /// The address connected to, once the host was allowed and resolved.
    public var address: String?
    public var allowed: Bool
    /// The rule that refused (or `network.allow[i]` that allowed).
    public var rule: String?
    public var reason: String?
    /// The upstream's status for plain requests and fetches.
    public var status: Int?
    /// Bytes from the sandbox to the host, and back.
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var milliseconds: UInt64
    /// The leak guard's rules that fired on the request (it was refused unless the
    /// policy only alerts).
    public var leaks: [String]?

    public init(
        kind: Kind, time: Double, host: String, port: Int, method: String, target: String? = nil, address: String? = nil,
        allowed: Bool, rule: String? = nil, reason: String? = nil, status: Int? = nil, bytesSent: UInt64 = 0,
        bytesReceived: UInt64 = 0, milliseconds: UInt64 = 0
    ) {
        self.kind = kind
        self.time = time
        self.host = host
        self.port = port
        self.method = method
        self.target = target
        self.address = address
        self.allowed = allowed
        self.rule = rule
        self.reason = reason
        self.status = status
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.milliseconds = milliseconds
    }
}
