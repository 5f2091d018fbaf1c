import CNvgre
import NvgreWire

/// Builders for the ABI's keys and values from wire types, so callers never fill C tuples
/// by hand. Keys start zeroed: padding and unused address bytes must match the programs'.
func copyBytes<T>(_ bytes: [UInt8], into field: inout T) {
    withUnsafeMutableBytes(of: &field) { dst in
        precondition(bytes.count <= dst.count, "field too small")
        dst.copyBytes(from: bytes)
    }
}

func bytes<T>(of field: T, count: Int) -> [UInt8] {
    withUnsafeBytes(of: field) { Array($0.prefix(count)) }
}

/// An address from an ABI family byte and a 16-byte field (IPv4 in the first four).
/// (Read in place: the data path reads one per frame.)
func address<T>(family: UInt8, _ field: T) -> IPAddress {
    withUnsafeBytes(of: field) { b in
        family == NV_AF_INET6 ? IPAddress(v6: b.prefix(16)) : IPAddress(v4: b.prefix(4))
    }
}

extension nv_lookup_key {
    public init(vsid: UInt32, ca: IPAddress) {
        self.init()
        self.vsid = vsid
        family = ca.family.rawValue
        withUnsafeMutableBytes(of: &self.ca) { ca.storePadded16(into: $0) }
    }
}

extension nv_lookup_key {
    public var customerAddress: IPAddress { address(family: family, ca) }
}

extension nv_lookup_val {
    public init(
        pa: IPAddress, mac: MACAddress, type: nv_record_type = NV_REC_STATIC, portIfindex: UInt32 = 0,
        flags: nv_record_flags = nv_record_flags(0), statsSlot: UInt32 = 0
    ) {
        self.init()
        slot_flags = statsSlot << NV_REC_FLAG_BITS | flags.rawValue
        pa_family = pa.family.rawValue
        withUnsafeMutableBytes(of: &self.pa) { pa.storePadded16(into: $0) }
        withUnsafeMutableBytes(of: &self.mac) { mac.store(into: $0) }
        self.type = UInt8(type.rawValue)
        port_ifindex = portIfindex
    }

    public var providerAddress: IPAddress { address(family: pa_family, pa) }

    /// Frames to this record's PA carry a FlowID (all but endpoints with `flowID: false`).
    public var sendsFlowID: Bool { flags & NV_REC_NO_FLOWID.rawValue == 0 }

    /// Its nv_record_flags.
    public var flags: UInt32 { withUnsafePointer(to: self) { nv_record_flags_of($0) } }

    /// The counter slot of its subnet, which a frame decapsulated to it is counted in.
    public var statsSlot: UInt32 { withUnsafePointer(to: self) { nv_record_slot_of($0) } }

    public var customerMAC: MACAddress { withUnsafeBytes(of: mac) { MACAddress($0.prefix(6)) } }
}

extension nv_subnet {
    public init(
        routingDomain: UInt32, statsSlot: UInt32, gatewayMAC: MACAddress,
        gateway4: IPAddress? = nil, gateway6: IPAddress? = nil, flood: Bool = true
    ) {
        self.init()
        rdid = routingDomain
        if !flood { flags |= UInt8(NV_SUBNET_NO_FLOOD.rawValue) }
        stats_slot = statsSlot
        copyBytes(gatewayMAC.bytes, into: &gw_mac)
        if let g = gateway4 {
            flags |= UInt8(NV_SUBNET_HAS_GW4.rawValue)
            copyBytes(g.bytes, into: &gw4)
        }
        if let g = gateway6 {
            flags |= UInt8(NV_SUBNET_HAS_GW6.rawValue)
            copyBytes(g.bytes, into: &gw6)
        }
    }

