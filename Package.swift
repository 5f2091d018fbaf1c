// swift-tools-version:6.0
import PackageDescription

// Layers, dependencies pointing down only:
//   nvgre (CLI), nvgre-lab (demo, benchmarks), NvgreLab (namespaced topologies)
//     -> NvgreDatapath (libbpf: load, attach, maps, test-run, exception ring)
//     -> NvgrePolicy (the desired state and its validation; programmed into maps next)
//     -> NvgreWire (pure packet codecs)
// CNvgre is the one thin C target: the shared ABI header, the generated libbpf skeleton
// (made by `make`), and the few calls Swift cannot make directly (setns, libbpf logging).
let package = Package(
    name: "nvgre-xdp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nvgre", targets: ["nvgre"]),
        .executable(name: "nvgre-lab", targets: ["nvgre-lab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
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
        // Namespaced labs (topologies of hosts and VMs) for tests, the demo and benchmarks.
        .target(name: "NvgreLab", dependencies: ["NvgreDatapath", "NvgreWire", "CNvgre"]),
        .executableTarget(
            name: "nvgre",
            dependencies: [
                "NvgreDatapath", "NvgreWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "NvgreWireTests", dependencies: ["NvgreWire"]),
        .testTarget(name: "NvgrePolicyTests", dependencies: ["NvgrePolicy", "NvgreWire"]),
        .executableTarget(
            name: "nvgre-lab",
            dependencies: [
                "NvgreLab", "NvgreDatapath", "NvgreWire", "CNvgre",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "NvgreDatapathTests", dependencies: ["NvgreDatapath", "NvgreWire", "NvgreLab", "CNvgre"]),
    ],
    swiftLanguageModes: [.v5]
)
