import NvgreDatapath
import NvgrePolicy
import Testing

@testable import NvgreGateway
@testable import NvgreWire

/// Translation in userspace: the expected packet is built from scratch with the codecs for
/// the translated addresses and ports, never by translating.
@Suite struct NATPacketTests {
    let ca: IPAddress = "198.19.1.1", x: IPAddress = "203.0.113.2", ext: IPAddress = "203.0.113.1"

    @Test func udpSourceIsRewrittenWithChecksums() throws {
        let payload: [UInt8] = Array("hello".utf8)
        let before = IPPacket.build(
            src: ca, dst: x, proto: 17,
            payload: UDP.datagram(src: ca, dst: x, sport: 5353, dport: 53, payload: payload), ttl: 63)
        var p = try #require(NATPacket(ip: before))
        #expect(p.sourcePort == 5353 && p.destinationPort == 53 && p.proto == 17)
        p.setSource(ext, port: 40001)
        let decremented = p.decrementTTL()
        #expect(decremented)
        let expected = IPPacket.build(
            src: ext, dst: x, proto: 17,
            payload: UDP.datagram(src: ext, dst: x, sport: 40001, dport: 53, payload: payload), ttl: 62)
        #expect(p.bytes == expected)
    }

    @Test func tcpDestinationIsRewrittenWithChecksums() throws {
        let seg = TCP.segment(
            src: x, dst: ext, sport: 51000, dport: 8080, seq: 7, ack: 9, flags: 0x18, payload: [1, 2, 3])
        var p = try #require(NATPacket(ip: IPPacket.build(src: x, dst: ext, proto: 6, payload: seg)))
        #expect(p.tcpFlags == 0x18)
        p.setDestination(ca, port: 80)
        let expected = IPPacket.build(
            src: x, dst: ca, proto: 6,
            payload: TCP.segment(
                src: x, dst: ca, sport: 51000, dport: 80, seq: 7, ack: 9, flags: 0x18, payload: [1, 2, 3]))
        #expect(p.bytes == expected)
    }

    @Test func icmpEchoIdentifierIsThePort() throws {
        var p = try #require(
            NATPacket(
                ip: IPPacket.build(
                    src: ca, dst: x, proto: 1, payload: ICMP.echoRequest(id: 77, sequence: 1, payload: [9]))))
        #expect(p.sourcePort == 77 && p.destinationPort == 0)
        p.setSource(ext, port: 40002)
        #expect(
            p.bytes
                == IPPacket.build(
                    src: ext, dst: x, proto: 1, payload: ICMP.echoRequest(id: 40002, sequence: 1, payload: [9])))
    }

    /// The ICMP error `type`/`code` that `from` sends about `packet`, quoting its IP header and
    /// `quoteL4` bytes after it, with the TTL given.
    func icmpError(
        _ type: UInt8, _ code: UInt8, from: IPAddress, to: IPAddress, about packet: [UInt8], quoteL4: Int = 8,
        ttl: UInt8 = 64
    ) -> [UInt8] {
        var icmp: [UInt8] = [type, code, 0, 0, 0, 0, 0, 0] + packet.prefix(20 + quoteL4)
        icmp.setBE16(internetChecksum(icmp), at: 2)
        return IPPacket.build(src: from, dst: to, proto: 1, payload: icmp, ttl: ttl)
    }

    @Test(arguments: [(UInt8(17), 8), (UInt8(6), 20), (UInt8(1), 8)])
    func anICMPErrorAboutAFlowIsTranslatedBackForTheVM(_ proto: UInt8, _ quoteL4: Int) throws {
        // The packet as NAT sent it (from the external address and port) and as the VM sent it.
        func packet(_ src: IPAddress, _ port: UInt16) -> [UInt8] {
            switch proto {
            case 17:
                return IPPacket.build(
                    src: src, dst: x, proto: 17,
                    payload: UDP.datagram(src: src, dst: x, sport: port, dport: 53, payload: [1, 2, 3]), ttl: 62)
            case 6:
                return IPPacket.build(
                    src: src, dst: x, proto: 6, payload: TCP.segment(src: src, dst: x, sport: port, dport: 80, seq: 5),
                    ttl: 62)
            default:
                return IPPacket.build(
                    src: src, dst: x, proto: 1, payload: ICMP.echoRequest(id: port, sequence: 3, payload: [7]), ttl: 62)
            }
        }
        let received = icmpError(3, 3, from: x, to: ext, about: packet(ext, 40001), quoteL4: quoteL4)
        var e = try #require(NATICMPError(ip: received))
        #expect(
            e.quotedProto == proto && e.quotedSource == ext && e.quotedSourcePort == 40001 && e.quotedDestination == x)
        #expect(e.quotedDestinationPort == [17: 53, 6: 80, 1: 0][proto])
        let translated = e.translate(toCA: ca, port: 5353)
        #expect(translated)
        #expect(e.bytes == icmpError(3, 3, from: x, to: ca, about: packet(ca, 5353), quoteL4: quoteL4, ttl: 63))
    }

    @Test func onlyICMPErrorsAboutWhatNATSendsAreTaken() {
        let udp = IPPacket.build(
            src: ext, dst: x, proto: 17, payload: UDP.datagram(src: ext, dst: x, sport: 40001, dport: 53, payload: []))
        #expect(NATICMPError(ip: icmpError(5, 0, from: x, to: ext, about: udp)) == nil)  // a redirect
        #expect(NATICMPError(ip: icmpError(3, 3, from: x, to: ext, about: udp, quoteL4: 4)) == nil)  // quote too short
        let gre = IPPacket.build(src: ext, dst: x, proto: 47, payload: [UInt8](repeating: 0, count: 8))
        #expect(NATICMPError(ip: icmpError(3, 3, from: x, to: ext, about: gre)) == nil)
        let reply = IPPacket.build(
            src: ext, dst: x, proto: 1,
            payload: ICMP.echoRequest(id: 1, sequence: 1, payload: []).enumerated().map {
                $0.offset == 0 ? 0 : $0.element
            })
        #expect(NATICMPError(ip: icmpError(3, 1, from: x, to: ext, about: reply)) == nil)  // about an echo reply
        var e = NATICMPError(ip: icmpError(11, 0, from: x, to: ext, about: udp, ttl: 1))!
        let translated = e.translate(toCA: ca, port: 1)
        #expect(!translated)  // its TTL ends here
    }

    @Test func whatNATCannotTranslateIsRefused() {
        let fragment = { () -> [UInt8] in
            var b = IPPacket.build(
                src: ca, dst: x, proto: 17, payload: UDP.datagram(src: ca, dst: x, sport: 1, dport: 2, payload: []))
            b[6] = 0x20  // more fragments
            return b
        }()
        #expect(NATPacket(ip: fragment) == nil)
        #expect(NATPacket(ip: IPPacket.build(src: ca, dst: x, proto: 47, payload: [0, 0, 0, 0])) == nil)
        // An ICMP error.
        #expect(NATPacket(ip: IPPacket.build(src: ca, dst: x, proto: 1, payload: [3, 3, 0, 0, 0, 0, 0, 0])) == nil)
        #expect(NATPacket(ip: [0x45, 0, 0]) == nil)
        var noTTL = try! #require(
            NATPacket(
                ip: IPPacket.build(
                    src: ca, dst: x, proto: 17, payload: UDP.datagram(src: ca, dst: x, sport: 1, dport: 2, payload: []),
                    ttl: 1)))
        let decremented = noTTL.decrementTTL()
        #expect(!decremented)
    }
}

