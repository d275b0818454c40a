import Foundation
import StockadeNetwork
import StockadePolicy

/// A session's `http` actions, and the leak guard on what goes back to the agent.
extension Session {
    /// Performs an `http` action the rules allowed: the leak guard on the request, then
    /// the egress proxy's allowlist, address checks and quotas. False (and the result
    /// saying why) when it was refused or failed.
    func fetch(method: String, url: String, headers: [String: String], body: [UInt8], into result: inout ActionResult) throws -> Bool {
        guard let proxy else {
            refuse(&result, rule: "network", "denied: the policy grants no network (network: none); nothing was fetched. Add the host to network.allow")
            return false
        }
        // The request itself must not carry a secret out (URL, headers, body).
        let outbound = leaks.leakGuard.scan(Array(url.utf8) + headers.flatMap { Array("\n\($0.key): \($0.value)".utf8) } + [0x0A] + body)
        if !outbound.isEmpty {
            let rules = Array(Set(outbound.map(\.rule))).sorted()
            result.leaks = rules
            if leaks.action != .alert {
                refuse(&result, rule: "secrets", "denied by the leak guard (secrets): the request carries \(rules.joined(separator: ", ")); nothing was sent")
                return false
            }
        }
        let request = FetchRequest(
            method: method, url: url, headers: headers.map { ($0.key, $0.value) }, body: body, maxResponseBytes: options.maxFetchBytes)
        switch try Blocking.run({ await proxy.fetch(request) }) {
        case .success(let response):
            result.httpStatus = response.status
            result.httpHeaders = response.headers.map { header in
                HTTPHeader(name: header.name, value: String(decoding: outgoing(Array(header.value.utf8), into: &result), as: UTF8.self))
            }
            result.content = outgoing(response.body, into: &result)
            result.contentTruncated = response.truncated
            return true
        case .failure(let refusal):
            refuse(&result, rule: refusal.rule, denied: refusal.kind == .denied,
                   "\(refusal.kind == .denied ? "denied" : "failed"): \(refusal.rule.map { "\($0): " } ?? "")\(refusal.reason)")
            return false
        }
    }

    private func refuse(_ result: inout ActionResult, rule: String?, denied: Bool = true, _ message: String) {
        result.performed = false
        if denied { result.decision = .deny }
        result.rule = rule
        result.message = message
    }

    /// Text on its way to the agent, through the leak guard; what it found goes into
    /// the result (and the audit log).
    func outgoing(_ bytes: [UInt8], fileContent: Bool = false, into result: inout ActionResult) -> [UInt8] {
        let handled = leaks.outgoing(bytes, fileContent: fileContent)
        for rule in handled.rules where !result.leaks.contains(rule) { result.leaks.append(rule) }
        if handled.escapes > 0 { result.escapesRemoved += handled.escapes }
        if handled.withheld {
            result.withheld = true
            result.message = "withheld by the leak guard (secrets: on_leak block): the output held \(handled.rules.joined(separator: ", "))"
        }
        return handled.bytes
    }
}