    public var gatewayMAC: MACAddress { withUnsafeBytes(of: gw_mac) { MACAddress($0.prefix(6)) } }
    public var floods: Bool { flags & UInt8(NV_SUBNET_NO_FLOOD.rawValue) == 0 }
    public var gateway4: IPAddress? {
        flags & UInt8(NV_SUBNET_HAS_GW4.rawValue) != 0 ? address(family: UInt8(NV_AF_INET), gw4) : nil
    }
    public var gateway6: IPAddress? {
        flags & UInt8(NV_SUBNET_HAS_GW6.rawValue) != 0 ? address(family: UInt8(NV_AF_INET6), gw6) : nil
    }
}

extension nv_port {
    public init(vsid: UInt32, mac: MACAddress, flags: [nv_port_flags] = []) {
        self.init()
        self.vsid = vsid
        copyBytes(mac.bytes, into: &self.mac)
        self.flags = UInt8(flags.reduce(0) { $0 | $1.rawValue })
    }

    /// The entry as the compiler writes it (nvgre_abi.h): with its VSID's subnet's fields
    /// copied in (none: the program looks for the subnet, finds none and drops) and its
    /// allowed addresses when there is at most one per family, so that a unicast frame from
    /// the port costs one lookup instead of three. port_cas keeps every address either way.
    public func inlined(subnet: nv_subnet?, addresses: [IPAddress]) -> nv_port {
        let inlineFlags = [NV_PORT_SUBNET_INLINE, NV_PORT_CAS_INLINE, NV_PORT_HAS_CA4, NV_PORT_HAS_CA6]
        var p = nv_port()
        p.vsid = vsid
        p.mac = mac
        p.flags = flags & ~UInt8(inlineFlags.reduce(0) { $0 | $1.rawValue })
        if let subnet {
            p.flags |= UInt8(NV_PORT_SUBNET_INLINE.rawValue)
            p.rdid = subnet.rdid
            p.stats_slot = subnet.stats_slot
            p.gw_mac = subnet.gw_mac
        }
        let v4 = Set(addresses.filter { $0.family == .v4 })
        let v6 = Set(addresses.filter { $0.family == .v6 })
        guard v4.count <= 1, v6.count <= 1 else { return p }
        p.flags |= UInt8(NV_PORT_CAS_INLINE.rawValue)
        if let a = v4.first {
            p.flags |= UInt8(NV_PORT_HAS_CA4.rawValue)
            copyBytes(a.bytes, into: &p.ca4)
        }
        if let a = v6.first {
            p.flags |= UInt8(NV_PORT_HAS_CA6.rawValue)
            copyBytes(a.bytes, into: &p.ca6)
        }
        return p
    }
}

/// Where one VSID's broadcast goes from this host: the other PAs that host it (at most
/// NV_FLOOD_MAX_PEERS) and the local ports in it (at most NV_FLOOD_MAX_PORTS).
extension nv_flood_list {
    public static let maxPeers = Int(NV_FLOOD_MAX_PEERS)
    public static let maxPorts = Int(NV_FLOOD_MAX_PORTS)

    /// `share`: each port's share of replication (per CPU as the data path counts it).
    public init(peers: [IPAddress], ports: [UInt32], share: ExceptionShare = .unlimited, cpus: Int = 1) {
        precondition(peers.count <= Self.maxPeers && ports.count <= Self.maxPorts, "flood list too long")
        self.init()
        n_peers = UInt32(peers.count)
        n_ports = UInt32(ports.count)
        (interval_ns, burst_ns) = share.perCPU(cpus: cpus)
        let peersAt = MemoryLayout<nv_flood_list>.offset(of: \.peers)!
        let portsAt = MemoryLayout<nv_flood_list>.offset(of: \.ports)!
        let stride = MemoryLayout<nv_flood_peer>.stride
        withUnsafeMutableBytes(of: &self) { raw in
            for (i, pa) in peers.enumerated() {
                var peer = nv_flood_peer()
                peer.family = pa.family.rawValue
                copyBytes(pa.padded16, into: &peer.pa)
                withUnsafeBytes(of: peer) {
                    raw.baseAddress!.advanced(by: peersAt + i * stride).copyMemory(
                        from: $0.baseAddress!, byteCount: stride)
                }
            }
            for (i, port) in ports.enumerated() {
                raw.storeBytes(of: port, toByteOffset: portsAt + 4 * i, as: UInt32.self)
            }
        }
    }

