import CNvgre
import Foundation
import NvgreWire
import Testing

@testable import NvgreDatapath

/// The next hops the agent keeps for the programs (nexthops), instead of a FIB lookup per
/// encapsulated frame: used while the lease runs, followed when the underlay's neighbors
/// and routes change, and never in the way of the FIB's own answer.
@Suite(.serialized)
struct NextHopTests {
    let frame = Frames.udp(Plan.vm1.mac, Plan.vm3.mac, Plan.vm1.ip4, Plan.vm3.ip4)

    func expected(via mac: MACAddress) -> [UInt8] {
        FastPathTable.encap(frame, vsid: 5001, hash: Frames.udpHash(Plan.vm1.ip4, Plan.vm3.ip4), to: Plan.paB, via: mac)
    }

    func encapsulate(_ host: HostFixture) throws -> TestRunResult {
        try host.dp.testRun(.fromVM, frame: frame, ingressIfindex: host.port("port1"))
    }

    /// Lets the keeper follow the kernel's events until the entry toward B is `expected`
    /// (at most 3 s: a route change is taken at most a second after the last one).
    func follow(_ keeper: NextHopKeeper, _ host: HostFixture, until expected: MACAddress?) {
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            keeper.follow()
            let now = host.dp.maps.nexthops.lookup(nv_pa_key(Plan.paB)).map {
                MACAddress(withUnsafeBytes(of: $0.dmac) { Array($0) })
            }
            if now == expected { return }
            usleep(10_000)
        }
    }

    @Test func theProgramsUseTheKeptNextHopAndFollowTheUnderlay() throws {
        let host = try HostFixture(tag: "nexthop")
        let pas: Set<IPAddress> = [Plan.paB, Plan.paNoNeighbor]
        try NetworkNamespace.run(in: host.ns) {
            let keeper = try NextHopKeeper(maps: host.dp.maps)
            // paB has a neighbor, paNoNeighbor none: only paB gets an entry, as the FIB sees it.
            #expect(keeper.sync(pas) == 1)
            let kept = try #require(host.dp.maps.nexthops.lookup(nv_pa_key(Plan.paB)))
            #expect(MACAddress(withUnsafeBytes(of: kept.dmac) { Array($0) }) == Plan.macB)
            #expect(MACAddress(withUnsafeBytes(of: kept.smac) { Array($0) }) == Plan.uplinkMAC)
            #expect(kept.ifindex == host.port("ul"))
            #expect(kept.mtu == 1500)
            try keeper.renewLease()

            // The entry is what the program uses: one written by hand shows it.
            var marked = kept
            let marker: MACAddress = "02:18:00:00:00:aa"
            withUnsafeMutableBytes(of: &marked.dmac) { $0.copyBytes(from: marker.bytes) }
            try host.dp.maps.nexthops.update(nv_pa_key(Plan.paB), marked)
            var r = try encapsulate(host)
            #expect(r.action == .redirect)
            #expect(r.output == expected(via: marker))

            // A frame longer than the entry's MTU is asked of the FIB, which decides.
            var small = marked
            small.mtu = 60
            try host.dp.maps.nexthops.update(nv_pa_key(Plan.paB), small)
            r = try encapsulate(host)
            #expect(r.output == expected(via: Plan.macB))
            try host.dp.maps.nexthops.update(nv_pa_key(Plan.paB), marked)

            // Without a running lease the entries do not count.
            keeper.endLease()
            r = try encapsulate(host)
            #expect(r.output == expected(via: Plan.macB))
            try keeper.renewLease()
            #expect(try encapsulate(host).output == expected(via: marker))

            // The neighbor's MAC changes: the event brings the keeper to the new one.
            let moved: MACAddress = "02:18:00:00:00:99"
            _ = try host.net.ip(host.ns, "neigh replace \(Plan.paB) lladdr \(moved) dev ul nud permanent")
            follow(keeper, host, until: moved)
            #expect(try encapsulate(host).output == expected(via: moved))

            // A route to the PA through another router: frames go to that router's MAC.
            let router: IPAddress = "198.18.0.50"
            let routerMAC: MACAddress = "02:18:00:00:00:50"
            _ = try host.net.ip(host.ns, "neigh replace \(router) lladdr \(routerMAC) dev ul nud permanent")
            _ = try host.net.ip(host.ns, "route add \(Plan.paB)/32 via \(router) dev ul")
            follow(keeper, host, until: routerMAC)
            #expect(try encapsulate(host).output == expected(via: routerMAC))
            _ = try host.net.ip(host.ns, "route del \(Plan.paB)/32")
            follow(keeper, host, until: moved)
            #expect(try encapsulate(host).output == expected(via: moved))

            // The neighbor goes: the entry goes, and the FIB's answer (no neighbor) is back.
            _ = try host.net.ip(host.ns, "neigh del \(Plan.paB) dev ul")
            follow(keeper, host, until: nil)
            #expect(host.dp.maps.nexthops.lookup(nv_pa_key(Plan.paB)) == nil)
            r = try encapsulate(host)
            #expect(r.action != .redirect)
            #expect(r.trace?.code == UInt16(NV_EXC_NO_NEIGH.rawValue))
        }
    }

    @Test func anEntryNeedsAResolvedNeighbor() {
        let route = RouteLookup.Route(ifindex: 3, gateway: nil, mtu: 1500, sourceMAC: Plan.uplinkMAC.bytes)
        let mac = Plan.macB.bytes
        #expect(NextHopKeeper.nextHop(route: route, neighborState: 0x02, neighborMAC: mac) != nil)  // REACHABLE
        #expect(NextHopKeeper.nextHop(route: route, neighborState: 0x04, neighborMAC: mac) != nil)  // STALE
        #expect(NextHopKeeper.nextHop(route: route, neighborState: 0x01, neighborMAC: mac) == nil)  // INCOMPLETE
        #expect(NextHopKeeper.nextHop(route: route, neighborState: 0x20, neighborMAC: mac) == nil)  // FAILED
        #expect(NextHopKeeper.nextHop(route: route, neighborState: nil, neighborMAC: nil) == nil)
        let hop = NextHopKeeper.nextHop(route: route, neighborState: 0x80, neighborMAC: mac)
        #expect(hop?.ifindex == 3)
        #expect(hop?.mtu == 1500)
    }
}
