import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// The userspace half of the gateway: the frames the gateway host's fast path hands up for
/// NAT (NV_EXC_NAT_OUT, NV_EXC_NAT_IN) and for routing without NAT (NV_EXC_ROUTE_OUT, and
/// NV_EXC_NO_ROUTE, answered with ICMP unreachable). A flow's first packets are translated and
/// sent here; the flow is written into nat_out and nat_in at once (so that replies find it),
/// and once it is established it is offloaded: XDP translates the rest both ways. Idle flows
/// expire. All state the data path needs lives in the maps, so this process can stop and
/// start again while offloaded flows keep forwarding (`recover` reads them back).
///
/// An engine without system calls: the maps and the sockets come in as GatewayMaps and
/// GatewaySender (GatewaySystem.swift has the real ones), the clock as a function. Its parts:
/// NAT both ways (Gateway+NAT.swift), flows (Gateway+Flows.swift), route mode and ICMP
/// answers (Gateway+Routing.swift), delivery to VMs (Gateway+Delivery.swift).
public final class Gateway {
    public enum Event: CustomStringConvertible {
        case created(NATFlow, service: Bool)
        case offloaded(NATFlow)
        case expired(NATFlow)
        case exhausted(proto: UInt8, ca: IPAddress, rdid: UInt32, share: Bool)
        case failed(String)

        public var description: String {
            switch self {
            case let .created(f, service): return "\(service ? "service flow" : "flow") \(Self.text(f)) created"
            case let .offloaded(f): return "flow \(Self.text(f)) established: offloaded to XDP"
            case let .expired(f): return "flow \(Self.text(f)) expired"
            case let .exhausted(p, ca, rdid, share):
                return
                    "no free external \(Self.protoName(p)) port for \(ca) (domain "
                    + "\(rdid)\(share ? ", at its share of the ports" : "")): packet dropped"
            case let .failed(why): return "gateway: \(why)"
            }
        }

        static func protoName(_ p: UInt8) -> String { IPProtocol(rawValue: p).map { "\($0)" } ?? "proto \(p)" }
        static func text(_ f: NATFlow) -> String {
            "\(protoName(f.proto)) \(f.ca):\(f.caPort) (domain \(f.rdid)) = \(f.ext):\(f.extPort) <-> "
                + "\(f.remote):\(f.remotePort)"
        }
    }

    let maps: GatewayMaps
    let sender: GatewaySender
    public var externalAddresses: [ExternalAddress]
    public var timeouts: NATTimeouts
    public internal(set) var table = NATTable()
    let icmpLimit: ICMPRateLimit
    /// Routing domain id -> the percentage of each external address's NAT ports (per
    /// protocol) and of the flow table it may hold; domains not listed may hold them all.
    public var natShares: [UInt32: UInt32]
    let egress: EgressRule
    /// CLOCK_MONOTONIC nanoseconds, the clock of bpf_ktime_get_ns.
    let clock: () -> UInt64
    private var pendingCounts: [nv_gw_counter: (packets: UInt64, bytes: UInt64)] = [:]
    private var pendingDomainCounts: [DomainCounter: (packets: UInt64, bytes: UInt64)] = [:]
    public var onEvent: (Event) -> Void = { _ in }
    /// Whether established flows are handed to XDP. The userspace data path has no offload
    /// step: its engine translates every packet of every flow.
    public var offloads = true

    public init(
        maps: GatewayMaps, sender: GatewaySender, externalAddresses: [ExternalAddress],
        timeouts: NATTimeouts = NATTimeouts(),
        icmpLimit: ICMPRateLimit = ICMPRateLimit(), natShares: [UInt32: UInt32] = [:],
        isHostAddress: @escaping (IPAddress) -> Bool = { _ in false }, clock: @escaping () -> UInt64
    ) {
        self.maps = maps
        self.sender = sender
        self.icmpLimit = icmpLimit
        self.externalAddresses = externalAddresses
        self.timeouts = timeouts
        self.natShares = natShares
        self.clock = clock
        egress = EgressRule(
            isInfrastructure: { maps.isInfrastructure($0) }, isHostAddress: isHostAddress,
            isExternal: { maps.isExternalAddress($0) },
            isService: { maps.service(proto: $0, address: $1, port: $2) != nil })
    }

    /// Handles a gateway exception; false for any other reason (the host handler's).
    public func handle(_ e: ExceptionFrame) -> Bool {
        let cfg = maps.hostConfig
        let fromUplink = e.ingressIfindex == cfg?.uplink_ifindex,
            fromExternal = e.ingressIfindex == cfg?.external_ifindex
        switch e.reason {
        case NV_EXC_NAT_OUT: toOutside(e)
        case NV_EXC_NAT_IN: fromOutside(e)
        case NV_EXC_OVERSIZE where fromExternal: tooBigFromOutside(e)
        case NV_EXC_ROUTE_OUT: routeToOutside(e)
        // From the uplink: a route-mode domain's packet that cannot leave; its VM is elsewhere.
        case NV_EXC_NO_ROUTE where fromUplink: answerTenant(.noRoute, e)
        case NV_EXC_OVERSIZE where fromUplink: answerTenant(.tooBig(mtu: Int(e.mtu)), e)
        default: return false
        }
        return true
    }

    // MARK: helpers

    /// The frame's IPv4 packet, when NAT can translate it.
    func ipv4(_ frame: [UInt8]) -> NATPacket? {
        guard frame.count > Ethernet.headerLength, UInt16(frame[12]) << 8 | UInt16(frame[13]) == EtherType.ipv4.rawValue
        else { return nil }
        return NATPacket(ip: Array(frame[Ethernet.headerLength...]))
    }

    /// The VSID of the subnet of routing domain `rdid` that holds `address`, if any.
    func subnet(of address: IPAddress, in rdid: UInt32) -> UInt32? {
        guard let r = maps.route(rdid: rdid, address: address), r.routeKind == NV_ROUTE_SUBNET else { return nil }
        return r.vsid
    }

    // MARK: counters

    func count(_ c: nv_gw_counter, _ e: ExceptionFrame) { add(c, 1, UInt64(e.originalLength)) }

    func add(_ c: nv_gw_counter, _ packets: UInt64, _ bytes: UInt64) {
        let old = pendingCounts[c] ?? (0, 0)
        pendingCounts[c] = (old.packets + packets, old.bytes + bytes)
    }

    func countDomain(_ rdid: UInt32, _ c: nv_domain_counter, _ e: ExceptionFrame) {
        let key = DomainCounter(rdid: rdid, counter: c)
        let old = pendingDomainCounts[key] ?? (0, 0)
        pendingDomainCounts[key] = (old.packets + 1, old.bytes + UInt64(e.originalLength))
    }

    /// A tenant's packet to an infrastructure address: dropped, counted for its domain.
    func refuseInfrastructure(_ e: ExceptionFrame) {
        count(NV_GW_DROP_INFRA, e)
        if let sn = maps.subnet(e.vsid) { countDomain(sn.rdid, NV_DOM_USERSPACE_TO_INFRA, e) }
    }

    /// Adds what this process counted to the maps. Called between polls, not per packet.
    public func flushCounters() {
        do {
            try maps.addGatewayCounts(pendingCounts)
            try maps.addDomainCounts(pendingDomainCounts)
        } catch {
            onEvent(.failed("\(error)"))
        }
        pendingCounts = [:]
        pendingDomainCounts = [:]
    }
}
