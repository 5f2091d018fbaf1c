import NvgreDatapath
import NvgrePolicy
import NvgreWire
import Testing
@testable import NvgreGateway

/// Translation in userspace: the expected packet is built from scratch with the codecs for
/// the translated addresses and ports, never by translating.
@Suite struct NATPacketTests {
    let ca: IPAddress = "198.19.1.1", x: IPAddress = "203.0.113.2", ext: IPAddress = "203.0.113.1"

    @Test func udpSourceIsRewrittenWithChecksums() throws {
        let payload: [UInt8] = Array("hello".utf8)
        let before = IPPacket.build(src: ca, dst: x, proto: 17, payload: UDP.datagram(src: ca, dst: x, sport: 5353, dport: 53, payload: payload), ttl: 63)
        var p = try #require(NATPacket(ip: before))
        #expect(p.sourcePort == 5353 && p.destinationPort == 53 && p.proto == 17)
        p.setSource(ext, port: 40001)
        let decremented = p.decrementTTL()
        #expect(decremented)
        let expected = IPPacket.build(src: ext, dst: x, proto: 17, payload: UDP.datagram(src: ext, dst: x, sport: 40001, dport: 53, payload: payload), ttl: 62)
        #expect(p.bytes == expected)
    }

    @Test func tcpDestinationIsRewrittenWithChecksums() throws {
        let seg = TCP.segment(src: x, dst: ext, sport: 51000, dport: 8080, seq: 7, ack: 9, flags: 0x18, payload: [1, 2, 3])
        var p = try #require(NATPacket(ip: IPPacket.build(src: x, dst: ext, proto: 6, payload: seg)))
        #expect(p.tcpFlags == 0x18)
        p.setDestination(ca, port: 80)
        let expected = IPPacket.build(src: x, dst: ca, proto: 6, payload: TCP.segment(src: x, dst: ca, sport: 51000, dport: 80, seq: 7, ack: 9, flags: 0x18, payload: [1, 2, 3]))
        #expect(p.bytes == expected)
    }

    @Test func icmpEchoIdentifierIsThePort() throws {
        var p = try #require(NATPacket(ip: IPPacket.build(src: ca, dst: x, proto: 1, payload: ICMP.echoRequest(id: 77, sequence: 1, payload: [9]))))
        #expect(p.sourcePort == 77 && p.destinationPort == 0)
        p.setSource(ext, port: 40002)
        #expect(p.bytes == IPPacket.build(src: ext, dst: x, proto: 1, payload: ICMP.echoRequest(id: 40002, sequence: 1, payload: [9])))
    }

    @Test func whatNATCannotTranslateIsRefused() {
        let fragment = { () -> [UInt8] in
            var b = IPPacket.build(src: ca, dst: x, proto: 17, payload: UDP.datagram(src: ca, dst: x, sport: 1, dport: 2, payload: []))
            b[6] = 0x20  // more fragments
            return b
        }()
        #expect(NATPacket(ip: fragment) == nil)
        #expect(NATPacket(ip: IPPacket.build(src: ca, dst: x, proto: 47, payload: [0, 0, 0, 0])) == nil)
        #expect(NATPacket(ip: IPPacket.build(src: ca, dst: x, proto: 1, payload: [3, 3, 0, 0, 0, 0, 0, 0])) == nil)  // an ICMP error
        #expect(NATPacket(ip: [0x45, 0, 0]) == nil)
        var noTTL = try! #require(NATPacket(ip: IPPacket.build(src: ca, dst: x, proto: 17, payload: UDP.datagram(src: ca, dst: x, sport: 1, dport: 2, payload: []), ttl: 1)))
        let decremented = noTTL.decrementTTL()
        #expect(!decremented)
    }
}

@Suite struct PortPoolTests {
    @Test func portsAreGivenOnceUntilReleased() {
        var pool = PortPool()
        let a: IPAddress = "203.0.113.1"
        let range = PortRange(first: 40000, last: 40001)
        let p1 = pool.allocate(proto: 6, address: a, range: range, hint: 5)
        let p2 = pool.allocate(proto: 6, address: a, range: range, hint: 5)
        #expect(p1 != nil && p2 != nil && p1 != p2)
        #expect(pool.allocate(proto: 6, address: a, range: range, hint: 0) == nil)
        // Another protocol has its own ports.
        #expect(pool.allocate(proto: 17, address: a, range: range, hint: 0) != nil)
        pool.release(proto: 6, address: a, port: p1!)
        #expect(pool.allocate(proto: 6, address: a, range: range, hint: 9) == p1)
    }

    @Test func timeoutsFollowTCPState() {
        var t = NATTimeouts()
        t.tcpEstablished = 100; t.tcpTransitory = 10; t.udp = 30; t.icmp = 5
        let f = NATFlow(proto: 6, rdid: 1, vsid: 5001, ca: "198.19.1.1", caPort: 1, ext: "203.0.113.1", extPort: 2, remote: "203.0.113.2", remotePort: 3)
        var e = NATEntry(flow: f, flags: 0, fromOutside: false, lastSeen: 0)
        #expect(NATTable.timeout(e, t) == 10)
        e.flags = 1  // offloaded: established
        #expect(NATTable.timeout(e, t) == 100)
        e.flags |= 2  // a FIN was seen
        #expect(NATTable.timeout(e, t) == 10)
    }
}
