import CNvgre
import Foundation
import NvgreDatapath

/// What `nvgre upgrade` did.
public struct UpgradeSummary: Sendable {
    public var abi: UInt32
    public var fromBuild: UInt32
    public var toBuild: UInt32
    /// The pinned links whose program was replaced.
    public var links: [String]
    public var seconds: Double
}

extension Instance {
    /// Replaces every program of the running instance with another build's, in place: the
    /// new programs are loaded on the instance's pinned maps (policy, counters, the
    /// gateway's flows all stay), then each pinned link is switched to its new program with
    /// `bpf_link_update`, which the kernel does atomically per interface: no frame meets an
    /// interface without a program. A build of another ABI (the maps' layout or meaning
    /// changed) is refused before anything is loaded; a switch that fails half-way switches
    /// the links already done back.
    public func upgrade(objectFile: String?) throws -> UpgradeSummary {
        try inWriterTurn {
            let started = monotonicSeconds()
            let target = try Datapath.objectIdentity(file: objectFile)
            let source = objectFile ?? "this nvgre's own programs"
            if target.abi != settings.programABI {
                throw ControlError(
                    "upgrade refused: \(source) uses ABI \(target.abi), instance \(name) runs ABI "
                        + "\(settings.programABI); \(Self.layoutDifferences(objectFile, pins: pinDirectory)) "
                        + "Nothing was changed.",
                    hint: "move the policy over: `nvgre save -o FILE`, `nvgre down`, `nvgre up` with the new programs, "
                        + "`nvgre apply FILE`")
            }
            var options = LoadOptions()
            options.objectFile = objectFile
            let dp = try Datapath(options: options, pinDirectory: pinDirectory)
            let links = try switchLinks(to: dp)
            // The program pins follow, so that ports attached from now on get the new build.
            for (program, pin) in Self.programPins {
                let path = "\(pinDirectory)/\(pin)"
                Files.remove(path)
                if bpf_obj_pin(dp.programFD(program), path) != 0 {
                    throw DatapathError("pin program \(program.rawValue) at \(path)", errno: errno)
                }
            }
            var now = settings
            now.programBuild = target.build
            try Self.write(now.text, to: "\(stateDirectory)/settings")
            return UpgradeSummary(
                abi: target.abi, fromBuild: settings.programBuild, toBuild: target.build, links: links,
                seconds: monotonicSeconds() - started)
        }
    }

    /// The program each pinned link runs, by the pin's name.
    func program(ofLinkPin pin: String) -> Program? {
        if pin.hasPrefix(Self.floodLinkPin("")) { return .fabricFlood }
        if pin.hasPrefix(Self.externalLinkPin("")) { return .fromExternal }
        if pin == Self.linkPin(settings.uplink) { return .fromFabric }
        if pin.hasPrefix(Self.linkPin("")) { return .fromVM }
        return nil
    }

    /// Points every pinned link at `dp`'s program of its kind; on a failure, those switched
    /// already go back to the program they ran. Returns the links' pin names.
    private func switchLinks(to dp: Datapath) throws -> [String] {
        let pins = ((try? FileManager.default.contentsOfDirectory(atPath: pinDirectory)) ?? []).sorted()
        var switched: [(link: Int32, old: Int32, pin: String)] = []
        defer {
            for s in switched {
                close(s.link)
                close(s.old)
            }
        }
        for pin in pins {
            guard let program = program(ofLinkPin: pin) else { continue }
            let link = bpf_obj_get("\(pinDirectory)/\(pin)")
            if link < 0 { throw DatapathError("open the pinned link \(pin)", errno: errno) }
            var info = bpf_link_info()
            var len = UInt32(MemoryLayout<bpf_link_info>.size)
            let old = bpf_obj_get_info_by_fd(link, &info, &len) == 0 ? bpf_prog_get_fd_by_id(info.prog_id) : -1
            let rc = old < 0 ? -errno : bpf_link_update(link, dp.programFD(program), nil)
            if rc != 0 {
                let e = DatapathError.fromReturn("switch the link \(pin) to the new \(program.rawValue)", rc)
                close(link)
                if old >= 0 { close(old) }
                for s in switched.reversed() { _ = bpf_link_update(s.link, s.old, nil) }
                throw ControlError("upgrade failed, every link runs the programs it ran before: \(e)")
            }
            switched.append((link, old, pin))
        }
        return switched.map(\.pin)
    }

    /// Which pinned maps the other object lays out differently (type, key, value, flags),
    /// as a sentence.
    static func layoutDifferences(_ objectFile: String?, pins: String) -> String {
        guard let wanted = try? Datapath.mapLayouts(objectFile: objectFile) else {
            return "its maps could not be read."
        }
        var differences: [String] = []
        for (name, want) in wanted.sorted(by: { $0.key < $1.key }) {
            guard let have = pinnedMapInfo("\(pins)/\(name)") else { continue }
            var what: [String] = []
            if have.key_size != want.keySize { what.append("key \(have.key_size) -> \(want.keySize) bytes") }
            if have.value_size != want.valueSize { what.append("value \(have.value_size) -> \(want.valueSize) bytes") }
            if have.type != want.type { what.append("type \(have.type) -> \(want.type)") }
            if !what.isEmpty { differences.append("\(name) (\(what.joined(separator: ", ")))") }
        }
        return differences.isEmpty
            ? "no map's layout differs, but an ABI change means their contents are read differently, and there is "
                + "no conversion from ABI to ABI."
            : "these maps are laid out differently: \(differences.joined(separator: "; ")), and there is no "
                + "conversion between ABIs."
    }
}
