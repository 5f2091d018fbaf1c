/// The answer to a customer packet too big for the underlay once encapsulated: ICMP
/// "fragmentation needed" (type 3 code 4, RFC 1191) or ICMPv6 "packet too big" (type 2,
/// RFC 8201), from the subnet's gateway back to the VM, carrying the MTU that fits.
public enum TooBig {
    /// The Ethernet frame to hand to the VM that sent `frame`, or nil when no answer is due:
    /// not IP, an IPv4 packet without DF (it may be fragmented; XDP cannot), or an ICMP
    /// error itself. `gateway` is the subnet's gateway address of the packet's family; the
    /// packet's destination stands in when the subnet has none. `vm` is the sender's MAC when
    /// the frame no longer carries it (the router rewrote it before the packet was found too
    /// big).
    public static func answer(to frame: [UInt8], mtu: Int, gatewayMAC: MACAddress, gateway: IPAddress?, vm: MACAddress? = nil) -> [UInt8]? {
        guard let f = DecodedFrame(frame), let src = f.src, let dst = f.dst, f.vlan == nil else { return nil }
        let packet = Array(frame[f.l3Offset...])
        let from = gateway ?? dst
        let payload: [UInt8]
        if src.family == .v4 {
            guard packet.count >= 20, packet[6] & 0x40 != 0 else { return nil }  // DF
            if f.ipProtocol == IPProtocol.icmp.rawValue, isICMPError(packet, headerLength: Int(packet[0] & 0x0f) * 4, v6: false) { return nil }
            // As much of the original as keeps the error within 576 bytes (RFC 1812).
            var icmp: [UInt8] = [3, 4, 0, 0, 0, 0]
            icmp.appendBE16(UInt16(clamping: mtu))
            icmp += packet.prefix(576 - 20 - 8)
            icmp.setBE16(internetChecksum(icmp), at: 2)
            payload = IPPacket.build(src: from, dst: src, proto: IPProtocol.icmp.rawValue, payload: icmp)
        } else {
            if f.ipProtocol == IPProtocol.icmpv6.rawValue, isICMPError(packet, headerLength: 40, v6: true) { return nil }
            var body: [UInt8] = []
            body.appendBE32(UInt32(clamping: mtu))
            // The error must fit the IPv6 minimum MTU, 1280 (RFC 4443).
            let message = ICMPv6.message(type: 2, code: 0, body: body + packet.prefix(1280 - 40 - 8), src: from, dst: src)
            payload = IPPacket.build(src: from, dst: src, proto: IPProtocol.icmpv6.rawValue, payload: message)
        }
        return Ethernet.frame(dst: vm ?? f.srcMAC, src: gatewayMAC, type: src.family == .v4 ? .ipv4 : .ipv6, payload: payload)
    }

    /// ICMP errors are never answered with errors (RFC 1122, RFC 4443).
    private static func isICMPError(_ packet: [UInt8], headerLength: Int, v6: Bool) -> Bool {
        guard packet.count > headerLength else { return false }
        let type = packet[headerLength]
        return v6 ? type < 128 : [3, 4, 5, 11, 12].contains(type)
    }
}
