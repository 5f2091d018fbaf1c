import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// Host A as Open vSwitch's userspace datapath (Debian's openvswitch-switch, netdev bridges
/// reading port1 and ul over AF_PACKET) doing NVGRE as GRE with a key, on the same wiring as
/// the other live rows: vm1 behind port1 in VSID 5001, B's PA on the underlay behind ul (its
/// MAC set in OVS's tunnel neighbor table, as the other hosts have it permanent). The bare
/// XDP_PASS on port1 and ul is there for the generator's XDP frames, as on the userspace host.
final class OVSBenchHost {
    let ns: (h: String, v: String, f: String)
    let bridgeMAC: MACAddress
    private let ovs: OVSHost

    init(_ net: LabNetwork, queues: Int) throws {
        let h = try BenchPlan.quietNamespace(net, "ovs-h"), v = try BenchPlan.quietNamespace(net, "ovs-v"),
            f = try BenchPlan.quietNamespace(net, "ovs-f")
        ns = (h, v, f)
        try net.veth("port1", in: h, "eth0", in: v, macB: BenchPlan.vm1.mac.description, queues: queues)
        try net.veth("ul", in: h, "fab", in: f, macB: BenchPlan.peerMAC.description, queues: queues)
        let bare = try Datapath()
        try NetworkNamespace.run(in: h) {
            for i in ["port1", "ul"] {
                try attachXDPToInterface(
                    programFD: bare.programFD(.barePass), name: "nv_bare_pass", ifindex: try interfaceIndex(i))
            }
        }
        ovs = try OVSHost(
            net, in: h, vmNamespace: v, vmPort: "port1", uplink: "ul", pa: BenchPlan.paA, prefixLength: 24, mtu: 1500,
            vm: BenchPlan.vm1, vsid: 5001, remotes: [BenchPlan.paB], keys: .flow)
        try ovs.appctl("tnl/arp/set br-phy \(BenchPlan.paB) \(BenchPlan.peerMAC)")
        bridgeMAC = try net.mac("br-phy", in: h)
    }

    func down() { ovs.stop() }

    var encap: LiveBench.Path {
        .init(
            name: "Open vSwitch userspace encap path", frame: BenchFrames.outbound, from: (ns.v, "eth0"),
            sink: (ns.f, "fab"), processes: ovs.vswitchd.map { [$0] } ?? [])
    }

    var decap: LiveBench.Path {
        .init(
            name: "Open vSwitch userspace decap path", frame: BenchPlan.fromB(to: bridgeMAC), from: (ns.f, "fab"),
            sink: (ns.v, "eth0"), processes: ovs.vswitchd.map { [$0] } ?? [])
    }
}
