import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import StockadeCore
import StockadePolicy

/// An `http` action the supervisor performs for the agent (`http_fetch`).
public struct FetchRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Most bytes of the response body kept; the rest is read and dropped.
    public var maxResponseBytes: Int

    public init(method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [], maxResponseBytes: Int = 1 << 20) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.maxResponseBytes = maxResponseBytes
    }
}

public struct FetchResponse: Sendable {
    public var status: Int
    public var reason: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// True when the body was longer than `maxResponseBytes`.
    public var truncated: Bool
    /// The address the supervisor connected to.
    public var address: String
}

extension EgressProxy {
    /// Performs `request` under the same rules as the sandbox's own traffic: the
    /// allowlist (with its methods, which the supervisor sees even over HTTPS), the
    /// session's invariants, the quotas, the lookup and the address check. Injected
    /// headers are added for HTTPS as well: the supervisor speaks the TLS itself.
    public func fetch(_ request: FetchRequest) async -> Result<FetchResponse, EgressRefusal> {
        guard let url = ParsedURL(request.url), let target = EgressTarget.url(url) else {
            return .failure(EgressRefusal(.badRequest, rule: nil, "'\(request.url.printableForMessages)' is not an absolute http or https URL with a host"))
        }
        let record = ExchangeRecord(EgressEvent(
            kind: .fetch, time: Date().timeIntervalSince1970, host: target.host, port: target.port, method: request.method,
            target: url.target, allowed: false))
        defer { record.finish(self) }
        let admission: Admission
        switch await admit(target, method: request.method) {
        case .failure(let refusal):
            record.update {
                $0.rule = refusal.rule
                $0.reason = refusal.reason
            }
            return .failure(refusal)
        case .success(let admitted):
            admission = admitted
        }
        record.update {
            $0.allowed = true
            $0.address = admission.address.description
            $0.rule = admission.rule
        }
        guard charge(bytes: request.body.count) else { return .failure(quotaRefusal) }
        record.update { $0.bytesSent = UInt64(request.body.count) }

        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: FetchResponse.self)
        let tls: NIOSSLContext?
        do {
            tls = url.secure ? try tlsContext() : nil
        } catch {
            return .failure(EgressRefusal(.unreachable, rule: nil, "TLS could not be set up: \(error)"))
        }
        let serverName = target.address == nil ? target.host : nil
        let limit = request.maxResponseBytes
        let address = admission.address.description
        let channelFuture = connect(to: admission, port: target.port, on: eventLoop) { [self] channel in
            do {
                if let tls {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                }
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(FetchCollector(proxy: self, record: record, promise: promise, limit: limit, address: address))
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        let channel: any Channel
        do {
            channel = try await channelFuture.get()
        } catch {
            promise.fail(error)
            let refusal = connectRefusal(error, target, admission.address)
            record.update { $0.reason = refusal.reason }
            return .failure(refusal)
        }
        var headers = HopByHop.strip(HTTPHeaders(request.headers.map { ($0.name, $0.value) }))
        headers.remove(name: "host")
        headers.add(name: "Host", value: target.hostHeader(defaultPort: url.secure ? 443 : 80))
        for (name, value) in injectedHeaders(for: admission) {
            headers.remove(name: name)
            headers.add(name: name, value: value)
        }
        if !headers.contains(name: "user-agent") { headers.add(name: "User-Agent", value: "stockade") }
        headers.remove(name: "content-length")
        if !request.body.isEmpty || ["POST", "PUT", "PATCH"].contains(request.method) {
            headers.add(name: "Content-Length", value: String(request.body.count))
        }
        headers.add(name: "Connection", value: "close")
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: url.target, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if !request.body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: request.body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            let response = try await promise.futureResult.get()
            record.update { $0.status = response.status }
            return .success(response)
        } catch let refusal as EgressRefusal {
            record.update {
                $0.rule = refusal.rule ?? $0.rule
                $0.reason = refusal.reason
            }
            return .failure(refusal)
        } catch {
            let refusal = EgressRefusal(.unreachable, rule: nil, "the exchange with \(target.display) failed: \(error)")
            record.update { $0.reason = refusal.reason }
            return .failure(refusal)
        }
    }
}

/// Collects the response of a fetch, up to its limit.
final class FetchCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let proxy: EgressProxy
    let record: ExchangeRecord
    let promise: EventLoopPromise<FetchResponse>
    let limit: Int
    var response: FetchResponse

    init(proxy: EgressProxy, record: ExchangeRecord, promise: EventLoopPromise<FetchResponse>, limit: Int, address: String) {
        self.proxy = proxy
        self.record = record
        self.promise = promise
        self.limit = limit
        response = FetchResponse(status: 0, reason: "", headers: [], body: [], truncated: false, address: address)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.status.code < 200 { return }
            response.status = Int(head.status.code)
            response.reason = head.status.reasonPhrase
            response.headers = head.headers.map { ($0.name, $0.value) }
        case .body(let buffer):
            record.update { $0.bytesReceived += UInt64(buffer.readableBytes) }
            guard proxy.charge(bytes: buffer.readableBytes) else {
                promise.fail(proxy.quotaRefusal)
                context.close(promise: nil)
                return
            }
            let room = limit - response.body.count
            if room > 0 { response.body += buffer.readableBytesView.prefix(room) }
            if buffer.readableBytes > room {
                // Over the limit: keep what fits and stop reading.
                response.truncated = true
                promise.succeed(response)
                context.close(promise: nil)
            }
        case .end:
            promise.succeed(response)
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            promise.fail(EgressRefusal(.timedOut, rule: "network.timeout", "the host sent nothing for \(proxy.timeout.nanoseconds / 1_000_000) ms (network.timeout)"))
            context.close(promise: nil)
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(EgressRefusal(.unreachable, rule: nil, "the host closed the connection before the response ended"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(EgressRefusal(.unreachable, rule: nil, "the exchange failed: \(error)"))
        context.close(promise: nil)
    }
}
