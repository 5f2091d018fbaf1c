import ArgumentParser
import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// Program cost through BPF_PROG_TEST_RUN, in ns per packet, next to bare programs measured
/// in the same run. test-run with `repeat` re-runs on the buffer the previous run modified
/// (an encapsulated frame would be encapsulated again), so every sample here is a single
/// run on a fresh copy of the frame, and the figure is the median of many samples. The
/// kernel's per-run timer overhead is in every row alike, bare XDP_PASS included.
struct BenchTestRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-testrun",
        abstract: "Measure encap/decap/local cost per packet with BPF_PROG_TEST_RUN against bare programs.")

    @Option(help: "Samples per row.")
    var samples = 20000

    @Option(help: "Write the figures as JSON to this file.")
    var json: String?

    func run() throws {
        let net = LabNetwork(tag: "bench")
        let ns = try net.namespace("h")
        let vms = try net.namespace("v")
        let fabric = try net.namespace("f")
        let paA: IPAddress = "198.18.0.1", paB: IPAddress = "198.18.0.2"
        let ulMAC: MACAddress = "02:18:00:00:00:01", peerMAC: MACAddress = "02:18:00:00:00:02"
        let vm1 = TwoHostLab.vm1, vm2 = TwoHostLab.vm2
        let remote = LabVM(mac: "02:00:00:00:01:03", ip4: "198.19.1.3", ip6: "2001:db8:19:1::3")
        try net.veth("port1", in: ns, "vm1", in: vms)
        try net.veth("port2", in: ns, "vm2", in: vms)
        try net.veth("ul", in: ns, "ulpeer", in: fabric, macA: ulMAC.description)
        try net.ip(ns, "addr add \(paA)/24 dev ul")
        try net.ip(ns, "neigh replace \(paB) lladdr \(peerMAC) dev ul nud permanent")
        try net.setForwarding(true, in: ns, uplink: "ul")

        let dp = try Datapath()  // default sizes: room for 1,048,576 lookup records
        let (p1, p2, ul) = try NetworkNamespace.run(in: ns) {
            (try interfaceIndex("port1"), try interfaceIndex("port2"), try interfaceIndex("ul"))
        }
        try dp.config.update(0, nv_config(uplinkIfindex: ul, pa4: paA, pa6: nil))
        try dp.localPAs.update(nv_pa_key(paA), 1)
        try dp.subnets.update(5001, nv_subnet(routingDomain: 1, statsSlot: 1, gatewayMAC: TwoHostLab.gatewayMAC))
        try dp.ports.update(p1, nv_port(vsid: 5001, mac: vm1.mac))
        try dp.portAddresses.update(nv_port_ca_key(ifindex: p1, ca: vm1.ip4), 1)
        try dp.lookups.update(nv_lookup_key(vsid: 5001, ca: vm1.ip4), nv_lookup_val(pa: paA, mac: vm1.mac, portIfindex: p1))
        try dp.lookups.update(nv_lookup_key(vsid: 5001, ca: vm2.ip4), nv_lookup_val(pa: paA, mac: vm2.mac, portIfindex: p2))
        try dp.lookups.update(nv_lookup_key(vsid: 5001, ca: remote.ip4), nv_lookup_val(pa: paB, mac: remote.mac))

        // 64-byte customer frames (UDP, 18 bytes of payload).
        func udp(_ s: LabVM, _ d: LabVM) -> [UInt8] {
            Ethernet.frame(dst: d.mac, src: s.mac, type: .ipv4,
                           payload: IPPacket.build(src: s.ip4, dst: d.ip4, proto: 17,
                                                   payload: UDP.datagram(src: s.ip4, dst: d.ip4, sport: 1000, dport: 2000,
                                                                         payload: [UInt8](repeating: 0, count: 18))))
        }
        let toRemote = udp(vm1, remote), toLocal = udp(vm1, vm2)
        let fromRemote = NVGRE.encapsulate(inner: udp(remote, vm1), vsid: 5001,
                                           hash: FlowHash(src: remote.ip4, dst: vm1.ip4, protocol: 17, sport: 1000, dport: 2000),
                                           outerSrcMAC: peerMAC, outerDstMAC: ulMAC, srcPA: paB, dstPA: paA)

        let rows: [(String, Program, [UInt8], UInt32, UInt32)] = [
            ("bare XDP_PASS", .barePass, toRemote, p1, XDP_PASS.rawValue),
            ("bare XDP_TX (MAC swap)", .bareTX, toRemote, p1, XDP_TX.rawValue),
            ("encap (from VM, IPv4 PA)", .fromVM, toRemote, p1, XDP_REDIRECT.rawValue),
            ("decap (from fabric)", .fromFabric, fromRemote, ul, XDP_REDIRECT.rawValue),
            ("local switch (from VM)", .fromVM, toLocal, p1, XDP_REDIRECT.rawValue),
        ]
        // Rows take turns in blocks of 1,000 runs (after a warm-up block each), so drift over
        // time touches every row alike, while each block runs warm, as a NAPI batch would.
        let block = 1000
        var samplesByRow = [[UInt32]](repeating: [], count: rows.count)
        try NetworkNamespace.run(in: ns) {
            for round in 0...(max(samples, block) / block) {
                for (i, row) in rows.enumerated() {
                    for _ in 0..<block {
                        let r = try dp.testRun(row.1, frame: row.2, ingressIfindex: row.3)
                        guard r.verdict == row.4 else {
                            throw ValidationError("\(row.0): verdict \(r.verdict), expected \(row.4)")
                        }
                        if round > 0 { samplesByRow[i].append(r.durationNanoseconds) }
                    }
                }
            }
        }
        let results: [(String, Double)] = rows.enumerated().map { i, row in
            let sorted = samplesByRow[i].sorted()
            return (row.0, Double(sorted[sorted.count / 2]))
        }
        let pass = results[0].1
        print("BPF_PROG_TEST_RUN, 64-byte frames, median of \(samples) single runs per row, rows in turns of 1000 (same run, same CPU):")
        print("  program                          ns/packet   vs bare XDP_PASS")
        for (name, v) in results {
            print("  \(name.padding(toLength: 32, withPad: " ", startingAt: 0)) \(String(format: "%8.0f", v))   \(String(format: "%5.2fx", v / pass))")
        }
        if let path = json {
            let obj = Dictionary(uniqueKeysWithValues: results.map { ($0.0, $0.1) })
            let data = try JSONSerialization.data(withJSONObject: ["testrun_ns_per_packet": obj, "samples": samples],
                                                  options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: path))
        }
    }
}
