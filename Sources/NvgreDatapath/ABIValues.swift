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
func address<T>(family: UInt8, _ field: T) -> IPAddress {
    let b = bytes(of: field, count: 16)
    return family == NV_AF_INET6 ? IPAddress(v6: b) : IPAddress(v4: Array(b.prefix(4)))
}

extension nv_lookup_key {
    public init(vsid: UInt32, ca: IPAddress) {
        self.init()
        self.vsid = vsid
        family = ca.family.rawValue
        copyBytes(ca.padded16, into: &self.ca)
    }
}

extension nv_lookup_key {
    public var customerAddress: IPAddress { address(family: family, ca) }
}

extension nv_lookup_val {
    public init(pa: IPAddress, mac: MACAddress, type: nv_record_type = NV_REC_STATIC, portIfindex: UInt32 = 0) {
        self.init()
        pa_family = pa.family.rawValue
        copyBytes(pa.padded16, into: &self.pa)
        copyBytes(mac.bytes, into: &self.mac)
        self.type = UInt8(type.rawValue)
        port_ifindex = portIfindex
    }

    public var providerAddress: IPAddress { address(family: pa_family, pa) }

    public var customerMAC: MACAddress { MACAddress(bytes(of: mac, count: 6)) }
}

extension nv_subnet {
    public init(routingDomain: UInt32, statsSlot: UInt32, gatewayMAC: MACAddress,
                gateway4: IPAddress? = nil, gateway6: IPAddress? = nil) {
        self.init()
        rdid = routingDomain
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

    public var gatewayMAC: MACAddress { MACAddress(bytes(of: gw_mac, count: 6)) }
    public var gateway4: IPAddress? {
        flags & UInt8(NV_SUBNET_HAS_GW4.rawValue) != 0 ? address(family: UInt8(NV_AF_INET), gw4) : nil
    }
    public var gateway6: IPAddress? {
        flags & UInt8(NV_SUBNET_HAS_GW6.rawValue) != 0 ? address(family: UInt8(NV_AF_INET6), gw6) : nil
    }
}

extension nv_port {
    public init(vsid: UInt32, mac: MACAddress) {
        self.init()
        self.vsid = vsid
        copyBytes(mac.bytes, into: &self.mac)
    }
}

extension nv_port_ca_key {
    public init(ifindex: UInt32, ca: IPAddress) {
        self.init()
        self.ifindex = ifindex
        family = ca.family.rawValue
        copyBytes(ca.padded16, into: &self.ca)
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
    public init(vsid: UInt32, kind: nv_route_kind) {
        self.init()
        self.vsid = vsid
        self.kind = kind.rawValue
    }
}

extension nv_pa_key {
    public init(_ pa: IPAddress) {
        self.init()
        family = pa.family.rawValue
        copyBytes(pa.padded16, into: &addr)
    }
}

extension nv_config {
    public init(uplinkIfindex: UInt32, pa4: IPAddress?, pa6: IPAddress?, useRoutingRules: Bool = false) {
        self.init()
        uplink_ifindex = uplinkIfindex
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
