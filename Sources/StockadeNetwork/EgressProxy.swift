import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import StockadeCore
import StockadePolicy
import StockadeSecrets
import Synchronization

/// What the embedding code (a session) adds to the policy's network section: a check
/// of the session's labels before each connection. Returns the refusal, or nil.
public typealias EgressAuthority = @Sendable (_ target: EgressTarget, _ method: String?) -> EgressRefusal?

/// How an egress proxy is set up beyond its policy.
public struct EgressConfiguration: Sendable {
    /// Looks up allowed names. Tests map their own names to loopback servers here.
    public var resolver: any EgressResolver
    /// Extra CA certificates (PEM files) that the supervisor's own `http` actions
    /// trust besides the system's. Tunnelled TLS is the client's business.
    public var trustRoots: [String]
    /// The environment `${env:NAME}` references are read from.
    public var environment: [String: String]
    /// Called with every event as it is recorded (the audit log).
    public var eventSink: (@Sendable (EgressEvent) -> Void)?
    /// The leak guard for what the sandbox sends: plain requests' URL, headers and
    /// body, and the host names of tunnels. A leak refuses the request.
    public var leakGuard: LeakGuard?
    /// Only record leaks (`on_leak: alert`), never refuse.
    public var leakAlertOnly = false

    public init(
        resolver: any EgressResolver = SystemResolver(), trustRoots: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment, eventSink: (@Sendable (EgressEvent) -> Void)? = nil
    ) {
        self.resolver = resolver
        self.trustRoots = trustRoots
        self.environment = environment
        self.eventSink = eventSink
    }
}

/// The egress proxy of one sandbox (one run, or one session): the only way out.
///
/// It accepts on the bridge listener that the sandbox's set-up opened inside the
/// sandbox's network namespace, and speaks HTTP proxying: absolute-form requests for
/// plain HTTP and CONNECT tunnels for everything else. Each request is decided by the
/// host name it asks for, before any lookup; an allowed name is resolved here, every
/// address is checked (no loopback, private, link-local, CGNAT, multicast or metadata
/// address unless the policy lists it) and the proxy connects to the address it
/// checked. Quotas (requests, bytes) and time-outs hold for the whole sandbox.
public final class EgressProxy: Sendable {
    public let rules: EgressRules
    let configuration: EgressConfiguration
    let authority: EgressAuthority?
    let group: any EventLoopGroup
    /// The injected headers per grant (by its index in `allow`), filled in when the
    /// proxy was made: a grant's credential goes only where that grant lets requests go.
    let injected: [Int: [(name: String, value: String)]]
    /// Time-out for connecting and for a connection that stays idle.
    let timeout: TimeAmount
    let state = Mutex(State())

    struct State {
        var requests: UInt64 = 0
        var bytes: UInt64 = 0
        var admitting = 0
        var events: [EgressEvent] = []
        var droppedEvents = 0
        var channels: [ObjectIdentifier: any Channel] = [:]
        var listener: (any Channel)?
        var closed = false
        var tlsContext: NIOSSLContext?
    }

    /// Most events kept in memory (the sink sees every one).
    static let eventLimit = 10_000
    /// Default for `network.timeout`.
    public static let defaultTimeoutMilliseconds: UInt64 = 30_000

    /// - Throws: `StockadeError` `.invalidPolicy` when an injected header refers to an
    ///   unset variable or unreadable file.
    public init(policy: NetworkPolicy, configuration: EgressConfiguration = EgressConfiguration(), authority: EgressAuthority? = nil) throws {
        rules = EgressRules(policy)
        self.configuration = configuration
        self.authority = authority
        group = MultiThreadedEventLoopGroup.singleton
        timeout = .milliseconds(Int64(policy.timeoutMilliseconds ?? Self.defaultTimeoutMilliseconds))
        var injected: [Int: [(name: String, value: String)]] = [:]
        for (index, grant) in policy.allow.enumerated() {
            for header in grant.injectHeaders {
                let value = try SecretValues.resolve(header.value, environment: configuration.environment, what: "network.allow[\(index)].inject_headers.\(header.name)")
                injected[index, default: []].append((header.name, value))
            }
        }
        Self.raiseDescriptorLimit
        self.injected = injected
    }

    // MARK: serving

