import CNvgre
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// The underlay next hop per remote provider address, kept in the `nexthops` map for the
/// programs (nvgre_abi.h), so that an encapsulated frame costs a hash lookup instead of
/// bpf_fib_lookup. The agent keeps it: the kernel's route and neighbor are asked once per
/// PA; a netlink neighbor event then updates the PAs behind that neighbor from the event
/// itself, and a route or link event has every PA asked again (at most once a second).
/// The programs trust the entries under a lease, renewed every second, so that entries
/// nobody keeps stop counting within seconds.
public final class NextHopKeeper {
    /// How long the programs trust the entries after a renewal.
    public static let leaseSeconds = 3.0
    /// Route and link events coalesce: every PA is asked again at most once a second, and
    /// at most a tenth of the time (tens of thousands of PAs take a second or two to ask).
    static let resyncEvery = 1.0
    private var resyncSeconds = 0.0

    private let maps: DatapathMaps
    private let routes: RouteLookup
    private let neighbors: NeighborResolver
    private let events: NetlinkEvents
    /// The PAs followed, each with its route when the kernel has one.
    private var pas: [IPAddress: RouteLookup.Route?] = [:]
    /// PAs by the neighbor their frames go to (the route's gateway, else the PA itself).
    private var behind: [Neighbor: Set<IPAddress>] = [:]
    private var kept: [IPAddress: nv_nexthop] = [:]
    private var resyncDue = false
    private var lastResync = 0.0

    struct Neighbor: Hashable {
        let address: IPAddress
        let ifindex: UInt32
    }

    /// Create it on a thread that is in the uplink's network namespace.
    public init(maps: DatapathMaps) throws {
        self.maps = maps
        routes = try RouteLookup()
        neighbors = try NeighborResolver()
        events = try NetlinkEvents()
    }

    /// Follows exactly `wanted`: new PAs are asked about, PAs no longer wanted lose their
    /// entry. Returns how many entries the programs have.
    @discardableResult
    public func sync(_ wanted: Set<IPAddress>) -> Int {
        for pa in pas.keys where !wanted.contains(pa) { forget(pa) }
        for pa in wanted where pas[pa] == nil { ask(pa) }
        return kept.count
    }

    /// Takes the kernel's pending events: a neighbor's change updates the PAs behind it;
    /// a route or link change has every PA asked again (now, or a second after the last
    /// time). Returns whether any entry changed.
    @discardableResult
    public func follow(now: Double = monotonicSeconds()) -> Bool {
        var changed = false
        let news = events.drain()
        for n in news.neighbors {
            for pa in behind[Neighbor(address: n.address, ifindex: n.ifindex)] ?? [] {
                guard case let route?? = pas[pa] else { continue }
                changed = set(pa, Self.nextHop(route: route, neighborState: n.state, neighborMAC: n.mac)) || changed
            }
        }
        if news.routesOrLinks { resyncDue = true }
        if resyncDue, now - lastResync >= max(Self.resyncEvery, 10 * resyncSeconds) {
            resyncDue = false
            lastResync = now
            for pa in Array(pas.keys) { changed = ask(pa) || changed }
            resyncSeconds = monotonicSeconds() - now
        }
        return changed
    }

    /// Asks the kernel for the PA's route and neighbor, and writes or removes its entry;
    /// whether the entry changed.
    @discardableResult
    private func ask(_ pa: IPAddress) -> Bool {
        if case let old?? = pas[pa] { behind[Neighbor(address: old.gateway ?? pa, ifindex: old.ifindex)]?.remove(pa) }
        let route = try? routes.route(to: pa)
        pas[pa] = .some(route)
        guard let route else { return set(pa, nil) }
        let via = Neighbor(address: route.gateway ?? pa, ifindex: route.ifindex)
        behind[via, default: []].insert(pa)
        let neighbor = try? neighbors.entry(of: via.address, ifindex: via.ifindex)
        return set(pa, Self.nextHop(route: route, neighborState: neighbor?.state, neighborMAC: neighbor?.mac))
    }

    private func forget(_ pa: IPAddress) {
        if case let old?? = pas[pa] { behind[Neighbor(address: old.gateway ?? pa, ifindex: old.ifindex)]?.remove(pa) }
        pas[pa] = nil
        _ = set(pa, nil)
    }

    /// Writes (or with nil removes) the PA's entry when it differs; whether it did.
    private func set(_ pa: IPAddress, _ hop: nv_nexthop?) -> Bool {
        switch (kept[pa], hop) {
        case let (old?, new?) where Self.same(old, new):
            return false
        case (_, let new?):
            guard (try? maps.nexthops.update(nv_pa_key(pa), new)) != nil else { return false }
            kept[pa] = new
            return true
        case (.some, nil):
            _ = try? maps.nexthops.delete(nv_pa_key(pa))
            kept[pa] = nil
            return true
        case (nil, nil):
            return false
        }
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
/// without blocking: a neighbor's change in full, for the others only that one happened.
final class NetlinkEvents {
    private let sock: Int32
    private var buffer = [UInt8](repeating: 0, count: 65536)

    struct NeighborChange {
        let address: IPAddress
        let ifindex: UInt32
        let state: UInt16?  // nil: the entry is gone
        let mac: [UInt8]?
    }

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
        // Room for a burst (thousands of neighbors resolved at once): a lost event costs
        // every PA asked again. SO_RCVBUFFORCE passes the system's limit (root).
        var bytes: Int32 = 8 << 20
        if setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit { close(sock) }

    /// Reads every pending event. Lost events (ENOBUFS) count as a route change: everything
    /// is asked again.
    func drain() -> (neighbors: [NeighborChange], routesOrLinks: Bool) {
        var changes: [NeighborChange] = []
        var others = false
        while true {
            let n = recv(sock, &buffer, buffer.count, 0)
            if n < 0 {
                if errno == ENOBUFS {
                    others = true
                    continue
                }
                return (changes, others)
            }
            if n == 0 { return (changes, others) }
            var at = 0
            while at + 16 <= n {
                let len = Int(buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) })
                let type = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 4, as: UInt16.self) }
                guard len >= 16, at + len <= n else { break }
                if type == 28 || type == 29, let c = Self.neighbor(Array(buffer[at..<(at + len)]), gone: type == 29) {
                    changes.append(c)
                } else if type != 28 && type != 29 {
                    others = true  // RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWLINK, RTM_DELLINK
                }
                at += (len + 3) & ~3
            }
        }
    }

    /// An RTM_NEWNEIGH or RTM_DELNEIGH: ndmsg (family, ifindex, state) and NDA_DST, NDA_LLADDR.
    static func neighbor(_ msg: [UInt8], gone: Bool) -> NeighborChange? {
        guard msg.count >= 28 else { return nil }
        let ifindex = msg.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 20, as: Int32.self) }
        let state = msg.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 24, as: UInt16.self) }
        var address: IPAddress?, mac: [UInt8]?
        Netlink.attributes(msg, from: 28) { type, value in
            if type == 1 && value.count == 4 { address = IPAddress(v4: value) }
            if type == 1 && value.count == 16 { address = IPAddress(v6: value) }
            if type == 2 && value.count == 6 { mac = value }
        }
        guard let address, ifindex > 0 else { return nil }
        return NeighborChange(address: address, ifindex: UInt32(ifindex), state: gone ? nil : state, mac: mac)
    }
}
