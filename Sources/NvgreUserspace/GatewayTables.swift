import CNvgre
import NvgreDatapath
import NvgreWire

/// A gateway host's tables beside the tenant tables (the maps ext_addrs, services, infra,
/// gw_prefixes and gw_routed), kept in memory. A gateway holds a few dozen prefixes, so the
/// longest-prefix lookups are scans.
public struct GatewayTables: Sendable {
    public var externalAddresses: Set<IPAddress> = []
    public var services: [ServiceKey: nv_service] = [:]
    public var infrastructure: [IPPrefix] = []
    /// Route-mode domain -> the physical prefixes it reaches through the gateway.
    public var prefixes: [UInt32: [IPPrefix]] = [:]
    /// The route-mode domains' subnets as the outside reaches them.
    public var routed: [(prefix: IPPrefix, to: nv_gw_routed)] = []

    public init() {}

    /// (protocol, external address, port): a published service's key.
    public struct ServiceKey: Hashable, Sendable {
        public let proto: UInt8
        public let address: IPAddress
        public let port: UInt16
        public init(_ proto: UInt8, _ address: IPAddress, _ port: UInt16) {
            self.proto = proto
            self.address = address
            self.port = port
        }
    }

    mutating func insert(_ map: String, _ key: RawBytes, _ value: RawBytes) {
        switch map {
        case "ext_addrs":
            externalAddresses.insert(IPAddress(v4: key.load(as: nv_ext_addr_key.self).addressBytes))
        case "services":
            let k = key.load(as: nv_service_key.self)
            services[ServiceKey(k.proto, IPAddress(v4: k.addressBytes), UInt16(bigEndian: k.port))] =
                value.load(as: nv_service.self)
        case "infra":
            if let p = key.load(as: nv_infra_key.self).prefix { infrastructure.append(p) }
        case "gw_prefixes":
            let k = key.load(as: nv_gw_prefix_key.self)
            if let p = IPPrefix(
                address: IPAddress(v4: k.addressBytes), length: Int(k.prefixlen) - Int(NV_GW_PREFIX_KEY_BITS))
            {
                prefixes[UInt32(bigEndian: k.rdid_be), default: []].append(p)
            }
        case "gw_routed":
            let k = key.load(as: nv_gw_routed_key.self)
            if let p = IPPrefix(address: IPAddress(v4: k.addressBytes), length: Int(k.prefixlen)) {
                routed.append((p, value.load(as: nv_gw_routed.self)))
                routed.sort { $0.prefix.length > $1.prefix.length }
            }
        default: break
        }
    }

    func isInfrastructure(_ a: IPAddress) -> Bool { infrastructure.contains { $0.contains(a) } }
    func service(_ proto: UInt8, _ a: IPAddress, _ port: UInt16) -> nv_service? {
        services[ServiceKey(proto, a, port)]
    }
    func prefixCovers(_ rdid: UInt32, _ a: IPAddress) -> Bool { prefixes[rdid]?.contains { $0.contains(a) } ?? false }
    func routedSubnet(_ a: IPAddress) -> nv_gw_routed? { routed.first { $0.prefix.contains(a) }?.to }
}

/// A gateway's NAT flows, as the core asks about them: the gateway engine holds them (on an
/// XDP host the maps nat_out and nat_in do).
public protocol NATFlowView: AnyObject, Sendable {
    func flowOut(_ key: nv_nat_out_key) -> nv_nat_flow?
    func flowIn(_ key: nv_nat_in_key) -> nv_nat_flow?
}

extension nv_ext_addr_key { var addressBytes: [UInt8] { withUnsafeBytes(of: addr) { Array($0) } } }
extension nv_service_key { var addressBytes: [UInt8] { withUnsafeBytes(of: addr) { Array($0) } } }
extension nv_gw_prefix_key { var addressBytes: [UInt8] { withUnsafeBytes(of: addr) { Array($0) } } }
extension nv_gw_routed_key { var addressBytes: [UInt8] { withUnsafeBytes(of: addr) { Array($0) } } }
