import Testing

@testable import NvgreWire

/// The ICMP errors sent back to VMs (packet too big, no route), read back byte by byte at
/// RFC 792/1191 and RFC 4443 offsets rather than through the decoder that built them.
struct ICMPErrorTests {
    let vmMAC: MACAddress = "02:00:00:00:01:01", gwMAC: MACAddress = "02:00:00:00:ff:01"

    func frame(_ src: IPAddress, _ dst: IPAddress, size: Int, df: Bool = true) -> [UInt8] {
        let udp = UDP.datagram(
            src: src, dst: dst, sport: 1000, dport: 2000, payload: [UInt8](repeating: 0xab, count: size))
        let ip: [UInt8]
        if src.family == .v4 {
            ip =
                IPv4Header(src: src, dst: dst, proto: 17, payloadLength: udp.count, flagsAndFragment: df ? 0x4000 : 0)
                .bytes + udp
        } else {
            ip = IPPacket.build(src: src, dst: dst, proto: 17, payload: udp)
        }
        return Ethernet.frame(
            dst: "02:00:00:00:01:02", src: vmMAC, type: src.family == .v4 ? .ipv4 : .ipv6, payload: ip)
    }

    @Test func fragmentationNeededCarriesTheMTUAndTheOriginal() throws {
        let original = frame("198.19.1.1", "198.19.1.2", size: 1472)
        let a = try #require(
            ICMPError.tooBig(mtu: 1458).answer(to: original, gatewayMAC: gwMAC, gateway: "198.19.1.254"))
        #expect(Array(a[0..<6]) == vmMAC.bytes && Array(a[6..<12]) == gwMAC.bytes && a[12] == 0x08 && a[13] == 0x00)
        let ip = Array(a[14...])
        #expect(ip[9] == 1)  // ICMP
        #expect(Array(ip[12..<16]) == [198, 19, 1, 254] && Array(ip[16..<20]) == [198, 19, 1, 1])
        #expect(Int(ip[2]) << 8 | Int(ip[3]) <= 576)  // RFC 1812
        let icmp = Array(ip[20...])
        #expect(icmp[0] == 3 && icmp[1] == 4 && Int(icmp[6]) << 8 | Int(icmp[7]) == 1458)
        #expect(internetChecksum(icmp) == 0)
        #expect(Array(icmp[8..<(8 + 28)]) == Array(original[14..<(14 + 28)]))  // original IP header + 8 bytes
    }

    @Test func packetTooBigCarriesTheMTUAndFitsTheMinimumMTU() throws {
        let original = frame("2001:db8:19:1::1", "2001:db8:19:1::2", size: 1452)
        let a = try #require(
            ICMPError.tooBig(mtu: 1438).answer(to: original, gatewayMAC: gwMAC, gateway: "2001:db8:19:1::fe"))
        let ip = Array(a[14...])
        #expect(a[12] == 0x86 && a[13] == 0xdd && ip[6] == 58 && ip.count <= 1280)
        let icmp = Array(ip[40...])
        #expect(icmp[0] == 2 && icmp[1] == 0)
        #expect(Array(icmp[4..<8]) == [0, 0, 0x05, 0x9e])  // 1438
        #expect(Array(icmp[8..<48]) == Array(original[14..<54]))
    }

    @Test func noAnswerWhereNoneIsDue() {
        #expect(
            ICMPError.tooBig(mtu: 1458).answer(
                to: frame("198.19.1.1", "198.19.1.2", size: 1472, df: false), gatewayMAC: gwMAC, gateway: nil) == nil)
        let icmpError = Ethernet.frame(
            dst: "02:00:00:00:01:02", src: vmMAC, type: .ipv4,
            payload: IPPacket.build(
                src: "198.19.1.1", dst: "198.19.1.2", proto: 1,
                payload: [3, 1, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 1464)))
        #expect(ICMPError.tooBig(mtu: 1458).answer(to: icmpError, gatewayMAC: gwMAC, gateway: nil) == nil)
        #expect(ICMPError.noRoute.answer(to: icmpError, gatewayMAC: gwMAC, gateway: "198.19.1.254") == nil)
        // Without a router address nobody may say "no route".
        #expect(
            ICMPError.noRoute.answer(to: frame("198.19.1.1", "192.0.2.9", size: 10), gatewayMAC: gwMAC, gateway: nil)
                == nil)
    }

    @Test func networkUnreachableIsDueWithOrWithoutDF() throws {
        let original = frame("198.19.1.1", "192.0.2.9", size: 100, df: false)
        let a = try #require(
            ICMPError.noRoute.answer(to: original, gatewayMAC: gwMAC, gateway: "198.19.1.254", vm: "02:00:00:00:01:09"))
        #expect(Array(a[0..<6]) == [2, 0, 0, 0, 1, 9] && Array(a[6..<12]) == gwMAC.bytes)
        let ip = Array(a[14...])
        #expect(ip[9] == 1 && Array(ip[12..<16]) == [198, 19, 1, 254] && Array(ip[16..<20]) == [198, 19, 1, 1])
        let icmp = Array(ip[20...])
        #expect(icmp[0] == 3 && icmp[1] == 0 && Array(icmp[4..<8]) == [0, 0, 0, 0])
        #expect(internetChecksum(icmp) == 0)
        #expect(Array(icmp[8...]) == Array(original[14...]))  // all of it: under 576 bytes
    }

    /// Found by the frames fuzzer (fuzz/corpus/frames/frame1.bin, an IPv6 frame, answered with
    /// an IPv4 router address): it crashed building a packet of mixed families. A router of
    /// the other family is no router for this packet.
    @Test func aRouterOfTheOtherFamilyIsNone() throws {
        let v6 = frame("2001:db8:19:1::1", "2001:db8:99::9", size: 1400)
        #expect(ICMPError.noRoute.answer(to: v6, gatewayMAC: gwMAC, gateway: "198.19.1.254") == nil)
        let a = try #require(ICMPError.tooBig(mtu: 1280).answer(to: v6, gatewayMAC: gwMAC, gateway: "198.19.1.254"))
        #expect(Array(a[22..<38]) == Array(v6[38..<54]))  // from the packet's destination instead
        let v4 = frame("198.19.1.1", "192.0.2.9", size: 1400)
        #expect(ICMPError.noRoute.answer(to: v4, gatewayMAC: gwMAC, gateway: "2001:db8:19:1::fe") == nil)
    }

    @Test func noRouteToDestinationInIPv6() throws {
        let original = frame("2001:db8:19:1::1", "2001:db8:99::9", size: 100)
        let a = try #require(ICMPError.noRoute.answer(to: original, gatewayMAC: gwMAC, gateway: "2001:db8:19:1::fe"))
        let ip = Array(a[14...])
        #expect(ip[6] == 58 && Array(ip[24..<40]) == Array(original[22..<38]))  // to the sender
        #expect(Array(ip[8..<24]) == IPAddress(parsing: "2001:db8:19:1::fe")!.bytes)  // from the gateway
        let icmp = Array(ip[40...])
        #expect(icmp[0] == 1 && icmp[1] == 0 && Array(icmp[4..<8]) == [0, 0, 0, 0])
        // RFC 4443 2.3: the checksum covers the pseudo-header (source, destination, length, 58).
        var pseudo = Array(ip[8..<40])
        pseudo += [0, 0, UInt8(icmp.count >> 8), UInt8(icmp.count & 0xff), 0, 0, 0, 58]
        #expect(internetChecksum(pseudo + icmp) == 0)
        #expect(Array(icmp[8...]) == Array(original[14...]))
    }
}
