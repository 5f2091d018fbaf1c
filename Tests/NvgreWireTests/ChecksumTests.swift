import NvgreWire
import Testing

struct ChecksumTests {
    @Test func ipv4HeaderChecksumMatchesAKnownHeader() {
        // A captured header whose checksum field is 0xb861 (Wikipedia's IPv4 example).
        let header: [UInt8] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
            0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
        ]
        #expect(internetChecksum(header) == 0xb861)
        let built = IPv4Header(src: "192.168.0.1", dst: "192.168.0.199", proto: 17, payloadLength: 0x73 - 20).bytes
        #expect(
            built == [
                0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61,
                0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
            ])
    }

    /// What a VM with checksum offload hands over: the TCP checksum field holds the
    /// pseudo-header sum (not complemented). Completed, it equals the one built in full; a
    /// complete one is left as it is, and so is a UDP datagram without a checksum.
    @Test func aPartialTransportChecksumIsCompleted() {
        let src: IPAddress = "198.19.1.1", dst: IPAddress = "198.19.2.2"
        let tcp = TCP.segment(src: src, dst: dst, sport: 40000, dport: 443, flags: 0x18, payload: [1, 2, 3, 4, 5])
        let full = IPPacket.build(src: src, dst: dst, proto: 6, payload: tcp)
        var partial = full
        let pseudo = pseudoHeaderSum(src: src, dst: dst, protocol: 6, length: tcp.count)
        let folded = ~internetChecksum([], initial: pseudo)  // the sum itself, folded, not complemented
        partial[20 + 16] = UInt8(folded >> 8)
        partial[20 + 17] = UInt8(folded & 0xff)
        #expect(partial != full)
        #expect(completingTransportChecksum(ofIPv4: partial) == full)
        #expect(completingTransportChecksum(ofIPv4: full) == full)
        var noChecksum = IPPacket.build(
            src: src, dst: dst, proto: 17,
            payload: UDP.datagram(src: src, dst: dst, sport: 1, dport: 2, payload: [7, 7, 7]))
        noChecksum[20 + 6] = 0
        noChecksum[20 + 7] = 0
        #expect(completingTransportChecksum(ofIPv4: noChecksum) == noChecksum)
    }

    /// A VM's IPv6 UDP datagram, its checksum partial, inside an Ethernet frame (and tagged):
    /// completed as the full checksum computed afresh.
    @Test func aPartialIPv6ChecksumInAFrameIsCompleted() {
        let src: IPAddress = "2001:db8:19:1::1", dst: IPAddress = "2001:db8:19:1::2"
        let full = IPPacket.build(
            src: src, dst: dst, proto: 17,
            payload: UDP.datagram(src: src, dst: dst, sport: 5353, dport: 5353, payload: [1, 2, 3, 4, 5]))
        let frame = Ethernet.frame(dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: .ipv6, payload: full)
        var partial = frame
        let folded = ~internetChecksum([], initial: pseudoHeaderSum(src: src, dst: dst, protocol: 17, length: 13))
        partial[14 + 40 + 6] = UInt8(folded >> 8)
        partial[14 + 40 + 7] = UInt8(folded & 0xff)
        #expect(partial != frame)
        #expect(completingTransportChecksum(ofFrame: partial) == frame)
        #expect(
            completingTransportChecksum(ofFrame: Ethernet.tagged(partial, vlan: 7)) == Ethernet.tagged(frame, vlan: 7))
        let arp = Ethernet.frame(
            dst: .broadcast, src: "02:00:00:00:01:01", type: .arp, payload: [UInt8](repeating: 1, count: 28))
        #expect(completingTransportChecksum(ofFrame: arp) == arp)
    }

    @Test func aCorrectChecksumSumsToZero() {
        let d = UDP.datagram(src: "198.19.1.1", dst: "198.19.1.2", sport: 1234, dport: 80, payload: [1, 2, 3])
        #expect(
            internetChecksum(
                d, initial: pseudoHeaderSum(src: "198.19.1.1", dst: "198.19.1.2", protocol: 17, length: d.count)) == 0)
        let m = ICMPv6.echoRequest(id: 7, sequence: 1, payload: [9, 9], src: "2001:db8::1", dst: "2001:db8::2")
        #expect(
            internetChecksum(
                m, initial: pseudoHeaderSum(src: "2001:db8::1", dst: "2001:db8::2", protocol: 58, length: m.count)) == 0
        )
    }

    @Test func oddLengthPadsWithZero() {
        #expect(internetChecksum([0x01]) == ~UInt16(0x0100))
    }
}

