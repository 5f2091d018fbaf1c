import NvgreWire

/// The desired state of one host, in the words of Hyper-V Network Virtualization. It is
/// validated as a whole (Validation.swift) before anything touches a map.
public struct Policy: Equatable, Sendable {
    public var routingDomains: [RoutingDomain] = []
    public var subnets: [VirtualSubnet] = []
    public var lookupRecords: [LookupRecord] = []
    public var customerRoutes: [CustomerRoute] = []
    public var providerAddresses: [ProviderAddress] = []
    public var ports: [VMPort] = []
    public var foreignEndpoints: [ForeignEndpoint] = []
    // A gateway host's (GatewayPolicy.swift).
    public var externalAddresses: [ExternalAddress] = []
    public var gatewayDomains: [GatewayDomain] = []
    public var publishedServices: [PublishedService] = []
    public var infrastructurePrefixes: [InfrastructurePrefix] = []
    /// Host-local, never in a file or the store: VMs that moved from this host moments ago
    /// (the agent following the store sets them for a grace period). Frames still arriving
    /// here for them are sent on to their new host instead of dropped.
    public var movedAway: Set<MovedVM> = []

    public init() {}

    /// Adds another policy's items after this one's, section by section.
    public mutating func append(_ other: Policy) {
        routingDomains += other.routingDomains
        subnets += other.subnets
        // The one large list: taken over, not copied, when this policy has none yet.
        if lookupRecords.isEmpty { lookupRecords = other.lookupRecords } else { lookupRecords += other.lookupRecords }
        customerRoutes += other.customerRoutes
        providerAddresses += other.providerAddresses
        ports += other.ports
        foreignEndpoints += other.foreignEndpoints
        externalAddresses += other.externalAddresses
        gatewayDomains += other.gatewayDomains
        publishedServices += other.publishedServices
        infrastructurePrefixes += other.infrastructurePrefixes
        movedAway.formUnion(other.movedAway)
    }
}

extension Policy {
    /// The PAs of foreign endpoints that take no FlowID.
    public var endpointsWithoutFlowID: Set<IPAddress> {
        Set(foreignEndpoints.filter { !$0.flowID }.map(\.address))
    }
}

/// A customer address in a VSID whose VM moved to another host (Policy.movedAway).
public struct MovedVM: Hashable, Sendable {
    public var vsid: UInt32
    public var customerAddress: IPAddress
    public init(vsid: UInt32, customerAddress: IPAddress) {
        self.vsid = vsid
        self.customerAddress = customerAddress
    }
}

/// A tenant's network: the virtual subnets routed between each other on every host.
public struct RoutingDomain: Equatable, Sendable {
    public var id: UInt32  // 1...; the data path's routing domain id
    public var name: String

    public init(id: UInt32, name: String) {
        self.id = id
        self.name = name
    }
}

/// A virtual subnet: one VSID, its customer prefixes, and the distributed router's
/// addresses in it.
public struct VirtualSubnet: Equatable, Sendable {
    public var vsid: UInt32
    public var routingDomain: String  // a RoutingDomain's name
    public var prefixes: [IPPrefix]  // at most one per family
    public var gateways: [IPAddress]  // the router's address per family, inside a prefix
    public var gatewayMAC: MACAddress
    /// Broadcast and multicast from its VMs, and ARP/ND that policy does not answer, are
    /// replicated to the VSID's other ports and hosts. Off: dropped and counted, every answer
    /// comes from policy (HNV's behaviour).
    public var flood: Bool

    public init(
        vsid: UInt32, routingDomain: String, prefixes: [IPPrefix], gateways: [IPAddress], gatewayMAC: MACAddress,
        flood: Bool = true
    ) {
        self.vsid = vsid
        self.routingDomain = routingDomain
        self.prefixes = prefixes
        self.gateways = gateways
        self.gatewayMAC = gatewayMAC
        self.flood = flood
    }
}

/// What kind of destination a lookup record describes (HNV's record types).
public enum RecordType: String, CaseIterable, Equatable, Sendable {
    case staticRecord = "static"  // an ordinary VM
    case l2Only = "l2-only"  // switched within its VSID, never a routing target
    case gateway = "gateway"  // behind a gateway: userspace decides
}

/// (VSID, customer address) -> (provider address, MAC).
public struct LookupRecord: Equatable, Sendable {
    public var vsid: UInt32
    public var customerAddress: IPAddress
    public var providerAddress: IPAddress
    public var mac: MACAddress
    public var type: RecordType

    public init(
        vsid: UInt32, customerAddress: IPAddress, providerAddress: IPAddress, mac: MACAddress,
        type: RecordType = .staticRecord
    ) {
        self.vsid = vsid
        self.customerAddress = customerAddress
        self.providerAddress = providerAddress
        self.mac = mac
        self.type = type
    }
}

/// A route of a routing domain toward a next hop (a gateway); the lowest metric wins.
public struct CustomerRoute: Equatable, Sendable {
    public var routingDomain: String
    public var prefix: IPPrefix
    public var nextHop: IPAddress
    public var metric: UInt32

