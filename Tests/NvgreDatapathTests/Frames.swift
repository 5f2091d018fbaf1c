import NvgreWire

/// Test frames, built with the wire codecs (never with the code under test).
enum Frames {
    static let payload = [UInt8](repeating: 0xab, count: 32)

    static func udp(
        _ srcMAC: MACAddress, _ dstMAC: MACAddress, _ src: IPAddress, _ dst: IPAddress,
        ttl: UInt8 = 64, tos: UInt8 = 0, sport: UInt16 = 40000, dport: UInt16 = 5000,
        payloadLength: Int = 32
    ) -> [UInt8] {
        let l4 = UDP.datagram(
            src: src, dst: dst, sport: sport, dport: dport,
            payload: [UInt8](repeating: 0xab, count: payloadLength))
        let ip = IPPacket.build(src: src, dst: dst, proto: IPProtocol.udp.rawValue, payload: l4, ttl: ttl, tos: tos)
        return Ethernet.frame(dst: dstMAC, src: srcMAC, type: src.family == .v4 ? .ipv4 : .ipv6, payload: ip)
    }

    static func tcp(
        _ srcMAC: MACAddress, _ dstMAC: MACAddress, _ src: IPAddress, _ dst: IPAddress,
        sport: UInt16, dport: UInt16
    ) -> [UInt8] {
        let l4 = TCP.segment(src: src, dst: dst, sport: sport, dport: dport)
        let ip = IPPacket.build(src: src, dst: dst, proto: IPProtocol.tcp.rawValue, payload: l4)
        return Ethernet.frame(dst: dstMAC, src: srcMAC, type: src.family == .v4 ? .ipv4 : .ipv6, payload: ip)
    }

    /// The FlowHash of a frame built by `udp` with default ports.
    static func udpHash(_ src: IPAddress, _ dst: IPAddress, sport: UInt16 = 40000, dport: UInt16 = 5000) -> FlowHash {
        FlowHash(src: src, dst: dst, protocol: IPProtocol.udp.rawValue, sport: sport, dport: dport)
    }

    static func arpRequest(
        _ mac: MACAddress, _ sender: IPAddress, target: IPAddress, sha: MACAddress? = nil,
        op: UInt16 = 1
    ) -> [UInt8] {
        Ethernet.frame(
            dst: .broadcast, src: mac, type: .arp,
            payload: ARP.packet(
                op: op, senderMAC: sha ?? mac, senderIP: sender,
                targetMAC: MACAddress([0, 0, 0, 0, 0, 0]), targetIP: target))
    }

    static func arpReply(to vm: VM, from mac: MACAddress, ip: IPAddress) -> [UInt8] {
        Ethernet.frame(
            dst: vm.mac, src: mac, type: .arp,
            payload: ARP.packet(op: 2, senderMAC: mac, senderIP: ip, targetMAC: vm.mac, targetIP: vm.ip4))
    }

    static func neighborSolicitation(from vm: VM, src: IPAddress? = nil, target: IPAddress, withOption: Bool = true)
        -> [UInt8]
    {
        let (group, groupMAC) = ICMPv6.solicitedNode(target)
        let s = src ?? vm.ip6
        let icmp = ICMPv6.neighborSolicitation(target: target, sourceMAC: withOption ? vm.mac : nil, src: s, dst: group)
        let ip = IPv6Header(
            src: s, dst: group, nextHeader: IPProtocol.icmpv6.rawValue, payloadLength: icmp.count,
            hopLimit: 255
        ).bytes
        return Ethernet.frame(dst: groupMAC, src: vm.mac, type: .ipv6, payload: ip + icmp)
    }

    static func neighborAdvertisement(to vm: VM, target: IPAddress, mac: MACAddress, router: Bool) -> [UInt8] {
        let icmp = ICMPv6.neighborAdvertisement(
            target: target, targetMAC: mac, router: router, solicited: true,
            override: true, src: target, dst: vm.ip6)
        let ip = IPv6Header(
            src: target, dst: vm.ip6, nextHeader: IPProtocol.icmpv6.rawValue, payloadLength: icmp.count,
            hopLimit: 255
        ).bytes
        return Ethernet.frame(dst: vm.mac, src: mac, type: .ipv6, payload: ip + icmp)
    }

    /// An NVGRE frame arriving on the uplink of host A (outer destination MAC = A's uplink).
    static func nvgre(
        _ inner: [UInt8], vsid: UInt32, from pa: IPAddress, to dst: IPAddress = Plan.paA,
        flowID: UInt8 = 0x5a
    ) -> [UInt8] {
        let gre = NVGRE.greHeader(vsid: vsid, flowID: flowID) + inner
        return outer(gre, from: pa, to: dst)
    }

    /// Outer Ethernet + IP (protocol GRE) around `payload`, from a peer to host A.
    static func outer(
        _ payload: [UInt8], from pa: IPAddress, to dst: IPAddress = Plan.paA,
        flagsAndFragment: UInt16 = 0x4000, proto: UInt8 = IPProtocol.gre.rawValue
    ) -> [UInt8] {
        let ip: [UInt8]
        if pa.family == .v4 {
            ip =
                IPv4Header(
                    src: pa, dst: dst, proto: proto, payloadLength: payload.count,
                    flagsAndFragment: flagsAndFragment
                ).bytes
        } else {
            ip = IPv6Header(src: pa, dst: dst, nextHeader: proto, payloadLength: payload.count).bytes
        }
        return Ethernet.frame(
            dst: Plan.uplinkMAC, src: pa.family == .v4 ? Plan.macB : Plan.mac6B,
            type: pa.family == .v4 ? .ipv4 : .ipv6, payload: ip + payload)
    }
}
