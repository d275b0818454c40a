// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "stockade",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "stockade", targets: ["stockade"]),
        .library(name: "StockadeRuntime", targets: ["StockadeRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // Pure Swift: the shared error type and the sandbox plan (plain data).
        .target(name: "StockadeCore"),
        // Pure Swift: the policy file, its loading with line-accurate errors, globs,
        // actions, decisions and labels. Crypto gives the SHA-256 that binds an approval
        // to the exact action it approved.
        .target(name: "StockadePolicy", dependencies: [
            "StockadeCore",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // libseccomp, used by StockadeSystem to compile the filter in the supervisor.
        .systemLibrary(name: "CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        // C: the child side of spawning (after clone, before exec of stockade-init).
        .target(name: "CStockadeShim"),
        // stockade-init (PID 1 inside every sandbox) is plain C linked statically, so it
        // is built by the Makefile with the C compiler, not by SwiftPM: SwiftPM links
        // every executable through swiftc, which adds the Swift runtime.
        .target(name: "StockadeSystem", dependencies: [
            "StockadeCore", "CStockadeShim", "CSeccomp",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SystemPackage", package: "swift-system"),
        ]),
        .target(name: "StockadeIsolation", dependencies: [
            "StockadeCore", "StockadePolicy", "StockadeSystem",
        ]),
        // The egress proxy: the only way out of a sandbox whose policy grants hosts.
        // SwiftNIO for the proxy and its HTTP parsing; NIOSSL for the TLS of the
        // supervisor's own fetches (the `http` action). Tunnelled TLS is never opened.
        .target(name: "StockadeNetwork", dependencies: [
            "StockadeCore", "StockadePolicy", "StockadeSecrets",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // The leak guard (pure Swift): known secrets in every spelling, credential
        // formats and high-entropy tokens, in one automaton.
        .target(name: "StockadeSecrets"),
        // The audit log: a hash chain of JSON lines with Ed25519-signed checkpoints.
        .target(name: "StockadeAudit", dependencies: [
            "StockadeCore",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "StockadeRuntime", dependencies: [
            "StockadeCore", "StockadePolicy", "StockadeIsolation", "StockadeNetwork", "StockadeAudit", "StockadeSecrets",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The front ends beyond the CLI: the MCP server (the official Swift SDK).
        .target(name: "StockadeServer", dependencies: [
            "StockadeRuntime",
            .product(name: "MCP", package: "swift-sdk"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "stockade", dependencies: [
            "StockadeRuntime", "StockadeSystem",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // `stockade mcp` execs it: the MCP SDK links Foundation's networking (libcurl),
        // which the fully static stockade cannot.
        .executableTarget(name: "stockade-mcp", dependencies: [
            "StockadeServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // In-process spawn latency, for bench/run.sh.
        .executableTarget(name: "stockade-bench", dependencies: ["StockadeRuntime", "StockadeSecrets"]),
        .testTarget(name: "StockadePolicyTests", dependencies: ["StockadePolicy", "StockadeCore"]),
        .testTarget(name: "StockadeSecretsTests", dependencies: ["StockadeSecrets"]),
        .testTarget(name: "StockadeSandboxTests", dependencies: [
            "StockadeRuntime", "StockadeServer", "StockadeIsolation", "StockadeSystem", "StockadeCore",
            "StockadeNetwork", "StockadeAudit", "StockadeSecrets",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
    ]
)
