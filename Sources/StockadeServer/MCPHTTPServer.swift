import Foundation
import MCP
@preconcurrency import NIOCore
@preconcurrency import NIOHTTP1
@preconcurrency import NIOPosix
import StockadePolicy
import StockadeRuntime

extension StockadeMCP {
    /// Serves MCP's streamable HTTP transport at `http://HOST:PORT/mcp` until the
    /// process ends. Each MCP session (an `initialize`, then requests that carry its
    /// `Mcp-Session-Id`) gets a stockade session of its own; a DELETE, or the stockade
    /// session ending (idle timeout, time to live), ends both. Requests from other
    /// origins than localhost are refused by the SDK's validation (DNS rebinding).
    public static func serveHTTP(host: String, port: Int, policy: PolicyDocument, options: SessionOptions, ready: (@Sendable (Int) -> Void)? = nil) async throws {
        let router = HTTPRouter(policy: policy, options: options)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(HTTPBridge(router: router))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            throw StockadeError(.startFailed, "failed to listen on \(host):\(port): \(error). Choose another port")
        }
        ready?(channel.localAddress?.port ?? port)
        try await channel.closeFuture.get()
        await router.closeAll()
        try? await group.shutdownGracefully()
    }
}

/// Sessions by MCP session id.
actor HTTPRouter {
    struct Entry {
        let server: Server
        let transport: StatefulHTTPServerTransport
        let session: Session
    }

    /// Starts the stockade session of a new MCP session (a seam for tests).
    typealias Starter = @Sendable (PolicyDocument, SessionOptions) async throws -> Session

    private let policy: PolicyDocument
    private let options: SessionOptions
    private let startSession: Starter
    private var entries: [String: Entry] = [:]
    static let endpoint = "/mcp"
    /// Most MCP sessions (each a sandbox) at once.
    static let maximumSessions = 64

    init(policy: PolicyDocument, options: SessionOptions, startSession: @escaping Starter = { try await Session.start(policy: $0, options: $1) }) {
        self.policy = policy
        self.options = options
        self.startSession = startSession
    }

    private struct FixedID: SessionIDGenerator {
        let id: String
        func generateSessionID() -> String { id }
    }

    func handle(_ request: HTTPRequest) async -> HTTPResponse {
        // Sessions that ended by themselves (idle timeout, time to live) go first.
        for (id, entry) in entries where entry.session.endReason != nil {
            entries[id] = nil
            await end(entry)
        }
        // A browser page elsewhere must not reach the tools (DNS rebinding): refused
        // before any sandbox starts, not only by the transport's own validation later.
        if let origin = request.header("Origin"), !Self.isLocalOrigin(origin) {
            return .error(statusCode: 403, .invalidRequest("Forbidden: requests from \(origin) are not accepted"))
        }
        guard request.path.map({ $0.split(separator: "?").first.map(String.init) == Self.endpoint }) ?? false else {
            return .error(statusCode: 404, .invalidRequest("Not Found: the MCP endpoint is \(Self.endpoint)"))
        }
        if let id = request.header(HTTPHeaderName.sessionID) {
            guard let entry = entries[id], entry.session.endReason == nil else {
                if let entry = entries.removeValue(forKey: id) { await end(entry) }
                return .error(statusCode: 404, .invalidRequest("Not Found: no such session, or it has ended; initialize a new one"))
            }
            let response = await entry.transport.handleRequest(request)
            if request.method.uppercased() == "DELETE", response.statusCode == 200 {
                entries[id] = nil
                await end(entry)
            }
            return response
        }
        guard request.method.uppercased() == "POST", let body = request.body, Self.isInitialize(body) else {
            return .error(statusCode: 400, .invalidRequest("Bad Request: a request without \(HTTPHeaderName.sessionID) must be initialize"))
        }
        guard entries.count < Self.maximumSessions else {
            return .error(statusCode: 503, .internalError("Service Unavailable: \(Self.maximumSessions) sessions are open; end one first"))
        }
        let id = UUID().uuidString
        let transport = StatefulHTTPServerTransport(sessionIDGenerator: FixedID(id: id))
        var started: Session?
        defer { if let started, entries[id] == nil { started.close() } }
        do {
            let session = try await startSession(policy, options)
            started = session
            let server = await StockadeMCP.makeServer(policy: policy, session: session)
            try await server.start(transport: transport)
            let response = await transport.handleRequest(request)
            if case .error = response {
                await transport.disconnect()
                return response
            }
            entries[id] = Entry(server: server, transport: transport, session: session)
            return response
        } catch let error as StockadeError {
            await transport.disconnect()
            return .error(statusCode: 500, .internalError("failed to start the session: \(error.message)"))
        } catch {
            await transport.disconnect()
            return .error(statusCode: 500, .internalError("failed to start the session: \(error)"))
        }
    }

    func closeAll() async {
        for entry in entries.values { await end(entry) }
        entries.removeAll()
    }

    private func end(_ entry: Entry) async {
        await entry.transport.disconnect()
        entry.session.close()
    }

    static func isLocalOrigin(_ origin: String) -> Bool {
        guard let host = URLComponents(string: origin)?.host?.lowercased() else { return false }
        return host == "localhost" || host == "127.0.0.1" || host == "::1" || host == "[::1]"
    }

    static func isInitialize(_ body: Data) -> Bool {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return false }
        return object["method"] as? String == "initialize"
    }
}

/// One HTTP connection: gathers a request, hands it to the router, writes the answer
/// (a body, or an SSE stream written as it comes).
final class HTTPBridge: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Largest request body accepted.
    static let maximumBody = 4 << 20

    private let router: HTTPRouter
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var tooLarge = false

    init(router: HTTPRouter) {
        self.router = router
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.clear()
            tooLarge = false
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > Self.maximumBody {
                tooLarge = true
            } else {
                body.writeBuffer(&chunk)
            }
        case .end:
            guard let requestHead = head else { return }
            head = nil
            let keepAlive = requestHead.isKeepAlive
            if tooLarge {
                respond(context, .error(statusCode: 413, .invalidRequest("Payload Too Large: at most \(Self.maximumBody) bytes")), keepAlive: false)
                return
            }
            var headers: [String: String] = [:]
            for (name, value) in requestHead.headers { headers[name] = value }
            let request = HTTPRequest(
                method: requestHead.method.rawValue, headers: headers,
                body: body.readableBytes > 0 ? Data(body.readableBytesView) : nil, path: requestHead.uri)
            let loop = context.eventLoop
            let boundContext = NIOLoopBound(context, eventLoop: loop)
            let router = self.router
            Task {
                let response = await router.handle(request)
                loop.execute { self.respond(boundContext.value, response, keepAlive: keepAlive) }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ response: HTTPResponse, keepAlive: Bool) {
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        switch response {
        case .stream(let stream, _):
            headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            let loop = context.eventLoop
            let boundContext = NIOLoopBound(context, eventLoop: loop)
            Task {
                do {
                    for try await chunk in stream {
                        loop.execute {
                            let buffer = boundContext.value.channel.allocator.buffer(bytes: chunk)
                            boundContext.value.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                        }
                    }
                } catch {}
                loop.execute {
                    boundContext.value.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                        if !keepAlive { boundContext.value.close(promise: nil) }
                    }
                }
            }
        default:
            let data = response.bodyData ?? Data()
            headers.replaceOrAdd(name: "Content-Length", value: String(data.count))
            let status = HTTPResponseStatus(statusCode: response.statusCode)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            if !data.isEmpty {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: data)))), promise: nil)
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