@Suite struct PortPoolTests {
    @Test func portsAreGivenOnceUntilReleased() {
        var pool = PortPool()
        let a: IPAddress = "203.0.113.1"
        let range = PortRange(first: 40000, last: 40001)
        let p1 = pool.allocate(proto: 6, address: a, range: range, hint: 5, for: 1)
        let p2 = pool.allocate(proto: 6, address: a, range: range, hint: 5, for: 1)
        #expect(p1 != nil && p2 != nil && p1 != p2)
        #expect(pool.allocate(proto: 6, address: a, range: range, hint: 0, for: 1) == nil)
        // Another protocol has its own ports.
        #expect(pool.allocate(proto: 17, address: a, range: range, hint: 0, for: 1) != nil)
        pool.release(proto: 6, address: a, port: p1!)
        #expect(pool.allocate(proto: 6, address: a, range: range, hint: 9, for: 1) == p1)
    }

    @Test func eachDomainsPortsAreCountedForItsShare() {
        var pool = PortPool()
        let a: IPAddress = "203.0.113.1", b: IPAddress = "203.0.113.3"
        let range = PortRange(first: 40000, last: 40009)
        #expect(natQuota(share: 50, of: range) == 5)
        #expect(natQuota(share: 1, of: range) == 1, "a share never rounds down to no port")
        #expect(natQuota(share: 100, of: PortRange.defaultNAT) == 32768)
        let red = (0..<3).compactMap { i in pool.allocate(proto: 17, address: a, range: range, hint: i, for: 1) }
        _ = pool.allocate(proto: 17, address: a, range: range, hint: 7, for: 2)
        _ = pool.allocate(proto: 17, address: b, range: range, hint: 7, for: 1)
        #expect(pool.held(by: 1, proto: 17, address: a) == 3)
        #expect(pool.held(by: 2, proto: 17, address: a) == 1)
        #expect(pool.held(by: 1, proto: 17, address: b) == 1, "per external address")
        #expect(pool.held(by: 1, proto: 6, address: a) == 0, "per protocol")
        pool.release(proto: 17, address: a, port: red[0])
        #expect(pool.held(by: 1, proto: 17, address: a) == 2)
        // Flows found in the maps after a restart count for their domain too.
        var recovered = PortPool()
        let first = recovered.claim(proto: 17, address: a, port: 40005, for: 2)
        let twice = recovered.claim(proto: 17, address: a, port: 40005, for: 1)
        #expect(first && !twice, "a taken port is not claimed twice")
        #expect(recovered.held(by: 2, proto: 17, address: a) == 1 && recovered.held(by: 1, proto: 17, address: a) == 0)
    }

