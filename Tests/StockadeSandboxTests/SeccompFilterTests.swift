import StockadeCore
import Testing

@testable import StockadeSystem

#if canImport(Glibc)
import Glibc
#endif

/// Structural tests of the seccomp filter: that libseccomp builds and exports it and
/// that the rule table says what we mean. Whether the kernel then refuses the calls is
/// tested with real sandboxes elsewhere.
@Suite struct SeccompFilterTests {
    @Test func programIsWholeBPFInstructions() throws {
        let program = try SeccompFilter.program(for: .default)
        #expect(!program.isEmpty)
        #expect(program.count % 8 == 0, "struct sock_filter is 8 bytes")
        // The kernel refuses programs over BPF_MAXINSNS (4096) instructions.
        #expect(program.count / 8 <= 4096)
    }

    @Test func programIsCachedAndStable() throws {
        let first = try SeccompFilter.program(for: .default)
        let second = try SeccompFilter.program(for: .default)
        #expect(first == second)
    }

    @Test func programStartsWithTheArchitectureCheck() throws {
        // BPF_LD|BPF_W|BPF_ABS of offsetof(struct seccomp_data, arch) == 4: a filter that
        // does not check the architecture first can be bypassed with i386 system calls.
        let program = try SeccompFilter.program(for: .default)
        let firstInstruction = Array(program.prefix(8))
        #expect(firstInstruction == [0x20, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00])
    }

    @Test func descriptionNamesTheDeniedCalls() throws {
        let text = try SeccompFilter.describe(.default)
        for name in ["ptrace", "mount", "unshare", "bpf", "io_uring_setup", "open_by_handle_at", "keyctl"] {
            #expect(text.contains("\"\(name)\""), "pseudo filter code should have a rule for \(name)")
        }
        // TIOCSTI (0x5412 = 21522) compared as the low 32 bits only (CVE-2019-10063).
        #expect(text.contains("21522"))
        #expect(text.contains("action ERRNO(1)"), "denied calls fail with EPERM")
        #expect(text.contains("action ERRNO(38)"), "clone3 fails with ENOSYS so glibc falls back to clone")
        #expect(text.contains("action ALLOW"), "the default action is ALLOW")
    }

    @Test func everyRuleNamesASyscallAndDenies() {
        let groups = SeccompRules.groups(for: .default)
        #expect(!groups.isEmpty)
        for group in groups {
            #expect(!group.blocks.isEmpty)
            #expect(!group.rules.isEmpty, "group \(group.blocks) has no rules")
        }
        let known = Set(groups.flatMap(\.rules).map(\.syscall).filter { SeccompFilter.syscallNumber($0) != nil })
        for name in ["mount", "ptrace", "clone", "clone3", "personality", "ioctl", "socket", "bpf"] {
            #expect(known.contains(name), "\(name) should be filtered")
        }
    }

    /// The personality rules are a union of masked compares that is meant to deny exactly
    /// the values outside the allowed set, whatever the high 32 bits hold.
    @Test(arguments: [
        (UInt64(0), false), (0x0008, false), (0x0002_0000, false), (0x0002_0008, false),
        (0xffff_ffff, false), (0x1_0000_0000, false),  // high bits are ignored, as by the kernel
        (0x0040_0000, true),  // READ_IMPLIES_EXEC
        (0x0004_0000, true),  // ADDR_NO_RANDOMIZE
        (0x1_0040_0000, true),  // READ_IMPLIES_EXEC behind high junk bits
        (0x0000_0001, true), (0x8000_0000, true), (0xffff_fffe, true), (0xfffd_fff7, true),
        (0xfffd_ffff, true), (0xffff_fff7, true), (0x0002_0009, true),
        (0x1_fffd_fff7, true),  // all but the two flag bits, behind high junk bits
    ])
    func personalityRules(value: UInt64, denied: Bool) {
        #expect(personalityDenied(value) == denied)
    }

    @Test func personalityRulesDenyEveryOtherSingleAndDoubleBit() {
        let allowed: Set<UInt32> = [0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff]
        for first in 0..<32 {
            for second in first..<32 {
                let value = UInt32(1) << first | UInt32(1) << second
                #expect(personalityDenied(UInt64(value)) == !allowed.contains(value))
                #expect(personalityDenied(UInt64(~value)) == !allowed.contains(~value))
            }
        }
    }

    private func personalityDenied(_ register: UInt64) -> Bool {
        SeccompRules.personalityRules.contains { rule in rule.conditions.allSatisfy { $0.matches(register) } }
    }

    @Test(arguments: [
        (UInt64(1), UInt64(0), false), (2, 0, false), (10, 0, false), (16, 0, false),
        (0, 0, true), (17, 0, true),  // AF_PACKET
        (40, 0, true),  // AF_VSOCK
        (15, 0, true),  // AF_KEY
        (0x1_0000_0011, 0, true),  // AF_PACKET behind high junk bits
        (16, 9, true),  // NETLINK_AUDIT
        (16, 12, true),  // NETLINK_NETFILTER
    ])
    func socketRules(family: UInt64, protocolNumber: UInt64, denied: Bool) {
        let matches = SeccompRules.socketRules.contains { rule in
            rule.conditions.allSatisfy { $0.matches($0.argument == 0 ? family : protocolNumber) }
        }
        #expect(matches == denied)
    }

    /// CVE-2019-10063: the request is compared as 32 bits, so high junk bits do not help.
    @Test(arguments: [
        (UInt64(0x5412), true), (0x541C, true), (0x1_0000_5412, true), (0xffff_ffff_0000_541C, true),
        (0x5401, false),  // TCGETS
        (0x5413, false),  // TIOCGWINSZ
    ])
    func ioctlRules(request: UInt64, denied: Bool) {
        let matches = SeccompRules.terminalInjectionRules.contains { rule in
            rule.conditions.allSatisfy { $0.argument == 1 && $0.matches(request) }
        }
        #expect(matches == denied)
    }

    @Test func cloneRulesCatchEveryNamespaceFlagAndNothingElse() {
        func denied(_ flags: UInt64) -> Bool {
            SeccompRules.namespaceRules.contains { rule in
                rule.syscall == "clone" && rule.conditions.allSatisfy { $0.matches(flags) }
            }
        }
        // CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
        let namespaceFlags: [UInt64] = [
            0x80, 0x2_0000, 0x200_0000, 0x400_0000, 0x800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000,
        ]
        for flag in namespaceFlags {
            #expect(denied(flag | 0x11), "clone flag \(flag) must be denied")
        }
        #expect(!denied(0x0120_0011), "glibc fork(): SIGCHLD|CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID")
        #expect(!denied(0x003d_0f00), "glibc pthread_create() flags")
        #expect(SeccompRules.namespaceRules.contains { $0.syscall == "clone3" && $0.action == .fail(errno: ENOSYS) })
    }
}
