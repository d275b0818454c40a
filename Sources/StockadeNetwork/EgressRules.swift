import Foundation
import StockadeCore
import StockadePolicy

/// Where a request wants to go, taken apart before anything is looked up.
public struct EgressTarget: Equatable, Sendable {
    /// Lower case, no trailing dot; an address literal in its usual spelling.
    public let host: String
    /// The literal address when the host is one (in any spelling).
    public let address: IPAddress?
    public let port: Int

    /// `host:port` of a CONNECT request (`[v6]:port` for IPv6).
    public static func authority(_ text: String) -> EgressTarget? {
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), let colon = text.lastIndex(of: ":"), text.count <= 300 else { return nil }
        let hostText = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.count <= 5, portText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let port = Int(portText), (1...65535).contains(port) else { return nil }
        if hostText.contains(":") && !hostText.hasPrefix("[") { return nil }
        return make(host: hostText, port: port)
    }

    /// The host and port of an absolute URL (the guard's own parser, so that the
    /// guard and the proxy cannot read one URL two ways).
    public static func url(_ url: ParsedURL) -> EgressTarget? {
        make(host: url.host.contains(":") ? "[\(url.host)]" : url.host, port: url.port)
    }

    static func make(host: String, port: Int) -> EgressTarget? {
        // ASCII only, lowered byte by byte: Unicode case mapping would turn a Kelvin
        // sign into a "k" that the guard, comparing bytes, never saw.
        guard host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        var lowered = String(decoding: host.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
        if lowered.hasSuffix(".") && !lowered.hasSuffix("..") { lowered.removeLast() }
        switch IPAddress.classifyHost(lowered) {
        case .address(let address): return EgressTarget(host: address.description, address: address, port: port)
        case .malformed: return nil
        case .name:
            guard HostPattern.isHostName(lowered) || HostPattern.isHostName(lowered.replacingOccurrences(of: "_", with: "-")) else { return nil }
            return EgressTarget(host: lowered, address: nil, port: port)
        }
    }

    /// The Host header for this target: the host alone on the scheme's default port.
    func hostHeader(defaultPort: Int) -> String {
        guard port == defaultPort else { return display }
        if case .v6 = address { return "[\(host)]" }
        return host
    }

    /// `host:port`, with brackets around IPv6.
    public var display: String {
        if case .v6 = address { return "[\(host)]:\(port)" }
        return "\(host):\(port)"
    }
}

/// Why the proxy refused: the rule that decided, and a sentence saying why.
public struct EgressRefusal: Error, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// The policy (allowlist, invariant, address guard, quota): HTTP 403.
        case denied
        /// A request the proxy cannot read or does not serve: HTTP 400.
        case badRequest
        /// The host could not be resolved or reached: HTTP 502 (504 on time-out).
        case unreachable
        case timedOut
    }

    public let kind: Kind
    /// `network.allow`, `network.allow[2]`, `network.max_requests`, an invariant's id,
    /// `address-guard`; nil when no rule is involved (a broken request).
    public let rule: String?
    public let reason: String

    public init(_ kind: Kind, rule: String?, _ reason: String) {
        self.kind = kind
        self.rule = rule
        self.reason = reason
    }

    var status: Int {
        switch kind {
        case .denied: return 403
        case .badRequest: return 400
        case .unreachable: return 502
        case .timedOut: return 504
        }
    }
}

/// The entry of `network.allow` that let a request through.
public struct EgressGrant: Sendable {
    public let index: Int
    public let grant: NetworkPolicy.HostGrant
    public var rule: String { "network.allow[\(index)]" }
}

/// The `network` section compiled: which grant, if any, lets a request through.
public struct EgressRules: Sendable {
    struct Grant: Sendable {
        let index: Int
        let grant: NetworkPolicy.HostGrant
        let pattern: HostPattern?
        let literal: IPAddress?
        let ports: Set<Int>
        let methods: Set<String>
    }

    public let policy: NetworkPolicy
    let grants: [Grant]
    /// Addresses the policy lists literally, with their ports: reachable on those
    /// ports even when not public.
    let listedAddresses: [IPAddress: Set<Int>]

