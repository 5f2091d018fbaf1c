/// A minimal decoder for the headers the control plane needs to look at: Ethernet (one
/// optional 802.1Q tag), IPv4/IPv6 addresses and protocol, and NVGRE's GRE header.
public struct DecodedFrame: Sendable, Equatable {
    public var dstMAC: MACAddress
    public var srcMAC: MACAddress
    public var vlan: UInt16?
    public var etherType: UInt16
    public var src: IPAddress?
    public var dst: IPAddress?
    public var ipProtocol: UInt8?
    /// Offset of the L3 header in the frame.
    public var l3Offset: Int

    public init?(_ f: [UInt8]) {
        guard f.count >= 14 else { return nil }
        dstMAC = MACAddress(Array(f[0..<6]))
        srcMAC = MACAddress(Array(f[6..<12]))
        var type = f.be16(at: 12)
        var off = 14
        if type == EtherType.vlan.rawValue || type == EtherType.qinq.rawValue {
            guard f.count >= 18 else { return nil }
            vlan = f.be16(at: 14) & 0x0fff
            type = f.be16(at: 16)
            off = 18
        }
        etherType = type
        l3Offset = off
        if type == EtherType.ipv4.rawValue, f.count >= off + 20, f[off] >> 4 == 4 {
            src = IPAddress(v4: Array(f[(off + 12)..<(off + 16)]))
            dst = IPAddress(v4: Array(f[(off + 16)..<(off + 20)]))
            ipProtocol = f[off + 9]
        } else if type == EtherType.ipv6.rawValue, f.count >= off + 40, f[off] >> 4 == 6 {
            src = IPAddress(v6: Array(f[(off + 8)..<(off + 24)]))
            dst = IPAddress(v6: Array(f[(off + 24)..<(off + 40)]))
            ipProtocol = f[off + 6]
        }
    }
}

/// The NVGRE view of an underlay frame: outer addresses, VSID, FlowID and the inner frame.
public struct DecodedNVGRE: Sendable, Equatable {
    public var outer: DecodedFrame
    public var flagsAndVersion: UInt16
    public var protocolType: UInt16
    public var vsid: UInt32
    public var flowID: UInt8
    public var inner: [UInt8]

    public init?(_ f: [UInt8]) {
        guard let o = DecodedFrame(f), o.ipProtocol == IPProtocol.gre.rawValue else { return nil }
        let greOffset = o.l3Offset + (o.etherType == EtherType.ipv4.rawValue ? Int(f[o.l3Offset] & 0x0f) * 4 : 40)
        guard f.count >= greOffset + 8 else { return nil }
        outer = o
        flagsAndVersion = f.be16(at: greOffset)
        protocolType = f.be16(at: greOffset + 2)
        let key = f.be32(at: greOffset + 4)
        vsid = key >> 8
        flowID = UInt8(key & 0xff)
        inner = Array(f[(greOffset + 8)...])
    }
}
