import CNvgre
import NvgreWire

/// The gateway process's half of the one rule for a tenant's packet leaving its virtual
/// network (bpf/gw_egress.h is XDP's): never to an infrastructure address (the infra map:
/// provider network, this host, listed prefixes, special ranges), nor to an address this
/// host has now (addresses added after the last apply included); the one exception is a
/// published service at its external address and port, or a hairpin flow already set up
/// through one, which the gateway translates both ways without sending anything out. That
/// the packet leaves by the external interface is the raw socket's part (bound to it).
/// Pure: what it consults comes in as functions, so it is tested without maps or sockets.
public struct EgressRule {
    public enum Verdict: Equatable {
        case out  // toward the physical network
        case hairpin  // to a published service (or a hairpin flow's other end)
        case infrastructure
    }

    /// True when the infra map has a prefix holding the address.
    public var isInfrastructure: (IPAddress) -> Bool
    /// True when the address is configured on this host now.
    public var isHostAddress: (IPAddress) -> Bool
    /// True when the address is one of the gateway's external addresses.
    public var isExternal: (IPAddress) -> Bool
    /// True when (protocol, address, port) is a published service.
    public var isService: (UInt8, IPAddress, UInt16) -> Bool

    public init(
        isInfrastructure: @escaping (IPAddress) -> Bool, isHostAddress: @escaping (IPAddress) -> Bool,
        isExternal: @escaping (IPAddress) -> Bool, isService: @escaping (UInt8, IPAddress, UInt16) -> Bool
    ) {
        self.isInfrastructure = isInfrastructure
        self.isHostAddress = isHostAddress
        self.isExternal = isExternal
        self.isService = isService
    }

    /// `flowExists`: the gateway already has a flow of this domain for the packet (to an
    /// external address, only a hairpin flow set up through a service can exist).
    public func verdict(destination: IPAddress, proto: UInt8, port: UInt16, mode: EgressMode, flowExists: Bool)
        -> Verdict
    {
        guard isInfrastructure(destination) || isHostAddress(destination) else { return .out }
        let portful = proto == IPProtocol.tcp.rawValue || proto == IPProtocol.udp.rawValue
        if mode == .nat, destination.family == .v4, portful, port != 0, isExternal(destination),
            flowExists || isService(proto, destination, port)
        {
            return .hairpin
        }
        return .infrastructure
    }
}

/// How the gateway serves the packet's routing domain: only NAT has a hairpin to offer.
public enum EgressMode: Equatable, Sendable {
    case nat, route
}
