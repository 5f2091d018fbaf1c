import CNvgre
import Foundation
import NvgreDatapath
import NvgrePolicy
import NvgreStore
import NvgreWire
import Prometheus

/// What `nvgre agent|gateway --metrics` serves at /metrics: the instance's counters read
/// from the per-CPU maps at scrape time, rendered in Prometheus' text format. Counter
/// names and labels are those of `nvgre stats -j`, so the two can be compared line by line.
public struct InstanceMetrics: Sendable {
    /// One counter pair as the maps hold it.
    public typealias Count = (packets: UInt64, bytes: UInt64)

    /// Everything a scrape shows, read at once (`read`) and rendered without system calls.
    public struct Snapshot {
        /// Per-VSID counters by counter name ("encap", "decap", ...), every VSID.
        public var vsids: [(vsid: UInt32, counters: [(String, Count)])] = []
        public var drops: [(String, Count)] = []
        public var exceptions: [(String, Count)] = []
        public var gateway: [(String, Count)] = []
        public var domains: [(name: String, counters: [(String, Count)])] = []
        /// Entries and capacity by map name.
        public var maps: [(name: String, entries: Int, capacity: Int)] = []
        public var natFlows = 0, natFlowsOffloaded = 0
        /// External ports held by NAT flows, by (protocol, external address).
        public var natPorts: [(proto: String, address: String, ports: Int)] = []
        public var exceptionRingBytes = 0
        /// The exception path's rate limiter as `nvgre up` set it: per routing domain, per
        /// VM port, and each port's flooding (frames a second and burst; 0: no limit).
        public var shares: [(scope: String, perSecond: UInt32, burst: UInt32)] = []
        public var store: StoreFollower.Status?
        public var datapath = "xdp"
        /// The userspace path counts packets only: no bytes series then.
        public var countsBytes = true

        public init() {}
    }

    /// Per-VSID series are opt-in (a VSID is 24 bits: thousands of series per counter
    /// otherwise), and at most this many VSIDs, the lowest first.
    public var vsidSeriesCap: Int
    public var version: String
    /// What deleted subnets had counted, kept so that the per-path totals never go down
    /// (Prometheus would take a fall for a counter reset and show a false spike).
    let retired = RetiredCounts()

    public init(vsidSeriesCap: Int = 0, version: String) {
        self.vsidSeriesCap = vsidSeriesCap
        self.version = version
    }

    /// Reads an XDP instance's counters and occupancy.
    public static func read(_ instance: Instance) -> Snapshot {
        let maps = instance.maps
        var s = Snapshot()
        s.vsids = maps.subnets.keys().compactMap { vsid in
            maps.subnets.lookup(vsid).map { subnet in
                let c = maps.vsidCounters(slot: subnet.stats_slot)
                return (vsid, ReasonNames.vsidCounters.map { ($0.1, c[$0.0] ?? (0, 0)) })
            }
        }.sorted { $0.vsid < $1.vsid }
        s.drops = ReasonNames.drops.map { ($0.1, maps.dropCount($0.0)) }
        s.exceptions = ReasonNames.exceptions.map { ($0.1, maps.exceptionCount($0.0)) }
        s.gateway = ReasonNames.gateway.map { ($0.1, maps.gatewayCount($0.0)) }
        let domains = (try? instance.storedPolicy())?.routingDomains ?? []
        s.domains = domains.sorted { $0.id < $1.id }.map { d in
            (d.name, ReasonNames.domain.map { ($0.1, maps.domainCount(d.id, $0.0)) })
        }
        func occupancy(_ name: String, _ entries: Int, _ capacity: UInt32) -> (String, Int, Int) {
            (name, entries, Int(capacity))
        }
        let flows = maps.natOut.keys().compactMap { maps.natOut.lookup($0) }
        s.maps = [
            occupancy("lookups", maps.lookups.count, maps.lookups.maxEntries),
            occupancy("subnets", maps.subnets.keys().count, maps.subnets.maxEntries),
            occupancy("ports", maps.ports.keys().count, maps.ports.maxEntries),
            occupancy("port_cas", maps.portAddresses.keys().count, maps.portAddresses.maxEntries),
            occupancy("routes", maps.routes.keys().count, maps.routes.maxEntries),
            occupancy("nexthops", maps.nexthops.keys().count, maps.nexthops.maxEntries),
            occupancy("nat_out", flows.count, maps.natOut.maxEntries)
        ]
        s.natFlows = flows.count
        s.natFlowsOffloaded = flows.filter { $0.natFlags.contains(.offloaded) }.count
        struct Holder: Hashable {
            let proto: UInt8
            let address: IPAddress
        }
        var ports: [Holder: Set<UInt16>] = [:]
        for k in maps.natIn.keys() {
            let address = withUnsafeBytes(of: k.ext) { IPAddress(v4: Array($0)) }
            ports[Holder(proto: k.proto, address: address), default: []].insert(k.ext_port)
        }
        s.natPorts = ports.map { holder, held in
            (
                IPProtocol(rawValue: holder.proto).map { "\($0)" } ?? String(holder.proto), "\(holder.address)",
                held.count
            )
        }.sorted { ($0.address, $0.proto) < ($1.address, $1.proto) }
        s.exceptionRingBytes = Int(maps.raw("exceptions").maxEntries)
        let settings = instance.settings
        s.shares = [
            ("domain", settings.exceptionShare.perSecond, settings.exceptionShare.burst),
            ("port", settings.portExceptionShare.perSecond, settings.portExceptionShare.burst),
            ("flood", settings.floodShare.perSecond, settings.floodShare.burst)
        ]
        s.store = storeStatus(instance.stateDirectory)
        return s
    }

