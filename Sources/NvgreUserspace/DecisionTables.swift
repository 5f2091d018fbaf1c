import CNvgre
import Foundation
import NvgreDatapath
import NvgreWire

/// The tables the decision core reads: the same entries the BPF maps hold (the ABI structs
/// of nvgre_abi.h), kept in memory. They are built from map entries, whether those are the
/// compiler's images of a policy or a snapshot of live maps, so both paths decide on
/// exactly the same data.
public struct DecisionTables: Sendable {
    public var ports: [UInt32: nv_port] = [:]
    public var subnets: [UInt32: nv_subnet] = [:]
    public var records: [RecordKey: nv_lookup_val] = [:]
    public var portAddresses: Set<PortAddress> = []
    public var routes = RouteTable()
    public var localPAs: Set<IPAddress> = []
    public var config: nv_config?
    public var floodLists: [UInt32: nv_flood_list] = [:]
    /// Routing domain id -> enum nv_gw_mode, on a gateway host.
    public var gatewayDomains: [UInt32: UInt32] = [:]
    /// A gateway host's: its external addresses, published services, infrastructure
    /// prefixes, and its route-mode domains' physical prefixes and subnets.
    public var gateway = GatewayTables()

    public init() {}

    /// (VSID, customer address): a lookup record's key.
    public struct RecordKey: Hashable, Sendable {
        public let vsid: UInt32
        public let address: IPAddress
        public init(_ vsid: UInt32, _ address: IPAddress) {
            self.vsid = vsid
            self.address = address
        }
    }

    /// (port ifindex, address): a source the VM on that port may use.
    public struct PortAddress: Hashable, Sendable {
        public let ifindex: UInt32
        public let address: IPAddress
        public init(_ ifindex: UInt32, _ address: IPAddress) {
            self.ifindex = ifindex
            self.address = address
        }
    }

    /// Fills the tables from raw map entries, by the map's C name (`lookups`, `subnets`, ...);
    /// maps the core does not read are ignored.
    public init(entries: [String: [(key: RawBytes, value: RawBytes)]], floodLists: [UInt32: nv_flood_list]) {
        for (map, list) in entries {
            for e in list {
                switch map {
                case "ports": ports[e.key.load(as: UInt32.self)] = e.value.load(as: nv_port.self)
                case "subnets": subnets[e.key.load(as: UInt32.self)] = e.value.load(as: nv_subnet.self)
                case "lookups":
                    let k = e.key.load(as: nv_lookup_key.self)
                    records[RecordKey(k.vsid, k.customerAddress)] = e.value.load(as: nv_lookup_val.self)
                case "port_cas":
                    let k = e.key.load(as: nv_port_ca_key.self)
                    portAddresses.insert(PortAddress(k.ifindex, k.customerAddress))
                case "routes":
                    routes.insert(e.key.load(as: nv_route_key.self), e.value.load(as: nv_route_val.self))
                case "local_pas":
                    localPAs.insert(e.key.load(as: nv_pa_key.self).providerAddress)
                case "config": config = e.value.load(as: nv_config.self)
                case "gw_domains": gatewayDomains[e.key.load(as: UInt32.self)] = e.value.load(as: UInt32.self)
                case "ext_addrs", "services", "infra", "gw_prefixes", "gw_routed": gateway.insert(map, e.key, e.value)
                default: break
                }
            }
        }
        // is_local_pa: the host's source PAs (config) count as local, in local_pas or not.
        for pa in [config?.providerAddress4, config?.providerAddress6] { if let pa { localPAs.insert(pa) } }
        self.floodLists = floodLists
    }

    func record(_ vsid: UInt32, _ ca: IPAddress) -> nv_lookup_val? { records[RecordKey(vsid, ca)] }

    func portMayUse(_ ifindex: UInt32, _ ca: IPAddress) -> Bool {
        portAddresses.contains(PortAddress(ifindex, ca))
    }

    /// find_record_in_domain: the record vouching for `ca` in routing domain `rdid`.
    func recordInDomain(_ rdid: UInt32, _ ca: IPAddress) -> nv_lookup_val? {
        guard let r = routes.lookup(rdid, ca) else { return nil }
        if r.routeKind == NV_ROUTE_CUSTOMER { return r.nextHop.flatMap { record(r.vsid, $0) } }
        return record(r.vsid, ca)
    }
}

/// Longest prefix match per routing domain and family, as the routes LPM trie answers.
public struct RouteTable: Sendable {
    /// (rdid, family) -> (prefix, route), longest prefix first.
    var entries: [UInt64: [(prefix: IPPrefix, value: nv_route_val)]] = [:]

    public init() {}

    mutating func insert(_ k: nv_route_key, _ v: nv_route_val) {
        let bytes = withUnsafeBytes(of: k.addr) { Array($0.prefix(k.family == UInt8(NV_AF_INET6) ? 16 : 4)) }
        let address = bytes.count == 4 ? IPAddress(v4: bytes) : IPAddress(v6: bytes)
        guard let prefix = IPPrefix(address: address, length: Int(k.prefixlen) - Int(NV_ROUTE_KEY_PREFIX_BITS))
        else { return }
        let slot = UInt64(UInt32(bigEndian: k.rdid_be)) << 8 | UInt64(k.family)
        entries[slot, default: []].append((prefix, v))
        entries[slot]!.sort { $0.prefix.length > $1.prefix.length }
    }

    func lookup(_ rdid: UInt32, _ address: IPAddress) -> nv_route_val? {
        let family = UInt8(address.family == .v4 ? NV_AF_INET : NV_AF_INET6)
        return entries[UInt64(rdid) << 8 | UInt64(family)]?.first { $0.prefix.contains(address) }?.value
    }
}

/// The tables as the exception path reads them (HostExceptionHandler on the userspace path).
public final class TableLookups: PolicyLookups, @unchecked Sendable {
    private let lock = NSLock()
    private var current: DecisionTables

    public init(_ tables: DecisionTables) { current = tables }

    public var tables: DecisionTables {
        get {
            lock.lock()
            defer { lock.unlock() }
            return current
        }
        set {
            lock.lock()
            current = newValue
            lock.unlock()
        }
    }

    public func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val? { tables.record(vsid, ca) }
    public func subnet(_ vsid: UInt32) -> nv_subnet? { tables.subnets[vsid] }
    public func route(rdid: UInt32, to address: IPAddress) -> nv_route_val? { tables.routes.lookup(rdid, address) }
    public func port(_ ifindex: UInt32) -> nv_port? { tables.ports[ifindex] }
    public var hostConfig: nv_config? { tables.config }
    public func remoteProviderAddresses() throws -> Set<IPAddress> {
        let t = tables
        return Set(t.records.values.map(\.providerAddress)).subtracting(t.localPAs)
    }
}
