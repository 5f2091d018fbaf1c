import Foundation
import NvgreLab
import NvgreWire
import Testing

/// A demo topology brought up through the CLI for one test: its own namespaces (prefix of
/// the run plus `tag`), instances and agents, all removed when the lab goes.
/// With `store`, the tables go to a three-member etcd cluster the lab keeps (and removes).
func startedLab(
    _ tag: String, underlay: IPFamily = .v4, userspace: Set<String> = [], store: Bool = false
) throws -> DemoLab {
    let lab = DemoLab(net: LabNetwork(tag: tag), underlay: underlay)
    lab.userspaceHosts = userspace
    if store { lab.store = try EtcdCluster(prefix: lab.net.prefix) }
    try lab.build()
    try lab.start()
    return lab
}

let (hostA, hostB, hostG) = (DemoPlan.a, DemoPlan.b, DemoPlan.g)
let (redA, redB) = (DemoPlan.vm(hostA, "red1"), DemoPlan.vm(hostB, "red1"))
let (red2A, red2B) = (DemoPlan.vm(hostA, "red2"), DemoPlan.vm(hostB, "red2"))
let (blueA, blueB) = (DemoPlan.vm(hostA, "blue1"), DemoPlan.vm(hostB, "blue1"))

extension DemoLab {
    /// `nvgre -j stats` of a host: drop and exception packet counts by reason name, and the
    /// per-VSID counters.
    /// Waits until a userspace host's agent has written what it counted (twice a second);
    /// an XDP host's counters are the maps, current at once.
    func settle(_ h: DemoHost) {
        if userspaceHosts.contains(h.name) { usleep(700_000) }
    }

    func counters(_ h: DemoHost) throws -> (
        drops: [String: Int], exceptions: [String: Int], vsids: [UInt32: [String: Int]]
    ) {
        let r = try cli(h, ["-j", "stats"])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
        else {
            throw ShellErrorText("nvgre stats on \(h.name) failed: \(r.output)")
        }
        func packets(_ o: Any?) -> [String: Int] {
            ((o as? [String: Any]) ?? [:]).compactMapValues { ($0 as? [String: Any])?["packets"] as? Int }
        }
        var vsids: [UInt32: [String: Int]] = [:]
        for v in (json["vsids"] as? [[String: Any]]) ?? [] {
            guard let id = v["vsid"] as? Int else { continue }
            vsids[UInt32(id)] = packets(v.filter { $0.key != "vsid" })
        }
        return (packets(json["drops"]), packets(json["exceptions"]), vsids)
    }

    /// `nvgre -j stats` of G: the gateway section (packet counts, and the flows in the maps).
    func gatewayCounters() throws -> [String: Int] {
        let r = try cli(DemoPlan.g, ["-j", "stats"])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
            let gw = json["gateway"] as? [String: Any]
        else { throw ShellErrorText("nvgre stats on G: \(r.output)") }
        var out: [String: Int] = [:]
        for (k, v) in gw {
            if let n = v as? Int { out[k] = n } else if let p = (v as? [String: Any])?["packets"] as? Int { out[k] = p }
        }
        return out
    }
}

/// Where the Python decoders live (next to this file).
let decodersDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("decoders")
    .path

/// The distribution's Python, which has scapy (python3-scapy), whatever else is on PATH.
let systemPython = "/usr/bin/python3"