    /// A userspace instance's counters, as its agent last wrote them (twice a second; packets
    /// only). The maps' occupancy and NAT ports are the XDP path's and are left out.
    public static func read(_ u: UserspaceInstance) -> Snapshot {
        var s = Snapshot()
        s.datapath = "userspace"
        s.countsBytes = false
        let c = u.counters()
        func count(_ v: Any?) -> Count { (UInt64(((v as? [String: Any])?["packets"] as? Int) ?? 0), 0) }
        func named(_ section: String, _ names: [String]) -> [(String, Count)] {
            let o = c[section] as? [String: Any] ?? [:]
            return names.map { ($0, count(o[$0])) }
        }
        s.vsids = ((c["vsids"] as? [[String: Any]]) ?? []).compactMap { v in
            guard let vsid = v["vsid"] as? Int else { return nil }
            return (UInt32(vsid), ReasonNames.vsidCounters.map { ($0.1, count(v[$0.1])) })
        }
        s.drops = named("drops", ReasonNames.drops.map(\.1))
        s.exceptions = named("exceptions", ReasonNames.exceptions.map(\.1))
        s.gateway = named("gateway", ReasonNames.gateway.map(\.1))
        s.domains = ((c["domains"] as? [[String: Any]]) ?? []).map { d in
            (d["domain"] as? String ?? "?", ReasonNames.domain.map { ($0.1, count(d[$0.1])) })
        }
        let flows = (c["gateway"] as? [String: Any])?["flows"] as? Int ?? 0
        s.natFlows = flows
        s.store = storeStatus(u.stateDirectory)
        return s
    }

    /// The store follower's last status (store.json in the state directory), if it follows one.
    public static func storeStatus(_ stateDirectory: String) -> StoreFollower.Status? {
        FileManager.default.contents(atPath: stateDirectory + "/" + StoreFollower.statusFile).flatMap {
            try? JSONDecoder().decode(StoreFollower.Status.self, from: $0)
        }
    }

