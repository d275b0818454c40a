import Glibc

/// An IPv4 or IPv6 address, as the proxy checks and connects to it.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6([UInt8])

    /// The usual spelling: `127.0.0.1`, `::ffff:7f00:1`.
    public var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        case .v6(let bytes):
            var address = in6_addr()
            withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
            return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// Parses an address literal the way the C library (inet_aton) and browsers (the
    /// WHATWG URL standard) read one, so that every spelling a client could send
    /// meets the same checks: `127.0.0.1`, `127.1`, `2130706433`, `0x7f000001`,
    /// `0177.0.0.1`, `[::ffff:127.0.0.1]`.
    ///
    /// Returns `.name` for a host name, `.address` for a literal, and `.malformed`
    /// for text that looks numeric but is no address (`1.2.3.4.5`, `0x`, `256.1.1.1`)
    /// or an IPv6 literal with a zone: refused rather than handed to a resolver that
    /// might read it differently.
    public static func classifyHost(_ host: String) -> HostKind {
        var text = host
        if text.hasPrefix("[") {
            guard text.hasSuffix("]"), text.count > 2 else { return .malformed }
            text = String(text.dropFirst().dropLast())
            return parseIPv6(text).map(HostKind.address) ?? .malformed
        }
        if text.contains(":") { return parseIPv6(text).map(HostKind.address) ?? .malformed }
        if text.hasSuffix(".") { text.removeLast() }
        guard let last = text.split(separator: ".", omittingEmptySubsequences: false).last else { return .malformed }
        // WHATWG: a host whose last label is a number is an IPv4 address or nothing.
        let lastIsNumber = !last.isEmpty && (last.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) || isHexNumber(last))
        guard lastIsNumber else { return .name }
        return parseIPv4(text).map { HostKind.address(.v4($0)) } ?? .malformed
    }

    public enum HostKind: Equatable, Sendable {
        case name
        case address(IPAddress)
        case malformed
    }

    private static func isHexNumber(_ label: Substring) -> Bool {
        let lower = label.lowercased()
        return lower.hasPrefix("0x") && lower.utf8.dropFirst(2).allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills
    /// the bytes the others left.
    static func parseIPv4(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(parts.count) else { return nil }
        var values: [UInt64] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 32, part.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) || $0 | 0x20 == 120 }) else { return nil }
            let lower = part.lowercased()
            let value: UInt64?
            if lower.hasPrefix("0x") {
                let digits = lower.dropFirst(2)
                value = digits.isEmpty ? 0 : UInt64(digits, radix: 16)
            } else if lower.count > 1 && lower.hasPrefix("0") {
                value = UInt64(lower.dropFirst(), radix: 8)
            } else {
                value = UInt64(lower, radix: 10)
            }
            guard let value else { return nil }
            values.append(value)
        }
        var result: UInt64 = 0
        for (index, value) in values.enumerated() {
            if index < values.count - 1 {
                guard value <= 255 else { return nil }
                result |= value << (8 * UInt64(3 - index))
            } else {
                let remainingBytes = UInt64(4 - index)
                guard value < (UInt64(1) << (8 * remainingBytes)) else { return nil }
                result |= value
            }
        }
        return UInt32(result)
    }

    static func parseIPv6(_ text: String) -> IPAddress? {
        guard !text.contains("%") else { return nil }
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &address) { Array($0) }
        return .v6(bytes)
    }

    /// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any.
    var embeddedIPv4: UInt32? {
        guard case .v6(let b) = self else { return nil }
        func word(_ at: Int) -> UInt32 { UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3]) }
        let zeros10 = b[0..<10].allSatisfy { $0 == 0 }
        if zeros10 && b[10] == 0xFF && b[11] == 0xFF { return word(12) }  // ::ffff:a.b.c.d
        if zeros10 && b[10] == 0 && b[11] == 0 && word(12) > 1 { return word(12) }  // ::a.b.c.d
        if b[0] == 0x00, b[1] == 0x64, b[2] == 0xFF, b[3] == 0x9B, b[4..<12].allSatisfy({ $0 == 0 }) { return word(12) }  // 64:ff9b::/96
        if b[0] == 0x20, b[1] == 0x02 { return word(2) }  // 2002::/16
        return nil
    }
}

