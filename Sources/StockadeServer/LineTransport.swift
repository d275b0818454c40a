import Foundation
import Logging
import MCP

/// MCP over a pair of descriptors (stdin and stdout), one JSON-RPC message per line.
///
/// The SDK's own stdio transport makes its input non-blocking and, when nothing is
/// there, sleeps 10 ms before trying again: every request waits up to 10 ms before it
/// is even read (measured: a 10 ms floor on each tools/call). This one blocks a thread
/// of its own in read(2), so a request is handled the moment it arrives.
public actor LineTransport: Transport {
    public nonisolated let logger = Logger(label: "stockade.mcp.transport", factory: { _ in SwiftLogNoOpLogHandler() })
    private let input: Int32
    private let output: Int32
    private let stream: AsyncThrowingStream<Data, any Swift.Error>
    private let continuation: AsyncThrowingStream<Data, any Swift.Error>.Continuation
    private var started = false
    /// Longest message accepted; a client that sends a longer line is cut off.
    static let maximumLine = 16 << 20

    public init(input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) {
        self.input = input
        self.output = output
        (stream, continuation) = AsyncThrowingStream<Data, any Swift.Error>.makeStream()
    }

    public func connect() async throws {
        guard !started else { return }
        started = true
        let input = self.input
        let continuation = self.continuation
        let reader = Thread {
            var pending = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            reading: while true {
                let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                pending += buffer[0..<count]
                var start = 0
                while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    if newline > start { continuation.yield(Data(pending[start..<newline])) }
                    start = newline + 1
                }
                pending.removeFirst(start)
                if pending.count > LineTransport.maximumLine { break reading }
            }
            continuation.finish()
        }
        reader.name = "stockade-mcp-input"
        reader.start()
    }

    public func disconnect() async {
        continuation.finish()
    }

    public func send(_ data: Data) async throws {
        var message = data
        message.append(UInt8(ascii: "\n"))
        try message.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(output, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { throw MCPError.transportError(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
                offset += written
            }
        }
    }

    public nonisolated func receive() -> AsyncThrowingStream<Data, any Swift.Error> {
        stream
    }
}