struct FlowHashTests {
    @Test func finalizerMatchesMurmur3() {
        // Reference values of MurmurHash3's fmix32.
        #expect(FlowHash(src: IPAddress(v4: [0, 0, 0, 0]), dst: IPAddress(v4: [0, 0, 0, 0]), protocol: 0).value == 0)
        #expect(
            FlowHash(src: IPAddress(v4: [0, 0, 0, 0]), dst: IPAddress(v4: [0, 0, 0, 0]), protocol: 1).value
                == 0x514e_28b7)
    }

    @Test func symmetricSoBothDirectionsShareAFlowID() {
        let ab = FlowHash(src: "198.19.1.1", dst: "198.19.1.2", protocol: 6, sport: 40000, dport: 443)
        let ba = FlowHash(src: "198.19.1.2", dst: "198.19.1.1", protocol: 6, sport: 443, dport: 40000)
        #expect(ab == ba)
    }

    @Test func portsAndProtocolChangeTheHash() {
        let base = FlowHash(src: "2001:db8::1", dst: "2001:db8::2", protocol: 17, sport: 1, dport: 2)
        #expect(base != FlowHash(src: "2001:db8::1", dst: "2001:db8::2", protocol: 17, sport: 1, dport: 3))
        #expect(base != FlowHash(src: "2001:db8::1", dst: "2001:db8::2", protocol: 6, sport: 1, dport: 2))
        #expect(base.flowLabel <= 0xfffff)
    }
}

/// A VM's TSO frame cut as a NIC cuts it: every segment a valid TCP segment (checksums
/// computed afresh here), payloads in order, sequence numbers advancing, PSH and FIN on the
/// last only, IPv4 identification counting up.
struct SegmenterTests {
    @Test(arguments: [IPFamily.v4, .v6])
    func aGSOFrameBecomesValidSegments(_ family: IPFamily) throws {
        let (src, dst): (IPAddress, IPAddress) =
            family == .v4 ? ("198.19.1.1", "198.19.1.2") : ("2001:db8:19:1::1", "2001:db8:19:1::2")
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        var tcp = TCP.segment(src: src, dst: dst, sport: 40000, dport: 5201, seq: 1000, flags: 0x19, payload: payload)
        tcp[16] = 0xde  // a partial checksum, as the VM leaves it
        let frame = Ethernet.frame(
            dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: family == .v4 ? .ipv4 : .ipv6,
            payload: IPPacket.build(src: src, dst: dst, proto: 6, payload: tcp))
        let segments = try #require(TCPSegmenter.segments(ofFrame: frame, gsoSize: 1400))
        #expect(segments.count == 3)
        var received: [UInt8] = []
        let l4 = family == .v4 ? 34 : 54
        for (i, s) in segments.enumerated() {
            let seg = Array(s[l4...])
            #expect(
                internetChecksum(seg, initial: pseudoHeaderSum(src: src, dst: dst, protocol: 6, length: seg.count))
                    == 0,
                "segment \(i): bad TCP checksum")
            if family == .v4 {
                #expect(internetChecksum(Array(s[14..<34])) == 0, "segment \(i): bad IPv4 header checksum")
                #expect(Int(s[16]) << 8 | Int(s[17]) == s.count - 14)
            } else {
                #expect(Int(s[18]) << 8 | Int(s[19]) == s.count - 54)
            }
            let sequence = UInt32(seg[4]) << 24 | UInt32(seg[5]) << 16 | UInt32(seg[6]) << 8 | UInt32(seg[7])
            #expect(sequence == 1000 + UInt32(received.count), "segment \(i): sequence")
            let last = i == segments.count - 1
            #expect(seg[13] & 0x09 == (last ? 0x09 : 0), "segment \(i): FIN/PSH \(seg[13])")
            received += seg[20...]
        }
        #expect(received == payload)
    }
}

/// A VM's UDP GSO frame (UDP_SEGMENT) cut as a NIC cuts it: each datagram valid on its own.
struct UDPSegmenterTests {
    @Test(arguments: [IPFamily.v4, .v6])
    func aUDPGSOFrameBecomesValidDatagrams(_ family: IPFamily) throws {
        let (src, dst): (IPAddress, IPAddress) =
            family == .v4 ? ("198.19.1.1", "198.19.1.2") : ("2001:db8:19:1::1", "2001:db8:19:1::2")
        let payload = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = Ethernet.frame(
            dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: family == .v4 ? .ipv4 : .ipv6,
            payload: IPPacket.build(
                src: src, dst: dst, proto: 17,
                payload: UDP.datagram(src: src, dst: dst, sport: 4433, dport: 443, payload: payload)))
        let datagrams = try #require(UDPSegmenter.segments(ofFrame: frame, gsoSize: 1000))
        #expect(datagrams.map { $0.count } == [1000, 1000, 500].map { $0 + 8 + (family == .v4 ? 34 : 54) })
        var received: [UInt8] = []
        let l4 = family == .v4 ? 34 : 54
        for (i, d) in datagrams.enumerated() {
            let udp = Array(d[l4...])
            #expect(Int(udp[4]) << 8 | Int(udp[5]) == udp.count, "datagram \(i): UDP length")
            #expect(
                internetChecksum(udp, initial: pseudoHeaderSum(src: src, dst: dst, protocol: 17, length: udp.count))
                    == 0,
                "datagram \(i): bad UDP checksum")
            if family == .v4 { #expect(internetChecksum(Array(d[14..<34])) == 0, "datagram \(i): IPv4 header") }
            received += udp[8...]
        }
        #expect(received == payload)
    }
}