    public init(routingDomain: String, prefix: IPPrefix, nextHop: IPAddress, metric: UInt32 = 256) {
        self.routingDomain = routingDomain
        self.prefix = prefix
        self.nextHop = nextHop
        self.metric = metric
    }
}

/// A provider address of this host, on its uplink.
public struct ProviderAddress: Equatable, Sendable {
    public var address: IPAddress
    public var interface: String

    public init(address: IPAddress, interface: String) {
        self.address = address
        self.interface = interface
    }
}

/// A VM's port on this host: the interface, its VSID and MAC, and the CAs it may send from.
public struct VMPort: Equatable, Sendable {
    public var interface: String
    public var vsid: UInt32
    public var mac: MACAddress
    public var addresses: [IPAddress]
    /// Hyper-V's router guard and DHCP guard, lifted: the VM may send router advertisements
    /// (it is a router) or DHCP/DHCPv6 server messages (it is a DHCP server).
    public var allowRouterAdvertisements: Bool
    public var allowDHCPServer: Bool
    /// The VM is being migrated to or from this host (`nvgre migrate`): its lookup records
    /// may name another host's provider address meanwhile, and traffic for it goes there.
    public var moving: Bool

    public init(
        interface: String, vsid: UInt32, mac: MACAddress, addresses: [IPAddress],
        allowRouterAdvertisements: Bool = false, allowDHCPServer: Bool = false, moving: Bool = false
    ) {
        self.interface = interface
        self.vsid = vsid
        self.mac = mac
        self.addresses = addresses
        self.allowRouterAdvertisements = allowRouterAdvertisements
        self.allowDHCPServer = allowDHCPServer
        self.moving = moving
    }
}

/// An NVGRE endpoint that is not ours (Open vSwitch, a hardware switch, a load balancer),
/// named by its provider address. The CAs behind it are ordinary lookup records; this entry
/// only says how to talk to it.
public struct ForeignEndpoint: Equatable, Sendable {
    public var address: IPAddress
    public var name: String
    /// False for endpoints that match all 32 bits of the GRE key (Open vSwitch's fixed-key
    /// ports): frames to it carry FlowID 0.
    public var flowID: Bool

    public init(address: IPAddress, name: String = "", flowID: Bool = true) {
        self.address = address
        self.name = name
        self.flowID = flowID
    }
}

extension Policy {
    /// VMs that were on this host in `old` (a port with the address, its record naming one
    /// of this host's provider addresses) and whose record now names another host: they
    /// moved away.
    public func vmsMovedAway(since old: Policy) -> Set<MovedVM> {
        func here(_ p: Policy) -> Set<MovedVM> {
            let pas = Set(p.providerAddresses.map(\.address))
            let ported = Set(
                p.ports.flatMap { port in port.addresses.map { MovedVM(vsid: port.vsid, customerAddress: $0) } })
            return Set(
                p.lookupRecords.filter { pas.contains($0.providerAddress) }
                    .map { MovedVM(vsid: $0.vsid, customerAddress: $0.customerAddress) }
            ).intersection(ported)
        }
        return here(old).intersection(elsewhere)
    }

    /// The records of VMs that arrived on this host: a port here has the address, and its
    /// record names one of this host's provider addresses now where in `old` it named
    /// another host's. Their new location is announced into their VSIDs.
    public func vmsArrived(since old: Policy) -> [LookupRecord] {
        let pas = Set(providerAddresses.map(\.address))
        let oldPAs = Set(old.providerAddresses.map(\.address))
        let ported = Set(ports.flatMap { p in p.addresses.map { MovedVM(vsid: p.vsid, customerAddress: $0) } })
        var before: [MovedVM: IPAddress] = [:]
        for r in old.lookupRecords {
            let vm = MovedVM(vsid: r.vsid, customerAddress: r.customerAddress)
            if ported.contains(vm) { before[vm] = r.providerAddress }
        }
        return lookupRecords.filter { r in
            guard pas.contains(r.providerAddress),
                let was = before[MovedVM(vsid: r.vsid, customerAddress: r.customerAddress)]
            else { return false }
            return !oldPAs.contains(was) && !pas.contains(was)
        }
    }

    /// The provider addresses of the other hosts and endpoints with a record in `vsid`:
    /// where something announced into the VSID goes.
    public func peers(ofVSID vsid: UInt32) -> [IPAddress] {
        let pas = Set(providerAddresses.map(\.address))
        var seen = Set<IPAddress>()
        return lookupRecords.compactMap { r in
            r.vsid == vsid && !pas.contains(r.providerAddress) && seen.insert(r.providerAddress).inserted
                ? r.providerAddress : nil
        }
    }

    /// The VMs whose lookup record names another host's provider address.
    public var elsewhere: Set<MovedVM> {
        let pas = Set(providerAddresses.map(\.address))
        return Set(
            lookupRecords.filter { !pas.contains($0.providerAddress) && $0.type != .gateway }
                .map { MovedVM(vsid: $0.vsid, customerAddress: $0.customerAddress) })
    }
}