    @Test func theTableCountsEachDomainsFlows() {
        var table = NATTable()
        func flow(_ rdid: UInt32, _ port: UInt16) -> NATFlow {
            NATFlow(
                proto: 17, rdid: rdid, vsid: 5001, ca: "198.19.1.1", caPort: port, ext: "203.0.113.1", extPort: port,
                remote: "203.0.113.2", remotePort: 53)
        }
        for p in 1...3 { table.insert(NATEntry(flow: flow(1, UInt16(p)), flags: [], fromOutside: false, lastSeen: 0)) }
        table.insert(NATEntry(flow: flow(2, 1), flags: [], fromOutside: false, lastSeen: 0))
        // An update, not a new flow.
        table.insert(NATEntry(flow: flow(1, 1), flags: .offloaded, fromOutside: false, lastSeen: 5))
        #expect(table.count(of: 1) == 3 && table.count(of: 2) == 1 && table.count == 4)
        table.remove(flow(1, 2))
        table.remove(flow(1, 2))  // twice: counted once
        #expect(table.count(of: 1) == 2)
        #expect(natQuota(share: 50, ofCount: 262144) == 131072)
    }

    @Test func timeoutsFollowTCPState() {
        var t = NATTimeouts()
        t.tcpEstablished = 100
        t.tcpTransitory = 10
        t.udp = 30
        t.icmp = 5
        let f = NATFlow(
            proto: 6, rdid: 1, vsid: 5001, ca: "198.19.1.1", caPort: 1, ext: "203.0.113.1", extPort: 2,
            remote: "203.0.113.2", remotePort: 3)
        var e = NATEntry(flow: f, flags: [], fromOutside: false, lastSeen: 0)
        #expect(NATTable.timeout(e, t) == 10)
        e.flags = .offloaded  // established
        #expect(NATTable.timeout(e, t) == 100)
        e.flags.insert(.fin)  // a FIN was seen
        #expect(NATTable.timeout(e, t) == 10)
    }
}

/// The gateway process's half of the egress rule, with the infrastructure set, the host's
/// addresses and the services given as plain sets.
@Suite struct EgressRuleTests {
    let infra: [IPPrefix] = ["198.18.0.0/16", "203.0.113.1/32", "127.0.0.0/8", "10.9.0.0/16"].map {
        IPPrefix(parsing: $0)!
    }
    let host: Set<IPAddress> = ["203.0.113.77"]
    let services: Set<String> = ["6 203.0.113.1 8080"]

    var rule: EgressRule {
        let infra = infra, host = host, services = services
        return EgressRule(
            isInfrastructure: { a in infra.contains { $0.contains(a) } }, isHostAddress: { host.contains($0) },
            isExternal: { $0 == "203.0.113.1" }, isService: { services.contains("\($0) \($1) \($2)") })
    }

    @Test func theOutsideIsReachedAndInfrastructureIsNot() {
        #expect(rule.verdict(destination: "203.0.113.2", proto: 17, port: 53, mode: .nat, flowExists: false) == .out)
        #expect(rule.verdict(destination: "203.0.113.2", proto: 1, port: 0, mode: .route, flowExists: false) == .out)
        for d: IPAddress in ["198.18.0.1", "198.18.0.3", "127.0.0.1", "10.9.1.1", "203.0.113.77", "203.0.113.1"] {
            for mode in [EgressMode.nat, .route] {
                #expect(
                    rule.verdict(destination: d, proto: 17, port: 9, mode: mode, flowExists: false) == .infrastructure,
                    "\(d) \(mode)")
            }
        }
        // A flow opens only an external address (the other end of a hairpin flow), never
        // the rest of the infrastructure.
        #expect(
            rule.verdict(destination: "198.18.0.2", proto: 17, port: 9, mode: .nat, flowExists: true) == .infrastructure
        )
        #expect(
            rule.verdict(destination: "203.0.113.1", proto: 17, port: 40000, mode: .nat, flowExists: true) == .hairpin)
    }

    @Test func onlyAPublishedServiceIsReachedOnAnExternalAddress() {
        #expect(
            rule.verdict(destination: "203.0.113.1", proto: 6, port: 8080, mode: .nat, flowExists: false) == .hairpin)
        #expect(
            rule.verdict(destination: "203.0.113.1", proto: 17, port: 8080, mode: .nat, flowExists: false)
                == .infrastructure, "another protocol")
        #expect(
            rule.verdict(destination: "203.0.113.1", proto: 6, port: 22, mode: .nat, flowExists: false)
                == .infrastructure, "another port")
        #expect(
            rule.verdict(destination: "203.0.113.1", proto: 1, port: 0, mode: .nat, flowExists: false)
                == .infrastructure, "ICMP")
        #expect(
            rule.verdict(destination: "203.0.113.1", proto: 6, port: 8080, mode: .route, flowExists: false)
                == .infrastructure,
            "route mode has no NAT to hairpin through")
    }
}
