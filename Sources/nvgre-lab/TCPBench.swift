import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// `make bench` rows of what tenants feel: TCP between two VMs on two hosts (iperf3, one
/// and four streams), ours on the demo topology against the kernel's vxlan on the same
/// underlay (LabFabric: a switch whose ports behave like cables, so no 64 KiB GSO frame or
/// unfinished checksum crosses it), with the VMs at their default settings (checksum and
/// segmentation offload on), a 1500-byte MTU on a 1600-byte underlay, and one queue per
/// core on every veth. Each row is the median of five trials, the overlays taking turns.
/// A transfer that does not complete counts as 0 (details say so).
struct TCPBench {
    let quick: Bool
    var seconds: Int { quick ? 1 : 4 }
    var streams: [Int] { [1, 4] }

    /// Every veth of both topologies gets one queue per core, as a NIC has.
    static let queues = min(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    static let section = "TCP between VMs on two hosts (iperf3; VMs at defaults, 1500 MTU, the same underlay switch)"
    static func vxlanRow(_ n: Int) -> String { "kernel vxlan, VMs at defaults, \(n) stream\(n == 1 ? "" : "s")" }
    static func oursRow(_ n: Int) -> String { "nvgre, VMs at defaults, \(n) stream\(n == 1 ? "" : "s")" }

    /// Trials per row (1 quick); the rows take turns, so drift touches both overlays alike.
    var trials: Int { quick ? 1 : 5 }

    func run(_ net: LabNetwork) throws -> [BenchRow] {
        let vx = try VXLANPair(net)
        let lab = DemoLab(net: LabNetwork(tag: "tcpbench"))
        lab.queues = Self.queues
        try lab.build()
        defer { lab.stop() }
        try lab.start()
        let (a, b) = (DemoPlan.vm(DemoPlan.a, "red1"), DemoPlan.vm(DemoPlan.b, "red1"))
        var runs: [String: [BenchRow]] = [:]
        for _ in 0..<trials {
            for n in streams {
                runs[Self.vxlanRow(n), default: []].append(
                    try measure(Self.vxlanRow(n), client: vx.vmA, server: vx.vmB, address: VXLANPair.vmB, streams: n))
                runs[Self.oursRow(n), default: []].append(
                    try measure(Self.oursRow(n), client: lab.ns(a), server: lab.ns(b), address: b.ip4, streams: n))
            }
        }
        let names = streams.map(Self.vxlanRow) + streams.map(Self.oursRow)
        return names.map { name in
            // The median trial, with every trial's figure in its details.
            let sorted = runs[name, default: []].sorted { ($0.value ?? 0) < ($1.value ?? 0) }
            var row = sorted[sorted.count / 2]
            for (i, r) in runs[name, default: []].enumerated() { row.details["trial\(i + 1)Gbps"] = r.value ?? 0 }
            return row
        }
    }

    /// iperf3 from `client` to a one-off server in `server`: received Gbit/s.
    private func measure(_ name: String, client: String, server: String, address: IPAddress, streams: Int) throws
        -> BenchRow
    {
        let log = NSTemporaryDirectory() + "iperf3-server-\(getpid()).log"
        unlink(log)
        defer { unlink(log) }
        let pid = try Spawn.start(
            ["/usr/sbin/ip", "netns", "exec", server, "iperf3", "-s", "-1", "-p", "5210", "--forceflush"], output: log,
            detached: false)
        defer { Spawn.stop(pid) }
        try Spawn.waitForOutput(log, containing: "Server listening", what: "iperf3's server")
        let r = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", client, "timeout", "\(seconds + 10)", "iperf3", "-c", "\(address)",
            "-p", "5210", "-t", "\(seconds)", "-P", "\(streams)", "-J", "--connect-timeout", "3000"
        ])
        let json = (try? JSONSerialization.jsonObject(with: Data(r.output.utf8))) as? [String: Any]
        let end = json?["end"] as? [String: Any]
        let received = (end?["sum_received"] as? [String: Any])?["bits_per_second"] as? Double ?? 0
        let sent = (end?["sum_sent"] as? [String: Any])?["bits_per_second"] as? Double ?? 0
        let retransmits = (end?["sum_sent"] as? [String: Any])?["retransmits"] as? Double ?? 0
        let failed = r.status != 0 || received == 0
        return .figure(
            Self.section, name, received / 1e9, "Gbit/s",
            details: [
                "streams": Double(streams), "seconds": Double(seconds), "sentGbps": sent / 1e9,
                "retransmits": retransmits, "failed": failed ? 1 : 0
            ])
    }
}

/// Two hosts on the demo's underlay (LabFabric: a switch, ports that behave like cables),
/// each bridging a veth VM to a vxlan device (VNI 5001) toward the other: the kernel's
/// overlay, as a user would set it up instead of ours.
struct VXLANPair {
    static let vmA: IPAddress = "198.19.1.1", vmB: IPAddress = "198.19.1.2"
    let vmA: String, vmB: String

    init(_ net: LabNetwork) throws {
        let hosts = [try net.namespace("tvx-a"), try net.namespace("tvx-b")]
        let vms = [try net.namespace("tvx-a-vm"), try net.namespace("tvx-b-vm")]
        let pas: [IPAddress] = ["198.18.0.1", "198.18.0.2"]
        // The demo's underlay: the same switch, ports and cable settings.
        let fabric = try LabFabric(net, name: "tvx-fabric", mtu: 1600, queues: TCPBench.queues)
        for i in 0..<2 {
            let (h, vm) = (hosts[i], vms[i])
            try fabric.connect(h, port: "to-\(i)")
            try net.ip(h, "addr add \(pas[i])/24 dev ul")
            try net.ip(h, "link add vx0 type vxlan id 5001 local \(pas[i]) remote \(pas[1 - i]) dstport 4789 dev ul")
            try net.ip(h, "link add br0 type bridge")
            // Bridged frames skip iptables, as on a tuned overlay host (and as in the live rows).
            try LabFabric.bridgesSkipIptables(net, in: h)
            try net.veth("port", in: h, "eth0", in: vm, queues: TCPBench.queues)
            try net.ip(h, "link set vx0 master br0")
            try net.ip(h, "link set port master br0")
            for link in ["vx0", "br0", "port"] { try net.ip(h, "link set \(link) up") }
            try net.ip(vm, "addr add \(i == 0 ? Self.vmA : Self.vmB)/24 dev eth0")
        }
        (vmA, vmB) = (vms[0], vms[1])
    }
}
