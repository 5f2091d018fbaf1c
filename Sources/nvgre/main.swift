import ArgumentParser
import NvgreDatapath

/// The `nvgre` command. The full control plane (policy, apply/save, show, stats, trace)
/// arrives with its own issue; for now it can check that the data path loads here and run
/// the minimal exception consumer.
struct Nvgre: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvgre",
        abstract: "NVGRE network virtualization on XDP.",
        subcommands: [Check.self])
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the XDP programs into the kernel (verifier included) and unload them.")

    func run() throws {
        let dp = try Datapath()
        for p in Program.allCases { print("\(p.rawValue): loaded, fd \(dp.programFD(p))") }
    }
}

Nvgre.main()
