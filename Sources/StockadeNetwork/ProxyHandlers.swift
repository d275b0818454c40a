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
            guard let upstream else { return }
            record?.update { $0.bytesSent += UInt64(buffer.readableBytes) }
            guard proxy.charge(bytes: buffer.readableBytes) else { return overQuota(context) }
            guard let passed = bodyGuard.pass(buffer, into: record, proxy: proxy) else { return leaked(context) }
            if let passed { upstream.write(HTTPClientRequestPart.body(.byteBuffer(passed)), promise: nil) }
        case (.forwarding, .end) where !requestEnded:
            requestEnded = true
            if let rest = bodyGuard.finish() { upstream?.write(HTTPClientRequestPart.body(.byteBuffer(rest)), promise: nil) }
            upstream?.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
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

    private func openTunnel(_ context: ChannelHandlerContext, admission: EgressProxy.Admission, target: EgressTarget) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let proxy = self.proxy
        proxy.connect(to: admission, port: target.port, on: context.eventLoop) { $0.eventLoop.makeSucceededVoidFuture() }
            .whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .failure(let error):
                    handler.refuse(context, proxy.connectRefusal(error, target, admission.address))
                case .success(let upstream):
                    guard handler.state == .deciding, context.channel.isActive else {
                        upstream.close(promise: nil)
                        return
                    }
                    handler.becomeTunnel(context, upstream: upstream)
                }
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
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let proxy = self.proxy
        let record = self.record!
        let clientChannel = context.channel
        if head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        proxy.connect(to: admission, port: target.port, on: context.eventLoop) { channel in
            do {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(UpstreamResponseHandler(proxy: proxy, record: record, client: clientChannel))
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .failure(let error):
                handler.refuse(context, proxy.connectRefusal(error, target, admission.address))
            case .success(let upstream):
                guard handler.state == .deciding, context.channel.isActive else {
                    upstream.close(promise: nil)
                    return
                }
                record.update { $0.allowed = true }
                handler.upstream = upstream
                handler.state = .forwarding
                var headers = HopByHop.strip(head.headers)
                headers.remove(name: "host")
                let defaultPort = target.port == 80
                headers.add(name: "Host", value: defaultPort ? (target.display.hasPrefix("[") ? "[\(target.host)]" : target.host) : target.display)
                for (name, value) in proxy.injectedHeaders(for: admission) {
                    headers.remove(name: name)
                    headers.add(name: name, value: value)
                }
                if head.headers["transfer-encoding"].contains(where: { $0.lowercased().contains("chunked") }) {
                    headers.add(name: "Transfer-Encoding", value: "chunked")
                }
                headers.add(name: "Connection", value: "close")
                upstream.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: head.method, uri: requestTarget, headers: headers)), promise: nil)
                for part in handler.pending {
                    switch part {
                    case .body(.byteBuffer(let buffer)):
                        record.update { $0.bytesSent += UInt64(buffer.readableBytes) }
                        guard proxy.charge(bytes: buffer.readableBytes) else { return handler.overQuota(context) }
                        guard let passed = handler.bodyGuard.pass(buffer, into: record, proxy: proxy) else { return handler.leaked(context) }
                        if let passed { upstream.write(HTTPClientRequestPart.body(.byteBuffer(passed)), promise: nil) }
                    case .end:
                        if let rest = handler.bodyGuard.finish() { upstream.write(HTTPClientRequestPart.body(.byteBuffer(rest)), promise: nil) }
                        upstream.write(part, promise: nil)
                    default:
                        upstream.write(part, promise: nil)
                    }
                }
                handler.pending = []
                upstream.flush()
                handler.resumeReading(context)
            }
        }
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

