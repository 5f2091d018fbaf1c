import CNvgre
import NvgreDatapath
import NvgreWire
import Testing

/// The fast path's new rules through BPF_PROG_TEST_RUN on the fixture host, made a gateway
/// for Red (1) and Blue (2): what a tenant may not reach (gw_egress.h), the hairpin to a
/// published service, forged infrastructure sources on the external side, and the shares
/// of the exception path per domain and per VM port (verdict.h).
@Suite(.serialized)
struct GatewayEgressTests {
    static let ext: IPAddress = "203.0.113.1", outsider: IPAddress = "203.0.113.5"

    /// The fixture as a gateway: port5 stands for the external interface.
    func gateway(_ tag: String, share: ExceptionShare = .unlimited, portShare: ExceptionShare = .unlimited) throws
        -> HostFixture
    {
        let host = try HostFixture(tag: tag)
        try host.dp.config.update(
            0,
            nv_config(
                uplinkIfindex: host.port("ul"), pa4: Plan.paA, pa6: Plan.pa6A,
                externalIfindex: host.port("port5"), exceptionShare: share,
                portExceptionShare: portShare, cpus: 1))
        try host.dp.maps.gatewayDomains.update(1, NV_GW_NAT.rawValue)
        try host.dp.maps.gatewayDomains.update(2, NV_GW_NAT.rawValue)
        try host.dp.maps.externalAddresses.update(nv_ext_addr_key(Self.ext), 1)
        try host.dp.maps.services.update(
            nv_service_key(proto: 6, address: Self.ext, port: 8080),
            nv_service(rdid: 1, ca: Plan.vm2.ip4, port: 80))
        for (prefix, len) in [
            (IPAddress("198.18.0.0"), 16), (Self.ext, 32), ("127.0.0.0", 8), ("10.9.0.0", 16), ("2001:db8:18::", 64)
        ] {
            try host.dp.maps.infrastructure.update(
                nv_infra_key(prefix: prefix, prefixLength: len), NV_INFRA_LISTED.rawValue)
        }
        return host
    }

    /// A Red packet from VM 3 on host B, decapsulated here on its way out.
    func fromRed(_ inner: [UInt8]) -> [UInt8] { Frames.nvgre(inner, vsid: Plan.red.vsid, from: Plan.paB) }
    func redUDP(to dst: IPAddress, dport: UInt16 = 9) -> [UInt8] {
        Frames.udp(Plan.vm3.mac, Plan.red.gwMAC, Plan.vm3.ip4, dst, dport: dport)
    }

    func run(_ host: HostFixture, _ program: Program, _ frame: [UInt8], on port: String) throws -> TestRunResult {
        try NetworkNamespace.run(in: host.ns) {
            try host.dp.testRun(program, frame: frame, ingressIfindex: host.port(port))
        }
    }

