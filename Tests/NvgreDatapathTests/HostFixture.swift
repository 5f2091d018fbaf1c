import CNvgre
import NvgreDatapath
import NvgreLab
import NvgreWire

/// A customer VM as policy knows it.
struct VM {
    let mac: MACAddress
    let ip4: IPAddress
    let ip6: IPAddress
}

/// The address plan of the fast-path tests (DESIGN.md section 6): provider addresses in
/// 198.18.0.0/16 and 2001:db8:18::/64, customer addresses in 198.19.0.0/16 and
/// 2001:db8:19::/48. Tenant Red (routing domain 1: VSIDs 5001, 5002) and tenant Blue
/// (routing domain 2: VSID 6001) overlap on purpose: Blue's VMs reuse Red's CAs and MACs.
enum Plan {
    static let paA: IPAddress = "198.18.0.1"  // this host
    static let paB: IPAddress = "198.18.0.2"  // host B (Red's remote VMs)
    static let paC: IPAddress = "198.18.0.3"  // host C (Blue's remote VMs)
    static let paNoNeighbor: IPAddress = "198.18.0.9"
    static let paUnreachable: IPAddress = "198.18.99.1"
    static let pa6A: IPAddress = "2001:db8:18::1"
    static let pa6B: IPAddress = "2001:db8:18::2"

    static let uplinkMAC: MACAddress = "02:18:00:00:00:01"
    static let macB: MACAddress = "02:18:00:00:00:02"
    static let macC: MACAddress = "02:18:00:00:00:03"
    static let mac6B: MACAddress = "02:18:00:00:00:12"

    static let red = (
        vsid: UInt32(5001), slot: UInt32(1), rd: UInt32(1), gwMAC: MACAddress("02:00:00:00:ff:01"),
        gw4: IPAddress("198.19.1.254"), gw6: IPAddress("2001:db8:19:1::fe")
    )
    static let red2 = (
        vsid: UInt32(5002), slot: UInt32(2), rd: UInt32(1), gwMAC: MACAddress("02:00:00:00:ff:02"),
        gw4: IPAddress("198.19.2.254"), gw6: IPAddress("2001:db8:19:2::fe")
    )
    static let blue = (
        vsid: UInt32(6001), slot: UInt32(3), rd: UInt32(2), gwMAC: MACAddress("02:00:00:00:ff:03"),
        gw4: IPAddress("198.19.1.254"), gw6: IPAddress("2001:db8:19:1::fe")
    )

    static let vm1 = VM(mac: "02:00:00:00:01:01", ip4: "198.19.1.1", ip6: "2001:db8:19:1::1")  // Red, local
    static let vm2 = VM(mac: "02:00:00:00:01:02", ip4: "198.19.1.2", ip6: "2001:db8:19:1::2")  // Red, local
    static let vm3 = VM(mac: "02:00:00:00:01:03", ip4: "198.19.1.3", ip6: "2001:db8:19:1::3")  // Red, host B (IPv4 PA)
    static let vm4 = VM(mac: "02:00:00:00:01:04", ip4: "198.19.1.4", ip6: "2001:db8:19:1::4")  // Red, host B (IPv6 PA)
    static let vm21 = VM(mac: "02:00:00:00:02:01", ip4: "198.19.2.1", ip6: "2001:db8:19:2::1")  // Red 5002, local
    static let vm23 = VM(mac: "02:00:00:00:02:03", ip4: "198.19.2.3", ip6: "2001:db8:19:2::3")  // Red 5002, host B
    static let blue1 = VM(mac: vm1.mac, ip4: vm1.ip4, ip6: vm1.ip6)  // Blue, local
    static let blue3 = VM(mac: vm3.mac, ip4: vm3.ip4, ip6: vm3.ip6)  // Blue, host C

    static let noNeighborCA: IPAddress = "198.19.1.5"
    static let unreachableCA: IPAddress = "198.19.1.6"
    static let gatewayCA: IPAddress = "198.19.1.7"
    static let l2OnlyCA: IPAddress = "198.19.2.8"
    static let outsideHost: IPAddress = "203.0.113.5"
}

/// Host A of the fast-path tests: one namespace with five VM ports and an uplink whose
/// underlay neighbors are static, and a trace-enabled data path filled from Swift.
final class HostFixture {
    let net: LabNetwork
    let ns: String
    let dp: Datapath
    let ifindex: [String: UInt32]

