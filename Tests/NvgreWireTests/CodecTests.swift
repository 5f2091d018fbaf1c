import NvgreWire
import Testing

struct AddressTests {
    @Test func parsesAndPrintsAddresses() {
        #expect(MACAddress(parsing: "02:00:00:00:01:0a")?.bytes == [2, 0, 0, 0, 1, 10])
        #expect(MACAddress(parsing: "02-00-00-00-01-0A")?.description == "02:00:00:00:01:0a")
        #expect(IPAddress(parsing: "198.19.1.1")?.bytes == [198, 19, 1, 1])
        #expect(IPAddress(parsing: "2001:db8::1")?.family == .v6)
        #expect(IPAddress(parsing: "2001:db8::1")?.description == "2001:db8::1")
        #expect(IPAddress(parsing: "198.19.1.1")?.padded16.count == 16)
    }

    @Test(arguments: ["", "02:00:00:00:01", "02:00:00:00:01:0g", "0200.0000.0101", "02:00:00:00:01:01:01"])
    func rejectsBadMACs(_ text: String) {
        #expect(MACAddress(parsing: text) == nil)
    }

    @Test(arguments: ["", "198.19.1", "198.19.1.256", "2001:db8::1::2", "host"])
    func rejectsBadIPs(_ text: String) {
        #expect(IPAddress(parsing: text) == nil)
    }
}

struct NVGRECodecTests {
    @Test func greHeaderIsExactlyAsRFC7637Says() {
        // 0x2000 (K bit), protocol 0x6558, key = VSID 5001 (0x001389) << 8 | FlowID 0x7f.
        #expect(NVGRE.greHeader(vsid: 5001, flowID: 0x7f) == [0x20, 0x00, 0x65, 0x58, 0x00, 0x13, 0x89, 0x7f])
    }

    @Test func ipv4EncapsulationHas42BytesOfOverheadAndDecodesBack() {
        let inner = Ethernet.frame(
            dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: .ipv4,
            payload: IPPacket.build(src: "198.19.1.1", dst: "198.19.1.2", proto: 17, payload: [0, 1, 2, 3]))
        let hash = FlowHash(src: "198.19.1.1", dst: "198.19.1.2", protocol: 17)
        let f = NVGRE.encapsulate(
            inner: inner, vsid: 6001, hash: hash, outerSrcMAC: "02:18:00:00:00:01",
            outerDstMAC: "02:18:00:00:00:02", srcPA: "198.18.0.1", dstPA: "198.18.0.2")
        #expect(f.count == inner.count + NVGRE.ipv4Overhead)
        #expect(Array(f[20..<22]) == [0x40, 0x00])  // DF, no fragment offset
        #expect(f[22] == 64 && f[23] == 47)  // TTL 64, protocol GRE
        #expect(internetChecksum(Array(f[14..<34])) == 0)
        let d = DecodedNVGRE(f)
        #expect(d?.vsid == 6001)
        #expect(d?.flowID == hash.flowID)
        #expect(d?.flagsAndVersion == 0x2000)
        #expect(d?.protocolType == 0x6558)
        #expect(d?.inner == inner)
        #expect(d?.outer.src == "198.18.0.1")
    }

    @Test func ipv6EncapsulationHas62BytesOfOverheadAndCarriesTheFlowLabel() {
        let inner = Ethernet.frame(
            dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: .ipv6,
            payload: IPPacket.build(src: "2001:db8:19::1", dst: "2001:db8:19::2", proto: 17, payload: [7]))
        let hash = FlowHash(src: "2001:db8:19::1", dst: "2001:db8:19::2", protocol: 17)
        let f = NVGRE.encapsulate(
            inner: inner, vsid: 5001, hash: hash, outerSrcMAC: "02:18:00:00:00:01",
            outerDstMAC: "02:18:00:00:00:02", srcPA: "2001:db8:18::1", dstPA: "2001:db8:18::2")
        #expect(f.count == inner.count + NVGRE.ipv6Overhead)
        let word = UInt32(f[14]) << 24 | UInt32(f[15]) << 16 | UInt32(f[16]) << 8 | UInt32(f[17])
        #expect(word & 0xfffff == hash.flowLabel)
        #expect(f[20] == 47 && f[21] == 64)
        #expect(DecodedNVGRE(f)?.inner == inner)
    }

