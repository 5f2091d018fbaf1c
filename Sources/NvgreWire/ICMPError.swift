/// An ICMP error the data path's userspace half sends back to the sender of a customer
/// packet, in the name of the router the packet met (the subnet's gateway, or the gateway
/// host's external address).
public enum ICMPError: Equatable, Sendable {
    /// Too big for the underlay once encapsulated: ICMP "fragmentation needed" (type 3 code
    /// 4, RFC 1191) or ICMPv6 "packet too big" (type 2, RFC 8201), with the MTU that fits.
    case tooBig(mtu: Int)
    /// No route in the routing domain: ICMP "network unreachable" (type 3 code 0) or ICMPv6
    /// "no route to destination" (type 1 code 0, RFC 4443).
    case noRoute

    /// The Ethernet frame to hand to the host that sent `frame`, or nil when no answer is
    /// due: not IP, an ICMP error itself, (too big) an IPv4 packet without DF, which may be
    /// fragmented but not by XDP, or (no route) no `gateway`. `gateway` is the answering
    /// router's address of the packet's family (one of the other family counts as none); for
    /// too big the packet's destination stands in when there is none. `vm` is the
    /// sender's MAC when the frame no longer carries it (the router rewrote it first).
    public func answer(to frame: [UInt8], gatewayMAC: MACAddress, gateway: IPAddress?, vm: MACAddress? = nil)
        -> [UInt8]?
    {
        guard let f = DecodedFrame(frame), let src = f.src, let dst = f.dst, f.vlan == nil else { return nil }
        let packet = Array(frame[f.l3Offset...])
        // A router of the packet's family answers (another one cannot address the sender).
        let router = gateway?.family == src.family ? gateway : nil
        // No route: only a router may say so; the destination must not seem to.
        if self == .noRoute && router == nil { return nil }
        let from = router ?? dst
        let payload: [UInt8]
        if src.family == .v4 {
            guard packet.count >= 20 else { return nil }
            if case .tooBig = self, packet[6] & 0x40 == 0 { return nil }  // no DF
            if f.ipProtocol == IPProtocol.icmp.rawValue,
                Self.isError(packet, headerLength: Int(packet[0] & 0x0f) * 4, v6: false)
            {
                return nil
            }
            var icmp: [UInt8]
            switch self {
            case let .tooBig(mtu):
                icmp = [3, 4, 0, 0, 0, 0]
                icmp.appendBE16(UInt16(clamping: mtu))
            case .noRoute:
                icmp = [3, 0, 0, 0, 0, 0, 0, 0]
            }
            // As much of the original as keeps the error within 576 bytes (RFC 1812).
            icmp += packet.prefix(576 - 20 - 8)
            icmp.setBE16(internetChecksum(icmp), at: 2)
            payload = IPPacket.build(src: from, dst: src, proto: IPProtocol.icmp.rawValue, payload: icmp)
        } else {
            if f.ipProtocol == IPProtocol.icmpv6.rawValue, Self.isError(packet, headerLength: 40, v6: true) {
                return nil
            }
            let (type, body): (UInt8, [UInt8])
            switch self {
            case let .tooBig(mtu):
                var b: [UInt8] = []
                b.appendBE32(UInt32(clamping: mtu))
                (type, body) = (2, b)
            case .noRoute:
                (type, body) = (1, [0, 0, 0, 0])
            }
            // The error must fit the IPv6 minimum MTU, 1280 (RFC 4443).
            let message = ICMPv6.message(
                type: type, code: 0, body: body + packet.prefix(1280 - 40 - 8), src: from, dst: src)
            payload = IPPacket.build(src: from, dst: src, proto: IPProtocol.icmpv6.rawValue, payload: message)
        }
        return Ethernet.frame(
            dst: vm ?? f.srcMAC, src: gatewayMAC, type: src.family == .v4 ? .ipv4 : .ipv6, payload: payload)
    }

    /// ICMP errors are never answered with errors (RFC 1122, RFC 4443).
    private static func isError(_ packet: [UInt8], headerLength: Int, v6: Bool) -> Bool {
        guard packet.count > headerLength else { return false }
        let type = packet[headerLength]
        return v6 ? type < 128 : [3, 4, 5, 11, 12].contains(type)
    }
}
