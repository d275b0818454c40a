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
        return number >= 0 ? number : nil
    }

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

// MARK: - The rules, as data

/// One rule of the filter: when `syscall` is called and every condition holds, the
/// kernel answers with `action` instead of running it. Conditions are ANDed; rules OR.
/// libseccomp allows one condition per argument in a rule.
struct SeccompRule: Equatable, Sendable {
    enum Action: Equatable, Sendable {
        /// Fail with this errno (SCMP_ACT_ERRNO).
        case fail(errno: Int32)
    }

    /// A comparison of one 64-bit argument register.
    struct Condition: Equatable, Sendable {
        enum Test: Equatable, Sendable {
            case equal(UInt64)
            case notEqual(UInt64)
            case greaterThan(UInt64)
            /// `argument & mask == value` (SCMP_CMP_MASKED_EQ). A mask whose high 32 bits
            /// are zero tests the low word only, as the kernel sees an `int` argument.
            case maskedEqual(mask: UInt64, value: UInt64)
        }
        /// Argument index, from 0.
        var argument: UInt32
        var test: Test

        /// Whether this condition holds for the 64-bit register value `register`.
        func matches(_ register: UInt64) -> Bool {
            switch test {
            case .equal(let value): register == value
            case .notEqual(let value): register != value
            case .greaterThan(let value): register > value
            case .maskedEqual(let mask, let value): register & mask == value
            }
        }
    }

    var syscall: String
    var action: Action
    var conditions: [Condition]

    static func deny(_ syscall: String, with errno: Int32 = EPERM, when conditions: Condition...) -> SeccompRule {
        SeccompRule(syscall: syscall, action: .fail(errno: errno), conditions: conditions)
    }

    /// A group of rules and the attack they block, shown by `SeccompFilter.describe`.
    struct Group: Equatable, Sendable {
        var blocks: String
        var rules: [SeccompRule]

        init(blocks: String, denying syscalls: [String]) {
            self.blocks = blocks
            self.rules = syscalls.map { SeccompRule.deny($0) }
        }

        init(blocks: String, rules: [SeccompRule]) {
            self.blocks = blocks
            self.rules = rules
        }
    }
}

/// The rule table of each profile. Every group says which attack it blocks.
enum SeccompRules {
    static func groups(for profile: SeccompProfile) -> [SeccompRule.Group] {
        switch profile {
        case .default: defaultProfile
        }
    }

    /// Condition on the low 32 bits of argument `argument` only (for `int` arguments).
    static func low32(_ argument: UInt32, equals value: UInt32) -> SeccompRule.Condition {
        .init(argument: argument, test: .maskedEqual(mask: 0xffff_ffff, value: UInt64(value)))
    }