    init(tag: String, options: LoadOptions? = nil) throws {
        net = LabNetwork(tag: tag)
        ns = try net.namespace("a")
        let vms = try net.namespace("vms")
        let fabric = try net.namespace("fabric")
        for i in 1...5 { try net.veth("port\(i)", in: ns, "vm\(i)", in: vms) }
        try net.veth("ul", in: ns, "ulpeer", in: fabric, macA: Plan.uplinkMAC.description)
        try net.ip(ns, "addr add \(Plan.paA)/24 dev ul")
        try net.ip(ns, "addr add \(Plan.pa6A)/64 dev ul nodad")
        try net.ip(ns, "neigh replace \(Plan.paB) lladdr \(Plan.macB) dev ul nud permanent")
        try net.ip(ns, "neigh replace \(Plan.paC) lladdr \(Plan.macC) dev ul nud permanent")
        try net.ip(ns, "neigh replace \(Plan.pa6B) lladdr \(Plan.mac6B) dev ul nud permanent")
        var indexes: [String: UInt32] = [:]
        for name in ["port1", "port2", "port3", "port4", "port5", "ul"] {
            indexes[name] = try net.ifindex(name, in: ns)
        }
        var opts = options ?? LoadOptions()
        opts.trace = true
        if options == nil { opts.maxLookups = 4096 }
        dp = try Datapath(options: opts)
        ifindex = indexes
        try setForwarding(true)
        try fillPolicy()
    }

    func setForwarding(_ on: Bool) throws { try net.setForwarding(on, in: ns, uplink: "ul") }

    func port(_ name: String) -> UInt32 { ifindex[name]! }

    private func fillPolicy() throws {
        try dp.config.update(0, nv_config(uplinkIfindex: port("ul"), pa4: Plan.paA, pa6: Plan.pa6A))
        try dp.localPAs.update(nv_pa_key(Plan.paA), 1)
        try dp.localPAs.update(nv_pa_key(Plan.pa6A), 1)

        for s in [Plan.red, Plan.red2, Plan.blue] {
            try dp.subnets.update(
                s.vsid,
                nv_subnet(
                    routingDomain: s.rd, statsSlot: s.slot, gatewayMAC: s.gwMAC,
                    gateway4: s.gw4, gateway6: s.gw6))
        }
        func route(_ rd: UInt32, _ prefix: IPAddress, _ len: Int, _ vsid: UInt32, _ kind: nv_route_kind) throws {
            try dp.routes.update(
                nv_route_key(rdid: rd, prefix: prefix, prefixLength: len), nv_route_val(vsid: vsid, kind: kind))
        }
        try route(1, "198.19.1.0", 24, 5001, NV_ROUTE_SUBNET)
        try route(1, "198.19.2.0", 24, 5002, NV_ROUTE_SUBNET)
        try route(1, "2001:db8:19:1::", 64, 5001, NV_ROUTE_SUBNET)
        try route(1, "2001:db8:19:2::", 64, 5002, NV_ROUTE_SUBNET)
        try route(1, "0.0.0.0", 0, 5001, NV_ROUTE_CUSTOMER)  // Red's default route via a gateway
        try route(2, "198.19.1.0", 24, 6001, NV_ROUTE_SUBNET)  // Blue has no default route

        let ports: [(String, UInt32, VM)] = [
            ("port1", 5001, Plan.vm1), ("port2", 5001, Plan.vm2),
            ("port3", 6001, Plan.blue1), ("port4", 5002, Plan.vm21),
            ("port5", 7777, VM(mac: "02:00:00:00:07:77", ip4: "198.19.7.7", ip6: "2001:db8:19:7::7"))
        ]
        for (name, vsid, vm) in ports {
            try dp.ports.update(port(name), nv_port(vsid: vsid, mac: vm.mac))
            try dp.portAddresses.update(nv_port_ca_key(ifindex: port(name), ca: vm.ip4), 1)
            try dp.portAddresses.update(nv_port_ca_key(ifindex: port(name), ca: vm.ip6), 1)
        }
        // port2 has more IPv6 addresses than its entry holds: its frames are checked
        // against port_cas, every other port's against its entry (as the compiler writes).
        for extra in ["2001:db8:19:1::e1", "2001:db8:19:1::e2"] as [IPAddress] {
            try dp.portAddresses.update(nv_port_ca_key(ifindex: port("port2"), ca: extra), 1)
        }
        try inlinePorts()

        func record(
            _ vsid: UInt32, _ ca: IPAddress, _ pa: IPAddress, _ mac: MACAddress,
            _ type: nv_record_type = NV_REC_STATIC, port name: String? = nil
        ) throws {
            try dp.lookups.update(
                nv_lookup_key(vsid: vsid, ca: ca),
                nv_lookup_val(
                    pa: pa, mac: mac, type: type, portIfindex: name.map(port) ?? 0,
                    statsSlot: [Plan.red, Plan.red2, Plan.blue].first { $0.vsid == vsid }?.slot ?? 0))
        }
        for ca in [Plan.vm1.ip4, Plan.vm1.ip6] { try record(5001, ca, Plan.paA, Plan.vm1.mac, port: "port1") }
        for ca in [Plan.vm2.ip4, Plan.vm2.ip6] { try record(5001, ca, Plan.paA, Plan.vm2.mac, port: "port2") }
        for ca in [Plan.vm3.ip4, Plan.vm3.ip6] { try record(5001, ca, Plan.paB, Plan.vm3.mac) }
        for ca in [Plan.vm4.ip4, Plan.vm4.ip6] { try record(5001, ca, Plan.pa6B, Plan.vm4.mac) }
        try record(5001, Plan.noNeighborCA, Plan.paNoNeighbor, "02:00:00:00:01:05")
        try record(5001, Plan.unreachableCA, Plan.paUnreachable, "02:00:00:00:01:06")
        try record(5001, Plan.gatewayCA, Plan.paB, "02:00:00:00:01:07", NV_REC_GATEWAY)
        try record(5002, Plan.vm21.ip4, Plan.paA, Plan.vm21.mac, port: "port4")
        for ca in [Plan.vm23.ip4, Plan.vm23.ip6] { try record(5002, ca, Plan.paB, Plan.vm23.mac) }
        try record(5002, Plan.l2OnlyCA, Plan.paB, "02:00:00:00:02:08", NV_REC_L2_ONLY)
        try record(6001, Plan.blue1.ip4, Plan.paA, Plan.blue1.mac, port: "port3")
        try record(6001, Plan.blue3.ip4, Plan.paC, Plan.blue3.mac)
        // Head-end replication as the compiler derives it: the other PAs of the VSID's
        // records (not the gateway's) and its ports here.
        try dp.floodLists.update(
            5001,
            nv_flood_list(
                peers: [Plan.paB, Plan.pa6B, Plan.paNoNeighbor, Plan.paUnreachable],
                ports: [port("port1"), port("port2")]))
        try dp.floodLists.update(5002, nv_flood_list(peers: [Plan.paB], ports: [port("port4")]))
        try dp.floodLists.update(6001, nv_flood_list(peers: [Plan.paC], ports: [port("port3")]))
    }

