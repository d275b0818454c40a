import Glibc
import NIOCore
import NIOPosix

/// How the proxy turns an allowed name into addresses. The sandbox has no resolver of
/// its own: names are looked up here, only after the policy allowed them, so a denied
/// name never reaches DNS (no exfiltration through queries).
public protocol EgressResolver: Sendable {
    /// The addresses of `name` (a host name, never a literal).
    func resolve(_ name: String) async throws -> [IPAddress]
}

/// The host's resolver (getaddrinfo: /etc/hosts, then DNS), run on NIO's blocking pool.
public struct SystemResolver: EgressResolver {
    public init() {}

    public func resolve(_ name: String) async throws -> [IPAddress] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(name, nil, &hints, &list)
            guard status == 0 else {
                throw EgressRefusal(.unreachable, rule: nil, "\(name) could not be resolved: \(String(cString: gai_strerror(status)))")
            }
            defer { freeaddrinfo(list) }
            var addresses: [IPAddress] = []
            var entry = list
            while let current = entry {
                if let socketAddress = current.pointee.ai_addr {
                    switch Int32(socketAddress.pointee.sa_family) {
                    case AF_INET:
                        let value = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
                        addresses.append(.v4(value))
                    case AF_INET6:
                        let bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                            withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                        }
                        addresses.append(.v6(bytes))
                    default: break
                    }
                }
                entry = current.pointee.ai_next
            }
            var seen = Set<IPAddress>()
            return addresses.filter { seen.insert($0).inserted }
        }
    }
}

/// A fixed table of names, for tests: lets a test map its own host names to the
/// servers it started on loopback. Not reachable from a policy or the command line.
public struct StaticResolver: EgressResolver {
    public let table: [String: [IPAddress]]

    public init(_ table: [String: [IPAddress]]) {
        self.table = table
    }

    public func resolve(_ name: String) async throws -> [IPAddress] {
        guard let addresses = table[name], !addresses.isEmpty else {
            throw EgressRefusal(.unreachable, rule: nil, "\(name) could not be resolved: no such name")
        }
        return addresses
    }
}

extension IPAddress {
    /// The socket address to connect to (the very address that was checked).
    func socketAddress(port: Int) throws -> SocketAddress {
        switch self {
        case .v4(let value):
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = value.bigEndian
            return SocketAddress(address, host: description)
        case .v6(let bytes):
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
            return SocketAddress(address, host: description)
        }
    }
}
