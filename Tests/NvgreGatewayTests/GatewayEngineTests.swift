import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreWire
import Testing

@testable import NvgreGateway

/// An ICMPv4 message, checksum over the message (built here, not by the code under test).
func icmpMessage(type: UInt8, code: UInt8, body: [UInt8]) -> [UInt8] {
    let d: [UInt8] = [type, code, 0, 0] + body
    let sum = internetChecksum(d)
    return [type, code, UInt8(sum >> 8), UInt8(sum & 0xff)] + body
}

/// The gateway engine with its maps and sockets in memory (MemoryGateway.swift): every
/// decision checked against packets built from scratch with the codecs, never by the code
/// under test.
@Suite struct GatewayEngineTests {
    typealias G = MemoryGateway

    @Test func tenantsWithTheSameCAAndPortsGetTheirOwnExternalPorts() throws {
        let g = MemoryGateway()
        g.fromTenant(G.red, G.udp(G.vm1, 5353, G.x, 53))
        g.fromTenant(G.blue, G.udp(G.vm1, 5353, G.x, 53))
        let flows = g.flows.sorted { $0.rdid < $1.rdid }
        try #require(flows.count == 2)
        #expect(flows[0].rdid == G.red.rdid && flows[1].rdid == G.blue.rdid)
        #expect(flows[0].extPort != flows[1].extPort, "one port per flow")
        #expect(flows.allSatisfy { (40000...40009).contains($0.extPort) && $0.ext == G.ext && $0.remote == G.x })
        // Sent out as X must see them: from the external address and port, TTL one lower.
        #expect(g.sender.outside.count == 2)
        for (sent, flow) in zip(g.sender.outside, flows.sorted { a, _ in a.rdid == G.red.rdid }) {
            #expect(sent.to == G.x)
            #expect(
                sent.packet == G.udp(G.ext, flow.extPort, G.x, 53, ttl: 63), "translated packet of domain \(flow.rdid)")
        }
        #expect(g.count(NV_GW_FLOWS_CREATED) == 2 && g.count(NV_GW_USERSPACE_OUT) == 2)
        // The flow is in both maps, not offloaded yet (no answer seen).
        #expect(g.maps.natOut.count == 2 && g.maps.natIn.count == 2)
        #expect(g.maps.natOut.values.allSatisfy { !$0.natFlags.contains(.offloaded) })
    }

    @Test func portsRunOutAndEachDomainHoldsAtMostItsShare() {
        let g = MemoryGateway(natPorts: PortRange(first: 40000, last: 40003), natShares: [1: 50, 2: 50])
        for sport in UInt16(1000)..<1003 { g.fromTenant(G.red, G.udp(G.vm1, sport, G.x, 53)) }
        #expect(g.flows.filter { $0.rdid == 1 }.count == 2, "Red holds half of the 4 ports")
        #expect(g.domainCount(1, NV_DOM_PORTS_EXHAUSTED) == 1 && g.count(NV_GW_PORTS_EXHAUSTED) == 1)
        #expect(
            g.events.contains {
                $0.contains("no free external udp port for 198.19.1.1 (domain 1, at its share of the ports)")
            })
        for sport in UInt16(1000)..<1003 { g.fromTenant(G.blue, G.udp(G.vm1, sport, G.x, 53)) }
        #expect(g.flows.filter { $0.rdid == 2 }.count == 2, "Blue still gets its half")
        #expect(g.domainCount(2, NV_DOM_PORTS_EXHAUSTED) == 1)
        #expect(g.sender.outside.count == 4)

        // Without shares (one NAT domain) a domain takes the whole pool, then none is left.
        let all = MemoryGateway(natPorts: PortRange(first: 40000, last: 40001))
        for sport in UInt16(1000)..<1003 { all.fromTenant(G.red, G.udp(G.vm1, sport, G.x, 53)) }
        #expect(all.flows.count == 2 && all.count(NV_GW_PORTS_EXHAUSTED) == 1)
        #expect(
            all.events.contains { $0.contains("no free external udp port for 198.19.1.1 (domain 1): packet dropped") })
    }

    @Test func aDomainHoldsAtMostItsShareOfTheFlowTable() {
        let g = MemoryGateway(natShares: [1: 50, 2: 50])
        g.maps.flowCapacity = 4
        for sport in UInt16(1000)..<1004 { g.fromTenant(G.red, G.udp(G.vm1, sport, G.x, 53)) }
        #expect(g.flows.count == 2 && g.domainCount(1, NV_DOM_FLOW_SHARE_FULL) == 2)
        g.fromTenant(G.blue, G.udp(G.vm1, 1000, G.x, 53))
        #expect(g.flows.filter { $0.rdid == 2 }.count == 1, "Blue's flow still fits")
        // A refused flow gives its port back.
        #expect(g.gateway.table.ports.inUse(proto: 17, address: G.ext) == 3)
    }

    @Test func aTCPFlowIsOffloadedOnceTheInitiatorAcknowledgesAndItsTimeoutsFollowItsState() throws {
        var t = NATTimeouts()
        t.tcpEstablished = 100
        t.tcpTransitory = 10
        let g = MemoryGateway(timeouts: t)
        g.fromTenant(G.red, G.tcp(G.vm1, 33000, G.x, 80, flags: 0x02))  // SYN
        let flow = try #require(g.flows.first)
        // X's SYN+ACK comes back to the external address and port: to the VM on host A, in
        // Red's VSID, from the subnet's router MAC.
        g.fromOutside(G.tcp(G.x, 80, G.ext, flow.extPort, flags: 0x12))
        let d = try #require(g.sender.delivered.first)
        #expect(d.pa == G.paA && d.vsid == G.red.vsid)
        #expect(
            d.inner
                == G.toVM(G.vmMAC1, from: G.red.gwMAC, G.tcp(G.x, 80, G.vm1, 33000, flags: 0x12, ttl: 63)))
        #expect(g.maps.natOut.values.allSatisfy { !$0.natFlags.contains(.offloaded) }, "not before the ACK")
        g.fromTenant(G.red, G.tcp(G.vm1, 33000, G.x, 80, flags: 0x10))  // ACK
        #expect(g.maps.natOut.values.allSatisfy { $0.natFlags.contains(.offloaded) })
        #expect(g.maps.natIn.values.allSatisfy { $0.natFlags.contains(.offloaded) })
        #expect(g.count(NV_GW_FLOWS_OFFLOADED) == 1)

        // Established: 100 s idle allowed; XDP's traffic counts as activity.
        g.now += 90_000_000_000
        #expect(g.gateway.expire() == 0)
        g.maps.xdpSaw(flow, at: g.now)
        g.now += 90_000_000_000
        #expect(g.gateway.expire() == 0, "XDP saw it 90 s ago")
        // A FIN seen by XDP makes it transitory: 10 s.
        for k in g.maps.natOut.keys { g.maps.natOut[k]!.natFlags.insert(.fin) }
        g.now += 11_000_000_000
        #expect(g.gateway.expire() == 1)
        #expect(g.maps.natOut.isEmpty && g.maps.natIn.isEmpty && g.gateway.table.count == 0)
        #expect(g.gateway.table.ports.inUse(proto: 6, address: G.ext) == 0, "its port is free again")
    }

    /// The userspace path's engine never offloads: an established TCP flow still gets the
    /// established timeout, and keeps it when a new process takes the flow up again.
    @Test func withoutOffloadAnEstablishedTCPFlowKeepsItsLongTimeout() throws {
        var t = NATTimeouts()
        t.tcpEstablished = 100
        t.tcpTransitory = 10
        let g = MemoryGateway(timeouts: t)
        g.gateway.offloads = false
        g.fromTenant(G.red, G.tcp(G.vm1, 33000, G.x, 80, flags: 0x02))
        let flow = try #require(g.flows.first)
        g.fromOutside(G.tcp(G.x, 80, G.ext, flow.extPort, flags: 0x12))
        g.fromTenant(G.red, G.tcp(G.vm1, 33000, G.x, 80, flags: 0x10))
        #expect(g.maps.natOut.values.allSatisfy { !$0.natFlags.contains(.offloaded) }, "never offloaded")
        #expect(g.gateway.table.all.allSatisfy { $0.flags.contains(.established) })
        g.now += 50_000_000_000
        #expect(g.gateway.expire() == 0, "50 s idle: past the transitory timeout, within the established one")

        let second = MemoryGateway(timeouts: t)
        second.gateway.offloads = false
        for (k, v) in g.maps.natOut { second.maps.natOut[k] = v.with(.established) }
        for (k, v) in g.maps.natIn { second.maps.natIn[k] = v.with(.established) }
        second.now = g.now
        #expect(second.gateway.recover() == 1)
        second.now += 50_000_000_000
        #expect(second.gateway.expire() == 0, "recovered established")
        second.now += 60_000_000_000
        #expect(second.gateway.expire() == 1)
    }

    @Test func udpAndEchoFlowsExpireByTheirOwnTimeouts() {
        var t = NATTimeouts()
        t.udp = 30
        t.icmp = 5
        let g = MemoryGateway(timeouts: t)
        g.fromTenant(G.red, G.udp(G.vm1, 1, G.x, 53))
        g.fromTenant(
            G.red,
            IPPacket.build(
                src: G.vm1, dst: G.x, proto: IPProtocol.icmp.rawValue,
                payload: ICMP.echoRequest(id: 77, sequence: 1, payload: [])))
        #expect(g.flows.count == 2)
        #expect(
            g.flows.contains { $0.proto == 1 && $0.caPort == 77 && $0.remotePort == 0 },
            "an echo flow is keyed by its identifier")
        g.now += 6_000_000_000
        #expect(g.gateway.expire() == 1 && g.flows.allSatisfy { $0.proto == 17 })
        g.now += 25_000_000_000
        #expect(g.gateway.expire() == 1 && g.flows.isEmpty)
        #expect(g.count(NV_GW_FLOWS_EXPIRED) == 2)
    }

    @Test func aNewProcessRecoversTheFlowsAndTheirPorts() throws {
        let first = MemoryGateway(natPorts: PortRange(first: 40000, last: 40001))
        first.fromTenant(G.red, G.udp(G.vm1, 1000, G.x, 53))
        first.fromOutside(G.udp(G.x, 53, G.ext, try #require(first.flows.first).extPort))  // answered: offloaded
        first.fromOutside(G.tcp(G.x, 5555, G.ext, 8080, flags: 0x02))  // a service flow (no pool port)
        // Half a flow (its nat_in entry lost) is removed, not recovered.
        let orphan = NATFlow(
            proto: 17, rdid: 1, vsid: 5001, ca: G.vm1, caPort: 9, ext: G.ext, extPort: 40001, remote: G.x, remotePort: 9
        )
        first.maps.natOut[RawBytes(of: orphan.outKey)] = orphan.value(flags: [], lastSeenNanoseconds: 0)

        let second = MemoryGateway(natPorts: PortRange(first: 40000, last: 40001))
        second.maps.natOut = first.maps.natOut
        second.maps.natIn = first.maps.natIn
        #expect(second.gateway.recover() == 2)
        #expect(second.maps.natOut[RawBytes(of: orphan.outKey)] == nil)
        let recovered = second.gateway.table.all
        #expect(recovered.contains { $0.offloaded && !$0.fromOutside } && recovered.contains { $0.fromOutside })
        // The recovered flow keeps its port: a new flow gets the other one, then none is left.
        second.fromTenant(G.red, G.udp(G.vm1, 2000, G.x, 53))
        second.fromTenant(G.red, G.udp(G.vm1, 3000, G.x, 53))
        let ports = Set(second.flows.filter { $0.extPort != 8080 }.map(\.extPort))
        #expect(ports == [40000, 40001] && second.count(NV_GW_PORTS_EXHAUSTED) == 1)
    }

    @Test func anICMPErrorAboutAFlowIsTranslatedBackForTheVM() throws {
        let g = MemoryGateway()
        let out = G.udp(G.vm1, 5353, G.x, 9)
        g.fromTenant(G.red, out)
        let flow = try #require(g.flows.first)
        // X answers port unreachable about the packet it received (translated).
        let seen = G.udp(G.ext, flow.extPort, G.x, 9, ttl: 63)
        let error = IPPacket.build(
            src: G.x, dst: G.ext, proto: IPProtocol.icmp.rawValue,
            payload: icmpMessage(type: 3, code: 3, body: [0, 0, 0, 0] + seen))
        g.fromOutside(error)
        let d = try #require(g.sender.delivered.first)
        // What the VM must get: the error to its CA, quoting the packet as the VM sent it.
        let quoted = G.udp(G.vm1, 5353, G.x, 9, ttl: 63)
        let expected = IPPacket.build(
            src: G.x, dst: G.vm1, proto: IPProtocol.icmp.rawValue,
            payload: icmpMessage(type: 3, code: 3, body: [0, 0, 0, 0] + quoted), ttl: 63)
        #expect(
            d.pa == G.paA && d.inner == G.toVM(G.vmMAC1, from: G.red.gwMAC, expected))
    }

    @Test func tenantsNeverReachTheInfrastructure() {
        let g = MemoryGateway()
        for dst: IPAddress in [G.paB, G.paG, "127.0.0.1"] {
            g.fromTenant(G.red, G.udp(G.vm1, 1000, dst, 9))
            g.fromTenant(G.red, G.tcp(G.vm1, 1000, dst, 22, flags: 0x02))
        }
        g.fromTenant(G.red, G.tcp(G.vm1, 1000, G.ext, 22, flags: 0x02))  // the external address, no service there
        #expect(g.flows.isEmpty && g.sender.outside.isEmpty && g.sender.underlay.isEmpty)
        #expect(g.count(NV_GW_DROP_INFRA) == 7 && g.domainCount(1, NV_DOM_USERSPACE_TO_INFRA) == 7)
        #expect(g.gateway.table.ports.inUse(proto: 17, address: G.ext) == 0, "no port taken")
    }

    @Test func aTenantReachesAPublishedServiceAsAnOutsideClientWould() throws {
        let g = MemoryGateway()
        // Blue's VM on A opens Red's published service.
        g.fromTenant(G.blue, G.tcp(G.vm1, 41000, G.ext, 8080, flags: 0x02))
        let blueFlow = try #require(g.flows.first { $0.rdid == G.blue.rdid })
        let serviceFlow = try #require(g.flows.first { $0.rdid == G.red.rdid })
        #expect(blueFlow.remote == G.ext && blueFlow.remotePort == 8080)
        #expect(
            serviceFlow.ca == G.vm2 && serviceFlow.caPort == 80 && serviceFlow.remote == G.ext
                && serviceFlow.remotePort == blueFlow.extPort)
        // Red's VM on B gets it from the external address and Blue's NAT port, nothing goes out.
        var d = try #require(g.sender.delivered.last)
        #expect(d.pa == G.paB && d.vsid == G.red.vsid)
        #expect(
            d.inner
                == G.toVM(G.vmMAC2, from: G.red.gwMAC, G.tcp(G.ext, blueFlow.extPort, G.vm2, 80, flags: 0x02, ttl: 62)))
        // Red answers; Blue's VM gets it from the service's address and port.
        g.fromTenant(G.red, G.tcp(G.vm2, 80, G.ext, blueFlow.extPort, flags: 0x12))
        d = try #require(g.sender.delivered.last)
        #expect(d.pa == G.paA && d.vsid == G.blue.vsid)
        #expect(
            d.inner
                == G.toVM(G.vmMAC1, from: G.blue.gwMAC, G.tcp(G.ext, 8080, G.vm1, 41000, flags: 0x12, ttl: 62)))
        g.fromTenant(G.blue, G.tcp(G.vm1, 41000, G.ext, 8080, flags: 0x10))
        #expect(g.sender.outside.isEmpty, "a hairpin never leaves the gateway")
        #expect(g.maps.natOut.values.allSatisfy { !$0.natFlags.contains(.offloaded) }, "nor is it offloaded")
        #expect(g.count(NV_GW_HAIRPIN) == 3)
    }

    @Test func onlyAFirstSYNOpensAServiceFlow() throws {
        let g = MemoryGateway()
        g.fromOutside(G.tcp(G.x, 5555, G.ext, 8080, flags: 0x10))  // a stray ACK
        g.fromOutside(G.udp(G.x, 5555, G.ext, 8080))  // another protocol
        #expect(g.flows.isEmpty && g.count(NV_GW_DROP_UNSUPPORTED) == 2)
        g.fromOutside(G.tcp(G.x, 5555, G.ext, 8080, flags: 0x02))
        let flow = try #require(g.flows.first)
        #expect(
            flow.ca == G.vm2 && flow.caPort == 80 && flow.ext == G.ext && flow.extPort == 8080 && flow.remote == G.x)
        #expect(g.maps.natOut.values.allSatisfy { $0.natFlags.contains(.service) })
        let d = try #require(g.sender.delivered.first)
        #expect(
            d.inner
                == G.toVM(G.vmMAC2, from: G.red.gwMAC, G.tcp(G.x, 5555, G.vm2, 80, flags: 0x02, ttl: 63)))
    }

    @Test func aPacketFromOutsideWithoutDFTooBigForTheUnderlayIsDeliveredInFragments() throws {
        let g = MemoryGateway()
        // As XDP hands it up: translated for Red's VM 198.19.1.1 (on A), 1500 bytes of IP
        // without DF, too big for a 1500-byte underlay once encapsulated (1458 fit).
        let payload = (0..<1472).map { UInt8(truncatingIfNeeded: $0) }
        let udp = UDP.datagram(src: G.x, dst: G.vm1, sport: 53, dport: 5353, payload: payload)
        let ip =
            IPv4Header(
                src: G.x, dst: G.vm1, proto: 17, payloadLength: udp.count, ttl: 62, identification: 7,
                flagsAndFragment: 0
            ).bytes + udp
        let frame = G.toVM(G.vmMAC1, from: G.red.gwMAC, ip)
        #expect(
            g.gateway.handle(
                ExceptionFrame(
                    reason: NV_EXC_OVERSIZE, ingressIfindex: G.external, vsid: G.red.vsid,
                    originalLength: frame.count, mtu: 1500, frame: frame)))
        // 1458 - 20 = 1438, 1432 bytes of data a fragment: 1432 + 48 of the 1480.
        let data = Array(ip[20...])
        let expected = [
            IPv4Header(
                src: G.x, dst: G.vm1, proto: 17, payloadLength: 1432, ttl: 62, identification: 7,
                flagsAndFragment: 0x2000
            ).bytes + data[0..<1432],
            IPv4Header(
                src: G.x, dst: G.vm1, proto: 17, payloadLength: 48, ttl: 62, identification: 7,
                flagsAndFragment: 1432 / 8
            ).bytes + data[1432...]
        ].map { G.toVM(G.vmMAC1, from: G.red.gwMAC, $0) }
        #expect(g.sender.delivered.map(\.inner) == expected)
        #expect(g.sender.delivered.allSatisfy { $0.pa == G.paA && $0.vsid == G.red.vsid })
        #expect(g.sender.outside.isEmpty, "no ICMP error: nothing was refused")

        // With DF: not cut; X hears about it instead (from the external address), when a flow says how.
        let df = IPv4Header(src: G.x, dst: G.vm1, proto: 17, payloadLength: udp.count, ttl: 62).bytes + udp
        let dfFrame = G.toVM(G.vmMAC1, from: G.red.gwMAC, df)
        _ = g.gateway.handle(
            ExceptionFrame(
                reason: NV_EXC_OVERSIZE, ingressIfindex: G.external, vsid: G.red.vsid,
                originalLength: dfFrame.count, mtu: 1500, frame: dfFrame))
        #expect(g.sender.delivered.count == 2, "nothing more delivered")
    }
}

extension MemoryGateway {
    /// A customer frame as the gateway hands it to a VM: from the subnet's router MAC.
    static func toVM(_ vm: MACAddress, from router: MACAddress, _ ip: [UInt8]) -> [UInt8] {
        Ethernet.frame(dst: vm, src: router, type: .ipv4, payload: ip)
    }
}

extension nv_nat_flow {
    /// The flow as the userspace agent keeps it: with the engine's flags (see
    /// UserspaceGatewayMaps.noteActivity).
    func with(_ flags: NATFlags) -> nv_nat_flow {
        var v = self
        v.natFlags = v.natFlags.union(flags)
        return v
    }
}
