import CNvgre
import NvgreDatapath
import NvgreGateway
import NvgrePolicy
import NvgreWire

/// The gateway's maps in memory: dictionaries where the data path has BPF maps, with the
/// kernel's semantics where the engine relies on them (BPF_EXIST, a capacity).
final class MemoryGatewayMaps: GatewayMaps {
    var hostConfig: nv_config?
    var subnets: [UInt32: nv_subnet] = [:]
    var modes: [UInt32: nv_gw_mode] = [:]
    var records: [String: nv_lookup_val] = [:]
    var routes: [(rdid: UInt32, prefix: IPPrefix, value: nv_route_val)] = []
    var services: [String: nv_service] = [:]
    var externals: Set<IPAddress> = []
    var infrastructure: [IPPrefix] = []
    var natOut: [RawBytes: nv_nat_flow] = [:]
    var natIn: [RawBytes: nv_nat_flow] = [:]
    var flowCapacity = 1024
    var gatewayCounts: [nv_gw_counter: UInt64] = [:]
    var domainCounts: [DomainCounter: UInt64] = [:]

    func subnet(_ vsid: UInt32) -> nv_subnet? { subnets[vsid] }
    func servedMode(_ rdid: UInt32) -> nv_gw_mode? { modes[rdid] }
    func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val? { records["\(vsid) \(ca)"] }
    func route(rdid: UInt32, address: IPAddress) -> nv_route_val? {
        routes.filter { $0.rdid == rdid && $0.prefix.contains(address) }.max { $0.prefix.length < $1.prefix.length }?
            .value
    }
    func service(proto: UInt8, address: IPAddress, port: UInt16) -> nv_service? {
        services["\(proto) \(address) \(port)"]
    }
    func isExternalAddress(_ address: IPAddress) -> Bool { externals.contains(address) }
    func isInfrastructure(_ address: IPAddress) -> Bool { infrastructure.contains { $0.contains(address) } }

    func flowOut(_ key: nv_nat_out_key) -> nv_nat_flow? { natOut[RawBytes(of: key)] }
    func flowIn(_ key: nv_nat_in_key) -> nv_nat_flow? { natIn[RawBytes(of: key)] }
    func writeFlowOut(_ key: nv_nat_out_key, _ value: nv_nat_flow, flags: UInt64) throws {
        try Self.write(&natOut, RawBytes(of: key), value, flags: flags, capacity: flowCapacity)
    }
    func writeFlowIn(_ key: nv_nat_in_key, _ value: nv_nat_flow, flags: UInt64) throws {
        try Self.write(&natIn, RawBytes(of: key), value, flags: flags, capacity: flowCapacity)
    }
    func deleteFlowOut(_ key: nv_nat_out_key) { natOut[RawBytes(of: key)] = nil }
    func deleteFlowIn(_ key: nv_nat_in_key) { natIn[RawBytes(of: key)] = nil }
    func flowOutKeys() -> [nv_nat_out_key] { natOut.keys.map { $0.load(as: nv_nat_out_key.self) } }

    func addGatewayCounts(_ counts: [nv_gw_counter: (packets: UInt64, bytes: UInt64)]) throws {
        for (c, v) in counts { gatewayCounts[c, default: 0] += v.packets }
    }
    func addDomainCounts(_ counts: [DomainCounter: (packets: UInt64, bytes: UInt64)]) throws {
        for (c, v) in counts { domainCounts[c, default: 0] += v.packets }
    }

    struct MapFull: Error {}
    struct NoEntry: Error {}

    private static func write(
        _ map: inout [RawBytes: nv_nat_flow], _ key: RawBytes, _ value: nv_nat_flow, flags: UInt64, capacity: Int
    ) throws {
        if flags == UInt64(BPF_EXIST), map[key] == nil { throw NoEntry() }
        if map[key] == nil, map.count >= capacity { throw MapFull() }
        map[key] = value
    }

    /// What XDP does to a flow's entries while it translates the flow's packets.
    func xdpSaw(_ flow: NATFlow, at ns: UInt64) {
        for k in [RawBytes(of: flow.outKey)] { natOut[k]?.last_seen_ns = ns }
        for k in [RawBytes(of: flow.inKey)] { natIn[k]?.last_seen_ns = ns }
    }
}

/// What the gateway sent, by way.
final class MemorySender: GatewaySender {
    var outside: [(packet: [UInt8], to: IPAddress)] = []
    var ports: [(frame: [UInt8], ifindex: UInt32)] = []
    var underlay: [(packet: [UInt8], to: IPAddress)] = []

    func sendOutside(_ packet: [UInt8], to destination: IPAddress) throws { outside.append((packet, destination)) }
    func sendToPort(_ frame: [UInt8], ifindex: UInt32) throws { ports.append((frame, ifindex)) }
    func sendUnderlay(_ packet: [UInt8], to pa: IPAddress) throws { underlay.append((packet, pa)) }
    var mtu: Int?
    func underlayMTU(to pa: IPAddress) -> Int? { mtu }

    /// The customer frames sent to VMs on other hosts, NVGRE opened.
    var delivered: [(pa: IPAddress, vsid: UInt32, inner: [UInt8])] {
        underlay.compactMap { p in
            guard
                let nv = DecodedNVGRE(
                    Ethernet.frame(
                        dst: MACAddress([2, 0, 0, 0, 0, 0]), src: MACAddress([2, 0, 0, 0, 0, 0]),
                        type: p.to.family == .v4 ? .ipv4 : .ipv6, payload: p.packet))
            else { return nil }
            return (p.to, nv.vsid, nv.inner)
        }
    }
}

