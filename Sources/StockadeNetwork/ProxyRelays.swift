import Foundation
import NIOCore
import NIOHTTP1
import StockadeCore
import StockadePolicy
import StockadeSecrets
import Synchronization

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