    func expectDrop(_ r: TestRunResult, _ reason: nv_drop_reason, _ what: String) {
        #expect(
            r.action == .drop && r.trace?.kind == UInt16(NV_TRACE_DROP.rawValue)
                && r.trace?.code == UInt16(reason.rawValue),
            "\(what): verdict \(r.verdict), trace \(String(describing: r.trace))")
    }

    func expectException(_ r: TestRunResult, _ reason: nv_exception_reason, _ what: String) {
        #expect(
            r.action == .drop && r.trace?.kind == UInt16(NV_TRACE_EXCEPTION.rawValue)
                && r.trace?.code == UInt16(reason.rawValue),
            "\(what): verdict \(r.verdict), trace \(String(describing: r.trace))")
    }

    @Test func tenantsLeaveOnlyTowardTheOutside() throws {
        let host = try gateway("egress")
        for (dst, what) in [
            (IPAddress("198.18.0.2"), "a PA"), ("198.18.200.1", "the provider prefix"), ("127.0.0.1", "loopback"),
            ("10.9.3.4", "a listed prefix"), (Self.ext, "the external address, not a service")
        ] {
            expectDrop(try run(host, .fromFabric, fromRed(redUDP(to: dst)), on: "ul"), NV_DROP_TO_INFRASTRUCTURE, what)
        }
        let tcp22 = Frames.tcp(Plan.vm3.mac, Plan.red.gwMAC, Plan.vm3.ip4, Self.ext, sport: 40000, dport: 22)
        expectDrop(
            try run(host, .fromFabric, fromRed(tcp22), on: "ul"), NV_DROP_TO_INFRASTRUCTURE,
            "tcp 22 of the external address")
        let v6 = Frames.udp(Plan.vm3.mac, Plan.red.gwMAC, Plan.vm3.ip6, "2001:db8:18::9")
        expectDrop(
            try run(host, .fromFabric, fromRed(v6), on: "ul"), NV_DROP_TO_INFRASTRUCTURE, "an IPv6 provider address")
        #expect(host.dp.maps.dropCount(NV_DROP_TO_INFRASTRUCTURE).packets == 7)
        #expect(host.dp.maps.domainCount(1, NV_DOM_TO_INFRA).packets == 7, "counted for Red")
        #expect(host.dp.maps.domainCount(2, NV_DOM_TO_INFRA).packets == 0)

        // The published service (hairpin) and the outside go to the gateway process.
        let toService = Frames.tcp(Plan.vm3.mac, Plan.red.gwMAC, Plan.vm3.ip4, Self.ext, sport: 40000, dport: 8080)
        expectException(
            try run(host, .fromFabric, fromRed(toService), on: "ul"), NV_EXC_NAT_OUT, "the published service")
        expectException(
            try run(host, .fromFabric, fromRed(redUDP(to: Self.outsider)), on: "ul"), NV_EXC_NAT_OUT, "the outside")
    }

    @Test func infrastructureSourcesOnTheExternalSideAreForged() throws {
        let host = try gateway("extsrc")
        let forged = Frames.tcp(
            "02:00:00:00:71:01", "02:00:00:00:71:02", "198.18.0.2", Self.ext, sport: 1234, dport: 8080)
        expectDrop(try run(host, .fromExternal, forged, on: "port5"), NV_DROP_EXTERNAL_FROM_INFRA, "a PA as source")
        let genuine = Frames.tcp(
            "02:00:00:00:71:01", "02:00:00:00:71:02", Self.outsider, Self.ext, sport: 1234, dport: 8080)
        expectException(
            try run(host, .fromExternal, genuine, on: "port5"), NV_EXC_NAT_IN, "an outside client of the service")
    }

    @Test func eachDomainAndEachPortHasItsShareOfTheExceptionPath() throws {
        // One exception a second per domain, no burst: the second of Red's is over its share.
        let host = try gateway("share", share: ExceptionShare(perSecond: 1, burst: 1))
        let red = fromRed(redUDP(to: Self.outsider))
        expectException(try run(host, .fromFabric, red, on: "ul"), NV_EXC_NAT_OUT, "Red's first")
        expectDrop(try run(host, .fromFabric, red, on: "ul"), NV_DROP_EXCEPTION_THROTTLED, "Red's second")
        let blue = Frames.nvgre(
            Frames.udp(Plan.blue3.mac, Plan.blue.gwMAC, Plan.blue3.ip4, Self.outsider), vsid: Plan.blue.vsid,
            from: Plan.paC)
        expectException(try run(host, .fromFabric, blue, on: "ul"), NV_EXC_NAT_OUT, "Blue's first, in its own share")
        // Outsiders have a share of their own per domain: a client of Red's service still gets in.
        let client = Frames.tcp(
            "02:00:00:00:71:01", "02:00:00:00:71:02", Self.outsider, Self.ext, sport: 1234, dport: 8080)
        expectException(
            try run(host, .fromExternal, client, on: "port5"), NV_EXC_NAT_IN, "an outsider to Red's service")
        expectDrop(
            try run(host, .fromExternal, client, on: "port5"), NV_DROP_EXCEPTION_THROTTLED, "the outsider's second")
        #expect(host.dp.maps.domainCount(1, NV_DOM_EXC_THROTTLED).packets == 2)
        #expect(host.dp.maps.domainCount(2, NV_DOM_EXC_THROTTLED).packets == 0)
        // Red's answers on a service flow count against the outsiders' share, not Red's own:
        // with Red's own share spent, such an answer still goes up.
        let svc = try gateway("svcshare", share: ExceptionShare(perSecond: 1, burst: 1))
        expectException(try run(svc, .fromFabric, red, on: "ul"), NV_EXC_NAT_OUT, "Red's own first")
        expectDrop(try run(svc, .fromFabric, red, on: "ul"), NV_DROP_EXCEPTION_THROTTLED, "Red's own second")
        let service = NATFlow(
            proto: 6, rdid: 1, vsid: Plan.red.vsid, ca: Plan.vm3.ip4, caPort: 80, ext: Self.ext, extPort: 8080,
            remote: "203.0.113.9", remotePort: 4444)
        try svc.dp.maps.natOut.update(service.outKey, service.value(flags: .service, lastSeenNanoseconds: 0))
        let answer = fromRed(
            Frames.tcp(Plan.vm3.mac, Plan.red.gwMAC, Plan.vm3.ip4, "203.0.113.9", sport: 80, dport: 4444))
        expectException(try run(svc, .fromFabric, answer, on: "ul"), NV_EXC_NAT_OUT, "Red's answer to an outsider")

        // A VM port's share, inside its domain's: port1's second exception is over it, and
        // port2's first (same domain) is not.
        let ports = try gateway("portshare", share: .unlimited, portShare: ExceptionShare(perSecond: 1, burst: 1))
        let unknown1 = Frames.udp(Plan.vm1.mac, "02:00:00:00:01:99", Plan.vm1.ip4, "198.19.1.99")
        let unknown2 = Frames.udp(Plan.vm2.mac, "02:00:00:00:01:99", Plan.vm2.ip4, "198.19.1.99")
        expectException(try run(ports, .fromVM, unknown1, on: "port1"), NV_EXC_NO_LOOKUP, "port1's first")
        expectDrop(try run(ports, .fromVM, unknown1, on: "port1"), NV_DROP_EXCEPTION_THROTTLED, "port1's second")
        expectException(try run(ports, .fromVM, unknown2, on: "port2"), NV_EXC_NO_LOOKUP, "port2's first")
    }
}
