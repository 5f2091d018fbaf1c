/// UDP, TCP (header only, for flow tests), ICMP and ICMPv6 messages with correct checksums.
public enum UDP {
    public static func datagram(src: IPAddress, dst: IPAddress, sport: UInt16, dport: UInt16, payload: [UInt8])
        -> [UInt8]
    {
        var d: [UInt8] = []
        d.appendBE16(sport)
        d.appendBE16(dport)
        d.appendBE16(UInt16(8 + payload.count))
        d.appendBE16(0)
        d += payload
        var sum = internetChecksum(
            d, initial: pseudoHeaderSum(src: src, dst: dst, protocol: IPProtocol.udp.rawValue, length: d.count))
        if sum == 0 { sum = 0xffff }
        d.setBE16(sum, at: 6)
        return d
    }
}

public enum TCP {
    /// A 20-byte TCP header (no options) with the given flags, plus payload.
    public static func segment(
        src: IPAddress, dst: IPAddress, sport: UInt16, dport: UInt16, seq: UInt32 = 1,
        ack: UInt32 = 0, flags: UInt8 = 0x02, payload: [UInt8] = []
    ) -> [UInt8] {
        var d: [UInt8] = []
        d.appendBE16(sport)
        d.appendBE16(dport)
        d.appendBE32(seq)
        d.appendBE32(ack)
        d += [0x50, flags]
        d.appendBE16(65535)
        d.appendBE16(0)
        d.appendBE16(0)
        d += payload
        d.setBE16(
            internetChecksum(
                d, initial: pseudoHeaderSum(src: src, dst: dst, protocol: IPProtocol.tcp.rawValue, length: d.count)),
            at: 16)
        return d
    }
}

public enum ICMP {
    public static func echoRequest(id: UInt16, sequence: UInt16, payload: [UInt8]) -> [UInt8] {
        var d: [UInt8] = [8, 0, 0, 0]
        d.appendBE16(id)
        d.appendBE16(sequence)
        d += payload
        d.setBE16(internetChecksum(d), at: 2)
        return d
    }
}

public enum ICMPv6 {
    /// An ICMPv6 message; the checksum covers the pseudo header of src and dst.
    public static func message(type: UInt8, code: UInt8, body: [UInt8], src: IPAddress, dst: IPAddress) -> [UInt8] {
        var d: [UInt8] = [type, code, 0, 0] + body
        d.setBE16(
            internetChecksum(
                d, initial: pseudoHeaderSum(src: src, dst: dst, protocol: IPProtocol.icmpv6.rawValue, length: d.count)),
            at: 2)
        return d
    }

    public static func echoRequest(id: UInt16, sequence: UInt16, payload: [UInt8], src: IPAddress, dst: IPAddress)
        -> [UInt8]
    {
        var body: [UInt8] = []
        body.appendBE16(id)
        body.appendBE16(sequence)
        return message(type: 128, code: 0, body: body + payload, src: src, dst: dst)
    }

    /// Neighbor solicitation for `target`, optionally with a source link-layer address option.
    public static func neighborSolicitation(target: IPAddress, sourceMAC: MACAddress?, src: IPAddress, dst: IPAddress)
        -> [UInt8]
    {
        var body: [UInt8] = [0, 0, 0, 0] + target.bytes
        if let mac = sourceMAC { body += [1, 1] + mac.bytes }
        return message(type: 135, code: 0, body: body, src: src, dst: dst)
    }

    /// Neighbor advertisement with the target link-layer address option.
    public static func neighborAdvertisement(
        target: IPAddress, targetMAC: MACAddress, router: Bool, solicited: Bool,
        override: Bool, src: IPAddress, dst: IPAddress
    ) -> [UInt8] {
        let flags = (router ? 0x80 : 0) | (solicited ? 0x40 : 0) | (override ? 0x20 : 0)
        let body: [UInt8] = [UInt8(flags), 0, 0, 0] + target.bytes + [2, 1] + targetMAC.bytes
        return message(type: 136, code: 0, body: body, src: src, dst: dst)
    }

    /// The solicited-node multicast address and MAC for `target`.
    public static func solicitedNode(_ target: IPAddress) -> (IPAddress, MACAddress) {
        let t = target.bytes
        let ip = IPAddress(v6: [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]])
        return (ip, MACAddress([0x33, 0x33, 0xff, t[13], t[14], t[15]]))
    }
}

public enum ARP {
    public static func packet(
        op: UInt16, senderMAC: MACAddress, senderIP: IPAddress,
        targetMAC: MACAddress, targetIP: IPAddress
    ) -> [UInt8] {
        var d: [UInt8] = []
        d.appendBE16(1)
        d.appendBE16(EtherType.ipv4.rawValue)
        d += [6, 4]
        d.appendBE16(op)
        return d + senderMAC.bytes + senderIP.bytes + targetMAC.bytes + targetIP.bytes
    }
}

/// What a hypervisor sends for a VM that has just arrived, so that whatever learns
/// locations from traffic (a switch, Open vSwitch's MAC learning, a VM's neighbor cache)
/// learns the new one at once: a gratuitous ARP request for an IPv4 address, an unsolicited
/// neighbor advertisement (override set) to all nodes for an IPv6 one.
public enum Arrival {
    public static func announcement(of address: IPAddress, mac: MACAddress) -> [UInt8] {
        switch address.family {
        case .v4:
            let arp = ARP.packet(
                op: 1, senderMAC: mac, senderIP: address, targetMAC: MACAddress([0, 0, 0, 0, 0, 0]),
                targetIP: address)
            return Ethernet.frame(dst: .broadcast, src: mac, type: .arp, payload: arp)
        case .v6:
            let allNodes = IPAddress(v6: [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
            let na = ICMPv6.neighborAdvertisement(
                target: address, targetMAC: mac, router: false, solicited: false, override: true, src: address,
                dst: allNodes)
            let ip = IPv6Header(
                src: address, dst: allNodes, nextHeader: IPProtocol.icmpv6.rawValue, payloadLength: na.count,
                hopLimit: 255)
            return Ethernet.frame(
                dst: MACAddress([0x33, 0x33, 0, 0, 0, 1]), src: mac, type: .ipv6, payload: ip.bytes + na)
        }
    }
}