    /// Starts accepting on `listener`, a listening TCP socket (the bridge); the proxy
    /// owns it from now on and closes it in `shutdown()`.
    public func serve(listener: Int32) throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.autoRead, value: true)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.recvAllocator, value: Self.readSizes)
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.writeBufferWaterMark, value: Self.writeBuffer)
            .childChannelInitializer { [self] channel in
                guard track(channel) else {
                    // Over the connection limit: the sandbox cannot exhaust the
                    // supervisor's descriptors (other sandboxes share them).
                    return channel.close()
                }
                do {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: timeout))
                    // A request head is at most what the decoder allows (80 KiB); the
                    // buffer behind it is capped too.
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes), maximumBufferSize: 1 << 20),
                        name: ProxyFrontHandler.decoderName)
                    try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder(), name: ProxyFrontHandler.encoderName)
                    try channel.pipeline.syncOperations.addHandler(ProxyFrontHandler(proxy: self))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let channel: any Channel
        do {
            channel = try bootstrap.withBoundSocket(listener).wait()
        } catch {
            close(listener)
            throw StockadeError(.startFailed, "failed to start the egress proxy on the sandbox's bridge: \(error)", cause: error)
        }
        let stillOpen = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.listener = channel
            return true
        }
        if !stillOpen { channel.close(promise: nil) }
    }

    /// Stops accepting and closes every open connection. Idempotent.
    public func shutdown() {
        let (listener, channels) = state.withLock { state -> ((any Channel)?, [any Channel]) in
            state.closed = true
            let result = (state.listener, Array(state.channels.values))
            state.listener = nil
            state.channels.removeAll()
            return result
        }
        let all = [listener].compactMap { $0 } + channels
        for channel in all { channel.close(promise: nil) }
        // Once a channel's close future is done, its callbacks (which record the
        // exchange's event) have run.
        for channel in all { _ = try? channel.closeFuture.wait() }
    }

    /// Closes every open connection (tunnels included) but keeps accepting new ones,
    /// which are decided afresh.
    public func dropConnections() {
        let channels = state.withLock { state -> [any Channel] in
            let result = Array(state.channels.values)
            state.channels.removeAll()
            return result
        }
        for channel in channels { channel.close(promise: nil) }
    }

    /// The events recorded so far (at most `eventLimit`; see `droppedEvents`).
    public var events: [EgressEvent] { state.withLock { $0.events } }
    public var droppedEvents: Int { state.withLock { $0.droppedEvents } }
    /// Bytes and requests counted against the quotas so far.
    public var usage: (requests: UInt64, bytes: UInt64) { state.withLock { ($0.requests, $0.bytes) } }

    // MARK: shared by the handlers and fetch

    /// Most open connections of one sandbox, both sides counted. With the buffers
    /// below, what one sandbox can make the supervisor hold stays near 128 MiB.
    static let connectionLimit = 512
    /// Reads of up to 256 KiB, and up to 256 KiB queued for a slow reader before the
    /// other side stops reading: bulk transfers move in large pieces. (With NIO's
    /// 64 KiB defaults the relayed path ran at half of direct in bench/egress.py; with
    /// these, at about 0.6.)
    static let readSizes = AdaptiveRecvByteBufferAllocator(minimum: 2048, initial: 65536, maximum: 256 << 10)
    static let writeBuffer = ChannelOptions.Types.WriteBufferWaterMark(low: 128 << 10, high: 256 << 10)

    /// Tracks `channel` for `shutdown()`; false (and the channel closed) when the proxy
    /// is shut down or the sandbox has too many connections open.
    @discardableResult
    func track(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { state -> Bool in
            if state.closed || state.channels.count >= Self.connectionLimit { return false }
            state.channels[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return false
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.channels.removeValue(forKey: id) }
        }
        return true
    }

    func record(_ event: EgressEvent) {
        state.withLock { state in
            if state.events.count < Self.eventLimit { state.events.append(event) } else { state.droppedEvents += 1 }
        }
        configuration.eventSink?(event)
    }

    /// Counts `count` bytes; false once the byte quota is spent.
    func charge(bytes count: Int) -> Bool {
        state.withLock { state in
            state.bytes += UInt64(count)
            guard let limit = rules.policy.maxBytes else { return true }
            return state.bytes <= limit
        }
    }

    var quotaRefusal: EgressRefusal {
        EgressRefusal(.denied, rule: "network.max_bytes", "the sandbox has used its network byte quota (network.max_bytes, \(Quantity.formatBytes(rules.policy.maxBytes ?? 0)))")
    }

    /// The headers the grant that admitted a request injects.
    func injectedHeaders(for admission: Admission) -> [(name: String, value: String)] {
        injected[admission.grantIndex] ?? []
    }

    struct Admission: Sendable {
        let address: IPAddress
        let grant: NetworkPolicy.HostGrant
        let grantIndex: Int
        var rule: String { "network.allow[\(grantIndex)]" }
    }

    /// Most admissions (lookups, mostly) of one sandbox in flight at once.
    static let admissionLimit = 32

    /// A supervisor serves many connections for many sandboxes: its soft limit on open
    /// files (often 1024) is raised to the hard limit, once.
    static let raiseDescriptorLimit: Void = {
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
    }()

    /// The whole decision for one connection or request: the session's invariants,
    /// the allowlist, the quotas, then the lookup and the address check.
    /// - Parameter stillWanted: false once the client has gone (nothing is looked up then).
    func admit(_ target: EgressTarget, method: String?, stillWanted: @Sendable () -> Bool = { true }) async -> Result<Admission, EgressRefusal> {
        if let refusal = authority?(target, method) { return .failure(refusal) }
        let grant: EgressGrant
        switch rules.decide(target, method: method) {
        case .success(let allowed): grant = allowed
        case .failure(let refusal): return .failure(refusal)
        }
        let policy = rules.policy
        let quota: EgressRefusal? = state.withLock { state in
            if state.admitting >= Self.admissionLimit {
                return EgressRefusal(.denied, rule: nil, "the sandbox has \(Self.admissionLimit) requests waiting for a decision; wait for them")
            }
            if let limit = policy.maxRequests, state.requests >= limit {
                return EgressRefusal(.denied, rule: "network.max_requests", "the sandbox has made its \(limit) requests (network.max_requests)")
            }
            if let limit = policy.maxBytes, state.bytes >= limit { return quotaRefusal }
            state.requests += 1
            state.admitting += 1
            return nil
        }
        if let quota { return .failure(quota) }
        defer { state.withLock { $0.admitting -= 1 } }
        guard stillWanted() else {
            return .failure(EgressRefusal(.unreachable, rule: nil, "the client went away before the request was decided"))
        }
        let addresses: [IPAddress]
        if let literal = target.address {
            addresses = [literal]
        } else {
            do {
                addresses = try await configuration.resolver.resolve(target.host)
            } catch let refusal as EgressRefusal {
                return .failure(refusal)
            } catch {
                return .failure(EgressRefusal(.unreachable, rule: nil, "\(target.host) could not be resolved: \(error)"))
            }
            if addresses.isEmpty { return .failure(EgressRefusal(.unreachable, rule: nil, "\(target.host) has no address")) }
        }
        // Every address must pass, not just the first: a name with one public and one
        // loopback address would otherwise be a coin toss away from the host.
        for address in addresses {
            guard let why = AddressGuard.refusal(address), !rules.lists(address, port: target.port) else { continue }
            let subject = target.address == nil ? "\(target.host) resolves to \(address), which is" : "\(target.host) is"
            return .failure(EgressRefusal(.denied, rule: "address-guard", "\(subject) \(why); the proxy connects only to public addresses unless the policy lists the address itself"))
        }
        return .success(Admission(address: addresses[0], grant: grant.grant, grantIndex: grant.index))
    }

    /// Connects to the checked address, with the time-out, on `eventLoop`.
    func connect(to admission: Admission, port: Int, on eventLoop: any EventLoop, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<any Channel> {
        let address: SocketAddress
        do {
            address = try admission.address.socketAddress(port: port)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.recvAllocator, value: Self.readSizes)
            .channelOption(.writeBufferWaterMark, value: Self.writeBuffer)
            .channelInitializer { [self] channel in
                guard track(channel) else {
                    return channel.eventLoop.makeFailedFuture(EgressRefusal(.denied, rule: nil, "the sandbox has \(Self.connectionLimit) connections open through the proxy; close some first"))
                }
                do {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: timeout))
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                return initializer(channel)
            }
            .connect(to: address)
    }

    func connectRefusal(_ error: any Error, _ target: EgressTarget, _ address: IPAddress) -> EgressRefusal {
        if let refusal = error as? EgressRefusal { return refusal }
        if case ChannelError.connectTimeout = error {
            return EgressRefusal(.timedOut, rule: "network.timeout", "connecting to \(target.display) (\(address)) took longer than \(rules.policy.timeoutMilliseconds.map(Quantity.formatMilliseconds) ?? Quantity.formatMilliseconds(Self.defaultTimeoutMilliseconds)) (network.timeout)")
        }
        return EgressRefusal(.unreachable, rule: nil, "could not connect to \(target.display) (\(address)): \(error)")
    }

    /// The TLS context of the supervisor's own fetches (system roots and any extra).
    func tlsContext() throws -> NIOSSLContext {
        try state.withLock { state in
            if let context = state.tlsContext { return context }
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.additionalTrustRoots = self.configuration.trustRoots.map { .file($0) }
            let context = try NIOSSLContext(configuration: configuration)
            state.tlsContext = context
            return context
        }
    }
}

extension EgressRefusal {
    /// The response the sandbox's client sees: a status line, and a body and header
    /// that name the rule.
    func response() -> (head: HTTPResponseHead, body: String) {
        var headers = HTTPHeaders()
        let body = "stockade: \(rule.map { "refused by \($0): " } ?? "")\(reason)\n"
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        if let rule { headers.add(name: "X-Stockade-Refused", value: rule) }
        let status = HTTPResponseStatus(statusCode: self.status)
        return (HTTPResponseHead(version: .http1_1, status: status, headers: headers), body)
    }
}
