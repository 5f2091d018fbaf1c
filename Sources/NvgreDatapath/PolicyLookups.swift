import CNvgre
import NvgreWire

/// The policy entries the exception path reads about a frame: from the live maps on the
/// XDP path, from the decision core's tables on the userspace path.
public protocol PolicyLookups: AnyObject {
    func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val?
    func subnet(_ vsid: UInt32) -> nv_subnet?
    /// Longest prefix match in routing domain `rdid`.
    func route(rdid: UInt32, to address: IPAddress) -> nv_route_val?
    func port(_ ifindex: UInt32) -> nv_port?
    var hostConfig: nv_config? { get }
    /// Every record's PA that is not this host's.
    func remoteProviderAddresses() throws -> Set<IPAddress>
}

/// The live maps as PolicyLookups.
public final class MapLookups: PolicyLookups {
    let maps: DatapathMaps
    public init(_ maps: DatapathMaps) { self.maps = maps }

    public func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val? {
        maps.lookups.lookup(nv_lookup_key(vsid: vsid, ca: ca))
    }
    public func subnet(_ vsid: UInt32) -> nv_subnet? { maps.subnets.lookup(vsid) }
    public func route(rdid: UInt32, to address: IPAddress) -> nv_route_val? {
        maps.routes.lookup(nv_route_key(rdid: rdid, prefix: address, prefixLength: address.bytes.count * 8))
    }
    public func port(_ ifindex: UInt32) -> nv_port? { maps.ports.lookup(ifindex) }
    public var hostConfig: nv_config? { maps.config.lookup(0) }
    public func remoteProviderAddresses() throws -> Set<IPAddress> {
        var seen = Set<IPAddress>(), remote = Set<IPAddress>()
        for (_, value) in try maps.lookups.rawEntries() {
            let pa = value.load(as: nv_lookup_val.self).providerAddress
            // One map lookup per distinct PA: records of local VMs all name a local PA.
            if seen.insert(pa).inserted && maps.localPAs.lookup(nv_pa_key(pa)) == nil { remote.insert(pa) }
        }
        return remote
    }
}
