import Foundation
import NvgreDatapath
import NvgreUserspace
import NvgreWire

/// The underlay as the host's kernel has it, for the userspace data path: routes and
/// neighbors read over netlink and kept per PA, refreshed by the forwarding loop (`refresh`)
/// so that deciding a frame never waits on the kernel. A PA seen for the first time is
/// looked up at once; an unresolved neighbor is asked for (NTF_USE), as the agent does for
/// the XDP path.
public final class KernelUnderlay: Underlay, @unchecked Sendable {
    private let lock = NSLock()
    private var hops: [IPAddress: (hop: UnderlayHop, at: Date, used: Date)] = [:]
    private var lastRecheck = Date.distantPast
    /// The policy's PAs, kept for good; any other address (a gateway's outside
    /// destinations) is forgotten once unused for `idleLimit`, and at most `capacity` held.
    private var primed: Set<IPAddress> = []
    static let idleLimit = 5.0, capacity = 4096
    /// One netlink exchange at a time: the lookups' sockets are shared by every lane, and a
    /// reply read by the wrong thread would give one address another's route.
    private let netlink = NSLock()
    private let routes: RouteLookup
    private let neighbors: NeighborResolver

    /// Create it on a thread in the uplink's network namespace.
    public init() throws {
        routes = try RouteLookup()
        neighbors = try NeighborResolver()
    }

    /// A hop whose neighbor is still unresolved is looked up again after 50 ms: the first
    /// frames to a new PA find it resolving, the next ones go.
    public func hop(to pa: IPAddress) -> UnderlayHop {
        let now = Date()
        lock.lock()
        let known = hops[pa]
        // Use is noted to the second (it only decides what to forget): not a write per frame.
        if let known, now.timeIntervalSince(known.used) > 1 { hops[pa]?.used = now }
        lock.unlock()
        if let known, known.hop.isResolved || now.timeIntervalSince(known.at) < 0.05 { return known.hop }
        let hop = lookUp(pa)
        lock.lock()
        if hops.count >= Self.capacity, hops[pa] == nil,
            let oldest = hops.filter({ !primed.contains($0.key) }).min(by: {
                $0.value.used < $1.value.used
            })
        {
            hops[oldest.key] = nil
        }
        hops[pa] = (hop, Date(), now)
        lock.unlock()
        return hop
    }

    /// Starts resolving `pas` now (every PA of the policy, at start and on a policy change).
    public func prime(_ pas: [IPAddress]) {
        lock.lock()
        primed = Set(pas)
        lock.unlock()
        for pa in pas { _ = hop(to: pa) }
    }

    /// Looks the unresolved hops up again now, at most once a millisecond; true when one
    /// became resolved (a frame just decided NV_EXC_NO_NEIGH may be decided again: the
    /// kernel may have resolved it since the cache last looked, as bpf_fib_lookup would see).
    public func recheckUnresolved() -> Bool {
        lock.lock()
        let due = Date().timeIntervalSince(lastRecheck) >= 0.001
        if due { lastRecheck = Date() }
        let pas = due ? hops.filter { !$0.value.hop.isResolved }.map(\.key) : []
        lock.unlock()
        return lookUpAgain(pas).contains { $0.isResolved }
    }

    /// Looks every known address up again (routes and neighbors change), and forgets those
    /// outside the policy that went unused.
    public func refresh() {
        let now = Date()
        lock.lock()
        hops = hops.filter { primed.contains($0.key) || now.timeIntervalSince($0.value.used) < Self.idleLimit }
        let pas = Array(hops.keys)
        lock.unlock()
        lookUpAgain(pas)
    }

    /// Looks `pas` up (outside the cache's lock) and stores what the kernel said.
    @discardableResult
    private func lookUpAgain(_ pas: [IPAddress]) -> [UnderlayHop] {
        let fresh = pas.map { ($0, lookUp($0)) }
        lock.lock()
        for (pa, hop) in fresh where hops[pa] != nil {
            hops[pa]!.hop = hop
            hops[pa]!.at = Date()
        }
        lock.unlock()
        return fresh.map(\.1)
    }

    private func lookUp(_ pa: IPAddress) -> UnderlayHop {
        netlink.lock()
        defer { netlink.unlock() }
        guard let r = try? routes.route(to: pa) else { return .unreachable }
        let next = r.gateway ?? pa
        let entry = try? neighbors.entry(of: next, ifindex: r.ifindex)
        // NUD_VALID: permanent, noarp, reachable, probe, stale, delay (as bpf_fib_lookup).
        let valid = entry.map { $0.state & 0xde != 0 } ?? false
        if !valid { try? neighbors.resolve(next, ifindex: r.ifindex) }
        let mac = valid ? entry?.mac.map { MACAddress($0) } : nil
        return .route(ifindex: r.ifindex, mtu: r.mtu, sourceMAC: MACAddress(r.sourceMAC), nextHopMAC: mac)
    }
}

extension UnderlayHop {
    var isResolved: Bool {
        if case .route(_, _, _, let mac) = self { return mac != nil }
        return true  // unreachable and forwarding-disabled wait for the next refresh
    }
}
