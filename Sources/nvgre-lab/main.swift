import ArgumentParser

/// Labs on network namespaces: the demo and the measurements. Everything it creates lives in
/// namespaces named with NVGRE_TEST_PREFIX, removed on exit (the make targets add a trap).
struct NvgreLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvgre-lab",
        abstract: "Demo and benchmarks of nvgre-xdp on network namespaces.",
        subcommands: [Demo.self, Bench.self])
}

NvgreLabCommand.main()
