import ArgumentParser
import Foundation
import NvgreControl

/// `nvgre upgrade`: new programs for a running instance without stopping it.
struct Upgrade: ChangesInstance {
    static let configuration = CommandConfiguration(
        abstract: "Replace the programs of a running instance in place, keeping its maps, counters and flows.",
        discussion:
            "The new programs are loaded on the instance's pinned maps, then every attached interface is switched "
            + "to them with bpf_link_update: forwarding never stops. By default the programs are this nvgre's own "
            + "(run it from the newer binary); --object takes another build of nvgre.bpf.c. A build of another "
            + "ABI version is refused, naming the maps whose layout differs, and nothing is changed.")

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("A built nvgre.bpf.c to run instead of the embedded programs.", valueName: "file"))
    var object: String?

    func execute() throws {
        if let object, !FileManager.default.isReadableFile(atPath: object) {
            throw fieldError("--object", object, "a readable BPF object file (a build of bpf/nvgre.bpf.c)")
        }
        if try global.userspaceInstance() != nil {
            throw ControlError(
                "instance \(global.instance) runs the userspace data path: it has no programs to replace",
                hint: "restart its agent (`nvgre agent`) with the new binary")
        }
        let s = try global.openInstance().upgrade(objectFile: object)
        if global.json {
            print(
                JSON.object([
                    ("instance", .string(global.instance)), ("abi", .number(UInt64(s.abi))),
                    ("fromBuild", .number(UInt64(s.fromBuild))), ("toBuild", .number(UInt64(s.toBuild))),
                    ("links", .array(s.links.map { .string($0) })), ("milliseconds", .number(UInt64(s.seconds * 1000)))
                ]).rendered())
        } else {
            print(
                "instance \(global.instance) upgraded from build \(s.fromBuild) to build \(s.toBuild) (ABI \(s.abi)) in "
                    + String(format: "%.2f s", s.seconds) + ": \(s.links.count) links switched ("
                    + s.links.joined(separator: ", ") + ")")
        }
    }
}