/// The host's side of a relayed plain HTTP request: passes the response back to the
/// client, re-framed, with `Connection: close`, and closes both afterwards.
final class UpstreamResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    let proxy: EgressProxy
    let record: ExchangeRecord
    let client: any Channel
    var headSent = false
    var ended = false
    var readPending = false

    init(proxy: EgressProxy, record: ExchangeRecord, client: any Channel) {
        self.proxy = proxy
        self.record = record
        self.client = client
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // The client's writability decides when to read more from the host.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        try? client.pipeline.syncOperations.addHandler(WritabilityRelay {
            let (handler, context) = bound.value
            if handler.readPending && handler.client.isWritable {
                handler.readPending = false
                context.read()
            }
        })
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.status.code < 200 { return }  // 100 Continue was answered by the proxy
            record.update { $0.status = Int(head.status.code) }
            _ = proxy.charge(bytes: head.headers.reduce(16) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
            var headers = HopByHop.strip(head.headers)
            headers.add(name: "Connection", value: "close")
            headSent = true
            client.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: headers)), promise: nil)
        case .body(let buffer):
            record.update { $0.bytesReceived += UInt64(buffer.readableBytes) }
            guard proxy.charge(bytes: buffer.readableBytes) else {
                record.update {
                    $0.rule = "network.max_bytes"
                    $0.reason = self.proxy.quotaRefusal.reason
                }
                context.close(promise: nil)
                client.close(promise: nil)
                return
            }
            client.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
        case .end(let trailers):
            ended = true
            let client = self.client
            client.writeAndFlush(HTTPServerResponsePart.end(trailers)).whenComplete { _ in client.close(promise: nil) }
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        client.flush()
    }

    func read(context: ChannelHandlerContext) {
        if client.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The host can take more of the request body.
        if context.channel.isWritable {
            // Both channels live on one event loop (the proxy connects on the client's).
            if let handler = try? client.pipeline.syncOperations.handler(type: ProxyFrontHandler.self),
               let frontContext = try? client.pipeline.syncOperations.context(handlerType: ProxyFrontHandler.self) {
                handler.resumeReading(frontContext)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !ended {
            if !headSent {
                let refusal = EgressRefusal(.unreachable, rule: nil, "the host closed the connection without answering")
                let response = refusal.response()
                record.update { $0.reason = refusal.reason }
                client.write(HTTPServerResponsePart.head(response.head), promise: nil)
                client.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: response.body))), promise: nil)
                let client = self.client
                client.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in client.close(promise: nil) }
            } else {
                client.close(promise: nil)
            }
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            record.update { $0.reason = $0.reason ?? "the host sent nothing for \(self.proxy.timeout.nanoseconds / 1_000_000) ms (network.timeout)" }
            context.close(promise: nil)
            client.close(promise: nil)
            return
        }
        // The host is done sending; whatever the decoder made of it has come through.
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        record.update { $0.reason = $0.reason ?? "the host's response broke off: \(error)" }
        context.close(promise: nil)
    }
}

/// Calls back when its channel becomes writable again.
final class WritabilityRelay: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any
    let onWritable: () -> Void

    init(_ onWritable: @escaping () -> Void) {
        self.onWritable = onWritable
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { onWritable() }
        context.fireChannelWritabilityChanged()
    }
}

/// One end of a tunnel: what it reads goes to its partner's channel, as fast as the
/// partner can write it (reads wait while the partner's buffer is full). Closing one
/// end closes the other.
final class RelayHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let proxy: EgressProxy
    let record: ExchangeRecord
    /// True on the client's side: what it reads is sent (upload).
    let clientSide: Bool
    var partner: RelayHandler?
    var context: ChannelHandlerContext?
    var readPending = false

    init(proxy: EgressProxy, record: ExchangeRecord, clientSide: Bool) {
        self.proxy = proxy
        self.record = record
        self.clientSide = clientSide
    }

    static func pair(proxy: EgressProxy, record: ExchangeRecord) -> (client: RelayHandler, host: RelayHandler) {
        let client = RelayHandler(proxy: proxy, record: record, clientSide: true)
        let host = RelayHandler(proxy: proxy, record: record, clientSide: false)
        client.partner = host
        host.partner = client
        return (client, host)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let count = UInt64(buffer.readableBytes)
        let clientSide = self.clientSide
        record.update { if clientSide { $0.bytesSent += count } else { $0.bytesReceived += count } }
        guard proxy.charge(bytes: buffer.readableBytes) else {
            record.update {
                $0.rule = "network.max_bytes"
                $0.reason = self.proxy.quotaRefusal.reason
            }
            partner?.context?.close(promise: nil)
            context.close(promise: nil)
            return
        }
        partner?.context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    /// This side is gone: the partner sends what it still holds, then closes. (NIO's
    /// close drops writes not yet flushed to the socket; the tail of a download would
    /// be lost.)
    func channelInactive(context: ChannelHandlerContext) {
        partner?.finish(closing: .all)
        context.fireChannelInactive()
    }

    /// Half-closure passes through: a client that shuts its sending side after its
    /// request still gets the whole answer.
    private var inputClosed = false
    private var outputClosed = false

    /// This side will send nothing more: the partner's output closes once it has sent
    /// what it holds; with both directions done, the connection closes.
    func inputDidClose() {
        inputClosed = true
        partner?.finish(closing: .output)
        if outputClosed { context?.close(promise: nil) }
    }

    func finish(closing mode: CloseMode) {
        guard let context else { return }
        let channel = context.channel
        if mode == .output {
            guard !outputClosed else { return }
            outputClosed = true
        }
        let closeAll = mode == .all || inputClosed
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in
            channel.close(mode: closeAll ? .all : .output, promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner, partner.readPending, let partnerContext = partner.context {
            partner.readPending = false
            partnerContext.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partnerContext = partner?.context, !partnerContext.channel.isWritable {
            readPending = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            record.update { $0.reason = $0.reason ?? "closed after \(self.proxy.timeout.nanoseconds / 1_000_000) ms without traffic (network.timeout)" }
            context.close(promise: nil)
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputDidClose()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
