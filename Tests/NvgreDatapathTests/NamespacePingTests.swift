import CNvgre
import Foundation
import NvgreDatapath
import NvgreWire
import Testing

/// One host of the two-host test: its namespace, data path and attachments.
final class PingHost {
    let ns: String
    let vmNS: String
    let dp: Datapath
    var links: [XDPLink] = []
    var handler: HostExceptionHandler!
    var channel: ExceptionChannel!

    init(ns: String, vmNS: String) throws {
        self.ns = ns
        self.vmNS = vmNS
        dp = try Datapath(options: { var o = LoadOptions(); o.maxLookups = 1024; return o }())
    }
}

/// Two hosts, one VM each, real pings both ways through both programs, maps filled from
/// Swift. Underlay 198.18.0.0/24 on a veth between the hosts; VMs in VSID 5001.
@Suite(.serialized)
struct NamespacePingTests {
    static let vsid: UInt32 = 5001
    static let gwMAC: MACAddress = "02:00:00:00:ff:01"

    @Test func pingBothWaysThroughTheFastPath() throws {
        let net = TestNetwork(tag: "ping")
        let a = try PingHost(ns: try net.namespace("ha"), vmNS: try net.namespace("vma"))
        let b = try PingHost(ns: try net.namespace("hb"), vmNS: try net.namespace("vmb"))
        try net.veth("ul", in: a.ns, "ul", in: b.ns)
        let pas: [IPAddress] = ["198.18.0.1", "198.18.0.2"]
        let vms = [Plan.vm1, Plan.vm2]
        for (i, h) in [a, b].enumerated() {
            try net.veth("port", in: h.ns, "eth0", in: h.vmNS, macB: vms[i].mac.description)
            try net.ip(h.ns, "addr add \(pas[i])/24 dev ul")
            try net.exec(h.ns, "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv4.conf.ul.forwarding=1 net.ipv6.conf.all.forwarding=1")
            try net.ip(h.vmNS, "addr add \(vms[i].ip4)/24 dev eth0")
            try net.ip(h.vmNS, "addr add \(vms[i].ip6)/64 dev eth0 nodad")
        }

        for (i, h) in [a, b].enumerated() {
            let (uplink, port) = try NetworkNamespace.run(in: h.ns) { (try interfaceIndex("ul"), try interfaceIndex("port")) }
            try h.dp.config.update(0, nv_config(uplinkIfindex: uplink, pa4: pas[i], pa6: nil))
            try h.dp.localPAs.update(nv_pa_key(pas[i]), 1)
            try h.dp.subnets.update(Self.vsid, nv_subnet(routingDomain: 1, statsSlot: 1, gatewayMAC: Self.gwMAC,
                                                         gateway4: "198.19.1.254", gateway6: "2001:db8:19:1::fe"))
            try h.dp.ports.update(port, nv_port(vsid: Self.vsid, mac: vms[i].mac))
            for ca in [vms[i].ip4, vms[i].ip6] { try h.dp.portAddresses.update(nv_port_ca_key(ifindex: port, ca: ca), 1) }
            for (j, vm) in vms.enumerated() {
                for ca in [vm.ip4, vm.ip6] {
                    try h.dp.lookups.update(nv_lookup_key(vsid: Self.vsid, ca: ca),
                                            nv_lookup_val(pa: pas[j], mac: vm.mac, portIfindex: i == j ? port : 0))
                }
            }
            try NetworkNamespace.run(in: h.ns) {
                h.links.append(try h.dp.attach(.fromVM, interface: "port"))
                h.links.append(try h.dp.attach(.fromFabric, interface: "ul"))
                h.handler = try HostExceptionHandler(datapath: h.dp)
            }
            // Frames redirected into a veth are only received when its peer runs XDP.
            try NetworkNamespace.run(in: h.vmNS) { h.links.append(try h.dp.attach(.barePass, interface: "eth0")) }
            h.channel = try ExceptionChannel(datapath: h.dp) { [unowned h] in h.handler.handle($0) }
            #expect(h.links.allSatisfy { $0.mode == .native })
        }

        // The exception consumers run while the pings do: the first frames find the
        // underlay neighbor unresolved, and the consumer starts resolution.
        let stop = ManagedAtomicFlag()
        let consumer = Thread {
            while !stop.isSet { for h in [a, b] { _ = try? h.channel.poll(timeoutMilliseconds: 20) } }
        }
        consumer.start()
        defer { stop.set(); while !consumer.isFinished { usleep(10_000) } }

        let aToB4 = try ping(net, from: a.vmNS, to: Plan.vm2.ip4)
        let bToA4 = try ping(net, from: b.vmNS, to: Plan.vm1.ip4)
        let aToB6 = try ping(net, from: a.vmNS, to: Plan.vm2.ip6)
        let bToA6 = try ping(net, from: b.vmNS, to: Plan.vm1.ip6)
        stop.set()
        while !consumer.isFinished { usleep(10_000) }

        for (label, received) in [("A->B IPv4", aToB4), ("B->A IPv4", bToA4), ("A->B IPv6", aToB6), ("B->A IPv6", bToA6)] {
            #expect(received >= 4, "\(label): \(received) of 5 echo replies")
        }
        for h in [a, b] {
            let c = h.dp.vsidCounters(slot: 1)
            #expect(c[NV_CNT_ENCAP]!.packets >= 16, "encap on \(h.ns): \(c[NV_CNT_ENCAP]!.packets)")
            #expect(c[NV_CNT_DECAP]!.packets >= 16, "decap on \(h.ns): \(c[NV_CNT_DECAP]!.packets)")
            #expect(h.handler.errors.isEmpty, "\(h.handler.errors)")
            #expect(h.dp.dropCount(NV_DROP_PA_SPOOF).packets == 0)
        }
        // Nothing had resolved the underlay neighbor before the first ping: that frame went to
        // userspace, which started resolution, and the fast path carried the rest.
        #expect(a.dp.exceptionCount(NV_EXC_NO_NEIGH).packets >= 1)
        #expect(a.handler.resolutions.contains("198.18.0.2"))
    }

    /// Pings 5 times; returns how many replies came back.
    private func ping(_ net: TestNetwork, from ns: String, to dst: IPAddress) throws -> Int {
        let out = (try? net.exec(ns, "ping -c 5 -i 0.2 -W 1 \(dst)")) ?? ""
        guard let r = out.range(of: #"(\d+) received"#, options: .regularExpression) else { return 0 }
        return Int(out[r].split(separator: " ")[0]) ?? 0
    }
}

/// A flag shared between the test and its consumer thread.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
