import Foundation
import NIOCore
@testable import StockadeNetwork
import StockadePolicy
import StockadeSecrets
import StockadeRuntime
import Testing

@Suite("Egress addresses") struct EgressAddressTests {
    /// Every spelling a client could use for loopback, private, link-local, CGNAT,
    /// multicast and metadata addresses: each is read as the address it means (and
    /// refused by the address guard), or refused outright as malformed.
    @Test("numeric and mapped spellings of non-public addresses are recognized and refused", arguments: [
        "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0X7F000001", "0177.0.0.1", "0x7f.0.0.1", "017700000001",
        "127.0.0.1.", "0", "0.0.0.0", "10.1.2.3", "0xa.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "100.100.100.200",
        "169.254.169.254", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518", "224.0.0.1", "255.255.255.255",
        "[::1]", "[0:0:0:0:0:0:0:1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]", "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::1]",
        "[fd00:ec2::254]", "[fe80::1]", "[fc00::1]", "[ff02::1]", "[2001:0::1]", "[2001:db8::1]", "::1",
    ])
    func refusedSpellings(host: String) {
        switch IPAddress.classifyHost(host) {
        case .address(let address):
            #expect(AddressGuard.refusal(address) != nil, "\(host) read as \(address), which passed the guard")
        case .malformed:
            break
        case .name:
            Issue.record("\(host) was taken for a host name")
        }
    }

    @Test("spellings that are no address are malformed, never names", arguments: [
        "1.2.3.4.5", "256.0.0.1", "0x100000000", "1.2.3.999", "[fe80::1%eth0]", "[::1", "08.0.0.1", "0x1g.0.0.1",
    ])
    func malformedSpellings(host: String) {
        #expect(IPAddress.classifyHost(host) == .malformed, "\(host)")
    }

    @Test("public addresses and names pass")
    func publicOnes() {
        for host in ["8.8.8.8", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]", "93.184.215.14"] {
            guard case .address(let address) = IPAddress.classifyHost(host) else {
                Issue.record("\(host) not read as an address")
                continue
            }
            #expect(AddressGuard.refusal(address) == nil, "\(host)")
        }
        for host in ["pypi.org", "files.pythonhosted.org", "0x.example.com", "1e100.net"] {
            #expect(IPAddress.classifyHost(host) == .name, "\(host)")
        }
    }

    @Test("a host with non-ASCII letters is refused by the guard's parser and the proxy's alike")
    func nonASCIIHosts() {
        // A Kelvin sign lowercases to "k" under Unicode rules: a deny rule on
        // kube.example.com must not be passed by a host the proxy would read as it.
        #expect(ParsedURL("https://\u{212A}ube.example.com/") == nil)
        #expect(EgressTarget.authority("\u{212A}ube.example.com:443") == nil)
        #expect(ParsedURL("https://kube.example.com/")?.host == "kube.example.com")
    }

    @Test("the same address in every spelling is one address")
    func oneAddress() {
        let spellings = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1"]
        let addresses = Set(spellings.compactMap { host -> IPAddress? in
            if case .address(let address) = IPAddress.classifyHost(host) { return address }
            return nil
        })
        #expect(addresses == [.v4(0x7F00_0001)])
    }
}

extension SandboxSuite {
    /// The proxy alone, on a listener on the host's loopback: clients here are curl
    /// and raw sockets on the host.
    @Suite("Egress proxy") struct EgressProxyTests {
        static func curl(_ arguments: [String], proxyPort: Int) throws -> Harness.Output {
            try Harness.run(
                ["/usr/bin/curl", "-sS", "-m", "20", "--proxy", "http://127.0.0.1:\(proxyPort)"] + arguments,
                environment: ["PATH": "/usr/bin:/bin"])
        }

