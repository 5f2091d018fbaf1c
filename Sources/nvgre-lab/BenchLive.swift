import ArgumentParser
import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// Live traffic through veth pairs (first step of `make bench`): the generator sends 64-byte
/// frames into a path, the sink at its end counts them; Mpps = counted / wall time. Rows:
/// the limit (a bare XDP_TX reflector on a veth pair), our encap path and our decap path
/// through an instance applied with the CLI. One core: generator, path and sink all run
/// on the generator's CPU (a veth hands XDP frames to its peer's NAPI on the same CPU).
struct BenchLive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-live",
        abstract: "Mpps of live 64-byte frames: bare XDP_TX reflector, encap path, decap path (one core).")

    @Option(help: "Frames per row.") var frames: UInt32 = 5_000_000

    func run() throws {
        let live = try LiveTraffic()
        let bare = try Datapath()
        let net = LabNetwork(tag: "live")
        let vm1 = TwoHostLab.vm1, vm2 = TwoHostLab.vm2
        let paA: IPAddress = "198.18.0.1", paB: IPAddress = "198.18.0.2"

        // The limit: generator -> g0 ==veth==> r0 (XDP_TX) ==> g0 (sink).
        let gen = try net.namespace("gen"), refl = try net.namespace("refl")
        try net.veth("g0", in: gen, "r0", in: refl)
        try NetworkNamespace.run(in: refl) { try attachXDPToInterface(programFD: bare.programFD(.bareTX), name: "nv_bare_tx", ifindex: try interfaceIndex("r0")) }
        let frame = Ethernet.frame(dst: vm2.mac, src: vm1.mac, type: .ipv4, payload: IPPacket.build(
            src: vm1.ip4, dst: vm2.ip4, proto: IPProtocol.udp.rawValue,
            payload: UDP.datagram(src: vm1.ip4, dst: vm2.ip4, sport: 1000, dport: 2000, payload: [UInt8](repeating: 0, count: 18))))
        let reflector = try measure(live, frame: frame, from: gen, out: "g0", sinkIn: gen, sinkOn: "g0")

        // Host H with an instance: port1 <-> eth0 in V (the VM), ul <-> fab in F (the fabric).
        let h = try net.namespace("h"), v = try net.namespace("v"), f = try net.namespace("f")
        let peerMAC: MACAddress = "02:18:00:00:00:02"
        try net.veth("port1", in: h, "eth0", in: v, macB: vm1.mac.description)
        try net.veth("ul", in: h, "fab", in: f, macB: peerMAC.description)
        try net.ip(h, "addr add \(paA)/24 dev ul")
        try net.ip(h, "neigh replace \(paB) lladdr \(peerMAC) dev ul nud permanent")
        try net.setForwarding(true, in: h, uplink: "ul")
        let policy = NSTemporaryDirectory() + "\(net.prefix)-live.yaml"
        try """
        routingDomains: [{id: 1, name: red}]
        subnets: [{vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/24], gateways: [198.19.1.254], gatewayMAC: 02:00:00:00:ff:01}]
        lookupRecords:
          - {vsid: 5001, customerAddress: \(vm1.ip4), providerAddress: \(paA), mac: \(vm1.mac)}
          - {vsid: 5001, customerAddress: \(vm2.ip4), providerAddress: \(paB), mac: \(vm2.mac)}
        providerAddresses: [{address: \(paA), interface: ul}]
        ports: [{interface: port1, vsid: 5001, mac: \(vm1.mac), addresses: [\(vm1.ip4)]}]
        """.write(toFile: policy, atomically: false, encoding: .utf8)
        defer { unlink(policy) }
        let nvgre = builtBinary("nvgre")
        let instance = net.prefix
        let up = try Spawn.run([nvgre, "-n", h, "--instance", instance, "up", "--uplink", "ul", "--policy", policy])
        guard up.status == 0 else { throw ShellErrorText("nvgre up failed: \(up.output)") }
        defer { _ = try? Spawn.run([nvgre, "--instance", instance, "down"]) }

        let encap = try measure(live, frame: frame, from: v, out: "eth0", sinkIn: f, sinkOn: "fab")
        let inner = Ethernet.frame(dst: vm1.mac, src: vm2.mac, type: .ipv4, payload: IPPacket.build(
            src: vm2.ip4, dst: vm1.ip4, proto: IPProtocol.udp.rawValue,
            payload: UDP.datagram(src: vm2.ip4, dst: vm1.ip4, sport: 2000, dport: 1000, payload: [UInt8](repeating: 0, count: 18))))
        let ulMAC = try net.mac("ul", in: h)
        let gre = NVGRE.greHeader(vsid: 5001, flowID: 1) + inner
        let outer = Ethernet.header(dst: ulMAC, src: peerMAC, type: EtherType.ipv4.rawValue)
            + IPv4Header(src: paB, dst: paA, proto: IPProtocol.gre.rawValue, payloadLength: gre.count).bytes + gre
        let decap = try measure(live, frame: outer, from: f, out: "fab", sinkIn: v, sinkOn: "eth0")

        print("row".padding(toLength: 24, withPad: " ", startingAt: 0) + "   Mpps   ns/pkt  delivered/sent  ratio to reflector")
        for (name, r) in [("bare XDP_TX reflector", reflector), ("encap path", encap), ("decap path", decap)] {
            print(name.padding(toLength: 24, withPad: " ", startingAt: 0)
                  + String(format: "%7.2f %8.1f %15@ %8.2f", r.mpps, 1000 / r.mpps, "\(r.delivered)/\(frames)" as NSString, r.mpps / reflector.mpps))
        }
    }

    struct Rate { let mpps: Double; let delivered: UInt64 }

    /// Sends `frames` copies of `frame` out of `out` in namespace `from`; the sink program on
    /// `sinkOn` in `sinkIn` counts arrivals.
    func measure(_ live: LiveTraffic, frame: [UInt8], from: String, out: String, sinkIn: String, sinkOn: String) throws -> Rate {
        try NetworkNamespace.run(in: sinkIn) {
            try attachXDPToInterface(programFD: live.sinkProgramFD, name: "nv_bench_sink", ifindex: try interfaceIndex(sinkOn))
        }
        try live.resetSink()
        let seconds = try NetworkNamespace.run(in: from) { try live.send(frame, ifindex: try interfaceIndex(out), count: frames) }
        let delivered = live.sinkCount
        return Rate(mpps: Double(delivered) / seconds / 1e6, delivered: delivered)
    }
}
