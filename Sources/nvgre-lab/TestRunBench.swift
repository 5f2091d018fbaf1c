import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// Program cost through BPF_PROG_TEST_RUN, in ns per packet, next to bare XDP_PASS and
/// XDP_TX programs measured in the same run. test-run with `repeat` re-runs on the buffer
/// the previous run modified (an encapsulated frame would be encapsulated again, an ARP
/// request would already be a reply), so every sample is a single run on a fresh copy of
/// the frame and the figure is the median of many samples. The kernel's per-run timer
/// overhead is in every row alike, bare XDP_PASS included.
struct TestRunBench {
    let samples: Int
    let section = "program cost (BPF_PROG_TEST_RUN, 64-byte frames)"

    func run(_ net: LabNetwork) throws -> [BenchRow] {
        let ns = try net.namespace("tr-h")
        let vms = try net.namespace("tr-v")
        let fabric = try net.namespace("tr-f")
        let paA: IPAddress = "198.18.0.1", paB: IPAddress = "198.18.0.2"
        let ulMAC: MACAddress = "02:18:00:00:00:01", peerMAC: MACAddress = "02:18:00:00:00:02"
        let vm1 = TwoHostLab.vm1, vm2 = TwoHostLab.vm2
        let remote = LabVM(mac: "02:00:00:00:01:03", ip4: "198.19.1.3", ip6: "2001:db8:19:1::3")
        let routedRemote = LabVM(mac: "02:00:00:00:02:03", ip4: "198.19.2.3", ip6: "2001:db8:19:2::3")
        let unknown: IPAddress = "198.19.1.77"
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
        let subnet5001 = nv_subnet(
            routingDomain: 1, statsSlot: 1, gatewayMAC: TwoHostLab.gatewayMAC, gateway4: "198.19.1.254")
        try dp.subnets.update(5001, subnet5001)
        try dp.subnets.update(
            5002, nv_subnet(routingDomain: 1, statsSlot: 2, gatewayMAC: "02:00:00:00:ff:02", gateway4: "198.19.2.254"))
        try dp.routes.update(
            nv_route_key(rdid: 1, prefix: "198.19.1.0", prefixLength: 24),
            nv_route_val(vsid: 5001, kind: NV_ROUTE_SUBNET))
        try dp.routes.update(
            nv_route_key(rdid: 1, prefix: "198.19.2.0", prefixLength: 24),
            nv_route_val(vsid: 5002, kind: NV_ROUTE_SUBNET))
        try dp.ports.update(p1, nv_port(vsid: 5001, mac: vm1.mac).inlined(subnet: subnet5001, addresses: [vm1.ip4]))
        try dp.portAddresses.update(nv_port_ca_key(ifindex: p1, ca: vm1.ip4), 1)
        try dp.lookups.update(
            nv_lookup_key(vsid: 5001, ca: vm1.ip4), nv_lookup_val(pa: paA, mac: vm1.mac, portIfindex: p1, statsSlot: 1))
        try dp.lookups.update(
            nv_lookup_key(vsid: 5001, ca: vm2.ip4), nv_lookup_val(pa: paA, mac: vm2.mac, portIfindex: p2, statsSlot: 1))
        try dp.lookups.update(
            nv_lookup_key(vsid: 5001, ca: remote.ip4), nv_lookup_val(pa: paB, mac: remote.mac, statsSlot: 1))
        try dp.lookups.update(
            nv_lookup_key(vsid: 5002, ca: routedRemote.ip4),
            nv_lookup_val(pa: paB, mac: routedRemote.mac, statsSlot: 2))
        // Head-end replication in 5001: the other port here and four other hosts.
        let floodPeers: [IPAddress] = [paB, "198.18.0.3", "198.18.0.4", "198.18.0.5"]
        for pa in floodPeers.dropFirst() {
            try net.ip(ns, "neigh replace \(pa) lladdr \(peerMAC) dev ul nud permanent")
        }
        try dp.floodLists.update(5001, nv_flood_list(peers: floodPeers, ports: [p1, p2]))

        func udp(_ s: LabVM, to dst: IPAddress, mac: MACAddress) -> [UInt8] {
            BenchFrames.udp(srcMAC: s.mac, dstMAC: mac, src: s.ip4, dst: dst)
        }
        let toRemote = udp(vm1, to: remote.ip4, mac: remote.mac)
        let toLocal = udp(vm1, to: vm2.ip4, mac: vm2.mac)
        let routed = udp(vm1, to: routedRemote.ip4, mac: TwoHostLab.gatewayMAC)
        let toUnknown = udp(vm1, to: unknown, mac: "02:00:00:00:01:77")
        let arpRequest = Ethernet.frame(
            dst: .broadcast, src: vm1.mac, type: .arp,
            payload: ARP.packet(
                op: 1, senderMAC: vm1.mac, senderIP: vm1.ip4, targetMAC: MACAddress([0, 0, 0, 0, 0, 0]),
                targetIP: remote.ip4))
        let arpFromRemote = NVGRE.encapsulate(
            inner: Ethernet.frame(
                dst: .broadcast, src: remote.mac, type: .arp,
                payload: ARP.packet(
                    op: 1, senderMAC: remote.mac, senderIP: remote.ip4, targetMAC: MACAddress([0, 0, 0, 0, 0, 0]),
                    targetIP: vm1.ip4)),
            vsid: 5001, hash: FlowHash(src: remote.ip4, dst: vm1.ip4, protocol: 0, sport: 0, dport: 0),
            outerSrcMAC: peerMAC, outerDstMAC: ulMAC, srcPA: paB, dstPA: paA)
        let broadcastFromRemote = NVGRE.encapsulate(
            inner: BenchFrames.udp(srcMAC: remote.mac, dstMAC: .broadcast, src: remote.ip4, dst: "255.255.255.255"),
            vsid: 5001, hash: FlowHash(src: remote.ip4, dst: vm1.ip4, protocol: 0, sport: 0, dport: 0),
            outerSrcMAC: peerMAC, outerDstMAC: ulMAC, srcPA: paB, dstPA: paA)
        let broadcast = BenchFrames.udp(srcMAC: vm1.mac, dstMAC: .broadcast, src: vm1.ip4, dst: "255.255.255.255")
        let fromRemote = NVGRE.encapsulate(
            inner: udp(remote, to: vm1.ip4, mac: vm1.mac), vsid: 5001,
            hash: FlowHash(src: remote.ip4, dst: vm1.ip4, protocol: 17, sport: 1000, dport: 2000),
            outerSrcMAC: peerMAC, outerDstMAC: ulMAC, srcPA: paB, dstPA: paA)

        // The agent's next hop toward B (nexthops), as a running agent keeps it; the row
        // "FIB asked" runs without it, as with no agent.
        let nextHops = try NetworkNamespace.run(in: ns) { try NextHopKeeper(maps: dp.maps) }
        try NetworkNamespace.run(in: ns) { _ = nextHops.sync([paB]) }
        let fibRow = "encap, FIB asked per frame (no agent's next hop)"

        // The from-VM rows run tc (VM ports); they compare against the bare tc program.
        var rows: [(String, Program, [UInt8], UInt32, FrameAction)] = [
            ("bare XDP_PASS", .barePass, toRemote, p1, .pass),
            ("bare XDP_TX (MAC swap)", .bareTX, toRemote, p1, .reply),
            ("bare tc (TC_ACT_OK)", .bareTCPass, toRemote, p1, .pass),
            ("encap (from VM, IPv4 PA)", .fromVM, toRemote, p1, .redirect),
            (fibRow, .fromVM, toRemote, p1, .redirect),
            ("decap (from fabric)", .fromFabric, fromRemote, ul, .redirect),
            ("local switch (from VM)", .fromVM, toLocal, p1, .redirect),
            ("routed 5001->5002, encap", .fromVM, routed, p1, .redirect),
            ("ARP reply (from VM)", .fromVM, arpRequest, p1, .redirect),
            ("ARP reply (from the fabric, encapsulated back)", .fromFabric, arpFromRemote, ul, .reply),
            ("exception to userspace (no record)", .fromVM, toUnknown, p1, .drop),
            ("broadcast from VM, 5 copies (1 port, 4 PAs; tc clones)", .fromVM, broadcast, p1, .drop),
            ("broadcast from the fabric, decapsulated up to tc", .fromFabric, broadcastFromRemote, ul, .pass)
        ]
        // Where the time goes: bench-only builds of the same programs, each leaving one part
        // out (bpf/ablation.h), on this run's policy maps.
        var loads = [Datapath](repeating: dp, count: rows.count)
        for (name, n, program, frame, ifindex) in Self.ablations(fromRemote, ul, toRemote, p1) {
            var options = LoadOptions()
            options.objectFile = Self.ablationObject(n)
            options.policyMapsFrom = dp.maps
            loads.append(try Datapath(options: options))
            rows.append((name, program, frame, ifindex, .redirect))
        }
        // The exception row fills the ring: drain it between blocks, as an agent would.
        let channel = try ExceptionChannel(datapath: dp)
        // Rows take turns in blocks of 1,000 runs (after a warm-up block each), so drift over
        // time touches every row alike, while each block runs warm, as a NAPI batch would.
        let block = 1000
        var samplesByRow = [[UInt32]](repeating: [], count: rows.count)
        try NetworkNamespace.run(in: ns) {
            for round in 0...(max(samples, block) / block) {
                for (i, row) in rows.enumerated() {
                    if row.0 == fibRow { nextHops.endLease() } else { try nextHops.renewLease(seconds: 60) }
                    for _ in 0..<block {
                        let r = try loads[i].testRun(row.1, frame: row.2, ingressIfindex: row.3)
                        guard r.action == row.4 else {
                            throw ShellErrorText("\(row.0): \(r.action) (verdict \(r.verdict)), expected \(row.4)")
                        }
                        if round > 0 { samplesByRow[i].append(r.durationNanoseconds) }
                    }
                    while try channel.poll(timeoutMilliseconds: 0) > 0 {}
                }
            }
        }
        // Every row must have done what it is named for: no drop of any reason, and the
        // exceptions all reached the ring.
        let drops = nv_drop_reason.allCases.reduce(UInt64(0)) { sum, reason in
            sum + dp.maps.dropCount(reason).packets
        }
        guard drops == 0 else {
            throw ShellErrorText(
                "the program-cost runs dropped \(drops) frames; the rows would not measure what they name")
        }
        let exceptions = channel.received.values.reduce(0, +)
        let exceptionRow = rows.firstIndex { $0.0.hasPrefix("exception") }!
        guard exceptions == samplesByRow[exceptionRow].count + block else {
            throw ShellErrorText(
                "\(exceptions) exceptions reached the ring, expected \(samplesByRow[exceptionRow].count + block)")
        }
        // What replication in userspace would pay per copy on top of the exception above: one
        // send through a packet socket (the agent's way out), timed in batches of 1,000.
        let sendNs = try NetworkNamespace.run(in: ns) { () throws -> UInt32 in
            let socket = try PacketSocket()
            var batches: [UInt32] = []
            for _ in 0..<max(3, samples / block) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<block { try socket.send(broadcast, ifindex: p2) }
                batches.append(UInt32((DispatchTime.now().uptimeNanoseconds - t0) / UInt64(block)))
            }
            return batches.sorted()[batches.count / 2]
        }
        return rows.enumerated().map { i, row in
            let sorted = samplesByRow[i].sorted()
            return .cost(
                section, row.0, ns: Double(sorted[sorted.count / 2]),
                details: [
                    "samples": Double(sorted.count), "p10": Double(sorted[sorted.count / 10]),
                    "p90": Double(sorted[sorted.count * 9 / 10])
                ])
        } + [.cost(section, "userspace: one packet-socket send (each copy, after the exception)", ns: Double(sendNs))]
    }

    static let decapWithoutLookups = "decap without lookups (parse, check, decapsulate, redirect)"
    static let decapDestinationOnly = "decap with the destination record only"
    static let encapWithoutAdjustRoom = "encap without bpf_skb_adjust_room (headers over the frame)"
    static let encapUnencapsulated = "encap's lookups and next hop, sent unencapsulated"

    /// The ablation rows: name, NV_ABLATE of the build (bpf/ablation.h), program, frame and
    /// ingress, on the decap and encap rows' own frames.
    static func ablations(_ fromRemote: [UInt8], _ uplink: UInt32, _ toRemote: [UInt8], _ port: UInt32)
        -> [(String, Int, Program, [UInt8], UInt32)]
    {
        [
            (decapWithoutLookups, Int(NV_ABLATE_DECAP_NO_LOOKUPS), .fromFabric, fromRemote, uplink),
            (decapDestinationOnly, Int(NV_ABLATE_DECAP_DST_ONLY), .fromFabric, fromRemote, uplink),
            (encapWithoutAdjustRoom, Int(NV_ABLATE_ENCAP_NO_ADJUST), .fromVM, toRemote, port),
            (encapUnencapsulated, Int(NV_ABLATE_ENCAP_NONE), .fromVM, toRemote, port)
        ]
    }

    /// make bpf writes each build next to the embedded object.
    static func ablationObject(_ n: Int) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CNvgre/generated/nvgre-ablate-\(n).bpf.o").path
    }
}