/// The demo's gateway G in memory: Red (domain 1, VSID 5001) and Blue (domain 2, VSID
/// 6001) with the same 198.19.1.0/24, both served with NAT on 203.0.113.1; VMs 198.19.1.1
/// on host A and 198.19.1.2 on host B in each; Red publishes tcp 203.0.113.1:8080 ->
/// 198.19.1.2:80; the uplink is ifindex 3, the external interface 4.
final class MemoryGateway {
    static let ext: IPAddress = "203.0.113.1", x: IPAddress = "203.0.113.2"
    static let paA: IPAddress = "198.18.0.1", paB: IPAddress = "198.18.0.2", paG: IPAddress = "198.18.0.3"
    static let vm1: IPAddress = "198.19.1.1", vm2: IPAddress = "198.19.1.2"
    static let red = (rdid: UInt32(1), vsid: UInt32(5001), gwMAC: MACAddress("02:00:00:00:ff:01"))
    static let blue = (rdid: UInt32(2), vsid: UInt32(6001), gwMAC: MACAddress("02:00:00:00:ff:03"))
    static let vmMAC1: MACAddress = "02:00:00:00:01:01", vmMAC2: MACAddress = "02:00:00:00:01:02"
    static let uplink: UInt32 = 3, external: UInt32 = 4

    let maps = MemoryGatewayMaps()
    let sender = MemorySender()
    var now: UInt64 = 1_000_000_000
    var events: [String] = []
    private(set) var gateway: Gateway!

    init(
        natPorts: PortRange = PortRange(first: 40000, last: 40009), natShares: [UInt32: UInt32] = [:],
        timeouts: NATTimeouts = NATTimeouts()
    ) {
        maps.hostConfig = nv_config(uplinkIfindex: Self.uplink, pa4: Self.paG, pa6: nil, externalIfindex: Self.external)
        for t in [Self.red, Self.blue] {
            maps.subnets[t.vsid] = nv_subnet(
                routingDomain: t.rdid, statsSlot: t.rdid, gatewayMAC: t.gwMAC, gateway4: "198.19.1.254", gateway6: nil)
            maps.modes[t.rdid] = NV_GW_NAT
            maps.routes.append(
                (t.rdid, IPPrefix(parsing: "198.19.1.0/24")!, nv_route_val(vsid: t.vsid, kind: NV_ROUTE_SUBNET)))
            maps.records["\(t.vsid) \(Self.vm1)"] = nv_lookup_val(pa: Self.paA, mac: Self.vmMAC1)
            maps.records["\(t.vsid) \(Self.vm2)"] = nv_lookup_val(pa: Self.paB, mac: Self.vmMAC2)
        }
        maps.services["6 \(Self.ext) 8080"] = nv_service(rdid: Self.red.rdid, ca: Self.vm2, port: 80)
        maps.externals = [Self.ext]
        maps.infrastructure = ["198.18.0.0/24", "203.0.113.1/32", "127.0.0.0/8"].map { IPPrefix(parsing: $0)! }
        gateway = Gateway(
            maps: maps, sender: sender,
            externalAddresses: [ExternalAddress(address: Self.ext, interface: "ext", natPorts: natPorts)],
            timeouts: timeouts, natShares: natShares, clock: { [unowned self] in self.now })
        gateway.onEvent = { [unowned self] in self.events.append("\($0)") }
    }

    // MARK: frames as XDP hands them up

    /// A tenant's decapsulated frame toward the outside (NV_EXC_NAT_OUT, from the uplink).
    @discardableResult
    func fromTenant(_ t: (rdid: UInt32, vsid: UInt32, gwMAC: MACAddress), _ ip: [UInt8]) -> Bool {
        let frame = Ethernet.frame(dst: t.gwMAC, src: Self.vmMAC1, type: .ipv4, payload: ip)
        return gateway.handle(
            ExceptionFrame(
                reason: NV_EXC_NAT_OUT, ingressIfindex: Self.uplink, vsid: t.vsid,
                originalLength: frame.count, frame: frame))
    }

    /// An outsider's frame to an external address (NV_EXC_NAT_IN, from the external side).
    @discardableResult
    func fromOutside(_ ip: [UInt8]) -> Bool {
        let frame = Ethernet.frame(dst: "02:00:00:00:0e:01", src: "02:00:00:00:0e:02", type: .ipv4, payload: ip)
        return gateway.handle(
            ExceptionFrame(
                reason: NV_EXC_NAT_IN, ingressIfindex: Self.external, vsid: 0,
                originalLength: frame.count, frame: frame))
    }

    static func udp(
        _ src: IPAddress, _ sport: UInt16, _ dst: IPAddress, _ dport: UInt16, ttl: UInt8 = 64,
        payload: [UInt8] = Array("hi".utf8)
    ) -> [UInt8] {
        IPPacket.build(
            src: src, dst: dst, proto: IPProtocol.udp.rawValue,
            payload: UDP.datagram(src: src, dst: dst, sport: sport, dport: dport, payload: payload), ttl: ttl)
    }

    static func tcp(_ src: IPAddress, _ sport: UInt16, _ dst: IPAddress, _ dport: UInt16, flags: UInt8, ttl: UInt8 = 64)
        -> [UInt8]
    {
        IPPacket.build(
            src: src, dst: dst, proto: IPProtocol.tcp.rawValue,
            payload: TCP.segment(src: src, dst: dst, sport: sport, dport: dport, flags: flags), ttl: ttl)
    }

    var flows: [NATFlow] { maps.natOut.values.map { NATFlow($0) } }

    func count(_ c: nv_gw_counter) -> UInt64 {
        gateway.flushCounters()
        return maps.gatewayCounts[c] ?? 0
    }

    func domainCount(_ rdid: UInt32, _ c: nv_domain_counter) -> UInt64 {
        gateway.flushCounters()
        return maps.domainCounts[DomainCounter(rdid: rdid, counter: c)] ?? 0
    }
}
