import Foundation
import StockadeNetwork
import StockadePolicy
import StockadeRuntime
import Testing

/// The servers the egress tests reach: `tests/egress_server.py` on the host's loopback
/// (HTTP and HTTPS with a certificate of a test CA made here by openssl), and traps on
/// every address that count what reaches them directly.
final class EgressFixture: @unchecked Sendable {
    let directory: String
    /// PEM of the test CA (copied into workspaces so that curl inside can trust it).
    let caPath: String
    let httpPort: Int
    let httpsPort: Int
    let trapTCPPort: Int
    let trapUDPPort: Int
    /// Records every byte of a connection (see tests/egress_server.py).
    let recorderPort: Int
    private let process: Process
    private let input: Pipe

    /// Test names: all map to 127.0.0.1 through the proxy's resolver in these tests.
    static let names = ["allowed.test", "other.test", "rebind.test", "quota.test"]

    /// One set for the whole test run.
    static let shared: Result<EgressFixture, any Error> = Result { try EgressFixture() }

    static func get() throws -> EgressFixture { try shared.get() }

    private init() throws {
        directory = try Harness.temporaryDirectory("egress")
        caPath = directory + "/ca.pem"
        let names = Self.names.map { "DNS:\($0)" }.joined(separator: ",")
        try Harness.write("subjectAltName=\(names),IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n", to: directory + "/ext.cnf")
        let openssl = ["/usr/bin/openssl"]
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for command in [
            openssl + ["req", "-x509"] + curve + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=stockade test CA"],
            openssl + ["req"] + curve + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=allowed.test"],
            openssl + ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"],
        ] {
            let out = try Harness.run(command, in: directory, environment: ["PATH": "/usr/bin:/bin"])
            guard out.status == 0 else { throw StockadeError(.startFailed, "openssl failed: \(out.stderr)") }
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.python)
        process.arguments = [Harness.packageRoot + "/tests/egress_server.py", directory + "/server.pem", directory + "/server.key"]
        input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw StockadeError(.startFailed, "the egress test servers did not start") }
            line += chunk
        }
        let fields = String(decoding: line, as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard fields.count == 6, fields[0] == "PORTS" else { throw StockadeError(.startFailed, "the egress test servers said \(fields)") }
        httpPort = Int(fields[1])!
        httpsPort = Int(fields[2])!
        trapTCPPort = Int(fields[3])!
        trapUDPPort = Int(fields[4])!
        recorderPort = Int(fields[5])!
    }

    /// What the recorder received on its last connection (after the proxy let go of it).
    func recorded() throws -> String {
        usleep(200_000)
        let out = try Harness.run(["/usr/bin/curl", "-sS", "--noproxy", "*", "http://127.0.0.1:\(httpPort)/recorded"], environment: ["PATH": "/usr/bin:/bin"])
        return out.stdout
    }

    /// A resolver that maps the test names to loopback.
    var resolver: StaticResolver {
        StaticResolver(Dictionary(uniqueKeysWithValues: Self.names.map { ($0, [IPAddress.v4(0x7F00_0001)]) }))
    }

    /// The trap counts: anything above zero reached the host without the proxy.
    func trapCounts() throws -> (tcp: Int, udp: Int) {
        let out = try Harness.run(["/usr/bin/curl", "-sS", "--noproxy", "*", "http://127.0.0.1:\(httpPort)/trap"], environment: ["PATH": "/usr/bin:/bin"])
        let object = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Int] ?? [:]
        return (object["tcp"] ?? -1, object["udp"] ?? -1)
    }

    /// A policy granting `hosts` (each on the fixture's two ports) and listing
    /// 127.0.0.1 so that the test names may lead to loopback; `extra` is appended
    /// under `network:`.
    func policy(hosts: [String], listLoopback: Bool = true, extra: String = "", more: String = "") throws -> PolicyDocument {
        var allow = hosts.map { "    - {host: \($0), ports: [\(httpPort), \(httpsPort), \(recorderPort)]}" }
        if listLoopback { allow.append("    - {host: 127.0.0.1, ports: [\(httpPort), \(httpsPort), \(recorderPort)]}") }
        let yaml = """
            version: 1
            network:
              mode: allowlist
              allow:
            \(allow.joined(separator: "\n"))
            \(extra)
            \(more)
            """
        return try PolicyLoader.parse(yaml, sourcePath: "policy.yaml", baseDirectory: "/")
    }

    /// Runs `script` in a sandbox under `policy`, in-process, with the test resolver;
    /// the workspace holds the CA as test-ca.crt (*.pem is hidden by default).
    func run(_ script: String, policy: PolicyDocument, resolver: (any EgressResolver)? = nil) throws -> RunResult {
        let workspace = try Harness.temporaryDirectory()
        defer { Harness.remove(workspace) }
        try FileManager.default.copyItem(atPath: caPath, toPath: workspace + "/test-ca.crt")
        let plan = try Runner.plan(RunRequest(command: ["/bin/sh", "-c", script], policy: policy, workspace: workspace))
        return try Runner.run(
            plan, output: .capture(maxBytesPerStream: 4 << 20), network: policy.resolved().network,
            egress: EgressConfiguration(resolver: resolver ?? self.resolver, trustRoots: [caPath], environment: ["TEST_TOKEN": "s3cr3t-token"]))
    }

    /// A proxy of `policy` serving on a fresh listener on the host's loopback, for
    /// tests of the proxy alone; returns it and its port.
    func hostProxy(_ policy: PolicyDocument, resolver: (any EgressResolver)? = nil, authority: EgressAuthority? = nil) throws -> (EgressProxy, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard fd >= 0, bound == 0, listen(fd, 64) == 0 else { throw StockadeError(.startFailed, "no test listener: \(errno)") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let proxy = try EgressProxy(
            policy: policy.resolved().network!, configuration: EgressConfiguration(resolver: resolver ?? self.resolver, trustRoots: [caPath], environment: ["TEST_TOKEN": "s3cr3t-token"]),
            authority: authority)
        try proxy.serve(listener: fd)
        return (proxy, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Sends `request` (raw bytes) to the proxy at `port` and returns all it answers
    /// (up to a tunnel's 200, unless `readAll`).
    static func raw(_ request: String, port: Int) throws -> String {
        String(decoding: try raw(request, port: port, readAll: false), as: UTF8.self)
    }

    static func raw(_ request: String, port: Int, readAll: Bool) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw StockadeError(.startFailed, "cannot reach the proxy: \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var answer = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = recv(fd, &buffer, buffer.count, 0)
            if got <= 0 { break }
            answer += buffer[0..<got]
            // A tunnel stays open: its 200 is all there is to read here.
            if !readAll && String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 200 Connection established\r\n\r\n") { break }
        }
        return answer
    }
}

extension EgressFixture {
    /// Sends `request` to the proxy at `port` (after `connect`, a CONNECT head whose
    /// answer is awaited first, when given), shuts the sending side (half-closes), and
    /// reads until the proxy closes: every byte it answered.
    static func halfClosed(_ request: String, connect tunnel: String? = nil, port: Int) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        // A slow reader with a small window: the proxy still holds data for it when the
        // host has sent everything and closed.
        var window: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw StockadeError(.startFailed, "cannot reach the proxy: \(errno)") }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var answer = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        if let tunnel {
            let head = Array(tunnel.utf8)
            _ = head.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            while !String(decoding: answer, as: UTF8.self).contains("\r\n\r\n") {
                let got = recv(fd, &buffer, buffer.count, 0)
                if got <= 0 { return answer }
                answer += buffer[0..<got]
            }
        }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        shutdown(fd, Int32(SHUT_WR))
        usleep(300_000)
        while true {
            let got = recv(fd, &buffer, buffer.count, 0)
            if got <= 0 { break }
            answer += buffer[0..<got]
        }
        return answer
    }
}

/// A resolver that remembers every name it was asked for.
final class RecordingResolver: EgressResolver, @unchecked Sendable {
    let inner: StaticResolver
    private let lock = NSLock()
    private var asked: [String] = []

    init(_ inner: StaticResolver) {
        self.inner = inner
    }

    var names: [String] {
        lock.lock()
        defer { lock.unlock() }
        return asked
    }

    func resolve(_ name: String) async throws -> [IPAddress] {
        lock.withLock { asked.append(name) }
        return try await inner.resolve(name)
    }
}

extension RunResult {
    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
}
