// The system calls the default profile denies, as data, each with the attack it
// blocks. Seccomp.swift turns these into a filter with libseccomp.

import StockadeCore

#if canImport(Glibc)
import Glibc
#endif

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
        // Set-user-ID and set-group-ID files. nosuid makes them inert inside, but the
        // workspace is shared with the host: as root the sandbox's files are stored as
        // the workspace owner (root, often), so `chmod u+s` on a copied shell would plant
        // a set-uid-root program for the host; rootless, one that runs as the caller for
        // any other local user. The mode argument of every call that sets one is checked
        // (low 32 bits: mode_t is an unsigned int); openat2 hides its mode in a struct
        // seccomp cannot read, so it answers ENOSYS and callers fall back to openat.
        .init(blocks: "planting set-uid and set-gid files on the host", rules: setIDRules),
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

    /// (system call, index of its mode argument)
    static let modeArguments: [(syscall: String, argument: UInt32)] = [
        ("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2), ("creat", 1), ("open", 2), ("openat", 3),
        ("mknod", 1), ("mknodat", 2),
    ]

    static let setIDRules: [SeccompRule] =
        modeArguments.flatMap { call in
            [0o4000, 0o2000].map { bit -> SeccompRule in
                .deny(call.syscall, when: SeccompRule.Condition(argument: call.argument, test: .maskedEqual(mask: bit, value: bit)))
            }
        } + [.deny("openat2", with: ENOSYS)]

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