    public var peerAddresses: [IPAddress] {
        let peersAt = MemoryLayout<nv_flood_list>.offset(of: \.peers)!
        let stride = MemoryLayout<nv_flood_peer>.stride
        return withUnsafeBytes(of: self) { raw in
            (0..<min(Int(n_peers), Self.maxPeers)).map { i in
                let peer = raw.loadUnaligned(fromByteOffset: peersAt + i * stride, as: nv_flood_peer.self)
                return address(family: peer.family, peer.pa)
            }
        }
    }

    /// The same list with other peers (the share and the ports kept).
    public func with(peers: [IPAddress]) -> nv_flood_list {
        var l = nv_flood_list(peers: peers, ports: portIfindexes)
        l.interval_ns = interval_ns
        l.burst_ns = burst_ns
        return l
    }

    public var portIfindexes: [UInt32] {
        let portsAt = MemoryLayout<nv_flood_list>.offset(of: \.ports)!
        return withUnsafeBytes(of: self) { raw in
            (0..<min(Int(n_ports), Self.maxPorts)).map {
                raw.loadUnaligned(fromByteOffset: portsAt + 4 * $0, as: UInt32.self)
            }
        }
    }
}

extension nv_port_ca_key {
    public init(ifindex: UInt32, ca: IPAddress) {
        self.init()
        self.ifindex = ifindex
        family = ca.family.rawValue
        withUnsafeMutableBytes(of: &self.ca) { ca.storePadded16(into: $0) }
    }
}

extension nv_route_key {
    /// A prefix of routing domain `rdid`: `prefixLength` counts address bits only.
    public init(rdid: UInt32, prefix: IPAddress, prefixLength: Int) {
        self.init()
        prefixlen = UInt32(NV_ROUTE_KEY_PREFIX_BITS) + UInt32(prefixLength)
        rdid_be = rdid.bigEndian
        family = prefix.family.rawValue
        copyBytes(prefix.padded16, into: &addr)
    }
}

extension nv_route_val {
    /// A customer route names its next hop, a CA with a lookup record in `vsid`.
    public init(vsid: UInt32, kind: nv_route_kind, nextHop: IPAddress? = nil) {
        self.init()
        self.vsid = vsid
        self.kind = kind.rawValue
        if let nh = nextHop {
            nh_family = nh.family.rawValue
            copyBytes(nh.padded16, into: &self.nh)
        }
    }

    public var nextHop: IPAddress? { nh_family == 0 ? nil : address(family: nh_family, nh) }
}

extension nv_pa_key {
    public init(_ pa: IPAddress) {
        self.init()
        family = pa.family.rawValue
        copyBytes(pa.padded16, into: &addr)
    }
}

/// Each routing domain's share of the exception path: at most `perSecond` exceptions a
/// second, in bursts of `burst` (0 per second: no limit). XDP keeps one bucket per CPU, so
/// the share is divided among the CPUs that may run the programs.
public struct ExceptionShare: Equatable, Sendable {
    public var perSecond: UInt32
    public var burst: UInt32

    public static let `default` = ExceptionShare(perSecond: 2000, burst: 200)
    /// A VM port's, within its domain's: one VM takes at most a quarter of its tenant's.
    public static let defaultPerPort = ExceptionShare(perSecond: 500, burst: 50)
    /// A VM port's broadcast and multicast that is replicated (ARP, ND, DHCP, mDNS...).
    public static let defaultFlood = ExceptionShare(perSecond: 200, burst: 50)
    public static let unlimited = ExceptionShare(perSecond: 0, burst: 0)

    public init(perSecond: UInt32, burst: UInt32) {
        self.perSecond = perSecond
        self.burst = burst
    }

