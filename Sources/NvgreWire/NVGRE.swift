/// NVGRE framing (RFC 7637): outer Ethernet, outer IPv4 (DF, TTL 64) or IPv6, GRE with
/// flags 0x2000, protocol 0x6558 and key VSID << 8 | FlowID, then the customer frame.
public enum NVGRE {
    public static let flagsAndVersion: UInt16 = 0x2000
    public static let vsidRange: ClosedRange<UInt32> = 4096...16_777_214
    public static let ipv4Overhead = 42
    public static let ipv6Overhead = 62
    public static let outerTTL: UInt8 = 64

    /// The largest customer IP packet that fits an underlay link of `underlayMTU` once
    /// encapsulated: less the outer IP header, GRE and the inner Ethernet header (as many
    /// bytes as the overhead constants, whose outer Ethernet header the MTU does not count).
    public static func customerMTU(underlayMTU: Int, outer: IPFamily) -> Int {
        underlayMTU - (outer == .v6 ? ipv6Overhead : ipv4Overhead)
    }

    public static func greHeader(
        vsid: UInt32, flowID: UInt8, flags: UInt16 = flagsAndVersion,
        protocolType: UInt16 = EtherType.transparentEthernet.rawValue
    ) -> [UInt8] {
        var g: [UInt8] = []
        g.appendBE16(flags)
        g.appendBE16(protocolType)
        g.appendBE32(vsid << 8 | UInt32(flowID))
        return g
    }

    /// Encapsulates `inner` (a customer Ethernet frame). `hash` supplies FlowID and the IPv6
    /// flow label; `tos` is copied from the inner IP header by the encapsulator. FlowID is 0
    /// when `sendFlowID` is false (a peer that matches the whole GRE key).
    public static func encapsulate(
        inner: [UInt8], vsid: UInt32, hash: FlowHash, tos: UInt8 = 0,
        outerSrcMAC: MACAddress, outerDstMAC: MACAddress,
        srcPA: IPAddress, dstPA: IPAddress, sendFlowID: Bool = true
    ) -> [UInt8] {
        let gre = greHeader(vsid: vsid, flowID: sendFlowID ? hash.flowID : 0) + inner
        switch srcPA.family {
        case .v4:
            let ip = IPv4Header(
                src: srcPA, dst: dstPA, proto: IPProtocol.gre.rawValue, payloadLength: gre.count,
                ttl: outerTTL, tos: tos)
            return Ethernet.header(dst: outerDstMAC, src: outerSrcMAC, type: EtherType.ipv4.rawValue) + ip.bytes + gre
        case .v6:
            let ip = IPv6Header(
                src: srcPA, dst: dstPA, nextHeader: IPProtocol.gre.rawValue, payloadLength: gre.count,
                hopLimit: outerTTL, trafficClass: tos, flowLabel: hash.flowLabel)
            return Ethernet.header(dst: outerDstMAC, src: outerSrcMAC, type: EtherType.ipv6.rawValue) + ip.bytes + gre
        }
    }
}
