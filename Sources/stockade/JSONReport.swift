import Foundation
import StockadeRuntime

/// The `--json` object: one line, snake_case keys, stable for agents and scripts.
enum JSONReport {
    static func result(_ result: RunResult) -> Data {
        var object: [String: Any] = [
            "exit_code": Int(result.exitCode),
            "signal": result.signal.map { Int($0) } as Any? ?? NSNull(),
            "limit": result.limit?.rawValue as Any? ?? NSNull(),
            "wall_ms": Int(result.wallMilliseconds),
            "cpu_ms": Int(result.cpuMilliseconds),
            "peak_memory_bytes": Int(result.peakMemoryBytes),
            "stdout_truncated": result.stdoutTruncated,
            "stderr_truncated": result.stderrTruncated,
            "degraded": result.degraded,
            "created_protected": result.createdProtected,
            "egress": result.egress.map(egressEvent),
        ]
        if let description = result.limitDescription { object["limit_description"] = description }
        add(result.stdout, key: "stdout", to: &object)
        add(result.stderr, key: "stderr", to: &object)
        return encode(object)
    }

    static func egressEvent(_ event: EgressEvent) -> [String: Any] {
        var object: [String: Any] = [
            "kind": event.kind.rawValue, "time": event.time, "host": event.host, "port": event.port, "method": event.method,
            "allowed": event.allowed, "bytes_sent": Int(event.bytesSent), "bytes_received": Int(event.bytesReceived),
            "ms": Int(event.milliseconds),
        ]
        if let target = event.target { object["target"] = target }
        if let address = event.address { object["address"] = address }
        if let rule = event.rule { object["rule"] = rule }
        if let reason = event.reason { object["reason"] = reason }
        if let status = event.status { object["status"] = status }
        return object
    }

    static func error(_ error: StockadeError, exitCode: Int32) -> Data {
        encode([
            "exit_code": Int(exitCode),
            "error": ["code": error.code.description, "message": error.message],
        ])
    }

    /// A command the validation layer refused: it never ran.
    static func refusal(_ authorization: Authorization) -> Data {
        var refusal: [String: Any] = [
            "decision": authorization.verdict.decision.rawValue,
            "basis": authorization.verdict.basis.rawValue,
            "rule": authorization.verdict.ruleID as Any? ?? NSNull(),
            "reason": authorization.verdict.reason,
            "message": authorization.refusal,
        ]
        if authorization.answer != nil { refusal["approved"] = false }
        return encode(["exit_code": Int(Stockade.ExitStatus.startFailed), "refused": refusal])
    }

    /// Text when the bytes are UTF-8; otherwise base64 under `<key>_base64`.
    private static func add(_ bytes: [UInt8], key: String, to object: inout [String: Any]) {
        if let text = String(validating: bytes, as: UTF8.self) {
            object[key] = text
        } else {
            object[key] = ""
            object[key + "_base64"] = Data(bytes).base64EncodedString()
        }
    }

    private static func encode(_ object: [String: Any]) -> Data {
        var data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        data.append(contentsOf: "\n".utf8)
        return data
    }
}