        @Test("a denied host gets a 403 naming the rule, and is never looked up")
        func deniedHost() throws {
            let fixture = try EgressFixture.get()
            let resolver = RecordingResolver(fixture.resolver)
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]), resolver: resolver)
            defer { proxy.shutdown() }
            let plain = try Self.curl(["-i", "http://other.test:\(fixture.httpPort)/"], proxyPort: port)
            #expect(plain.stdout.hasPrefix("HTTP/1.1 403"), "\(plain.stdout)")
            #expect(plain.stdout.contains("X-Stockade-Refused: network.allow"))
            #expect(plain.stdout.contains("no entry of network.allow names other.test"))
            let tunnel = try Self.curl(["https://other.test:\(fixture.httpsPort)/"], proxyPort: port)
            #expect(tunnel.status == 56, "\(tunnel.stderr)")
            #expect(tunnel.stderr.contains("403"))
            // Nothing about other.test ever reached a resolver (no DNS exfiltration).
            #expect(!resolver.names.contains("other.test"), "\(resolver.names)")
            proxy.shutdown()  // every exchange recorded
            let events = proxy.events.filter { $0.host == "other.test" }
            #expect(events.count == 2 && events.allSatisfy { !$0.allowed && $0.rule == "network.allow" })
        }

        @Test("numeric spellings of loopback and metadata are refused and never looked up", arguments: [
            "http://2130706433:PORT/", "http://0x7f000001:PORT/", "http://0177.0.0.1:PORT/", "http://127.1:PORT/",
            "http://[::ffff:127.0.0.1]:PORT/", "http://[::1]:PORT/", "http://0xa9fea9fe/latest/meta-data/",
            "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://[::ffff:a9fe:a9fe]/",
        ])
        func numericSpellings(url: String) throws {
            let fixture = try EgressFixture.get()
            let resolver = RecordingResolver(fixture.resolver)
            // Every name under .test is allowed, and no address is listed.
            let policy = try PolicyLoader.parse(
                "version: 1\nnetwork: {mode: allowlist, allow: [{host: \"*.test\", ports: [80, \(fixture.httpPort)]}]}\n",
                sourcePath: "policy.yaml", baseDirectory: "/")
            let (proxy, port) = try fixture.hostProxy(policy, resolver: resolver)
            defer { proxy.shutdown() }
            let target = url.replacingOccurrences(of: "PORT", with: String(fixture.httpPort))
            let answer = try EgressFixture.raw("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n", port: port)
            #expect(answer.hasPrefix("HTTP/1.1 403"), "\(target): \(answer)")
            #expect(!answer.contains("hello from"))
            #expect(resolver.names.isEmpty, "\(resolver.names)")
        }

        @Test("a name that resolves to loopback, private or metadata addresses is refused", arguments: [
            ["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"], ["93.184.215.14", "127.0.0.1"], ["::ffff:127.0.0.1"], ["fd00:ec2::254"],
        ])
        func rebinding(addresses: [String]) throws {
            let fixture = try EgressFixture.get()
            let parsed = addresses.map { text -> IPAddress in
                guard case .address(let address) = IPAddress.classifyHost(text.contains(":") ? "[\(text)]" : text) else { fatalError(text) }
                return address
            }
            let resolver = StaticResolver(["rebind.test": parsed])
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["rebind.test"], listLoopback: false), resolver: resolver)
            defer { proxy.shutdown() }
            let out = try Self.curl(["-i", "http://rebind.test:\(fixture.httpPort)/"], proxyPort: port)
            #expect(out.stdout.hasPrefix("HTTP/1.1 403"), "\(out.stdout)")
            #expect(out.stdout.contains("X-Stockade-Refused: address-guard"))
            #expect(out.stdout.contains("rebind.test resolves to"))
        }

        @Test("the same name is reached when the policy lists the address itself")
        func listedAddress() throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]))
            defer { proxy.shutdown() }
            let out = try Self.curl(["http://allowed.test:\(fixture.httpPort)/x"], proxyPort: port)
            #expect(out.stdout == "hello from /x\n", "\(out.stdout)\(out.stderr)")
        }

        @Test("methods: plain HTTP is held to them, and a tunnel needs CONNECT listed")
        func methods() throws {
            let fixture = try EgressFixture.get()
            let policy = try PolicyLoader.parse("""
                version: 1
                network:
                  mode: allowlist
                  allow:
                    - {host: allowed.test, ports: [\(fixture.httpPort), \(fixture.httpsPort)], methods: [GET]}
                    - {host: other.test, ports: [\(fixture.httpsPort)], methods: [CONNECT]}
                    - {host: 127.0.0.1, ports: [\(fixture.httpPort), \(fixture.httpsPort)]}
                """, sourcePath: "policy.yaml", baseDirectory: "/")
            let (proxy, port) = try fixture.hostProxy(policy)
            defer { proxy.shutdown() }
            #expect(try Self.curl(["http://allowed.test:\(fixture.httpPort)/get"], proxyPort: port).stdout == "hello from /get\n")
            let post = try Self.curl(["-i", "-d", "x=1", "http://allowed.test:\(fixture.httpPort)/post"], proxyPort: port)
            #expect(post.stdout.hasPrefix("HTTP/1.1 403") && post.stdout.contains("allows GET, not POST"), "\(post.stdout)")
            let tunnel = try Self.curl(["--cacert", fixture.caPath, "https://allowed.test:\(fixture.httpsPort)/"], proxyPort: port)
            #expect(tunnel.status == 56, "\(tunnel.stderr)")
            let listed = try Self.curl(["--cacert", fixture.caPath, "https://other.test:\(fixture.httpsPort)/tls"], proxyPort: port)
            #expect(listed.stdout == "hello from /tls\n", "\(listed.stderr)")
        }

        @Test("injected headers reach the host, the client's own are replaced, Host follows the URL")
        func injectedHeaders() throws {
            let fixture = try EgressFixture.get()
            let policy = try PolicyLoader.parse("""
                version: 1
                network:
                  mode: allowlist
                  allow:
                    - {host: allowed.test, ports: [\(fixture.httpPort)], inject_headers: {Authorization: "Bearer ${env:TEST_TOKEN}"}}
                    - {host: 127.0.0.1, ports: [\(fixture.httpPort)]}
                """, sourcePath: "policy.yaml", baseDirectory: "/")
            let (proxy, port) = try fixture.hostProxy(policy)
            defer { proxy.shutdown() }
            let out = try Self.curl(
                ["-H", "Authorization: Bearer forged", "-H", "Host: evil.example", "-H", "Proxy-Authorization: Basic eA==", "http://allowed.test:\(fixture.httpPort)/echo"],
                proxyPort: port)
            let echo = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            let headers = echo?["headers"] as? [String: String] ?? [:]
            #expect(headers["authorization"] == "Bearer s3cr3t-token", "\(out.stdout)")
            #expect(headers["host"] == "allowed.test:\(fixture.httpPort)")
            #expect(headers["proxy-authorization"] == nil)
        }

        @Test("an injected header whose variable is missing stops the proxy before it starts")
        func missingCredential() throws {
            let policy = try PolicyLoader.parse(
                "version: 1\nnetwork: {mode: allowlist, allow: [{host: api.example.com, inject_headers: {X-Key: \"${env:NOT_SET_ANYWHERE}\"}}]}\n",
                sourcePath: "policy.yaml", baseDirectory: "/")
            #expect(throws: StockadeError.self) {
                _ = try EgressProxy(policy: policy.network!, configuration: EgressConfiguration(environment: [:]))
            }
            do {
                _ = try EgressProxy(policy: policy.network!, configuration: EgressConfiguration(environment: [:]))
            } catch let error as StockadeError {
                #expect(error.message.contains("NOT_SET_ANYWHERE"))
            }
        }

        @Test("the request quota is enforced and named")
        func requestQuota() throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"], extra: "  max_requests: 2"))
            defer { proxy.shutdown() }
            for _ in 0..<2 {
                #expect(try Self.curl(["http://allowed.test:\(fixture.httpPort)/"], proxyPort: port).stdout == "hello from /\n")
            }
            let third = try Self.curl(["-i", "http://allowed.test:\(fixture.httpPort)/"], proxyPort: port)
            #expect(third.stdout.hasPrefix("HTTP/1.1 403") && third.stdout.contains("network.max_requests"), "\(third.stdout)")
        }

        @Test("the byte quota ends a download that goes over it")
        func byteQuota() throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"], extra: "  max_bytes: 256KiB"))
            defer { proxy.shutdown() }
            let out = try Self.curl(["-o", "/dev/null", "-w", "%{size_download}", "http://allowed.test:\(fixture.httpPort)/bytes/4000000"], proxyPort: port)
            #expect(out.status != 0)
            #expect((Int(out.stdout) ?? .max) < 1_000_000, "\(out.stdout)")
            let after = try Self.curl(["-i", "http://allowed.test:\(fixture.httpPort)/"], proxyPort: port)
            #expect(after.stdout.hasPrefix("HTTP/1.1 403") && after.stdout.contains("network.max_bytes"), "\(after.stdout)")
            proxy.shutdown()
            #expect(proxy.events.contains { $0.rule == "network.max_bytes" })
        }

        @Test("a redirect to a second host is a second request, refused by the allowlist")
        func redirect() throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]))
            defer { proxy.shutdown() }
            let out = try Self.curl(
                ["-sL", "-o", "/dev/null", "-w", "%{http_code} %{num_redirects}", "http://allowed.test:\(fixture.httpPort)/redirect?to=http://other.test:\(fixture.httpPort)/drop"],
                proxyPort: port)
            #expect(out.stdout == "403 1", "\(out.stdout)")
            proxy.shutdown()
            #expect(proxy.events.contains { $0.host == "other.test" && !$0.allowed })
        }

        /// NIO's close drops writes still queued: the relay closes a side only after its
        /// writes are done, or the tail of a download is lost.
        @Test("a large download arrives whole: relayed, tunnelled, pipelined after CONNECT, and to a half-closed client", arguments: ["relay", "tunnel", "pipelined"])
        func wholeDownload(path: String) throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]))
            defer { proxy.shutdown() }
            let size = 8_000_000
            let authority = "allowed.test:\(fixture.httpPort)"
            let connect = "CONNECT \(authority) HTTP/1.1\r\nHost: \(authority)\r\n\r\n"
            let get = "GET /bytes/\(size) HTTP/1.1\r\nHost: \(authority)\r\nConnection: close\r\n\r\n"
            for _ in 0..<3 {
                let answer: [UInt8]
                switch path {
                case "relay": answer = try EgressFixture.halfClosed("GET http://\(authority)/bytes/\(size) HTTP/1.1\r\nHost: \(authority)\r\n\r\n", port: port)
                case "tunnel": answer = try EgressFixture.halfClosed(get, connect: connect, port: port)
                default: answer = try EgressFixture.raw(connect + get, port: port, readAll: true)
                }
                let separator: [UInt8] = Array("\r\n\r\n".utf8)
                var heads = path == "relay" ? 1 : 2
                var bodyStart = 0
                var index = 0
                while heads > 0, index + 4 <= answer.count {
                    if Array(answer[index..<index + 4]) == separator {
                        heads -= 1
                        bodyStart = index + 4
                        index += 4
                    } else {
                        index += 1
                    }
                }
                #expect(answer.count - bodyStart == size, "\(path): \(answer.count - bodyStart) body bytes; \(String(decoding: answer.prefix(300), as: UTF8.self))")
            }
        }

        /// Request smuggling: bytes after the one request a connection carries, or a body
        /// stripped of its framing, would reach the host as a request no rule saw.
        @Test("the body's hold-back keeps every byte of a secret padded with line breaks until the guard has seen it")
        func holdBack() {
            let secret = Array("tok_9fQ2xLm7Vb3Nc8Kd1Wz".utf8)
            var bodyGuard = BodyGuard(LeakGuard(secrets: [KnownSecret(name: "literal", value: secret)], credentialRules: false, entropy: false), alertOnly: false)
            var forwarded: [UInt8] = []
            var caught = false
            for byte in secret {
                let chunk = ByteBuffer(bytes: [byte] + [UInt8](repeating: 0x0A, count: 100))
                guard let passed = bodyGuard.pass(chunk, into: nil, proxy: nil) else {
                    caught = true
                    break
                }
                if let passed { forwarded += passed.readableBytesView }
            }
            #expect(caught)
            #expect(forwarded.filter { $0 != 0x0A }.isEmpty, "\(forwarded.filter { $0 != 0x0A }.count) bytes of the secret left first")
        }

        @Test("nothing beyond the one relayed request reaches the host", arguments: ["pipelined", "connection-strips-length", "upgrade", "trailer"])
        func smuggling(attack: String) throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]))
            defer { proxy.shutdown() }
            let authority = "allowed.test:\(fixture.recorderPort)"
            let smuggled = "GET /smuggled HTTP/1.1\r\nHost: evil.example\r\n\r\n"
            let request: String
            switch attack {
            case "pipelined":
                request = "GET http://\(authority)/first HTTP/1.1\r\nHost: \(authority)\r\n\r\n"
                    + "POST http://\(authority)/second HTTP/1.1\r\nHost: \(authority)\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled
            case "connection-strips-length":
                request = "POST http://\(authority)/first HTTP/1.1\r\nHost: \(authority)\r\nConnection: content-length\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled
            case "trailer":
                request = "POST http://\(authority)/first HTTP/1.1\r\nHost: \(authority)\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Smuggled: after-the-checks\r\n\r\n"
            default:
                request = "GET http://\(authority)/first HTTP/1.1\r\nHost: \(authority)\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n" + smuggled
            }
            let answer = try EgressFixture.raw(request, port: port)
            let recorded = try fixture.recorded()
            switch attack {
            case "upgrade":
                #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
            case "connection-strips-length":
                // The body is there, framed by its length: the host reads it as a body.
                #expect(recorded.lowercased().contains("content-length: \(smuggled.utf8.count)"), "\(recorded)")
            case "trailer":
                // Trailers come after the head's checks: they are dropped.
                #expect(recorded.contains("hello") && !recorded.contains("X-Smuggled"), "\(recorded)")
            default:
                #expect(recorded.contains("/first") && !recorded.contains("smuggled") && !recorded.contains("/second"), "\(recorded)")
            }
        }

        @Test("TRACE is not relayed")
        func trace() throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]))
            defer { proxy.shutdown() }
            let answer = try EgressFixture.raw("TRACE http://allowed.test:\(fixture.httpPort)/ HTTP/1.1\r\nHost: x\r\n\r\n", port: port)
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        }

        @Test("a grant's injected credential goes only where that grant lets requests go")
        func injectionPerGrant() throws {
            let fixture = try EgressFixture.get()
            let policy = try PolicyLoader.parse("""
                version: 1
                network:
                  mode: allowlist
                  allow:
                    - {host: allowed.test, ports: [\(fixture.httpPort)], inject_headers: {Authorization: "Bearer ${env:TEST_TOKEN}"}}
                    - {host: allowed.test, ports: [\(fixture.recorderPort)]}
                    - {host: 127.0.0.1, ports: [\(fixture.httpPort), \(fixture.recorderPort)]}
                """, sourcePath: "policy.yaml", baseDirectory: "/")
            let (proxy, port) = try fixture.hostProxy(policy)
            defer { proxy.shutdown() }
            _ = try EgressFixture.raw("GET http://allowed.test:\(fixture.recorderPort)/plain HTTP/1.1\r\nHost: x\r\n\r\n", port: port)
            let recorded = try fixture.recorded()
            #expect(recorded.contains("/plain") && !recorded.contains("s3cr3t"), "\(recorded)")
        }

        @Test("a listed private address is reachable only on the ports its own grant names")
        func listedAddressPorts() throws {
            let fixture = try EgressFixture.get()
            let policy = try PolicyLoader.parse("""
                version: 1
                network:
                  mode: allowlist
                  allow:
                    - {host: "*.test", ports: [\(fixture.httpPort)]}
                    - {host: 127.0.0.1, ports: [\(fixture.recorderPort)]}
                """, sourcePath: "policy.yaml", baseDirectory: "/")
            let (proxy, port) = try fixture.hostProxy(policy)
            defer { proxy.shutdown() }
            let out = try Self.curl(["-i", "http://rebind.test:\(fixture.httpPort)/"], proxyPort: port)
            #expect(out.stdout.contains("X-Stockade-Refused: address-guard"), "\(out.stdout)")
        }

        @Test("the session's authority can refuse before anything is looked up")
        func authority() throws {
            let fixture = try EgressFixture.get()
            let resolver = RecordingResolver(fixture.resolver)
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]), resolver: resolver) { _, _ in
                EgressRefusal(.denied, rule: "no-secret-egress", "the session carries 'secret' data")
            }
            defer { proxy.shutdown() }
            let out = try Self.curl(["-i", "http://allowed.test:\(fixture.httpPort)/"], proxyPort: port)
            #expect(out.stdout.hasPrefix("HTTP/1.1 403") && out.stdout.contains("X-Stockade-Refused: no-secret-egress"), "\(out.stdout)")
            #expect(resolver.names.isEmpty)
        }

        @Test("broken requests get a 400 that says what is wrong", arguments: [
            "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "GET https://allowed.test/ HTTP/1.1\r\n\r\n", "CONNECT allowed.test HTTP/1.1\r\n\r\n",
            "GET http://user@allowed.test/ HTTP/1.1\r\n\r\n", "BLAH\r\n\r\n",
        ])
        func badRequests(request: String) throws {
            let fixture = try EgressFixture.get()
            let (proxy, port) = try fixture.hostProxy(try fixture.policy(hosts: ["allowed.test"]))
            defer { proxy.shutdown() }
            let answer = try EgressFixture.raw(request, port: port)
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        }
    }

    /// The proxy as a sandbox sees it: the bridge, the variables, and no other way out.
    @Suite("Egress from a sandbox") struct EgressSandboxTests {
        @Test("an allowed host is reached over HTTP and HTTPS, through the proxy")
        func allowedHost() throws {
            let fixture = try EgressFixture.get()
            let result = try fixture.run("""
                curl -sS http://allowed.test:\(fixture.httpPort)/plain && \
                curl -sS --cacert /workspace/test-ca.crt https://allowed.test:\(fixture.httpsPort)/secure
                """, policy: try fixture.policy(hosts: ["allowed.test"]))
            #expect(result.exitCode == 0, "\(result.err)")
            #expect(result.out == "hello from /plain\nhello from /secure\n")
            #expect(result.egress.map(\.kind) == [.request, .tunnel])
            #expect(result.egress.allSatisfy { $0.allowed && $0.address == "127.0.0.1" && $0.rule == "network.allow[0]" })
            #expect(result.egress.last.map { $0.bytesReceived > 0 && $0.bytesSent > 0 } == true, "\(result.egress)")
        }

        @Test("a denied host gets a 403 naming the rule")
        func deniedHost() throws {
            let fixture = try EgressFixture.get()
            let result = try fixture.run(
                "curl -s http://other.test:\(fixture.httpPort)/; curl -sS https://other.test:\(fixture.httpsPort)/; echo \" rc=$?\"",
                policy: try fixture.policy(hosts: ["allowed.test"]))
            #expect(result.out.contains("refused by network.allow: no entry of network.allow names other.test"), "\(result.out)")
            #expect(result.out.hasSuffix(" rc=56\n"), "\(result.out)")
            #expect(result.err.contains("CONNECT tunnel failed, response 403"))
        }

        /// The attack: a program that ignores the proxy variables and goes straight for
        /// the host (its real address, where traps listen on every interface), the
        /// internet, DNS and ICMP.
        @Test("programs that ignore the proxy reach nothing: TCP, UDP, DNS, ICMP")
        func noBypass() throws {
            let fixture = try EgressFixture.get()
            let hostAddress = Self.hostAddress() ?? "192.0.2.2"
            let before = try fixture.trapCounts()
            let script = """
                import errno, socket
                def attempt(name, action):
                    try:
                        action()
                        print(name, "REACHED")
                    except OSError as error:
                        print(name, "blocked", errno.errorcode.get(error.errno, error.errno))
                def tcp(host, port):
                    s = socket.socket(); s.settimeout(3); s.connect((host, port))
                def udp(host, port):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x" * 32, (host, port))
                def icmp(host):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
                    s.sendto(b"\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00", (host, 0))
                def raw():
                    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                def dns():
                    socket.getaddrinfo("allowed.test", 80)
                attempt("tcp-host", lambda: tcp("\(hostAddress)", \(fixture.trapTCPPort)))
                attempt("tcp-internet", lambda: tcp("1.1.1.1", 443))
                attempt("tcp-v6", lambda: socket.create_connection(("2606:4700:4700::1111", 443), 3))
                attempt("udp-host", lambda: udp("\(hostAddress)", \(fixture.trapUDPPort)))
                attempt("udp-dns", lambda: udp("8.8.8.8", 53))
                attempt("icmp", lambda: icmp("\(hostAddress)"))
                attempt("raw", raw)
                attempt("dns", dns)
                """
            let result = try fixture.run("python3 -c '\(script)'", policy: try fixture.policy(hosts: ["allowed.test"]))
            #expect(result.exitCode == 0, "\(result.err)")
            let lines = result.out.split(separator: "\n")
            #expect(lines.count == 8, "\(result.out)")
            for line in lines {
                #expect(line.contains(" blocked "), "\(line)")
            }
            let after = try fixture.trapCounts()
            #expect(after.tcp == before.tcp && after.udp == before.udp, "the traps were reached: \(before) -> \(after)")
            #expect(result.egress.isEmpty, "\(result.egress)")
        }

        @Test("network: none has no bridge, no variables and no route")
        func noneMode() throws {
            let fixture = try EgressFixture.get()
            let policy = try PolicyLoader.parse("version: 1\nnetwork: none\n", sourcePath: "policy.yaml", baseDirectory: "/")
            let result = try fixture.run("""
                env | grep -ci proxy; curl -sS -m 5 --proxy http://127.0.0.1:3128 http://allowed.test:\(fixture.httpPort)/; echo "rc=$?"; \
                curl -sS -m 5 --noproxy '*' http://1.1.1.1/; echo "rc=$?"
                """, policy: policy)
            #expect(result.out == "0\nrc=7\nrc=7\n", "\(result.out)\(result.err)")
            #expect(result.egress.isEmpty)
        }

        @Test("the byte quota holds for the sandbox as a whole")
        func quota() throws {
            let fixture = try EgressFixture.get()
            let result = try fixture.run(
                "for i in 1 2 3; do curl -s -o /dev/null -w '%{http_code} ' http://allowed.test:\(fixture.httpPort)/bytes/200000; done",
                policy: try fixture.policy(hosts: ["allowed.test"], extra: "  max_bytes: 300KiB"))
            #expect(result.out.hasSuffix("403 "), "\(result.out)")
            #expect(result.egress.contains { $0.rule == "network.max_bytes" })
        }

        /// The host's address on its default route (where the traps listen too).
        static func hostAddress() -> String? {
            guard let out = try? Harness.run(["/usr/sbin/ip", "-4", "route", "get", "1.1.1.1"], environment: ["PATH": "/usr/bin:/bin"]),
                  let range = out.stdout.range(of: " src ") else { return nil }
            return out.stdout[range.upperBound...].split(separator: " ").first.map(String.init)
        }
    }

    @Suite("http actions") struct HTTPActionTests {
        static func session(_ fixture: EgressFixture, rules: String = "[{id: fetch, tool: http, decision: allow}]", extra: String = "") async throws -> (Session, String) {
            let workspace = try Harness.temporaryDirectory()
            let policy = try fixture.policy(hosts: ["allowed.test"], extra: extra, more: "rules: \(rules)")
            let session = try await Session.start(policy: policy, options: SessionOptions(
                workspace: workspace, callerEnvironment: ["TEST_TOKEN": "s3cr3t-token", "PATH": "/usr/bin:/bin"],
                egress: EgressConfiguration(resolver: fixture.resolver, trustRoots: [fixture.caPath])))
            return (session, workspace)
        }

        @Test("http_fetch reaches an allowed host over HTTP and HTTPS")
        func fetch() async throws {
            let fixture = try EgressFixture.get()
            let (session, workspace) = try await Self.session(fixture)
            defer {
                session.close()
                Harness.remove(workspace)
            }
            let plain = try await session.perform(.http(method: "GET", url: "http://allowed.test:\(fixture.httpPort)/a"))
            #expect(plain.performed && plain.httpStatus == 200, "\(plain.message)")
            #expect(plain.content.map { String(decoding: $0, as: UTF8.self) } == "hello from /a\n")
            let secure = try await session.perform(.http(method: "POST", url: "https://allowed.test:\(fixture.httpsPort)/echo", headers: ["X-Test": "1"], body: Array("abc".utf8)))
            #expect(secure.performed && secure.httpStatus == 200, "\(secure.message)")
            let echo = try JSONSerialization.jsonObject(with: Data(secure.content ?? [])) as? [String: Any]
            #expect(echo?["body_length"] as? Int == 3)
            #expect((echo?["headers"] as? [String: String])?["x-test"] == "1")
            #expect(session.egressEvents.filter { $0.kind == .fetch }.count == 2)
        }

        @Test("http_fetch is refused by the rules, the allowlist and the address guard, each named")
        func refusals() async throws {
            let fixture = try EgressFixture.get()
            let (session, workspace) = try await Self.session(fixture, rules: "[{id: fetch, tool: http, decision: allow}, {id: no-admin, tool: http, where: {url_path: /admin}, decision: deny}]")
            defer {
                session.close()
                Harness.remove(workspace)
            }
            let byRule = try await session.perform(.http(method: "GET", url: "http://allowed.test:\(fixture.httpPort)/admin"))
            #expect(!byRule.performed && byRule.rule == "no-admin", "\(byRule.message)")
            let byAllowlist = try await session.perform(.http(method: "GET", url: "http://other.test:\(fixture.httpPort)/"))
            #expect(!byAllowlist.performed && byAllowlist.rule == "network.allow", "\(byAllowlist.message)")
            let metadata = try await session.perform(.http(method: "GET", url: "http://169.254.169.254/latest/meta-data/"))
            #expect(!metadata.performed && metadata.decision == .deny, "\(metadata.message)")
        }
    }
}