    static let defaultProfile: [SeccompRule.Group] = [
        // Re-arranging the file-system view: remounting a read-only bind writable, lifting
        // a mask off a hidden file, pivoting or chrooting out of the sandbox root, or
        // attaching a detached tree of the host. The mount namespace and the missing
        // CAP_SYS_ADMIN stop these already; the new mount API (fsopen/fsconfig) also
        // carried CVE-2022-0185, reachable through a user namespace.
        .init(
            blocks: "mounting and re-rooting",
            denying: [
                "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
                "fsmount", "fspick", "mount_setattr",
            ]),
        // New namespaces. A fresh user namespace hands out CAP_SYS_ADMIN over new mount,
        // network and other namespaces, the door to most unprivileged kernel attack
        // surface (nf_tables CVE-2024-1086, overlayfs CVE-2023-0386, CVE-2022-0185), and
        // a nested namespace can hide processes from the sandbox's own kill-all. setns
        // would join a namespace through a leaked /proc/<pid>/ns fd.
        .init(blocks: "creating or joining namespaces", rules: namespaceRules),
        // Reaching into another process: reading or writing its memory, stealing its file
        // descriptors, or learning about its files. Inside the PID namespace only the
        // sandbox's own processes are visible, but a supervisor-side helper that ever
        // enters it would be exposed; ptrace also carried CVE-2019-13272 (PTRACE_TRACEME
        // to root). move_pages and migrate_pages move another process's memory between
        // NUMA nodes (move_pages read kernel memory in CVE-2010-0415). mbind and
        // set_mempolicy stay allowed: they shape only the caller's own allocations, libnuma
        // and NUMA-aware runtimes (the JVM's -XX:+UseNUMA) use them, and the memory cgroup
        // bounds the total anyway.
        .init(
            blocks: "tracing or reaching into other processes",
            denying: [
                "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "move_pages",
                "migrate_pages",
            ]),
        // Kernel keyrings are not namespaced: a sandbox could read or plant keys of the
        // same uid outside it (CVE-2016-0728 was a keyring refcount overflow to root).
        .init(blocks: "kernel keyrings shared with the host", denying: ["keyctl", "add_key", "request_key"]),
        // Kernel attack surface that exploits use and agent tools never do: the eBPF
        // verifier (CVE-2021-3490, CVE-2023-2163), perf events (CVE-2013-2094, and kernel
        // address leaks), userfaultfd (pauses the kernel mid-copy, turning narrow races
        // into reliable exploits; UFFD_USER_MODE_ONLY sidesteps the sysctl that restricts
        // it), and io_uring, whose operations run in kernel workers this filter never sees
        // (IORING_OP_OPENAT is not openat) and which carried CVE-2022-29582 and
        // CVE-2023-2598.
        .init(
            blocks: "kernel exploit primitives (bpf, perf, userfaultfd, io_uring)",
            denying: [
                "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
            ]),
        // Replacing or extending the running kernel.
        .init(
            blocks: "loading kernel code",
            denying: [
                "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                // Removed from the kernel long ago; denied in case a kernel still has them.
                "create_module", "get_kernel_syms", "query_module",
            ]),
        // "Shocker" (2014): open_by_handle_at opens any inode of a mounted file system
        // from a guessed handle, ignoring the mount view; name_to_handle_at makes handles.
        .init(blocks: "file handles that bypass the mount view", denying: ["open_by_handle_at", "name_to_handle_at"]),
        // The clocks are host-wide (a time namespace only offsets monotonic and boottime):
        // setting them breaks TLS, logs and timeouts of everything on the host.
        .init(
            blocks: "changing the host clock",
            denying: ["clock_settime", "clock_adjtime", "settimeofday", "adjtimex"]),
        // Host administration: power and reboot (including kexec reboots), swap, process
        // accounting into a file of the caller's choice, disk quotas, the kernel log
        // (kernel addresses, other containers' messages), hanging up other sessions'
        // terminals, raw I/O ports, the a.out library loader (CVE-2004-1235), host and
        // domain names, file-system-wide access monitoring (fanotify sees what every
        // process opens), 16-bit segments (modify_ldt, the vehicle of x86 entry bugs like
        // CVE-2015-3290), and interfaces removed from the kernel (nfsservctl, _sysctl,
        // lookup_dcookie).
        .init(
            blocks: "host administration",
            denying: [
                "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "iopl", "ioperm",
                "uselib", "sethostname", "setdomainname", "fanotify_init", "modify_ldt", "nfsservctl", "_sysctl",
                "lookup_dcookie",
                // i386 only; skipped on x86_64 (where i386 calls are killed as a bad architecture).
                "vm86", "vm86old", "stime",
            ]),
        .init(blocks: "personalities other than Linux, Linux32 and UNAME26", rules: personalityRules),
        .init(blocks: "terminal input injection (TIOCSTI, TIOCLINUX)", rules: terminalInjectionRules),
        .init(blocks: "socket families beyond unix, inet, inet6 and netlink route", rules: socketRules),
    ]

    // CLONE_NEW* (<linux/sched.h>): clone with any of these creates a namespace.
    static let cloneNamespaceFlags: [(name: String, value: UInt64)] = [
        ("CLONE_NEWTIME", 0x0000_0080), ("CLONE_NEWNS", 0x0002_0000), ("CLONE_NEWCGROUP", 0x0200_0000),
        ("CLONE_NEWUTS", 0x0400_0000), ("CLONE_NEWIPC", 0x0800_0000), ("CLONE_NEWUSER", 0x1000_0000),
        ("CLONE_NEWPID", 0x2000_0000), ("CLONE_NEWNET", 0x4000_0000),
    ]

    static let namespaceRules: [SeccompRule] =
        [.deny("unshare"), .deny("setns")]
        // clone's flags are argument 0 on x86_64 and arm64 (argument 1 on s390). One rule
        // per flag: a flag's bit set, whatever else is set. The kernel reads only the
        // low 32 bits of the flags and every CLONE_NEW* bit lives there. (CLONE_NEWTIME,
        // 0x80, falls in clone's exit-signal byte, so clone itself cannot ask for it and
        // that rule only refuses exit signals above 127, which are no valid signals and
        // no program asks for; the flag is reachable only through clone3 and unshare,
        // both denied.)
        + cloneNamespaceFlags.map { flag in
            .deny("clone", when: .init(argument: 0, test: .maskedEqual(mask: flag.value, value: flag.value)))
        }
        // clone3 takes its flags in a struct behind a pointer, which seccomp cannot read,
        // so it is refused as a whole with ENOSYS: glibc (2.34+) then falls back to clone,
        // which the rules above inspect. EPERM would make glibc fail instead.
        + [.deny("clone3", with: ENOSYS)]

