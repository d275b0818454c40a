import StockadePolicy

/// The outcome of putting one action through the validation layer.
public struct Authorization: Sendable {
    /// The guard's decision.
    public var verdict: Verdict
    /// The approver's answer, when the decision was `ask`.
    public var answer: ApprovalAnswer?
    /// Who approved, when someone did.
    public var approver: String?

    /// True when the action may run now.
    public var allowed: Bool {
        switch verdict.decision {
        case .allow: return true
        case .deny: return false
        case .ask: return answer?.isApproved ?? false
        }
    }

    /// One line for a refusal: "denied by rule no-push: ...", or why approval failed.
    public var refusal: String {
        guard verdict.decision == .ask else { return verdict.description }
        switch answer {
        case .denied(let reason)?: return "\(verdict.description); not approved: \(reason)"
        case .timedOut?: return "\(verdict.description); not approved: no answer in time"
        default: return verdict.description
        }
    }
}

/// Decides an action and, for `ask`, obtains an approval bound to that exact action.
public enum ActionGate {
    public static func authorize(
        _ action: Action, guard policyGuard: PolicyGuard, label: SessionLabel,
        approver: () -> any Approver, timeout: Duration, ledger: ApprovalLedger
    ) -> Authorization {
        let verdict = policyGuard.decide(action, label: label)
        guard verdict.decision == .ask else { return Authorization(verdict: verdict) }
        // The approver (a terminal to open, say) is made only when someone is asked.
        let answer = approver().review(ApprovalRequest(action: action, verdict: verdict, label: label), timeout: timeout)
        guard case .approved(let by) = answer else { return Authorization(verdict: verdict, answer: answer) }
        // The approval is recorded for this action's digest and used at once: what runs
        // is what was approved.
        ledger.grant(action)
        guard ledger.consume(action) else {
            return Authorization(verdict: verdict, answer: .denied(reason: "the approval did not match the action"))
        }
        return Authorization(verdict: verdict, answer: answer, approver: by)
    }
}