    /// (nanoseconds between exceptions, burst tolerance in nanoseconds) of one CPU's bucket.
    public func perCPU(cpus: Int) -> (interval: UInt32, burst: UInt32) {
        guard perSecond > 0 else { return (0, 0) }
        let interval = min(UInt64(UInt32.max), 1_000_000_000 * UInt64(max(1, cpus)) / UInt64(perSecond))
        let perCPUBurst = max(1, UInt64(burst) / UInt64(max(1, cpus)))
        return (UInt32(max(1, interval)), UInt32(min(UInt64(UInt32.max), (perCPUBurst - 1) * interval)))
    }
}

extension nv_config {
    public init(
        uplinkIfindex: UInt32, pa4: IPAddress?, pa6: IPAddress?, useRoutingRules: Bool = false,
        externalIfindex: UInt32 = 0, exceptionShare: ExceptionShare = .unlimited,
        portExceptionShare: ExceptionShare = .unlimited, cpus: Int = 1
    ) {
        self.init()
        uplink_ifindex = uplinkIfindex
        external_ifindex = externalIfindex
        (exc_interval_ns, exc_burst_ns) = exceptionShare.perCPU(cpus: cpus)
        (exc_port_interval_ns, exc_port_burst_ns) = portExceptionShare.perCPU(cpus: cpus)
        if useRoutingRules { flags |= NV_CFG_FIB_USE_RULES.rawValue }
        if let p = pa4 {
            flags |= NV_CFG_HAS_PA4.rawValue
            copyBytes(p.bytes, into: &self.pa4)
        }
        if let p = pa6 {
            flags |= NV_CFG_HAS_PA6.rawValue
            copyBytes(p.bytes, into: &self.pa6)
        }
    }
}

// MARK: gateway

/// The four bytes of an IPv4 address as an ABI field expects them.
private func v4Bytes(_ a: IPAddress) -> [UInt8] { Array(a.bytes.prefix(4)) }

extension nv_ext_addr_key {
    public init(_ address: IPAddress) {
        self.init()
        copyBytes(v4Bytes(address), into: &addr)
    }
}

extension nv_infra_key {
    /// An infrastructure prefix of either family.
    public init(prefix: IPAddress, prefixLength: Int) {
        self.init()
        prefixlen = UInt32(NV_INFRA_KEY_PREFIX_BITS) + UInt32(prefixLength)
        family = prefix.family.rawValue
        copyBytes(prefix.padded16, into: &addr)
    }

    /// The key that finds the longest infrastructure prefix holding `address`.
    public init(address: IPAddress) { self.init(prefix: address, prefixLength: address.bytes.count * 8) }

    /// The prefix this key holds.
    public var prefix: IPPrefix? {
        let bytes = withUnsafeBytes(of: addr) { Array($0) }
        let a = family == UInt8(NV_AF_INET) ? IPAddress(v4: Array(bytes.prefix(4))) : IPAddress(v6: bytes)
        return IPPrefix(address: a, length: Int(prefixlen) - Int(NV_INFRA_KEY_PREFIX_BITS))
    }
}

extension nv_gw_prefix_key {
    /// A physical IPv4 prefix that route-mode domain `rdid` reaches through the gateway.
    public init(rdid: UInt32, prefix: IPAddress, prefixLength: Int) {
        self.init()
        prefixlen = UInt32(NV_GW_PREFIX_KEY_BITS) + UInt32(prefixLength)
        rdid_be = rdid.bigEndian
        copyBytes(v4Bytes(prefix), into: &addr)
    }
}

extension nv_gw_routed_key {
    /// An IPv4 subnet of a route-mode domain, as the outside reaches it.
    public init(prefix: IPAddress, prefixLength: Int) {
        self.init()
        prefixlen = UInt32(prefixLength)
        copyBytes(v4Bytes(prefix), into: &addr)
    }
}

