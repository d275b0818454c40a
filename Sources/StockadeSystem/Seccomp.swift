// The sandbox's system-call filter, built with libseccomp in the supervisor and handed
// to the C child side as raw BPF (`struct sock_filter[]`), which only has to install it
// with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) after no_new_privs, as its last step.
//
// The filter is a deny list: the default action is ALLOW. The namespaces and the dropped
// capabilities are the fence; this is defense in depth against what an agent's tools
// never need and what kernel exploits and sandbox escapes reach for. Denied calls fail
// with EPERM (clone3 with ENOSYS) so that programs degrade gracefully instead of dying.
//
// Architectures: the filter holds only the native architecture, and libseccomp's default
// bad-architecture action (KILL) stays in place. On x86_64 that closes both side doors:
// - i386 system calls (int 0x80, sysenter) arrive with AUDIT_ARCH_I386, which fails the
//   filter's first check (`$arch == AUDIT_ARCH_X86_64`) and kills the caller, so the
//   i386 numbering (mount is 21 there) can never be used to slip past a rule;
// - x32 system calls share AUDIT_ARCH_X86_64 but carry __X32_SYSCALL_BIT (0x40000000)
//   in the number. When x32 is not one of the filter's architectures, libseccomp 2.5
//   emits `if ($syscall >= 0x40000000 && $syscall != -1) KILL` right after the
//   architecture check (verified in the exported BPF), so x32 is refused as a bad
//   architecture too.
//
// Arguments: the kernel truncates `int` and `unsigned int` arguments to 32 bits, but
// seccomp sees the whole 64-bit register. A rule that compares all 64 bits can be
// bypassed by setting high bits the kernel then ignores (CVE-2019-10063, flatpak's
// TIOCSTI filter). So every deny rule on such an argument either masks with 0xffffffff
// (whose high half is zero, so libseccomp compares the low word only) or is built so
// that any value with high bits set is denied as well.
//
// Everything here is thread-safe: `program(for:)` compiles under a lock and caches.

import CSeccomp
import StockadeCore
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The seccomp filter of a sandbox, compiled by libseccomp into classic BPF.
public enum SeccompFilter {
    /// The BPF program (an array of `struct sock_filter`, 8 bytes each, in host byte
    /// order) for `profile`, ready for `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`.
    ///
    /// Compiled once per process and profile, then served from a cache; thread-safe.
    /// Throws `StockadeError(.hostFacility)` when libseccomp cannot build or export the
    /// filter (a failure is not cached, so a later call tries again).
    public static func program(for profile: SeccompProfile) throws -> [UInt8] {
        try cache.withLock { programs in
            if let program = programs[profile] { return program }
            let program = try withFilter(for: profile) { filter in
                try export(what: "export the seccomp filter as BPF") { seccomp_export_bpf(filter, $0) }
            }
            guard !program.isEmpty, program.count % 8 == 0 else {
                throw StockadeError(
                    .internalError,
                    "failed to export the seccomp filter: libseccomp produced \(program.count) bytes, "
                        + "not a whole number of 8-byte BPF instructions. Report this as a bug in stockade.")
            }
            programs[profile] = program
            return program
        }
    }

    /// The filter of `profile` as libseccomp's human-readable pseudo filter code
    /// (`seccomp_export_pfc`), preceded by comment lines that say what each group of
    /// rules blocks and which system calls this libseccomp does not know here.
    /// For debugging and `stockade run --dry-run`; not cached; thread-safe.
    /// Throws `StockadeError(.hostFacility)` like `program(for:)`.
    public static func describe(_ profile: SeccompProfile) throws -> String {
        var header = "# stockade seccomp profile \"\(profile.rawValue)\": default ALLOW, rules below deny\n"
        for group in SeccompRules.groups(for: profile) {
            let names = Set(group.rules.map(\.syscall)).sorted().joined(separator: ", ")
            header += "# \(group.blocks): \(names)\n"
        }
        let skipped = Set(SeccompRules.groups(for: profile).flatMap(\.rules).map(\.syscall))
            .filter { syscallNumber($0) == nil }
        if !skipped.isEmpty {
            header += "# unknown on this architecture, skipped: \(skipped.sorted().joined(separator: ", "))\n"
        }
        // Under the cache's lock too: libseccomp probes the kernel lazily into
        // process-wide state, so it is used by one thread at a time.
        let pseudoCode = try cache.withLock { _ in
            try withFilter(for: profile) { filter in
                try export(what: "export the seccomp filter as text") { seccomp_export_pfc(filter, $0) }
            }
        }
        return header + String(decoding: pseudoCode, as: UTF8.self)
    }

    // MARK: - Building

    /// The compiled programs; its lock also serializes every use of libseccomp.
    private static let cache = Mutex<[SeccompProfile: [UInt8]]>([:])

