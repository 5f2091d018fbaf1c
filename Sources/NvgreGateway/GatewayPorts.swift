import CNvgre
import NvgreDatapath
import NvgreWire

// What the gateway engine needs of the world, as two small protocols: the data path's maps
// and a way to send. GatewaySystem.swift gives the real ones (pinned BPF maps, sockets);
// tests give in-memory ones, so every decision of the engine is tested without a system call.

/// The maps the gateway reads and the NAT flow maps it writes.
public protocol GatewayMaps: AnyObject {
    /// The host's settings (uplink, external interface, provider addresses).
    var hostConfig: nv_config? { get }
    func subnet(_ vsid: UInt32) -> nv_subnet?
    /// How this gateway serves routing domain `rdid`, if it does.
    func servedMode(_ rdid: UInt32) -> nv_gw_mode?
    func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val?
    /// The longest route of domain `rdid` that holds `address`.
    func route(rdid: UInt32, address: IPAddress) -> nv_route_val?
    func service(proto: UInt8, address: IPAddress, port: UInt16) -> nv_service?
    func isExternalAddress(_ address: IPAddress) -> Bool
    /// True when the infra map has a prefix holding `address`.
    func isInfrastructure(_ address: IPAddress) -> Bool

    func flowOut(_ key: nv_nat_out_key) -> nv_nat_flow?
    func flowIn(_ key: nv_nat_in_key) -> nv_nat_flow?
    func writeFlowOut(_ key: nv_nat_out_key, _ value: nv_nat_flow, flags: UInt64) throws
    func writeFlowIn(_ key: nv_nat_in_key, _ value: nv_nat_flow, flags: UInt64) throws
    func deleteFlowOut(_ key: nv_nat_out_key)
    func deleteFlowIn(_ key: nv_nat_in_key)
    func flowOutKeys() -> [nv_nat_out_key]
    /// Entries each flow map holds at most.
    var flowCapacity: Int { get }

    /// Adds the process's counts to gw_stats and domain_stats (slots XDP never writes).
    func addGatewayCounts(_ counts: [nv_gw_counter: (packets: UInt64, bytes: UInt64)]) throws
    func addDomainCounts(_ counts: [DomainCounter: (packets: UInt64, bytes: UInt64)]) throws
}

/// One routing domain's counter (domain_stats).
public struct DomainCounter: Hashable, Sendable {
    public let rdid: UInt32
    public let counter: nv_domain_counter

    public init(rdid: UInt32, counter: nv_domain_counter) {
        self.rdid = rdid
        self.counter = counter
    }
}

/// Where the gateway's frames go.
public protocol GatewaySender: AnyObject {
    /// An IPv4 packet out of the external interface, toward `destination`.
    func sendOutside(_ packet: [UInt8], to destination: IPAddress) throws
    /// An Ethernet frame to a VM on this host, through its port.
    func sendToPort(_ frame: [UInt8], ifindex: UInt32) throws
    /// An outer IP packet (NVGRE) to another host's provider address.
    func sendUnderlay(_ packet: [UInt8], to pa: IPAddress) throws
    /// The MTU of the underlay toward `pa`, if known.
    func underlayMTU(to pa: IPAddress) -> Int?
}