extension nv_service_key {
    /// `port` in host order; the key holds it in network order, as the packet does.
    public init(proto: UInt8, address: IPAddress, port: UInt16) {
        self.init()
        self.proto = proto
        self.port = port.bigEndian
        copyBytes(v4Bytes(address), into: &addr)
    }
}

extension nv_service {
    public init(rdid: UInt32, ca: IPAddress, port: UInt16) {
        self.init()
        self.rdid = rdid
        copyBytes(v4Bytes(ca), into: &self.ca)
        ca_port = port.bigEndian
    }

    public var customerAddress: IPAddress { IPAddress(v4: bytes(of: ca, count: 4)) }
    public var customerPort: UInt16 { UInt16(bigEndian: ca_port) }
}

/// One NAT flow in host terms (ports in host order); `flow` gives the ABI value and the
/// two keys under which the maps hold it.
public struct NATFlow: Hashable, Sendable {
    public var proto: UInt8
    public var rdid: UInt32
    public var vsid: UInt32
    public var ca: IPAddress
    public var caPort: UInt16
    public var ext: IPAddress
    public var extPort: UInt16
    public var remote: IPAddress
    public var remotePort: UInt16

    public init(
        proto: UInt8, rdid: UInt32, vsid: UInt32, ca: IPAddress, caPort: UInt16, ext: IPAddress, extPort: UInt16,
        remote: IPAddress, remotePort: UInt16
    ) {
        self.proto = proto
        self.rdid = rdid
        self.vsid = vsid
        self.ca = ca
        self.caPort = caPort
        self.ext = ext
        self.extPort = extPort
        self.remote = remote
        self.remotePort = remotePort
    }

    public init(_ v: nv_nat_flow) {
        self.init(
            proto: v.proto, rdid: v.rdid, vsid: v.vsid, ca: IPAddress(v4: bytes(of: v.ca, count: 4)),
            caPort: UInt16(bigEndian: v.ca_port), ext: IPAddress(v4: bytes(of: v.ext, count: 4)),
            extPort: UInt16(bigEndian: v.ext_port), remote: IPAddress(v4: bytes(of: v.remote, count: 4)),
            remotePort: UInt16(bigEndian: v.remote_port))
    }

    public var outKey: nv_nat_out_key {
        var k = nv_nat_out_key()
        k.rdid = rdid
        k.proto = proto
        k.ca_port = caPort.bigEndian
        copyBytes(v4Bytes(ca), into: &k.ca)
        copyBytes(v4Bytes(remote), into: &k.remote)
        k.remote_port = remotePort.bigEndian
        return k
    }

    public var inKey: nv_nat_in_key {
        var k = nv_nat_in_key()
        k.proto = proto
        k.ext_port = extPort.bigEndian
        copyBytes(v4Bytes(ext), into: &k.ext)
        copyBytes(v4Bytes(remote), into: &k.remote)
        k.remote_port = remotePort.bigEndian
        return k
    }

    public func value(flags: NATFlags, lastSeenNanoseconds: UInt64) -> nv_nat_flow {
        var v = nv_nat_flow()
        v.last_seen_ns = lastSeenNanoseconds
        v.rdid = rdid
        v.vsid = vsid
        copyBytes(v4Bytes(ca), into: &v.ca)
        copyBytes(v4Bytes(ext), into: &v.ext)
        copyBytes(v4Bytes(remote), into: &v.remote)
        v.ca_port = caPort.bigEndian
        v.ext_port = extPort.bigEndian
        v.remote_port = remotePort.bigEndian
        v.proto = proto
        v.natFlags = flags
        return v
    }
}

extension nv_config {
    /// This host's provider address of `family`, if it has one.
    public func providerAddress(_ family: IPFamily) -> IPAddress? {
        if family == .v4 { return flags & NV_CFG_HAS_PA4.rawValue != 0 ? IPAddress(v4: bytes(of: pa4, count: 4)) : nil }
        return flags & NV_CFG_HAS_PA6.rawValue != 0 ? IPAddress(v6: bytes(of: pa6, count: 16)) : nil
    }
}