    /// The text format of `s` (`now`: seconds since 1970, for the store's staleness).
    public func render(_ s: Snapshot, now: Double = Date().timeIntervalSince1970) -> String {
        let r = PrometheusCollectorRegistry()
        func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64, _ help: String) {
            r.makeCounter(name: name, labels: labels, help: help).increment(by: Int64(clamping: value))
        }
        func gauge(_ name: String, _ labels: [(String, String)], _ value: Double, _ help: String) {
            r.makeGauge(name: name, labels: labels, help: help).set(value)
        }
        gauge(
            "nvgre_build_info", [("version", version), ("datapath", s.datapath)], 1,
            "The running nvgre's version and data path (the value is always 1).")
        // Per path over every VSID (and those deleted since the first scrape), then the
        // opt-in per-VSID series.
        for (name, c) in retired.totals(s.vsids) {
            counter(
                "nvgre_packets_total", [("path", name)], c.packets,
                "Customer frames by path (encap, decap, local, routed, ...), over every VSID.")
            if s.countsBytes {
                counter("nvgre_bytes_total", [("path", name)], c.bytes, "Customer bytes by path, over every VSID.")
            }
        }
        for (vsid, counters) in s.vsids.prefix(vsidSeriesCap) {
            for (name, c) in counters {
                let labels = [("vsid", String(vsid)), ("path", name)]
                counter("nvgre_vsid_packets_total", labels, c.packets, "Customer frames by VSID and path (opt-in).")
                if s.countsBytes {
                    counter("nvgre_vsid_bytes_total", labels, c.bytes, "Customer bytes by VSID and path (opt-in).")
                }
            }
        }
        gauge(
            "nvgre_vsid_series_omitted", [], Double(max(0, s.vsids.count - vsidSeriesCap)),
            "VSIDs without per-VSID series (past --metrics-vsids).")
        for (reason, c) in s.drops {
            counter("nvgre_drops_total", [("reason", reason)], c.packets, "Frames dropped by the fast path, by reason.")
            if s.countsBytes {
                counter("nvgre_dropped_bytes_total", [("reason", reason)], c.bytes, "Bytes dropped, by reason.")
            }
        }
        for (reason, c) in s.exceptions {
            counter(
                "nvgre_exceptions_total", [("reason", reason)], c.packets,
                "Frames handed to userspace (the exception ring), by reason.")
            if s.countsBytes {
                counter("nvgre_exception_bytes_total", [("reason", reason)], c.bytes, "Bytes handed to userspace.")
            }
        }
        for (event, c) in s.gateway {
            counter(
                "nvgre_gateway_events_total", [("event", event)], c.packets,
                "The gateway's packets and flow events (NAT, routing), by event.")
        }
        for (domain, counters) in s.domains {
            for (reason, c) in counters {
                counter(
                    "nvgre_domain_drops_total", [("domain", domain), ("reason", reason)], c.packets,
                    "Frames of a routing domain dropped at its share of something shared, or kept from the "
                        + "infrastructure.")
            }
        }
        for m in s.maps {
            gauge("nvgre_map_entries", [("map", m.name)], Double(m.entries), "Entries in a BPF map.")
            gauge("nvgre_map_capacity_entries", [("map", m.name)], Double(m.capacity), "A BPF map's capacity.")
        }
        gauge("nvgre_nat_flows", [("state", "offloaded")], Double(s.natFlowsOffloaded), "NAT flows, by state.")
        gauge(
            "nvgre_nat_flows", [("state", "userspace")], Double(s.natFlows - s.natFlowsOffloaded),
            "NAT flows, by state.")
        for p in s.natPorts {
            gauge(
                "nvgre_nat_ports_in_use", [("protocol", p.proto), ("external_address", p.address)], Double(p.ports),
                "External ports held by NAT flows.")
        }
        if s.exceptionRingBytes > 0 {
            gauge("nvgre_exception_ring_capacity_bytes", [], Double(s.exceptionRingBytes), "The exception ring's size.")
        }
        for share in s.shares {
            gauge(
                "nvgre_exception_rate_limit_per_second", [("scope", share.scope)], Double(share.perSecond),
                "The exception path's rate limit per routing domain, per VM port, and of a port's flooding (0: none); "
                    + "what it drops is nvgre_drops_total{reason=~\"exception-throttled|flood-throttled\"}.")
            gauge(
                "nvgre_exception_rate_limit_burst", [("scope", share.scope)], Double(share.burst),
                "The burst the exception path's rate limiter allows.")
        }
        if let st = s.store {
            gauge("nvgre_store_up", [], st.lastError == nil ? 1 : 0, "1 when the last read of the store succeeded.")
            gauge("nvgre_store_revision", [], Double(st.revision), "The store revision of the state applied last.")
            gauge(
                "nvgre_store_staleness_seconds", [], st.staleness(now: now) ?? -1,
                "Seconds since the store was last read (-1: never).")
            counter("nvgre_store_applies_total", [], UInt64(max(0, st.applies)), "Changes applied from the store.")
            counter(
                "nvgre_store_resyncs_total", [], UInt64(max(0, st.resyncs)), "Whole reads of the store (resyncs).")
        }
        return r.emitToString()
    }
}

/// The per-path totals of the VSIDs gone since the first scrape, or whose counters started
/// again (a subnet deleted and made anew), so that each path's total only grows.
final class RetiredCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var last: [UInt32: [String: InstanceMetrics.Count]] = [:]
    private var gone: [String: InstanceMetrics.Count] = [:]

    /// Each path's total over `vsids` and what was retired, in the order paths first appear.
    func totals(_ vsids: [(vsid: UInt32, counters: [(String, InstanceMetrics.Count)])]) -> [(
        String, InstanceMetrics.Count
    )] {
        lock.withLock {
            func add(_ a: InstanceMetrics.Count, _ b: InstanceMetrics.Count) -> InstanceMetrics.Count {
                (a.packets &+ b.packets, a.bytes &+ b.bytes)
            }
            var now: [UInt32: [String: InstanceMetrics.Count]] = [:]
            for (vsid, counters) in vsids {
                var current: [String: InstanceMetrics.Count] = [:]
                for (name, c) in counters { current[name] = c }
                now[vsid] = current
            }
            for (vsid, counters) in last {
                for (name, old) in counters {
                    let new = now[vsid]?[name]
                    // Gone, or counting again from below: what it had counted is retired.
                    if new == nil || new!.packets < old.packets { gone[name] = add(gone[name] ?? (0, 0), old) }
                }
            }
            last = now
            var order: [String] = []
            var sums: [String: InstanceMetrics.Count] = [:]
            for (_, counters) in vsids {
                for (name, c) in counters {
                    if sums[name] == nil { order.append(name) }
                    sums[name] = add(sums[name] ?? (0, 0), c)
                }
            }
            for name in gone.keys.sorted() where sums[name] == nil { order.append(name) }
            return order.map { ($0, add(sums[$0] ?? (0, 0), gone[$0] ?? (0, 0))) }
        }
    }
}
