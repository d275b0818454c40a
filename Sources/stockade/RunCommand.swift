import ArgumentParser
import Foundation
import StockadeRuntime

/// `stockade run`: one command in a fresh sandbox; its exit code is ours.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one command in a fresh sandbox.",
        discussion: """
            The command sees /usr, /bin and /lib* read-only (with --toolset: only the named \
            programs and the files they need), a synthesized /etc, a private /tmp and \
            home, and the workspace (default: the current directory) at /workspace. No network, \
            no host home, no host secrets. Its exit code is stockade's (128+N when signal N \
            ended it); stockade's own failures exit 125, 126 (not executable) or 127 (not found).
            """
    )

    @Option(name: .long, help: ArgumentHelp("Policy file (YAML, version 1).", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: ArgumentHelp("Directory bound read-write at /workspace (default: the current directory).", valueName: "dir"))
    var workspace: String?

    @Flag(name: .customLong("read-only"), help: "Bind the workspace read-only.")
    var readOnly = false

    @Option(name: .long, help: ArgumentHelp("Hide workspace paths matching this glob (repeatable). Always hidden: .env, .env.*, *.pem, *.key, id_rsa*, id_ed25519*.", valueName: "glob"))
    var hide: [String] = []

    @Option(name: .long, help: ArgumentHelp("Make only this program or named set (coreutils, python, git, build-essential) and what it needs exist inside, instead of the host's /usr (repeatable). See 'stockade toolset show'.", valueName: "name"))
    var toolset: [String] = []

    @Option(name: .long, help: ArgumentHelp("Pass NAME=VALUE, or NAME from stockade's environment (repeatable). Nothing else is inherited.", valueName: "name[=value]"))
    var env: [String] = []

    @Option(name: .customLong("timeout"), help: ArgumentHelp("Wall-time limit, e.g. 10s, 2m (default 5m).", valueName: "duration"))
    var timeout: String?

    @Option(name: .long, help: ArgumentHelp("CPU-time limit over all processes, e.g. 10s (default: none).", valueName: "duration"))
    var cpu: String?

    @Option(name: .long, help: ArgumentHelp("Memory limit, e.g. 256M, 1G (default 1G).", valueName: "size"))
    var memory: String?

    @Option(name: .long, help: ArgumentHelp("Process limit, init included (default 256).", valueName: "n"))
    var pids: String?

    @Option(name: .customLong("open-files"), help: ArgumentHelp("Open-file limit per process (default 1024).", valueName: "n"))
    var openFiles: String?

    @Option(name: .customLong("file-size"), help: ArgumentHelp("Largest file the command may write (default 1G).", valueName: "size"))
    var fileSize: String?

    @Option(name: .long, help: ArgumentHelp("Output limit, stdout and stderr together (default 64M).", valueName: "size"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("Isolation tier: namespaces, gvisor or auto (default: the policy's isolation.tier, else namespaces). See 'stockade doctor'.", valueName: "tier"))
    var tier: IsolationSettings.Tier?

    @Flag(name: .long, help: "Print one JSON object with the result instead of streaming the output.")
    var json = false

    @Flag(name: .customLong("dry-run"), help: "Print the sandbox plan as JSON and run nothing.")
    var dryRun = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after '--'.", valueName: "command"))
    var command: [String] = []

    /// Largest stdout (and stderr) kept for --json.
    static let jsonCaptureBytes = 1 << 20

    func validate() throws {
        if command.isEmpty {
            throw ValidationError("no command given. Put it after '--', as in: stockade run -- ls -l")
        }
    }

    func run() throws {
        let policyDocument = try policy.map { try PolicyLoader.load(contentsOf: $0) } ?? .default
        var limits = PolicyLimits()
        limits.wallMilliseconds = try duration(timeout, flag: "--timeout")
        limits.cpuMilliseconds = try duration(cpu, flag: "--cpu")
        limits.memoryBytes = try size(memory, flag: "--memory")
        limits.pids = try count(pids, flag: "--pids")
        limits.openFiles = try count(openFiles, flag: "--open-files")
        limits.fileSizeBytes = try size(fileSize, flag: "--file-size")
        limits.outputBytes = try size(output, flag: "--output")
        let request = RunRequest(
            command: command, policy: policyDocument, workspace: workspace, readOnlyWorkspace: readOnly ? true : nil,
            hide: hide, environment: env, limits: limits, toolset: toolset.isEmpty ? nil : toolset
        )
        let plan = try Runner.plan(request)
        // The flags only narrow the policy; the guard judges what the sandbox will be.
        var judged = policyDocument
        if readOnly { judged.workspaceReadOnly = true }
        judged.hiddenPatterns += hide
        if !toolset.isEmpty { judged.toolset = toolset }
        let choice = try Tiers.choose(flag: tier, policy: judged, plan: plan)
        if dryRun || tier == .auto || judged.resolved().isolation?.tier == .auto {
            StandardStreams.err("stockade: tier: \(choice.tier.rawValue) (\(choice.reason))\n")
        }

        // The validation layer decides the command before anything starts.
        let action = Action.exec(argv: command, workingDirectory: plan.workingDirectory)
        let policyGuard = try PolicyGuard(judged)
        let effective = policyGuard.policy
        var audit: AuditLog?
        var leaks: LeakControl?
        let auditSession = AuditRecords.newSessionID()
        // What the validation layer decided (set below, once, by the gate).
        var decision: Verdict?
        var approver: String?
        if dryRun {
            StandardStreams.err("stockade: decision: \(policyGuard.decide(action))\n")
        } else {
            let settings = effective.approval ?? ApprovalSettings()
            let authorization = ActionGate.authorize(
                action, guard: policyGuard, label: .initial, approver: settings.makeApprover, timeout: settings.timeout,
                ledger: ApprovalLedger())
            decision = authorization.verdict
            approver = authorization.approver
            audit = try AuditRecords.open(effective.audit, workspace: plan.workspace?.hostPath)
            if audit != nil || json { leaks = LeakControl.make(effective.secrets, environment: ProcessInfo.processInfo.environment) }
            try audit?.append(AuditRecords.start(session: auditSession, policy: effective, plan: plan, tier: choice.tier.rawValue))
            guard authorization.allowed else {
                try audit?.append(AuditRecords.action(
                    session: auditSession, action: action,
                    summary: String(decoding: leaks?.leakGuard.redact(Array(action.description.utf8)).text ?? Array(action.description.utf8), as: UTF8.self), decision: .deny,
                    rule: authorization.verdict.ruleID, reason: authorization.refusal, approver: authorization.approver, result: AuditResult(performed: false)))
                try audit?.append(AuditRecords.end(session: auditSession, reason: "refused"))
                try audit?.checkpoint(session: auditSession)
                if json { StandardStreams.out(JSONReport.refusal(authorization)) }
                StandardStreams.err("stockade: \(authorization.refusal)\n")
                throw ExitCode(Stockade.ExitStatus.startFailed)
            }
        }
        if dryRun {
            try StandardStreams.json(plan)
            return
        }
        // Block the signals we forward, so that they reach the sandbox's command
        // through our loop instead of killing stockade and orphaning nothing.
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for signal in NamespaceBackend.forwardedSignals { sigaddset(&blocked, signal) }
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        signal(SIGPIPE, SIG_IGN)

        // With a `secrets` section, streamed output goes through the leak guard too
        // (it holds back the last bytes until it has seen what follows them).
        var redactors: (StreamRedactor, StreamRedactor)?
        if !json, effective.secrets != nil {
            let control = leaks ?? LeakControl.make(effective.secrets, environment: ProcessInfo.processInfo.environment)
            redactors = (StreamRedactor(control), StreamRedactor(control))
        }
        let handling: OutputHandling = json
            ? .capture(maxBytesPerStream: Self.jsonCaptureBytes)
            : redactors.map { .filteredStream(standardOutput: STDOUT_FILENO, standardError: STDERR_FILENO, filters: OutputFilters(standardOutput: $0.0, standardError: $0.1)) }
                ?? .stream(standardOutput: STDOUT_FILENO, standardError: STDERR_FILENO)
        let result: RunResult
        do {
            result = try Runner.run(
                plan, tier: choice.tier, input: .descriptor(STDIN_FILENO), output: handling, forwardSignals: true,
                network: effective.network)
        } catch let error as StockadeError {
            _ = try? audit?.append(AuditRecords.end(session: auditSession, reason: "failed to start: \(error.message)"))
            try? audit?.checkpoint(session: auditSession)
            guard json else { throw error }
            StandardStreams.out(JSONReport.error(error, exitCode: Stockade.exitStatus(for: error)))
            StandardStreams.err("stockade: \(error.message)\n")
            throw ExitCode(Stockade.exitStatus(for: error))
        }
        if let audit, let decision {
            try audit.append(AuditRecords.run(session: auditSession, action: action, verdict: decision, approver: approver, result: result, redactedBy: leaks?.leakGuard))
            for event in result.egress { try audit.append(AuditRecords.egress(session: auditSession, event: event)) }
            try audit.append(AuditRecords.end(session: auditSession, reason: "exit \(result.exitCode)"))
            try audit.checkpoint(session: auditSession)
        }
        if json {
            // Captured output goes through the leak guard, as a session's does; streamed
            // output (without --json) goes to the terminal as it comes, unscanned.
            var reported = result
            if let leaks {
                reported.stdout = leaks.outgoing(result.stdout).bytes
                reported.stderr = leaks.outgoing(result.stderr).bytes
            }
            StandardStreams.out(JSONReport.result(reported))
        } else {
            // A weaker fence is said out loud, not only in --json's "degraded".
            if result.degraded.contains("landlock") {
                StandardStreams.err("stockade: note: this kernel has no Landlock; the file-system grant rests on the mounts alone\n")
            }
            let askedLimits = memory != nil || pids != nil || cpu != nil
                || effective.limits.memoryBytes != nil || effective.limits.pids != nil || effective.limits.cpuMilliseconds != nil
            if result.degraded.contains("cgroups") && askedLimits {
                StandardStreams.err("stockade: note: no usable cgroups here; memory and process limits fall back to rlimits (per process, not for the sandbox as a whole)\n")
            }
        }
        if let redactors {
            let rules = Array(Set(redactors.0.rules + redactors.1.rules)).sorted()
            if !rules.isEmpty { StandardStreams.err("stockade: the leak guard redacted output (\(rules.joined(separator: ", ")))\n") }
        }
        // What the proxy refused is said where the user looks, not only in --json.
        let refused = result.egress.filter { !$0.allowed && $0.rule != nil }
        for event in refused.prefix(20) {
            StandardStreams.err("stockade: network: refused \(event.method) \(event.host):\(event.port) by \(event.rule ?? "?"): \(event.reason ?? "")\n")
        }
        if refused.count > 20 { StandardStreams.err("stockade: network: \(refused.count - 20) more refusals (see --json)\n") }
        for name in result.createdProtected {
            StandardStreams.err("stockade: warning: the command created \(name) in the workspace, a protected file that runs code or configures tools outside the sandbox; review it before anything reads it\n")
        }
        if let description = result.limitDescription {
            StandardStreams.err("stockade: limit exceeded: \(description)\n")
        }
        throw ExitCode(result.exitCode)
    }

    private func duration(_ text: String?, flag: String) throws -> UInt64? {
        guard let text else { return nil }
        guard let value = Quantity.parseMilliseconds(text) else {
            throw StockadeError(.invalidArgument, "failed to read \(flag) '\(text)': expected a duration such as 30s, 500ms or 2m")
        }
        return value
    }

    private func size(_ text: String?, flag: String) throws -> UInt64? {
        guard let text else { return nil }
        guard let value = Quantity.parseBytes(text) else {
            throw StockadeError(.invalidArgument, "failed to read \(flag) '\(text)': expected a size such as 256M, 1G or 512KiB")
        }
        return value
    }

    private func count(_ text: String?, flag: String) throws -> UInt64? {
        guard let text else { return nil }
        guard let value = UInt64(text), value > 0 else {
            throw StockadeError(.invalidArgument, "failed to read \(flag) '\(text)': expected a positive whole number")
        }
        return value
    }
}

extension IsolationSettings.Tier: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(rawValue: argument)
    }

    public static var allValueStrings: [String] { ["namespaces", "gvisor", "auto"] }
}