// MARK: the typed edge
// Numbers from the ABI header are compared here and nowhere else: every other file sees the
// imported C enums (nv_exception_reason, nv_route_kind, ...) or the option set below.

/// enum nv_nat_flags, as an option set.
public struct NATFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let offloaded = NATFlags(rawValue: UInt8(NV_NAT_OFFLOADED.rawValue))
    public static let fin = NATFlags(rawValue: UInt8(NV_NAT_FIN.rawValue))
    public static let rst = NATFlags(rawValue: UInt8(NV_NAT_RST.rawValue))
    public static let service = NATFlags(rawValue: UInt8(NV_NAT_SERVICE.rawValue))
    public static let established = NATFlags(rawValue: UInt8(NV_NAT_ESTABLISHED.rawValue))
    /// FIN or RST seen: the flow is closing.
    public static let closing: NATFlags = [.fin, .rst]
}

extension nv_nat_flow {
    public var natFlags: NATFlags {
        get { NATFlags(rawValue: flags) }
        set { flags = newValue.rawValue }
    }
}

extension nv_route_val {
    public var routeKind: nv_route_kind { nv_route_kind(kind) }
}

extension nv_lookup_val {
    public var recordType: nv_record_type { nv_record_type(UInt32(type)) }
}

extension nv_trace {
    public var traceKind: nv_trace_kind { nv_trace_kind(UInt32(kind)) }
    /// The drop reason (kind NV_TRACE_DROP) or exception reason (NV_TRACE_EXCEPTION).
    public var dropReason: nv_drop_reason { nv_drop_reason(UInt32(code)) }
    public var exceptionReason: nv_exception_reason { nv_exception_reason(UInt32(code)) }
}

extension nv_config {
    public func has(_ flag: nv_config_flags) -> Bool { flags & flag.rawValue != 0 }
    /// This host's IPv4 and IPv6 provider addresses, when it has one.
    public var providerAddress4: IPAddress? { has(NV_CFG_HAS_PA4) ? address(family: UInt8(NV_AF_INET), pa4) : nil }
    public var providerAddress6: IPAddress? { has(NV_CFG_HAS_PA6) ? address(family: UInt8(NV_AF_INET6), pa6) : nil }
}

extension nv_port_ca_key {
    public var customerAddress: IPAddress { address(family: family, ca) }
}

extension nv_pa_key {
    public var providerAddress: IPAddress { address(family: family, addr) }
}

extension nv_exception_reason: @retroactive Hashable {}
extension nv_vsid_counter: @retroactive Hashable {}
extension nv_gw_counter: @retroactive Hashable {}
extension nv_domain_counter: @retroactive Hashable {}
extension nv_drop_reason: @retroactive Hashable {}
extension nv_gw_mode: @retroactive Hashable {}

extension nv_drop_reason: @retroactive CaseIterable {
    public static var allCases: [nv_drop_reason] { (0..<NV_DROP_MAX.rawValue).map { nv_drop_reason(rawValue: $0) } }
}

extension nv_exception_reason: @retroactive CaseIterable {
    public static var allCases: [nv_exception_reason] {
        (0..<NV_EXC_MAX.rawValue).map { nv_exception_reason(rawValue: $0) }
    }
}

extension nv_vsid_counter: @retroactive CaseIterable {
    public static var allCases: [nv_vsid_counter] { (0..<NV_CNT_MAX.rawValue).map { nv_vsid_counter(rawValue: $0) } }
}

extension nv_gw_counter: @retroactive CaseIterable {
    public static var allCases: [nv_gw_counter] { (0..<NV_GW_MAX.rawValue).map { nv_gw_counter(rawValue: $0) } }
}

extension nv_domain_counter: @retroactive CaseIterable {
    public static var allCases: [nv_domain_counter] {
        (0..<NV_DOM_MAX.rawValue).map { nv_domain_counter(rawValue: $0) }
    }
}
