import CNvgre
import NvgreWire

/// What an ordinary host does with the frames its fast path hands up. For now: count every
/// reason, and start underlay neighbor resolution for NV_EXC_NO_NEIGH so that the next
/// frames of the flow are encapsulated by XDP. Gateway work comes later.
public final class HostExceptionHandler {
    private let datapath: Datapath
    private let resolver: NeighborResolver
    public private(set) var counts: [String: Int] = [:]
    public private(set) var resolutions: [IPAddress] = []
    public private(set) var errors: [String] = []

    /// Create it on a thread in the host's network namespace (the resolver's socket is).
    public init(datapath: Datapath) throws {
        self.datapath = datapath
        resolver = try NeighborResolver()
    }

    public func handle(_ e: ExceptionFrame) {
        counts[e.reasonName, default: 0] += 1
        if e.reason == NV_EXC_NO_NEIGH.rawValue { resolveUnderlayNeighbor(for: e) }
    }

    /// The frame is the customer frame; its lookup record names the PA to resolve.
    private func resolveUnderlayNeighbor(for e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let dst = f.dst,
              let record = datapath.lookups.lookup(nv_lookup_key(vsid: e.vsid, ca: dst)),
              let cfg = datapath.config.lookup(0) else {
            errors.append("no-neighbor exception without a usable lookup record")
            return
        }
        do {
            try resolver.resolve(record.providerAddress, ifindex: cfg.uplink_ifindex)
            resolutions.append(record.providerAddress)
        } catch {
            errors.append("\(error)")
        }
    }
}