    public init(_ policy: NetworkPolicy) {
        self.policy = policy
        var grants: [Grant] = []
        var listed: [IPAddress: Set<Int>] = [:]
        for (index, grant) in policy.allow.enumerated() {
            var literal: IPAddress?
            if case .address(let address) = IPAddress.classifyHost(grant.host) {
                literal = address
                listed[address, default: []].formUnion(grant.ports.isEmpty ? [80, 443] : grant.ports)
            }
            grants.append(Grant(
                index: index, grant: grant, pattern: literal == nil ? HostPattern(grant.host) : nil, literal: literal,
                ports: Set(grant.ports.isEmpty ? [80, 443] : grant.ports), methods: Set(grant.methods)))
        }
        self.grants = grants
        listedAddresses = listed
    }

    /// What a request may do: the grant that lets it through, or the refusal.
    /// - Parameter method: the HTTP method, or nil for a tunnel (CONNECT).
    public func decide(_ target: EgressTarget, method: String?) -> Result<EgressGrant, EgressRefusal> {
        let named = grants.filter { grant in
            if let address = target.address { return grant.literal == address }
            return grant.pattern?.matches(target.host) ?? false
        }
        guard !named.isEmpty else {
            return .failure(EgressRefusal(.denied, rule: "network.allow", "no entry of network.allow names \(target.host); add it to the policy if the sandbox should reach it"))
        }
        let portOK = named.filter { $0.ports.contains(target.port) }
        guard !portOK.isEmpty else {
            let grant = named[0]
            let ports = grant.ports.sorted().map(String.init).joined(separator: ", ")
            return .failure(EgressRefusal(.denied, rule: "network.allow[\(grant.index)]", "network.allow[\(grant.index)] (\(grant.grant.host)) allows port\(grant.ports.count == 1 ? "" : "s") \(ports), not \(target.port)"))
        }
        let wanted = method ?? "CONNECT"
        if let grant = portOK.first(where: { $0.methods.isEmpty || $0.methods.contains(wanted) }) {
            return .success(EgressGrant(index: grant.index, grant: grant.grant))
        }
        let grant = portOK[0]
        let methods = grant.methods.sorted().joined(separator: ", ")
        if method == nil {
            return .failure(EgressRefusal(.denied, rule: "network.allow[\(grant.index)]", "network.allow[\(grant.index)] (\(grant.grant.host)) allows only \(methods), which the proxy can check on plain HTTP only; an HTTPS tunnel would hide the method. List CONNECT in its methods to allow HTTPS"))
        }
        return .failure(EgressRefusal(.denied, rule: "network.allow[\(grant.index)]", "network.allow[\(grant.index)] (\(grant.grant.host)) allows \(methods), not \(wanted)"))
    }

    /// Whether the policy lists `address` itself for `port` (then it may be reached
    /// there though it is not public, whichever allowed name led to it).
    public func lists(_ address: IPAddress, port: Int) -> Bool { listedAddresses[address]?.contains(port) ?? false }
}

/// Fills in `${env:NAME}` and `${file:PATH}`: done by the supervisor when the proxy
/// starts, so a missing credential is an error before anything runs.
enum SecretValues {
    static func resolve(_ template: SecretTemplate, environment: [String: String], what: String) throws -> String {
        var value = ""
        for part in template.parts {
            switch part {
            case .text(let text): value += text
            case .environment(let name):
                guard let found = environment[name] else {
                    throw StockadeError(.invalidPolicy, "failed to prepare \(what): the environment variable \(name) is not set. Set it for stockade (the sandbox never sees it) or remove the header from the policy")
                }
                value += found
            case .file(let path):
                let expanded = path.hasPrefix("~/") ? (environment["HOME"] ?? NSHomeDirectory()) + path.dropFirst(1) : path
                guard let data = FileManager.default.contents(atPath: expanded), var text = String(data: data, encoding: .utf8) else {
                    throw StockadeError(.invalidPolicy, "failed to prepare \(what): cannot read \(expanded) as text. Check the path in the policy")
                }
                while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
                value += text
            }
        }
        guard !value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
            throw StockadeError(.invalidPolicy, "failed to prepare \(what): the value contains a line break or NUL byte, which no header may carry")
        }
        return value
    }
}