    /// Turns head-end replication on or off in a subnet of the plan.
    func setFlood(
        _ on: Bool, _ s: (vsid: UInt32, slot: UInt32, rd: UInt32, gwMAC: MACAddress, gw4: IPAddress, gw6: IPAddress)
    )
        throws
    {
        try dp.subnets.update(
            s.vsid,
            nv_subnet(
                routingDomain: s.rd, statsSlot: s.slot, gatewayMAC: s.gwMAC, gateway4: s.gw4, gateway6: s.gw6, flood: on
            ))
        try inlinePorts()
    }

    /// Rewrites every port's entry with its subnet and addresses copied in, from the
    /// subnets and port_cas maps, as PolicyCompiler derives them.
    func inlinePorts() throws {
        let allowed = dp.portAddresses.keys()
        for ifindex in dp.ports.keys() {
            guard let entry = dp.ports.lookup(ifindex) else { continue }
            let addresses = allowed.filter { $0.ifindex == ifindex }.map(\.customerAddress)
            try dp.ports.update(ifindex, entry.inlined(subnet: dp.subnets.lookup(entry.vsid), addresses: addresses))
        }
    }

    func setPortFlags(_ name: String, _ vm: VM, _ flags: [nv_port_flags]) throws {
        guard let old = dp.ports.lookup(port(name)) else { return }
        try dp.ports.update(port(name), nv_port(vsid: old.vsid, mac: vm.mac, flags: flags))
        try inlinePorts()
    }

    /// The per-VSID counters' names in these tests, in the ABI's order.
    static let counterNames = ["encap", "decap", "local", "route", "exception", "flood", "flood-copy", "moved"]

    /// Every counter as "drop:<reason>", "exception:<reason>", "<vsid>:<counter>",
    /// "gateway:<counter>" or "domain:<rdid>:<counter>" -> packets.
    func counters() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for (r, name) in ReasonNames.drops { out["drop:\(name)"] = dp.maps.dropCount(r).packets }
        for (r, name) in ReasonNames.exceptions { out["exception:\(name)"] = dp.maps.exceptionCount(r).packets }
        let counterNames = HostFixture.counterNames
        for s in [Plan.red, Plan.red2, Plan.blue] {
            for (c, v) in dp.maps.vsidCounters(slot: s.slot) {
                out["\(s.vsid):\(counterNames[Int(c.rawValue)])"] = v.packets
            }
        }
        // A gateway's (the differential test names the core's the same way).
        for (c, _) in ReasonNames.gateway { out["gateway:\(c.rawValue)"] = dp.maps.gatewayCount(c).packets }
        for rdid: UInt32 in [1, 2] {
            for (c, _) in ReasonNames.domain {
                out["domain:\(rdid):\(c.rawValue)"] = dp.maps.domainCount(rdid, c).packets
            }
        }
        return out
    }
}