    /// The native system-call number of `name`, or nil when libseccomp does not know it
    /// or it does not exist on this architecture (libseccomp then answers with
    /// __NR_SCMP_ERROR (-1) or a negative pseudo number such as __PNR_vm86).
    static func syscallNumber(_ name: String) -> Int32? {
        let number = seccomp_syscall_resolve_name(name)
        if number >= 0 { return number }
        // Calls newer than the installed libseccomp: since Linux 5.1 (424) every
        // architecture shares one numbering, so these numbers hold on x86_64 and aarch64.
        return newerSyscalls[name]
    }

    /// Calls a libseccomp as old as 2.5 may not know by name.
    static let newerSyscalls: [String: Int32] = ["openat2": 437, "mount_setattr": 442, "fchmodat2": 452]

    /// Creates a libseccomp context holding every rule of `profile`, runs `body` with it
    /// and releases it.
    private static func withFilter<Result>(
        for profile: SeccompProfile, _ body: (scmp_filter_ctx) throws -> Result
    ) throws -> Result {
        guard let filter = seccomp_init(SCMP_ACT_ALLOW) else {
            throw StockadeError(
                .hostFacility,
                "failed to create a seccomp filter: libseccomp's seccomp_init returned NULL (out of memory?). "
                    + "Check that libseccomp 2.5 or later is installed.")
        }
        defer { seccomp_release(filter) }

        // SCMP_FLTATR_CTL_NNP (set no_new_privs on load) is left at its default: it only
        // affects seccomp_load(), which we never call. The child sets no_new_privs itself,
        // earlier, before it installs the exported program.

        // A binary tree of system-call numbers instead of a linear chain: with an
        // allow-default filter every system call would otherwise walk all the rules.
        // Best effort: older libseccomp versions refuse the attribute and stay linear.
        _ = seccomp_attr_set(filter, SCMP_FLTATR_CTL_OPTIMIZE, 2)

        for rule in SeccompRules.groups(for: profile).flatMap(\.rules) {
            guard let number = syscallNumber(rule.syscall) else { continue }
            let comparisons = rule.conditions.map(\.libseccompComparison)
            let result = comparisons.withUnsafeBufferPointer { buffer in
                seccomp_rule_add_array(
                    filter, rule.action.libseccompAction, number, UInt32(buffer.count), buffer.baseAddress)
            }
            if result < 0 {
                throw StockadeError(
                    .hostFacility,
                    "failed to add the seccomp rule for \(rule.syscall): libseccomp refused it (\(Errno(rawValue: -result))). "
                        + "Check that libseccomp 2.5 or later is installed.",
                    cause: Errno(rawValue: -result))
            }
        }
        return try body(filter)
    }

    /// Runs a libseccomp export function that writes into a file descriptor (libseccomp
    /// 2.5 has no export to memory) with a memfd, and returns what it wrote.
    private static func export(what: String, _ write: (CInt) -> CInt) throws -> [UInt8] {
        let rawDescriptor = stockade_memfd_create("stockade-seccomp", STOCKADE_MFD_CLOEXEC)
        guard rawDescriptor >= 0 else {
            let error = Errno(rawValue: errno)
            throw StockadeError(
                .hostFacility, "failed to \(what): memfd_create failed (\(error)). Check the open file limit.",
                cause: error)
        }
        let descriptor = FileDescriptor(rawValue: rawDescriptor)
        defer { try? descriptor.close() }

        let result = write(rawDescriptor)
        guard result >= 0 else {
            throw StockadeError(
                .hostFacility,
                "failed to \(what): libseccomp failed (\(Errno(rawValue: -result))). "
                    + "Check that libseccomp 2.5 or later is installed.",
                cause: Errno(rawValue: -result))
        }
        do {
            try descriptor.seek(offset: 0, from: .start)
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let count = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0) }
                if count == 0 { break }
                bytes += chunk[..<count]
            }
            return bytes
        } catch let error as Errno {
            throw StockadeError(.hostFacility, "failed to \(what): reading it back failed (\(error)).", cause: error)
        }
    }
}

extension SeccompRule.Action {
    /// The libseccomp action value: SCMP_ACT_ERRNO(x) is 0x00050000 | (x & 0xffff).
    var libseccompAction: UInt32 {
        switch self {
        case .fail(let errno): 0x0005_0000 | (UInt32(errno) & 0xffff)
        }
    }
}

extension SeccompRule.Condition {
    /// The `struct scmp_arg_cmp` for this condition (what the SCMP_A<n>() macros build).
    var libseccompComparison: scmp_arg_cmp {
        switch test {
        case .equal(let value):
            scmp_arg_cmp(arg: argument, op: SCMP_CMP_EQ, datum_a: value, datum_b: 0)
        case .notEqual(let value):
            scmp_arg_cmp(arg: argument, op: SCMP_CMP_NE, datum_a: value, datum_b: 0)
        case .greaterThan(let value):
            scmp_arg_cmp(arg: argument, op: SCMP_CMP_GT, datum_a: value, datum_b: 0)
        case .maskedEqual(let mask, let value):
            scmp_arg_cmp(arg: argument, op: SCMP_CMP_MASKED_EQ, datum_a: mask, datum_b: value)
        }
    }
}
