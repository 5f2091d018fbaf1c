// swift-tools-version:6.0
import PackageDescription

// Layers, dependencies pointing down only:
//   nvgre (CLI: arguments, output, exit codes), nvgre-lab (demo, benchmarks), NvgreLab (namespaced topologies)
//     -> NvgreControl (instances, policy compiled to map images, diffed, applied all or nothing; the
//        exception service; trace)  and, beside it, NvgreGateway (the gateway's NAT engine: no system
//        calls of its own, maps and sockets behind GatewayMaps and GatewaySender)
//     -> NvgreUserspace (the data path's decisions in Swift, for hosts where XDP cannot run: no
//        system calls; fed the same tables as the maps)
//     -> NvgreStore (the desired state of many hosts in etcd: the client, the key layout, the
//        agent's follower)
//     -> NvgreDatapath (libbpf: the map registry, load, attach, maps, test-run, exception ring; every
//        system call)  and NvgrePolicy (the desired state, its validation, YAML/JSON read and write)
//     -> NvgreWire (pure packet codecs)
// CNvgre is the one thin C target: the shared ABI header, the generated libbpf skeleton
// (made by `make`), and the few calls Swift cannot make directly (setns, libbpf logging).
let package = Package(
    name: "nvgre-xdp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nvgre", targets: ["nvgre"]),
        .executable(name: "nvgre-lab", targets: ["nvgre-lab"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Operations (issue 22): the Prometheus text format, the small HTTP server that serves
        // it, and levelled logs with metadata.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2")
    ],
    targets: [
        .target(
            name: "CNvgre",
            cSettings: [.headerSearchPath("../../bpf")],
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        .target(name: "NvgreWire"),
        .target(name: "NvgrePolicy", dependencies: ["NvgreWire", .product(name: "Yams", package: "Yams")]),
        .target(name: "NvgreDatapath", dependencies: ["CNvgre", "NvgreWire"]),
        // The control plane: policy compiled into map images, diffed against the live maps and
        // applied all or nothing; instances pinned under bpffs, or on the userspace path; trace.
        .target(
            name: "NvgreControl",
            dependencies: [
                "NvgrePolicy", "NvgreDatapath", "NvgreUserspace", "NvgreUserspaceIO", "NvgreStore", "NvgreWire",
                "CNvgre",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log")
            ]),
        // The gateway host's userspace path: NAT flows, published services, offload to XDP.
        .target(name: "NvgreGateway", dependencies: ["NvgreDatapath", "NvgrePolicy", "NvgreWire", "CNvgre"]),
        // The userspace data path's decisions: the BPF programs' semantics in Swift, no system calls.
        .target(name: "NvgreUserspace", dependencies: ["NvgreDatapath", "NvgreWire", "CNvgre"]),
        // Its transport: packet rings on the uplink, the ports and a gateway's external
        // interface, the kernel's routes and neighbors, the forwarding loop (with the gateway
        // engine on a gateway host).
        .target(
            name: "NvgreUserspaceIO",
            dependencies: ["NvgreUserspace", "NvgreGateway", "NvgrePolicy", "NvgreDatapath", "NvgreWire", "CNvgre"]),
        // The store of many hosts: etcd v3 over its JSON gateway, the key layout of the policy.
        .target(name: "NvgreStore", dependencies: ["NvgrePolicy", "NvgreWire"]),
        // What the libFuzzer harnesses (scripts/fuzz.sh, fuzz/Entry.swift) feed arbitrary bytes.
        .target(name: "NvgreFuzzing", dependencies: ["NvgrePolicy", "NvgreWire"]),
        // Namespaced labs (topologies of hosts and VMs) for tests, the demo and benchmarks.
        .target(
            name: "NvgreLab",
            dependencies: ["NvgreControl", "NvgreDatapath", "NvgrePolicy", "NvgreStore", "NvgreWire", "CNvgre"]),
        .executableTarget(
            name: "nvgre",
            dependencies: [
                "NvgreControl", "NvgreGateway", "NvgrePolicy", "NvgreDatapath", "NvgreStore", "NvgreWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "FlyingFox", package: "FlyingFox"),
                .product(name: "Logging", package: "swift-log")
            ]
        ),
        .testTarget(name: "NvgreWireTests", dependencies: ["NvgreWire"]),
        .testTarget(name: "NvgrePolicyTests", dependencies: ["NvgrePolicy", "NvgreWire"]),
        // Every committed fuzzing input (fuzz/corpus), those that once crashed among them.
        .testTarget(name: "NvgreFuzzingTests", dependencies: ["NvgreFuzzing"]),
        .testTarget(
            name: "NvgreGatewayTests",
            dependencies: ["NvgreGateway", "NvgrePolicy", "NvgreDatapath", "NvgreWire", "CNvgre"]),
        .testTarget(
            name: "NvgreControlTests",
            dependencies: ["NvgreControl", "NvgrePolicy", "NvgreDatapath", "NvgreWire", "CNvgre"]),
        // Runs the built `nvgre` binary (the dependency makes `swift test` build it).
        .testTarget(
            name: "NvgreCLITests",
            dependencies: [
                "nvgre", "NvgreLab", "NvgreControl", "NvgrePolicy", "NvgreDatapath", "NvgreStore", "NvgreWire", "CNvgre"
            ]),
        .executableTarget(
            name: "nvgre-lab",
            dependencies: [
                "NvgreLab", "NvgreDatapath", "NvgreWire", "CNvgre",
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ]
        ),
        // The demo topology end to end: the built binaries, namespaces, tcpdump, tshark, scapy.
        .testTarget(
            name: "NvgreIntegrationTests",
            dependencies: [
                "nvgre", "NvgreLab", "NvgreControl", "NvgrePolicy", "NvgreDatapath", "NvgreUserspace",
                "NvgreUserspaceIO", "NvgreStore",
                "NvgreWire", "CNvgre"
            ],
            exclude: ["decoders"]),
        // `nvgre-lab bench --quick`: every figure of the benchmark report exists.
        .testTarget(name: "NvgreBenchTests", dependencies: ["nvgre-lab", "nvgre", "NvgreLab"]),
        .testTarget(
            name: "NvgreDatapathTests",
            dependencies: [
                "NvgreDatapath", "NvgreUserspace", "NvgreControl", "NvgrePolicy", "NvgreWire", "NvgreLab", "CNvgre"
            ])
    ],
    swiftLanguageModes: [.v5]
)
