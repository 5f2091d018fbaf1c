import CNvgre
import NvgreWire

/// What an ordinary host does with the frames its fast path hands up. For now: count every
/// reason, and start underlay neighbor resolution for NV_EXC_NO_NEIGH so that the next
/// frames of the flow are encapsulated by XDP. Gateway work comes later.
public final class HostExceptionHandler {
    /// Something the handler did or could not do, for a log line.
    public enum Event: CustomStringConvertible {
        case resolving(IPAddress, vsid: UInt32)
        case failed(String)

        public var description: String {
            switch self {
            case let .resolving(pa, vsid): return "underlay neighbor \(pa) unresolved (VSID \(vsid)): resolution started"
            case let .failed(why): return "could not handle an exception: \(why)"
            }
        }
    }

    private let maps: DatapathMaps
    private let resolver: NeighborResolver
    public private(set) var counts: [String: Int] = [:]
    /// Provider addresses whose resolution was started, each once (the set stays small:
    /// one entry per peer host).
    public private(set) var resolutions: Set<IPAddress> = []
    /// The last few failures (bounded: an agent runs for months).
    public private(set) var errors: [String] = []
    public var onEvent: (Event) -> Void = { _ in }

    /// Create it on a thread in the host's network namespace (the resolver's socket is).
    public init(maps: DatapathMaps) throws {
        self.maps = maps
        resolver = try NeighborResolver()
    }

    public func handle(_ e: ExceptionFrame) {
        counts[e.reasonName, default: 0] += 1
        if e.reason == NV_EXC_NO_NEIGH.rawValue { resolveUnderlayNeighbor(for: e) }
    }

    /// The frame is the customer frame; its lookup record names the PA to resolve.
    private func resolveUnderlayNeighbor(for e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let dst = f.dst,
              let record = maps.lookups.lookup(nv_lookup_key(vsid: e.vsid, ca: dst)),
              let cfg = maps.config.lookup(0) else {
            fail("no-neighbor exception in VSID \(e.vsid) without a usable lookup record")
            return
        }
        do {
            try resolver.resolve(record.providerAddress, ifindex: cfg.uplink_ifindex)
            if resolutions.insert(record.providerAddress).inserted {
                onEvent(.resolving(record.providerAddress, vsid: e.vsid))
            }
        } catch {
            fail("\(error)")
        }
    }

    /// Asks the kernel to resolve (or keep fresh) every remote provider address that a
    /// lookup record names, so that XDP finds them resolved: its lookups do not refresh
    /// neighbor entries, and the frame that meets an unresolved one goes to userspace and is
    /// lost. Returns how many addresses it asked for.
    @discardableResult
    public func refreshUnderlayNeighbors() throws -> Int {
        guard let cfg = maps.config.lookup(0), cfg.uplink_ifindex != 0 else { return 0 }
        var seen = Set<IPAddress>(), remote = Set<IPAddress>()
        for (_, value) in try maps.lookups.rawEntries() {
            let pa = value.load(as: nv_lookup_val.self).providerAddress
            // One map lookup per distinct PA: records of local VMs all name a local PA.
            if seen.insert(pa).inserted && maps.localPAs.lookup(nv_pa_key(pa)) == nil { remote.insert(pa) }
        }
        for pa in remote {
            do { try resolver.resolve(pa, ifindex: cfg.uplink_ifindex) } catch { fail("\(error)") }
        }
        return remote.count
    }

    private func fail(_ why: String) {
        errors.append(why)
        if errors.count > 32 { errors.removeFirst() }
        onEvent(.failed(why))
    }
}