    @Test func decoderRejectsWhatIsNotNVGRE() {
        let udp = Ethernet.frame(
            dst: .broadcast, src: "02:00:00:00:00:01", type: .ipv4,
            payload: IPPacket.build(src: "198.18.0.1", dst: "198.18.0.2", proto: 17, payload: [1]))
        #expect(DecodedNVGRE(udp) == nil)
        #expect(DecodedFrame([1, 2, 3]) == nil)
    }

    @Test func vlanTagIsInsertedAfterTheMACs() {
        let f = Ethernet.frame(dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01", type: .arp, payload: [])
        let t = Ethernet.tagged(f, vlan: 42)
        #expect(Array(t[12..<16]) == [0x81, 0x00, 0x00, 42])
        #expect(DecodedFrame(t)?.vlan == 42)
        #expect(DecodedFrame(t)?.etherType == EtherType.arp.rawValue)
    }
}

struct IPPrefixTests {
    @Test func parsesAndTestsMembership() throws {
        let p = try #require(IPPrefix(parsing: "198.19.1.0/24"))
        #expect(p.contains("198.19.1.200"))
        #expect(!p.contains("198.19.2.1"))
        #expect(!p.contains("2001:db8::1"))
        #expect(p.isCanonical)
        let v6 = try #require(IPPrefix(parsing: "2001:db8:19:1::/64"))
        #expect(v6.contains("2001:db8:19:1::99"))
        #expect(!v6.contains("2001:db8:19:2::1"))
        #expect(IPPrefix(parsing: "0.0.0.0/0")?.contains("203.0.113.5") == true)
    }

    @Test func hostBitsAreNoticedAndCleared() throws {
        let p = try #require(IPPrefix(parsing: "198.19.1.7/23"))
        #expect(!p.isCanonical)
        #expect(p.canonical.description == "198.19.0.0/23")
        #expect(IPPrefix(parsing: "198.19.1.7")?.length == 32)
    }

    @Test func overlapIsSymmetric() throws {
        let a = try #require(IPPrefix(parsing: "198.19.0.0/16"))
        let b = try #require(IPPrefix(parsing: "198.19.5.0/24"))
        let c = try #require(IPPrefix(parsing: "198.18.0.0/16"))
        #expect(a.overlaps(b) && b.overlaps(a))
        #expect(!a.overlaps(c))
    }

    @Test(arguments: [
        "198.19.1.0/33", "198.19.1.0/", "198.19.1.0/-1", "198.19.1.0/+8", "2001:db8::/129", "x/8", "198.19.1.0/24/1"
    ])
    func rejectsBadPrefixes(_ text: String) {
        #expect(IPPrefix(parsing: text) == nil)
    }
}

/// IPv4 fragmentation against fragments written out field by field.
@Suite struct FragmenterTests {
    let a: IPAddress = "198.19.1.1", b: IPAddress = "198.19.1.2"

    func packet(_ payload: Int, flags: UInt16 = 0, id: UInt16 = 0x1234) -> [UInt8] {
        IPv4Header(
            src: a, dst: b, proto: 17, payloadLength: payload, ttl: 63, identification: id, flagsAndFragment: flags
        ).bytes
            + (0..<payload).map { UInt8(truncatingIfNeeded: $0) }
    }

