import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// The gateway's maps: an instance's pinned BPF maps.
public final class PinnedGatewayMaps: GatewayMaps {
    private let maps: DatapathMaps

    public init(_ maps: DatapathMaps) { self.maps = maps }

    public var hostConfig: nv_config? { maps.config.lookup(0) }
    public func subnet(_ vsid: UInt32) -> nv_subnet? { maps.subnets.lookup(vsid) }
    public func servedMode(_ rdid: UInt32) -> nv_gw_mode? {
        maps.gatewayDomains.lookup(rdid).map { nv_gw_mode(rawValue: $0) }
    }
    public func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val? {
        maps.lookups.lookup(nv_lookup_key(vsid: vsid, ca: ca))
    }
    public func route(rdid: UInt32, address: IPAddress) -> nv_route_val? {
        maps.routes.lookup(nv_route_key(rdid: rdid, prefix: address, prefixLength: address.bytes.count * 8))
    }
    public func service(proto: UInt8, address: IPAddress, port: UInt16) -> nv_service? {
        maps.services.lookup(nv_service_key(proto: proto, address: address, port: port))
    }
    public func isExternalAddress(_ address: IPAddress) -> Bool {
        address.family == .v4 && maps.externalAddresses.lookup(nv_ext_addr_key(address)) != nil
    }
    public func isInfrastructure(_ address: IPAddress) -> Bool {
        maps.infrastructure.lookup(nv_infra_key(address: address)) != nil
    }

    public func flowOut(_ key: nv_nat_out_key) -> nv_nat_flow? { maps.natOut.lookup(key) }
    public func flowIn(_ key: nv_nat_in_key) -> nv_nat_flow? { maps.natIn.lookup(key) }
    public func writeFlowOut(_ key: nv_nat_out_key, _ value: nv_nat_flow, flags: UInt64) throws {
        try maps.natOut.update(key, value, flags: flags)
    }
    public func writeFlowIn(_ key: nv_nat_in_key, _ value: nv_nat_flow, flags: UInt64) throws {
        try maps.natIn.update(key, value, flags: flags)
    }
    public func deleteFlowOut(_ key: nv_nat_out_key) { _ = try? maps.natOut.delete(key) }
    public func deleteFlowIn(_ key: nv_nat_in_key) { _ = try? maps.natIn.delete(key) }
    public func flowOutKeys() -> [nv_nat_out_key] { maps.natOut.keys() }
    public var flowCapacity: Int { Int(maps.natOut.maxEntries) }

    public func addGatewayCounts(_ counts: [nv_gw_counter: (packets: UInt64, bytes: UInt64)]) throws {
        for (c, v) in counts { try addToCPU0(maps.gatewayStats, c.rawValue, v) }
    }

    public func addDomainCounts(_ counts: [DomainCounter: (packets: UInt64, bytes: UInt64)]) throws {
        for (c, v) in counts {
            try addToCPU0(maps.domainStats, nv_domain_counter_key(rdid: c.rdid, counter: c.counter.rawValue), v)
        }
    }

    /// CPU 0's slot of a per-CPU counter (a slot XDP never writes for these counters).
    private func addToCPU0<Key>(_ map: BPFMap<Key, nv_reason_stats>, _ key: Key, _ v: (packets: UInt64, bytes: UInt64))
        throws
    {
        var values = map.lookupPerCPU(key)
        if values.isEmpty { values = Array(repeating: nv_reason_stats(), count: Int(libbpf_num_possible_cpus())) }
        values[0].packets += v.packets
        values[0].bytes += v.bytes
        try map.updatePerCPU(key, values)
    }
}

/// The gateway's sockets, opened in the gateway host's network namespace: a raw IPv4
/// socket bound to the external interface (the kernel resolves next hops and can route
/// nowhere else), a packet socket for local VMs, raw sockets toward other hosts.
public final class SocketGatewaySender: GatewaySender {
    private let outside: RawIPSocket
    private let ports: PacketSocket
    private var underlay: [IPFamily: RawIPSocket] = [:]

    public init(externalInterface: String?) throws {
        outside = try RawIPSocket(.v4)
        if let external = externalInterface { try outside.bind(toDevice: external) }
        ports = try PacketSocket()
    }

    public func sendOutside(_ packet: [UInt8], to destination: IPAddress) throws {
        try outside.send(packet, to: destination)
    }
    public func sendToPort(_ frame: [UInt8], ifindex: UInt32) throws { try ports.send(frame, ifindex: ifindex) }
    public func underlayMTU(to pa: IPAddress) -> Int? { pathMTU(to: pa) }

    public func sendUnderlay(_ packet: [UInt8], to pa: IPAddress) throws {
        if underlay[pa.family] == nil { underlay[pa.family] = try RawIPSocket(pa.family) }
        try underlay[pa.family]!.send(packet, to: pa)
    }
}

extension Gateway {
    /// The gateway of a host: its pinned maps, its sockets, the host's live addresses.
    /// Create it in the gateway host's network namespace (its sockets send from there).
    public convenience init(
        maps: DatapathMaps, externalAddresses: [ExternalAddress], timeouts: NATTimeouts = NATTimeouts(),
        icmpLimit: ICMPRateLimit = ICMPRateLimit(), natShares: [UInt32: UInt32] = [:]
    ) throws {
        let hosts = HostAddressCache()
        self.init(
            maps: PinnedGatewayMaps(maps),
            sender: try SocketGatewaySender(externalInterface: externalAddresses.first?.interface),
            externalAddresses: externalAddresses, timeouts: timeouts, icmpLimit: icmpLimit, natShares: natShares,
            isHostAddress: { hosts.contains($0) }, clock: monotonicNanoseconds)
    }
}