    // personality(2) takes an `unsigned int`; 0xffffffff only queries. Allowed:
    // PER_LINUX (0), PER_LINUX32 (0x0008), UNAME26 (0x20000), both (0x20008), and the
    // query. Everything else is denied, notably READ_IMPLIES_EXEC (0x0400000, which
    // makes every readable mapping executable) and ADDR_NO_RANDOMIZE (0x0040000, which
    // turns ASLR off for the next exec).
    //
    // The default action is ALLOW and libseccomp takes one condition per argument, so the
    // complement of the allowed set has to be written as a union of single masked
    // compares (each one fixes some bits of the low word and leaves the rest free; the
    // zero high half of each mask makes high junk bits irrelevant, as for the kernel).
    // Split the low word into S = the two allowed flag bits (3 and 17) and R = the other
    // 30 bits. A value is allowed exactly when R is all zero (any S), or the whole word is
    // all ones. So a value is denied when
    //   (a) R is neither all zero nor all one: then, walking R's bits as a cycle, some set
    //       bit is followed by a clear bit, so one of 30 rules "bit r(i) set, bit r(i+1)
    //       clear" matches (and none matches when R is all zero or all one); or
    //   (b) R is all ones but S is not: three exact values, 0xfffdfff7 (S = 0),
    //       0xfffdffff (only bit 3) and 0xfffffff7 (only bit 17).
    static let personalityAllowedFlagBits: UInt32 = 0x0002_0008

    static let personalityRules: [SeccompRule] = {
        let freeBits = (0..<32).map { UInt32(1) << $0 }.filter { $0 & personalityAllowedFlagBits == 0 }
        let bitTransitions = freeBits.indices.map { index in
            let set = freeBits[index]
            let clear = freeBits[(index + 1) % freeBits.count]
            return SeccompRule.deny(
                "personality",
                when: .init(argument: 0, test: .maskedEqual(mask: UInt64(set | clear), value: UInt64(set))))
        }
        let allFreeBitsSet = ~personalityAllowedFlagBits
        let partialFlags: [UInt32] = [allFreeBitsSet, allFreeBitsSet | 0x0008, allFreeBitsSet | 0x0002_0000]
        return bitTransitions + partialFlags.map { SeccompRule.deny("personality", when: low32(0, equals: $0)) }
    }()

    // CVE-2017-5226 (bubblewrap): TIOCSTI pushes characters into the input queue of the
    // terminal the sandbox inherited, and the shell outside runs them once the sandbox
    // exits. TIOCLINUX does the same on a virtual console by pasting the selection (the
    // snapd bypass, CVE-2023-1523). The request is an `unsigned int`, so only the low 32
    // bits are compared: flatpak's filter compared 64 and 0x100005412 went through
    // (CVE-2019-10063).
    static let terminalInjectionRules: [SeccompRule] = [
        .deny("ioctl", when: low32(1, equals: 0x5412)),  // TIOCSTI
        .deny("ioctl", when: low32(1, equals: 0x541C)),  // TIOCLINUX
    ]

    // Address families an agent's tools use: AF_UNIX (1), AF_INET (2), AF_INET6 (10) and
    // AF_NETLINK (16, for NETLINK_ROUTE only: getaddrinfo and `ip` read addresses and
    // routes with it). Everything else is kernel code no tool needs and exploits love:
    // AF_PACKET (CVE-2017-7308, CVE-2020-14386), AF_VSOCK (CVE-2021-26708), AF_ALG,
    // AF_BLUETOOTH, AF_KEY, AF_X25 and the rest. EPERM, so programs probing for a family
    // degrade gracefully.
    static let allowedSocketFamilies: [UInt64] = [1, 2, 10, 16]

    static let socketRules: [SeccompRule] = {
        // The family is an `int`. Any register value above 16 is denied, which also denies
        // every value with high bits set (the kernel would truncate those to 32 bits), so
        // 64-bit compares are safe here; the small numbers in between are denied one by one.
        let largest = allowedSocketFamilies.max() ?? 0
        var rules: [SeccompRule] = [.deny("socket", when: .init(argument: 0, test: .greaterThan(largest)))]
        for family in 0..<largest where !allowedSocketFamilies.contains(family) {
            rules.append(.deny("socket", when: .init(argument: 0, test: .equal(family))))
        }
        // AF_NETLINK with any protocol but NETLINK_ROUTE (0): netfilter (nf_tables,
        // CVE-2024-1086), xfrm, audit, sock_diag, uevents. A protocol with high junk bits is
        // denied too (not equal to 0), which errs on the safe side.
        rules.append(
            .deny(
                "socket",
                when: .init(argument: 0, test: .equal(16)), .init(argument: 2, test: .notEqual(0))))
        return rules
    }()
}