    @Test func aPacketIsCutIntoEightByteAlignedFragments() throws {
        let p = packet(2008)
        let frags = try #require(IPv4Fragmenter.fragments(of: p, mtu: 1458))
        // 1458 - 20 = 1438, rounded down to 1432 bytes of data per fragment: 1432 + 576.
        let body = Array(p[20...])
        let expected = [
            IPv4Header(
                src: a, dst: b, proto: 17, payloadLength: 1432, ttl: 63, identification: 0x1234,
                flagsAndFragment: 0x2000
            )
            .bytes + body[0..<1432],
            IPv4Header(
                src: a, dst: b, proto: 17, payloadLength: 576, ttl: 63, identification: 0x1234,
                flagsAndFragment: 1432 / 8
            )
            .bytes + body[1432...]
        ]
        #expect(frags == expected)
        #expect(frags.allSatisfy { $0.count <= 1458 })
    }

    @Test func aFragmentIsCutFurtherKeepingItsOffsetAndMoreFragments() throws {
        // The middle of a bigger packet: offset 185 (1480 bytes), more fragments after it.
        let p = packet(1600, flags: 0x2000 | 185)
        let frags = try #require(IPv4Fragmenter.fragments(of: p, mtu: 1000))
        #expect(frags.count == 2)
        let fields: [UInt16] = frags.map { f in UInt16(f[6]) << 8 | UInt16(f[7]) }
        let expected: [UInt16] = [0x2000 | 185, 0x2000 | (185 + 976 / 8)]
        #expect(fields == expected)
    }

    @Test func whatMayNotBeCutIsNot() {
        #expect(IPv4Fragmenter.fragments(of: packet(2008, flags: 0x4000), mtu: 1458) == nil, "DF")
        #expect(IPv4Fragmenter.fragments(of: packet(100), mtu: 1458) == [packet(100)], "fits: unchanged")
        #expect(IPv4Fragmenter.fragments(of: Array(packet(2008).prefix(1000)), mtu: 1458) == nil, "truncated")
        #expect(IPv4Fragmenter.fragments(of: packet(100), mtu: 24) == nil, "no room for 8 bytes")
    }
}

/// The frames announcing a VM's arrival, against bytes written out by hand.
struct ArrivalFrameTests {
    static let mac = MACAddress(parsing: "02:00:00:00:01:01")!

    @Test func anIPv4AddressIsAnnouncedByAGratuitousARPRequest() {
        let frame = Arrival.announcement(of: "198.19.1.1", mac: Self.mac)
        let expected: [UInt8] =
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 1, 1, 0x08, 0x06]  // broadcast, from the VM, ARP
            + [0, 1, 0x08, 0, 6, 4, 0, 1]  // Ethernet/IPv4, request
            + [2, 0, 0, 0, 1, 1, 198, 19, 1, 1]  // sender: the VM
            + [0, 0, 0, 0, 0, 0, 198, 19, 1, 1]  // target: its own address
        #expect(frame == expected)
    }

    @Test func anIPv6AddressIsAnnouncedByAnUnsolicitedAdvertisementToAllNodes() {
        let frame = Arrival.announcement(of: "2001:db8:19:1::1", mac: Self.mac)
        let target: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x19, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
        let allNodes: [UInt8] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        var expected: [UInt8] = [0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 1, 1, 0x86, 0xdd]
        expected += [0x60, 0, 0, 0, 0, 32, 58, 255] + target + allNodes  // hop limit 255, as ND requires
        var icmp: [UInt8] = [136, 0, 0, 0, 0x20, 0, 0, 0] + target + [2, 1, 2, 0, 0, 0, 1, 1]  // override
        // The checksum, summed here over the pseudo header and the message.
        var sum = 0
        let pseudo = target + allNodes + [0, 0, 0, 32, 0, 0, 0, 58]
        for i in stride(from: 0, to: pseudo.count, by: 2) { sum += Int(pseudo[i]) << 8 | Int(pseudo[i + 1]) }
        for i in stride(from: 0, to: icmp.count, by: 2) { sum += Int(icmp[i]) << 8 | Int(icmp[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        icmp[2] = UInt8((~sum & 0xffff) >> 8)
        icmp[3] = UInt8(~sum & 0xff)
        expected += icmp
        #expect(frame == expected)
    }
}
