import Foundation
import MCP
import StockadePolicy
import StockadeRuntime
import Testing

@testable import StockadeServer

extension SandboxSuite.Functional {
    /// Counts the sessions the router starts.
    final class StartCount: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add() { lock.lock(); value += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return value }
    }

    @Test("HTTP: a request from another origin starts no sandbox; one from localhost does")
    func foreignOriginStartsNothing() async throws {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        let starts = StartCount()
        let router = HTTPRouter(policy: .default, options: SessionOptions(workspace: workspace)) { policy, options in
            starts.add()
            return try await Session.start(policy: policy, options: options)
        }
        let initialize = Data(#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#.utf8)
        func request(origin: String) -> HTTPRequest {
            HTTPRequest(method: "POST", headers: [
                "Origin": origin, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "Host": "localhost:3000",
            ], body: initialize, path: "/mcp")
        }
        let forged = await router.handle(request(origin: "http://attacker.example"))
        #expect(forged.statusCode == 403)
        #expect(starts.count == 0)
        let local = await router.handle(request(origin: "http://localhost:3000"))
        #expect(local.statusCode == 200)
        #expect(starts.count == 1)
        await router.closeAll()
    }
}