/// Which addresses the proxy refuses to connect to: everything that is not the public
/// internet. A name that resolves to one of these (or an address literal in any
/// spelling) is refused, unless the policy lists that very address.
public enum AddressGuard {
    /// Why `address` is not public, or nil when it is.
    public static func refusal(_ address: IPAddress) -> String? {
        switch address {
        case .v4(let value): return refusalV4(value)
        case .v6(let bytes):
            if let embedded = address.embeddedIPv4, let reason = refusalV4(embedded) {
                return "\(reason), embedded in an IPv6 address"
            }
            return refusalV6(bytes)
        }
    }

    private static let ipv4Ranges: [(base: UInt32, bits: UInt32, what: String)] = [
        (0x0000_0000, 8, "a 'this network' address (0.0.0.0/8)"),
        (0x0A00_0000, 8, "a private address (10.0.0.0/8)"),
        (0x6440_0000, 10, "a carrier-grade NAT address (100.64.0.0/10)"),
        (0x7F00_0000, 8, "a loopback address (127.0.0.0/8)"),
        (0xA9FE_0000, 16, "a link-local address (169.254.0.0/16)"),
        (0xAC10_0000, 12, "a private address (172.16.0.0/12)"),
        (0xC000_0000, 24, "an IETF protocol address (192.0.0.0/24)"),
        (0xC000_0200, 24, "a documentation address (192.0.2.0/24)"),
        (0xC058_6300, 24, "a 6to4 relay address (192.88.99.0/24)"),
        (0xC0A8_0000, 16, "a private address (192.168.0.0/16)"),
        (0xC612_0000, 15, "a benchmarking address (198.18.0.0/15)"),
        (0xC633_6400, 24, "a documentation address (198.51.100.0/24)"),
        (0xCB00_7100, 24, "a documentation address (203.0.113.0/24)"),
        (0xE000_0000, 4, "a multicast address (224.0.0.0/4)"),
        (0xF000_0000, 4, "a reserved or broadcast address (240.0.0.0/4)"),
    ]

    private static func refusalV4(_ value: UInt32) -> String? {
        if value == 0xA9FE_A9FE { return "the cloud metadata address (169.254.169.254)" }
        if value == 0x6464_64C8 { return "a cloud metadata address (100.100.100.200)" }
        for range in ipv4Ranges where value >> (32 - range.bits) == range.base >> (32 - range.bits) {
            return range.what
        }
        return nil
    }

    private static func refusalV6(_ b: [UInt8]) -> String? {
        let metadata: [UInt8] = [0xFD, 0x00, 0x0E, 0xC2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54]
        if b == metadata { return "the cloud metadata address (fd00:ec2::254)" }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] <= 1 { return b[15] == 1 ? "the loopback address (::1)" : "the unspecified address (::)" }
        if b[0..<12].allSatisfy({ $0 == 0 }) { return "an IPv4-compatible address (::/96)" }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF { return nil }  // mapped public IPv4
        if b[0] == 0x00, b[1] == 0x64, b[2] == 0xFF, b[3] == 0x9B, b[4] == 0, b[5] == 0x01 { return "a local-use NAT64 address (64:ff9b:1::/48)" }
        if b[0] == 0x01, b[1] == 0x00, b[2..<8].allSatisfy({ $0 == 0 }) { return "a discard address (100::/64)" }
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x00, b[3] == 0x00 { return "a Teredo address (2001::/32), which hides an IPv4 address" }
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0D, b[3] == 0xB8 { return "a documentation address (2001:db8::/32)" }
        if b[0] & 0xFE == 0xFC { return "a unique local address (fc00::/7)" }
        if b[0] == 0xFE, b[1] & 0xC0 == 0x80 { return "a link-local address (fe80::/10)" }
        if b[0] == 0xFE, b[1] & 0xC0 == 0xC0 { return "a site-local address (fec0::/10)" }
        if b[0] == 0xFF { return "a multicast address (ff00::/8)" }
        return nil
    }
}
