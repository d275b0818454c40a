import Foundation
import NIOCore
import NIOHTTP1
import StockadeCore
import StockadePolicy
import StockadeSecrets
import Synchronization

/// The sandbox's side of a proxy connection: reads the request head, has it decided,
/// then either answers with the refusal, relays one plain HTTP request, or turns the
/// connection into a tunnel.
final class ProxyFrontHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    static let decoderName = "egress-request-decoder"
    static let encoderName = "egress-response-encoder"

    enum State { case idle, deciding, forwarding, done }

    let proxy: EgressProxy
    var state = State.idle
    var pending: [HTTPClientRequestPart] = []
    var upstream: (any Channel)?
    var record: ExchangeRecord?
    /// A read held back (while deciding, or while the upstream cannot take more).
    var readPending = false
    /// The client shut its sending side (passed on to a tunnel once it is open).
    var clientInputClosed = false
    /// The request's end has been read (a CONNECT's too).
    var requestEnded = false
    /// The leak guard over the request body.
    lazy var bodyGuard = BodyGuard(proxy.configuration.leakGuard, alertOnly: proxy.configuration.leakAlertOnly)

    init(proxy: EgressProxy) {
        self.proxy = proxy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (state, unwrapInboundIn(data)) {
        case (.idle, .head(let head)):
            begin(context, head)
        case (.deciding, .body(let buffer)) where !requestEnded:
            pending.append(.body(.byteBuffer(buffer)))
        case (.deciding, .end) where !requestEnded:
            // Trailers are dropped: headers after the body would pass the head's checks.
            requestEnded = true
            pending.append(.end(nil))
        case (.forwarding, .body(let buffer)) where !requestEnded:
            sendBody(buffer, context)
        case (.forwarding, .end) where !requestEnded:
            requestEnded = true
            sendEnd()
            upstream?.flush()
        default:
            // A second request on this connection: the proxy answers one request per
            // connection (it says Connection: close) and ignores the rest.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        upstream?.flush()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        // After the request's end nothing more is read: the proxy answers one request
        // per connection, and bytes after it (a pipelined request, an upgraded
        // protocol) would only pile up. A tunnel's relay reads for itself.
        if state == .deciding || requestEnded || (upstream.map { !$0.isWritable } ?? false) {
            readPending = true
        } else {
            context.read()
        }
    }

    /// The upstream can take more of the request body.
    func resumeReading(_ context: ChannelHandlerContext) {
        guard readPending, !requestEnded else { return }
        readPending = false
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .done
        upstream?.close(promise: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            record?.update { $0.reason = $0.reason ?? "closed after \(self.proxy.timeout.nanoseconds / 1_000_000) ms without traffic (network.timeout)" }
            context.close(promise: nil)
            return
        }
        // A client that shut its sending side: before a request there is nothing to
        // answer; after one, the answer still goes out (and closes the connection).
        if let event = event as? ChannelEvent, event == .inputClosed {
            clientInputClosed = true
            if state == .idle { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if state == .idle, error is HTTPParserError {
            state = .done
            refuse(context, EgressRefusal(.badRequest, rule: nil, "the request could not be read as HTTP/1.1 (\(error))"))
            return
        }
        context.close(promise: nil)
    }

    // MARK: deciding

    /// A request head must arrive within the time-out, however slowly its bytes come.
    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: proxy.timeout) {
            let (handler, context) = bound.value
            if handler.state == .idle { context.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    private func begin(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        state = .deciding
        let tunnel = head.method == .CONNECT
        // The head counts against the byte quota as much as a body does.
        guard proxy.charge(bytes: Self.size(of: head)) else {
            return refuse(context, proxy.quotaRefusal)
        }
        if !tunnel && (head.headers.contains(name: "upgrade") || head.headers["connection"].contains(where: { $0.lowercased().contains("upgrade") })) {
            return refuse(context, EgressRefusal(.badRequest, rule: nil, "the proxy does not relay protocol upgrades (WebSocket and the like) over plain HTTP; use HTTPS, which goes through a CONNECT tunnel"))
        }
        if head.method == .TRACE {
            return refuse(context, EgressRefusal(.badRequest, rule: nil, "the proxy does not relay TRACE"))
        }
        let method = head.method.rawValue
        let target: EgressTarget
        var requestTarget: String?
        if tunnel {
            guard let parsed = EgressTarget.authority(head.uri) else {
                return refuse(context, EgressRefusal(.badRequest, rule: nil, "CONNECT needs host:port, got '\(head.uri.printableForMessages)'"))
            }
            target = parsed
        } else {
            if head.uri.lowercased().hasPrefix("https://") {
                return refuse(context, EgressRefusal(.badRequest, rule: nil, "send HTTPS through a CONNECT tunnel (HTTPS_PROXY), not as a plain request"))
            }
            guard head.uri.lowercased().hasPrefix("http://"), let url = ParsedURL(head.uri), let parsed = EgressTarget.url(url) else {
                return refuse(context, EgressRefusal(.badRequest, rule: nil, "this is a forward proxy: a request needs an absolute http:// URL, got '\(head.uri.printableForMessages)'"))
            }
            target = parsed
            requestTarget = url.target
        }
        let record = ExchangeRecord(EgressEvent(
            kind: tunnel ? .tunnel : .request, time: Date().timeIntervalSince1970, host: target.host, port: target.port,
            method: method, target: requestTarget, allowed: false))
        attach(record, to: context.channel)
        // What the request itself carries: a secret in the URL, a header or the host
        // name of a tunnel (a subdomain is a channel too).
        if let leakGuard = proxy.configuration.leakGuard {
            var text = Array(head.uri.utf8)
            for (name, value) in head.headers where !HopByHop.names.contains(name.lowercased()) {
                text += Array("\n\(name): \(value)".utf8)
            }
            let rules = Array(Set(leakGuard.scan(text).map(\.rule))).sorted()
            if !rules.isEmpty {
                record.update { $0.leaks = rules }
                if !proxy.configuration.leakAlertOnly {
                    return refuse(context, EgressRefusal(.denied, rule: "secrets", "the request carries \(rules.joined(separator: ", ")) (the leak guard); nothing was sent"))
                }
            }
        }

        let loop = context.eventLoop
        let proxy = self.proxy
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let finalTarget = requestTarget
        let channel = context.channel
        loop.makeFutureWithTask {
            await proxy.admit(target, method: tunnel ? nil : method) { channel.isActive }
        }.whenSuccess { result in
            let (handler, context) = bound.value
            guard handler.state == .deciding else { return }
            switch result {
            case .failure(let refusal):
                handler.refuse(context, refusal)
            case .success(let admission):
                record.update {
                    $0.address = admission.address.description
                    $0.rule = admission.rule
                }
                if tunnel {
                    handler.openTunnel(context, admission: admission, target: target)
                } else {
                    handler.forward(context, admission: admission, target: target, head: head, requestTarget: finalTarget ?? "/")
                }
            }
        }
    }

    static func size(of head: HTTPRequestHead) -> Int {
        head.uri.utf8.count + head.method.rawValue.utf8.count + head.headers.reduce(16) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    /// The exchange's event is recorded when the client's connection closes, whatever
    /// the pipeline has become by then (a tunnel has no front handler left).
    private func attach(_ record: ExchangeRecord, to channel: any Channel) {
        self.record = record
        let proxy = self.proxy
        channel.closeFuture.whenComplete { _ in record.finish(proxy) }
    }

    /// Answers with the refusal and closes. Records it.
    func refuse(_ context: ChannelHandlerContext, _ refusal: EgressRefusal) {
        state = .done
        if record == nil {
            attach(ExchangeRecord(EgressEvent(kind: .request, time: Date().timeIntervalSince1970, host: "", port: 0, method: "", allowed: false)), to: context.channel)
        }
        record?.update {
            $0.allowed = false
            $0.rule = refusal.rule
            $0.reason = refusal.reason
            $0.status = refusal.status
        }
        let response = refusal.response()
        context.write(wrapOutboundOut(.head(response.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: response.body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The body carried a leak: nothing more goes out, and the host sees the request cut.
    func leaked(_ context: ChannelHandlerContext) {
        record?.update {
            $0.rule = "secrets"
            $0.reason = "the request body carries \(($0.leaks ?? []).joined(separator: ", ")) (the leak guard); the request was cut"
        }
        upstream?.close(promise: nil)
        context.close(promise: nil)
    }

    private func overQuota(_ context: ChannelHandlerContext) {
        record?.update {
            $0.rule = "network.max_bytes"
            $0.reason = self.proxy.quotaRefusal.reason
        }
        upstream?.close(promise: nil)
        context.close(promise: nil)
    }

    // MARK: tunnels

    /// Connects to the admitted address. A failure is answered with its refusal; a
    /// connection that comes after the client left (or the exchange ended) is closed;
    /// otherwise `then` gets it.
    private func connectUpstream(
        _ context: ChannelHandlerContext, _ admission: EgressProxy.Admission, _ target: EgressTarget,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>,
        then: @escaping (ProxyFrontHandler, ChannelHandlerContext, any Channel) -> Void
    ) {
        let bound = NIOLoopBound((self, context, then), eventLoop: context.eventLoop)
        let proxy = self.proxy
        proxy.connect(to: admission, port: target.port, on: context.eventLoop, initializer: initializer).whenComplete { result in
            let (handler, context, then) = bound.value
            switch result {
            case .failure(let error):
                handler.refuse(context, proxy.connectRefusal(error, target, admission.address))
            case .success(let upstream):
                guard handler.state == .deciding, context.channel.isActive else {
                    upstream.close(promise: nil)
                    return
                }
                then(handler, context, upstream)
            }
        }
    }

    private func openTunnel(_ context: ChannelHandlerContext, admission: EgressProxy.Admission, target: EgressTarget) {
        connectUpstream(context, admission, target, initializer: { $0.eventLoop.makeSucceededVoidFuture() }) { handler, context, upstream in
            handler.becomeTunnel(context, upstream: upstream)
        }
    }

    /// Answers 200 and splices the two connections: from here on the bytes are the
    /// client's and the host's (TLS, normally), counted against the quota.
    private func becomeTunnel(_ context: ChannelHandlerContext, upstream: any Channel) {
        guard let record else { return }
        record.update { $0.allowed = true }
        self.upstream = upstream
        state = .forwarding
        let (clientSide, hostSide) = RelayHandler.pair(proxy: proxy, record: record)
        do {
            try upstream.pipeline.syncOperations.addHandler(hostSide)
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(clientSide)
            let channel = context.channel
            _ = pipeline.removeHandler(name: Self.encoderName)
            // The decoder goes last: bytes the client sent after its CONNECT head are
            // forwarded to the relay as it leaves.
            _ = pipeline.removeHandler(context: context)
            channel.writeAndFlush(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n"), promise: nil)
            // The decoder leaves on a later tick of the loop, forwarding the bytes that
            // came after the CONNECT head; they come without a read completing, so
            // flush them, and only then pass on a half-closure that came meanwhile.
            let bound = NIOLoopBound((self, clientSide), eventLoop: context.eventLoop)
            pipeline.removeHandler(name: Self.decoderName).whenComplete { _ in
                let (handler, clientSide) = bound.value
                upstream.flush()
                if handler.clientInputClosed {
                    clientSide.inputDidClose()
                } else {
                    channel.read()
                }
            }
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
        }
    }

    // MARK: plain HTTP

    private func forward(_ context: ChannelHandlerContext, admission: EgressProxy.Admission, target: EgressTarget, head: HTTPRequestHead, requestTarget: String) {
        let proxy = self.proxy
        let record = self.record!
        let clientChannel = context.channel
        if head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            do {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(UpstreamResponseHandler(proxy: proxy, record: record, client: clientChannel))
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        connectUpstream(context, admission, target, initializer: initializer) { handler, context, upstream in
            record.update { $0.allowed = true }
            handler.upstream = upstream
            handler.state = .forwarding
            var headers = HopByHop.strip(head.headers)
            headers.remove(name: "host")
            headers.add(name: "Host", value: target.hostHeader(defaultPort: 80))
            for (name, value) in proxy.injectedHeaders(for: admission) {
                headers.remove(name: name)
                headers.add(name: name, value: value)
            }
            if head.headers["transfer-encoding"].contains(where: { $0.lowercased().contains("chunked") }) {
                headers.add(name: "Transfer-Encoding", value: "chunked")
            }
            headers.add(name: "Connection", value: "close")
            upstream.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: head.method, uri: requestTarget, headers: headers)), promise: nil)
            // What came with the head while it was being decided.
            let pending = handler.pending
            handler.pending = []
            for part in pending {
                switch part {
                case .body(.byteBuffer(let buffer)):
                    guard handler.sendBody(buffer, context) else { return }
                case .end:
                    handler.sendEnd()
                default:
                    break
                }
            }
            upstream.flush()
            handler.resumeReading(context)
        }
    }

    /// A piece of the request body on its way up: counted, charged to the quota, and
    /// through the leak guard. False when it ended the exchange.
    @discardableResult
    private func sendBody(_ buffer: ByteBuffer, _ context: ChannelHandlerContext) -> Bool {
        guard let upstream else { return false }
        record?.update { $0.bytesSent += UInt64(buffer.readableBytes) }
        guard proxy.charge(bytes: buffer.readableBytes) else {
            overQuota(context)
            return false
        }
        guard let passed = bodyGuard.pass(buffer, into: record, proxy: proxy) else {
            leaked(context)
            return false
        }
        if let passed { upstream.write(HTTPClientRequestPart.body(.byteBuffer(passed)), promise: nil) }
        return true
    }

    /// The request's end: what the leak guard still held, then the end (no trailers:
    /// headers after the body would pass the head's checks).
    private func sendEnd() {
        if let rest = bodyGuard.finish() { upstream?.write(HTTPClientRequestPart.body(.byteBuffer(rest)), promise: nil) }
        upstream?.write(HTTPClientRequestPart.end(nil), promise: nil)
    }
}
