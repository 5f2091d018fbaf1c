import CNvgre
import NvgreControl
import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// Random valid policies over the fast-path plan's addresses, for the differential test: Red
/// (5001, 5002) and Blue (6001) overlapping in 198.19.1.0/24, records spread over the plan's
/// PAs (reachable, unresolved, unroutable, IPv6, this host's), random record types, ports,
/// gateways, customer routes, flood switches, guards and FlowID settings.
enum RandomPolicies {
    static let subnets: [(vsid: UInt32, domain: String, v4: String, v6: String, gwMAC: MACAddress)] = [
        (5001, "red", "198.19.1.", "2001:db8:19:1::", Plan.red.gwMAC),
        (5002, "red", "198.19.2.", "2001:db8:19:2::", Plan.red2.gwMAC),
        (6001, "blue", "198.19.1.", "2001:db8:19:1::", Plan.blue.gwMAC)
    ]
    static let remotePAs: [IPAddress] = [Plan.paB, Plan.paC, Plan.pa6B, Plan.paNoNeighbor, Plan.paUnreachable]

    static func make(_ r: inout DifferentialTests.Random, ports: [String]) -> Policy {
        var p = Policy()
        p.routingDomains = [RoutingDomain(id: 1, name: "red"), RoutingDomain(id: 2, name: "blue")]
        p.providerAddresses = [
            ProviderAddress(address: Plan.paA, interface: "ul"), ProviderAddress(address: Plan.pa6A, interface: "ul")
        ]
        // Which port serves which subnet and host number (a port's CA is its record, on this host).
        var portOf: [String: (subnet: Int, host: Int)] = [:]
        for port in ports where r.chance(80) {
            portOf[port] = (r.below(subnets.count), 1 + r.below(6))
        }
        for (i, s) in subnets.enumerated() {
            var gateways: [IPAddress] = []
            if r.chance(80) { gateways.append(IPAddress(parsing: "\(s.v4)254")!) }
            if r.chance(80) { gateways.append(IPAddress(parsing: "\(s.v6)fe")!) }
            p.subnets.append(
                VirtualSubnet(
                    vsid: s.vsid, routingDomain: s.domain,
                    prefixes: [IPPrefix(parsing: "\(s.v4)0/24")!, IPPrefix(parsing: "\(s.v6)/64")!], gateways: gateways,
                    gatewayMAC: s.gwMAC, flood: r.chance(80)))
            for host in 1...7 {
                let local = portOf.first { $0.value == (i, host) }
                guard local != nil || r.chance(75) else { continue }
                // The plan's MACs: host N of 198.19.1/24 is 02:00:00:00:01:0N, in either tenant.
                let mac = MACAddress([2, 0, 0, 0, UInt8(i == 1 ? 2 : 1), UInt8(host)])
                let type: RecordType =
                    local != nil
                    ? .staticRecord : r.pick([.staticRecord, .staticRecord, .staticRecord, .l2Only, .gateway])
                for ca in [IPAddress(parsing: "\(s.v4)\(host)")!, IPAddress(parsing: "\(s.v6)\(host)")!] {
                    let pa = local != nil ? (r.chance(50) ? Plan.paA : Plan.pa6A) : r.pick(remotePAs)
                    p.lookupRecords.append(
                        LookupRecord(vsid: s.vsid, customerAddress: ca, providerAddress: pa, mac: mac, type: type))
                }
            }
        }
        for (port, at) in portOf.sorted(by: { $0.key < $1.key }) {
            let s = subnets[at.subnet]
            let mac = MACAddress([2, 0, 0, 0, UInt8(at.subnet == 1 ? 2 : 1), UInt8(at.host)])
            p.ports.append(
                VMPort(
                    interface: port, vsid: s.vsid, mac: mac,
                    addresses: [IPAddress(parsing: "\(s.v4)\(at.host)")!, IPAddress(parsing: "\(s.v6)\(at.host)")!],
                    allowRouterAdvertisements: r.chance(20), allowDHCPServer: r.chance(20)))
        }
        // Two ports may not hold the same (VSID, CA): keep the first.
        var seen = Set<String>()
        p.ports = p.ports.filter { seen.insert("\($0.vsid) \($0.addresses[0])").inserted }
        if r.chance(60) {
            p.customerRoutes.append(
                CustomerRoute(
                    routingDomain: "red", prefix: IPPrefix(parsing: "0.0.0.0/0")!,
                    nextHop: IPAddress(parsing: "198.19.1.\(1 + r.below(7))")!))
        }
        if r.chance(40) {
            p.customerRoutes.append(
                CustomerRoute(
                    routingDomain: "blue", prefix: IPPrefix(parsing: "203.0.113.0/24")!,
                    nextHop: IPAddress(parsing: "198.19.1.\(1 + r.below(7))")!))
        }
        if r.chance(40) { p.foreignEndpoints = [ForeignEndpoint(address: Plan.paB, flowID: false)] }
        // VMs that moved away from this host moments ago (the agent's grace period): frames
        // from the fabric for them go on to their record's PA.
        for rec in p.lookupRecords where r.chance(20) {
            p.movedAway.insert(MovedVM(vsid: rec.vsid, customerAddress: rec.customerAddress))
        }
        return p
    }

    /// Makes the fixture's maps hold `p` exactly (counter slots as the plan has them).
    static func apply(_ p: Policy, to host: HostFixture) throws {
        var ctx = CompileContext(uplinkIfindex: host.port("ul"), ifindex: { host.ifindex[$0] })
        ctx.liveSlots = [Plan.red.vsid: Plan.red.slot, Plan.red2.vsid: Plan.red2.slot, Plan.blue.vsid: Plan.blue.slot]
        ctx.exceptionShare = .unlimited
        ctx.portExceptionShare = .unlimited
        ctx.floodShare = .unlimited
        let compiled = try PolicyCompiler.compile(try p.validated(), ctx)
        let live = try host.dp.maps.liveImages()
        for (m, image) in compiled.images {
            let map = host.dp.maps.raw(m.rawValue)
            let stale = (live[m]?.entries.keys).map { Array($0.filter { image[$0] == nil }) } ?? []
            if !stale.isEmpty { try map.rawDelete(stale) }
            let entries = image.entries.map { (key: $0.key, value: $0.value) }
            if !entries.isEmpty { try map.rawUpdate(entries[...]) }
        }
        for vsid in host.dp.floodLists.keys() { _ = try host.dp.floodLists.delete(vsid) }
        for (vsid, list) in compiled.floodLists { try host.dp.floodLists.update(vsid, list) }
    }
}
