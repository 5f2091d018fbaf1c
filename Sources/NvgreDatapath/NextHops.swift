import CNvgre
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// The underlay next hop per remote provider address, kept in the `nexthops` map for the
/// programs (nvgre_abi.h), so that an encapsulated frame costs a hash lookup instead of
/// bpf_fib_lookup. The agent keeps it: from the kernel's route and neighbor for each PA,
/// again on every netlink route, neighbor or link event, and under a lease the programs
/// check, renewed every second, so that entries nobody keeps stop counting within seconds.
public final class NextHopKeeper {
    /// How long the programs trust the entries after a renewal.
    public static let leaseSeconds = 3.0

    private let maps: DatapathMaps
    private let routes: RouteLookup
    private let neighbors: NeighborResolver
    private let events: NetlinkEvents
    private var kept: [IPAddress: nv_nexthop] = [:]

    /// Create it on a thread that is in the uplink's network namespace.
    public init(maps: DatapathMaps) throws {
        self.maps = maps
        routes = try RouteLookup()
        neighbors = try NeighborResolver()
        events = try NetlinkEvents()
    }

    /// Whether the kernel's routes, neighbors or links changed since the last call.
    public func underlayChanged() -> Bool { events.drain() }

    /// Writes the next hop of every PA in `pas` that the kernel can reach through a resolved
    /// neighbor and removes the others (a frame to them asks the FIB, which answers "no
    /// neighbor" and has it resolved). Returns how many entries the programs have.
    @discardableResult
    public func sync(_ pas: Set<IPAddress>) -> Int {
        var wanted: [IPAddress: nv_nexthop] = [:]
        for pa in pas {
            guard let route = try? routes.route(to: pa) else { continue }
            let via = route.gateway ?? pa
            let neighbor = try? neighbors.entry(of: via, ifindex: route.ifindex)
            if let hop = Self.nextHop(route: route, neighborState: neighbor?.state, neighborMAC: neighbor?.mac) {
                wanted[pa] = hop
            }
        }
        for (pa, hop) in wanted where kept[pa].map({ !Self.same($0, hop) }) ?? true {
            if (try? maps.nexthops.update(nv_pa_key(pa), hop)) != nil { kept[pa] = hop }
        }
        for pa in kept.keys where wanted[pa] == nil {
            _ = try? maps.nexthops.delete(nv_pa_key(pa))
            kept[pa] = nil
        }
        return kept.count
    }

    /// Lets the programs use the entries for another `seconds` (leaseSeconds).
    public func renewLease(seconds: Double = leaseSeconds) throws {
        try maps.nexthopLease.update(0, Self.coarseNanoseconds() + UInt64(seconds * 1e9))
    }

    /// Ends the lease at once (the agent stops): every frame asks the FIB again.
    public func endLease() { _ = try? maps.nexthopLease.update(0, 0) }

    /// The entry the programs use toward a PA, as bpf_fib_lookup answers it: nil unless the
    /// neighbor has a MAC in a state the FIB lookup accepts (NUD_VALID).
    static func nextHop(route: RouteLookup.Route, neighborState: UInt16?, neighborMAC: [UInt8]?) -> nv_nexthop? {
        let nudValid: UInt16 = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08  // PERMANENT NOARP REACHABLE PROBE STALE DELAY
        guard let state = neighborState, state & nudValid != 0, let mac = neighborMAC, mac.count == 6,
            route.sourceMAC.count == 6, route.mtu > 0
        else { return nil }
        var hop = nv_nexthop()
        copyBytes(mac, into: &hop.dmac)
        copyBytes(route.sourceMAC, into: &hop.smac)
        hop.ifindex = route.ifindex
        hop.mtu = UInt32(route.mtu)
        return hop
    }

    static func same(_ a: nv_nexthop, _ b: nv_nexthop) -> Bool {
        withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
    }

    /// CLOCK_MONOTONIC_COARSE, the clock of bpf_ktime_get_coarse_ns.
    static func coarseNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// A netlink socket subscribed to the kernel's link, neighbor and route changes, read
/// without blocking: what changed does not matter, only that something did.
final class NetlinkEvents {
    private let sock: Int32

    init() throws {
        sock = socket(
            AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
            NETLINK_ROUTE)
        if sock < 0 { throw DatapathError("open a netlink socket for route and neighbor events", errno: errno) }
        var local = sockaddr_nl()
        local.nl_family = sa_family_t(AF_NETLINK)
        // RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
        local.nl_groups = 0x1 | 0x4 | 0x40 | 0x400
        let rc = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(sock, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        if rc != 0 {
            let e = errno
            close(sock)
            throw DatapathError("subscribe to route and neighbor events", errno: e)
        }
    }

    deinit { close(sock) }

    /// Reads every pending event; true when there was any (or some were lost: ENOBUFS).
    func drain() -> Bool {
        var any = false
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = recv(sock, &buffer, buffer.count, 0)
            if n > 0 {
                any = true
                continue
            }
            if n < 0 && errno == ENOBUFS {
                any = true
                continue
            }
            return any
        }
    }
}
