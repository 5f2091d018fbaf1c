import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// The maps a policy is programmed into (the counters and the exception ring are not), by
/// their C names; what a person calls their entries, and the policy field that fills them.
public enum PolicyMap: String, CaseIterable, Sendable {
    case localPAs = "local_pas"
    case subnets, lookups, routes
    case portAddresses = "port_cas"
    case ports, config
    case gatewayDomains = "gw_domains"
    case gatewayPrefixes = "gw_prefixes"
    case gatewayRouted = "gw_routed"
    case externalAddresses = "ext_addrs"
    case services
    case infrastructure = "infra"

    /// What a person calls the entries of this map (for summaries).
    public var noun: String {
        switch self {
        case .localPAs: return "provider addresses"
        case .subnets: return "virtual subnets"
        case .lookups: return "lookup records"
        case .routes: return "routes"
        case .portAddresses: return "port addresses"
        case .ports: return "ports"
        case .config: return "host settings"
        case .gatewayDomains: return "served routing domains"
        case .gatewayPrefixes: return "routed physical prefixes"
        case .gatewayRouted: return "routed subnets"
        case .externalAddresses: return "external addresses"
        case .services: return "published services"
        case .infrastructure: return "infrastructure prefixes"
        }
    }

    /// The policy field whose size decides this map's (for capacity errors); nil for the
    /// one-entry host settings.
    public var field: String? {
        switch self {
        case .localPAs: return "providerAddresses"
        case .subnets: return "subnets"
        case .lookups: return "lookupRecords"
        case .routes: return "subnets[].prefixes and customerRoutes"
        case .portAddresses: return "ports[].addresses"
        case .ports: return "ports"
        case .config: return nil
        case .gatewayDomains: return "gatewayDomains"
        case .gatewayPrefixes: return "gatewayDomains[].prefixes"
        case .gatewayRouted: return "subnets[].prefixes of routed domains"
        case .externalAddresses: return "externalAddresses"
        case .services: return "publishedServices"
        case .infrastructure: return "infrastructurePrefixes (with the provider, host and special prefixes)"
        }
    }
}

/// The host facts a policy needs to become map entries: interface indexes, the uplink and
/// the live counters' slots (which must not move while a VSID lives).
public struct CompileContext {
    public var uplinkIfindex: UInt32
    public var fibUseRules = false
    /// Interface name -> ifindex in this network namespace; nil when there is no such one.
    public var ifindex: (String) -> UInt32?
    /// VSID -> its counter slot, as live now.
    public var liveSlots: [UInt32: UInt32] = [:]
    /// Counter slots available (the vsid_stats map's size).
    public var slotCount: UInt32 = UInt32(NV_DEFAULT_MAX_SUBNETS)
    /// Each routing domain's share of the exception path, and the CPUs it is divided among.
    public var exceptionShare = ExceptionShare.default
    public var portExceptionShare = ExceptionShare.defaultPerPort
    /// Each VM port's share of head-end replication.
    public var floodShare = ExceptionShare.defaultFlood
    public var cpus = Int(libbpf_num_possible_cpus())
    /// Every address of this host (a gateway's are infrastructure: no tenant reaches them).
    public var hostAddresses: [InterfaceAddress] = []

    public init(uplinkIfindex: UInt32, fibUseRules: Bool = false, ifindex: @escaping (String) -> UInt32?) {
        self.uplinkIfindex = uplinkIfindex
        self.fibUseRules = fibUseRules
        self.ifindex = ifindex
    }
}

/// A policy as the maps must hold it.
public struct CompiledPolicy {
    public var images: [PolicyMap: MapImage] = [:]
    /// Counter slots given to VSIDs new in this policy: their counters start from zero.
    public var newSlots: [UInt32] = []
    /// Customer routes that are not programmed, with why (their next hop is in no subnet of
    /// the routing domain, a better metric wins, or a subnet has the same prefix).
    public var idleRoutes: [(index: Int, why: String)] = []
    /// Head-end replication per VSID (flood_lists): its values are too large for a MapImage
    /// and there is at most one per port, so they are written whole.
    public var floodLists: [UInt32: nv_flood_list] = [:]
}

public enum PolicyCompiler {
    /// Turns a validated policy into map images. Throws PolicyErrors for what only this host
    /// can tell: interfaces that do not exist, too many VSIDs for the counter slots.
    /// `lookups`: the lookups map's image when already built (lookupsImage) from this policy,
    /// with the counter slots it was built with (used only when they are the ones given here).
    public static func compile(
        _ p: Policy, _ ctx: CompileContext, lookups: (image: MapImage, slots: [UInt32: UInt32])? = nil
    ) throws -> CompiledPolicy {
        var out = CompiledPolicy()
        var errors: [PolicyError] = []
        for m in PolicyMap.allCases { out.images[m] = MapImage() }
        let domainID = Dictionary(p.routingDomains.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })

        // Ports: resolve interfaces first, the lookup records need them.
        var portsOfVSID: [UInt32: [UInt32]] = [:]
        var portEntries: [(ifindex: UInt32, entry: nv_port, addresses: [IPAddress])] = []
        for (i, port) in p.ports.enumerated() {
            guard let idx = ctx.ifindex(port.interface) else {
                errors.append(
                    PolicyError(
                        "ports[\(i)].interface", port.interface, "an existing interface in this network namespace"))
                continue
            }
            let flags =
                (port.allowRouterAdvertisements ? [NV_PORT_ALLOW_RA] : [])
                + (port.allowDHCPServer ? [NV_PORT_ALLOW_DHCP_SERVER] : [])
            portEntries.append((idx, nv_port(vsid: port.vsid, mac: port.mac, flags: flags), port.addresses))
            portsOfVSID[port.vsid, default: []].append(idx)
            for a in port.addresses {
                out.images[.portAddresses]![RawBytes(of: nv_port_ca_key(ifindex: idx, ca: a))] = RawBytes(of: UInt32(1))
            }
        }

        // Subnets, with stable counter slots.
        let slots = counterSlots(p, ctx)
        for (i, s) in p.subnets.enumerated() {
            guard let slot = slots[s.vsid] else {
                errors.append(
                    PolicyError(
                        "subnets[\(i)].vsid", "\(s.vsid)",
                        "at most \(ctx.slotCount) virtual subnets (the instance's size)"))
                continue
            }
            if ctx.liveSlots[s.vsid] == nil { out.newSlots.append(slot) }
            let rdid = domainID[s.routingDomain] ?? 0
            let value = nv_subnet(
                routingDomain: rdid, statsSlot: slot, gatewayMAC: s.gatewayMAC,
                gateway4: s.gateways.first { $0.family == .v4 }, gateway6: s.gateways.first { $0.family == .v6 },
                flood: s.flood)
            out.images[.subnets]![RawBytes(of: s.vsid)] = RawBytes(of: value)
            for prefix in s.prefixes {
                let key = nv_route_key(rdid: rdid, prefix: prefix.address, prefixLength: prefix.length)
                out.images[.routes]![RawBytes(of: key)] = RawBytes(
                    of: nv_route_val(vsid: s.vsid, kind: NV_ROUTE_SUBNET))
            }
        }

        // Each port's entry carries its subnet and its addresses (one lookup per frame).
        for (idx, entry, addresses) in portEntries {
            let subnet = out.images[.subnets]![RawBytes(of: entry.vsid)]?.load(as: nv_subnet.self)
            out.images[.ports]![RawBytes(of: idx)] = RawBytes(of: entry.inlined(subnet: subnet, addresses: addresses))
        }

        out.images[.lookups] =
            lookups.flatMap { $0.slots == slots ? $0.image : nil }
            ?? lookupsImage(p, portIndexes: portIndexes(p, ctx), slots: slots)
        out.floodLists = floodLists(p, ctx, portsOfVSID: portsOfVSID, &errors)

        // Customer routes: per (domain, prefix), the lowest metric whose next hop lies in a
        // subnet of the domain; a subnet's own prefix always wins over a customer route.
        var best: [RawBytes: (index: Int, metric: UInt32, vsid: UInt32)] = [:]
        for (i, r) in p.customerRoutes.enumerated() {
            let rdid = domainID[r.routingDomain] ?? 0
            let key = RawBytes(of: nv_route_key(rdid: rdid, prefix: r.prefix.address, prefixLength: r.prefix.length))
            if let v = out.images[.routes]![key], v.load(as: nv_route_val.self).routeKind == NV_ROUTE_SUBNET,
                best[key] == nil
            {
                out.idleRoutes.append((i, "a virtual subnet of \(r.routingDomain) has this prefix"))
                continue
            }
            guard
                let via = p.subnets.first(where: {
                    $0.routingDomain == r.routingDomain && $0.prefixes.contains { $0.contains(r.nextHop) }
                })
            else {
                out.idleRoutes.append((i, "next hop \(r.nextHop) is in no virtual subnet of \(r.routingDomain)"))
                continue
            }
            if let b = best[key], b.metric <= r.metric {
                out.idleRoutes.append((i, "customerRoutes[\(b.index)] has a lower or equal metric"))
                continue
            }
            if let b = best[key] { out.idleRoutes.append((b.index, "customerRoutes[\(i)] has a lower metric")) }
            best[key] = (i, r.metric, via.vsid)
        }
        for (key, b) in best {
            out.images[.routes]![key] = RawBytes(
                of: nv_route_val(vsid: b.vsid, kind: NV_ROUTE_CUSTOMER, nextHop: p.customerRoutes[b.index].nextHop))
        }
        out.idleRoutes.sort { $0.index < $1.index }

        // The gateway's part: served domains, external addresses and interface, services.
        for d in p.gatewayDomains {
            let rdid = domainID[d.routingDomain] ?? 0
            out.images[.gatewayDomains]![RawBytes(of: rdid)] = RawBytes(of: d.mode == .route ? NV_GW_ROUTE : NV_GW_NAT)
            guard d.mode == .route else { continue }
            for prefix in d.prefixes {
                out.images[.gatewayPrefixes]![
                    RawBytes(of: nv_gw_prefix_key(rdid: rdid, prefix: prefix.address, prefixLength: prefix.length))] =
                    RawBytes(of: UInt32(1))
            }
            for s in p.subnets where s.routingDomain == d.routingDomain {
                for prefix in s.prefixes where prefix.family == .v4 {
                    out.images[.gatewayRouted]![
                        RawBytes(of: nv_gw_routed_key(prefix: prefix.address, prefixLength: prefix.length))] =
                        RawBytes(of: nv_gw_routed(rdid: rdid, vsid: s.vsid))
                }
            }
        }
        var externalIfindex: UInt32 = 0
        if let e = p.externalAddresses.first {
            if let idx = ctx.ifindex(e.interface) {
                externalIfindex = idx
            } else {
                errors.append(
                    PolicyError(
                        "externalAddresses[0].interface", e.interface, "an existing interface in this network namespace"
                    ))
            }
        }
        for e in p.externalAddresses {
            out.images[.externalAddresses]![RawBytes(of: nv_ext_addr_key(e.address))] = RawBytes(of: UInt32(1))
        }
        for s in p.publishedServices {
            let key = nv_service_key(proto: s.proto.number, address: s.externalAddress, port: s.externalPort)
            out.images[.services]![RawBytes(of: key)] = RawBytes(
                of: nv_service(rdid: domainID[s.routingDomain] ?? 0, ca: s.customerAddress, port: s.customerPort))
        }

        // Provider addresses and the host settings.
        for pa in p.providerAddresses {
            out.images[.localPAs]![RawBytes(of: nv_pa_key(pa.address))] = RawBytes(of: UInt32(1))
        }
        let cfg = nv_config(
            uplinkIfindex: ctx.uplinkIfindex,
            pa4: p.providerAddresses.first { $0.address.family == .v4 }?.address,
            pa6: p.providerAddresses.first { $0.address.family == .v6 }?.address,
            useRoutingRules: ctx.fibUseRules, externalIfindex: externalIfindex,
            exceptionShare: ctx.exceptionShare, portExceptionShare: ctx.portExceptionShare, cpus: ctx.cpus)
        out.images[.config]![RawBytes(of: UInt32(0))] = RawBytes(of: cfg)
        if p.isGateway {
            for (prefix, origin) in infrastructure(p, ctx) {
                out.images[.infrastructure]![
                    RawBytes(of: nv_infra_key(prefix: prefix.address, prefixLength: prefix.length))] = RawBytes(
                        of: origin.rawValue)
            }
        }

        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
        return out
    }

    /// What no tenant may reach through this gateway, each prefix once with the first reason
    /// found: listed, provider (every PA of the policy and the uplink's prefixes), external,
    /// this host's own addresses and their broadcast, special ranges.
    static func infrastructure(_ p: Policy, _ ctx: CompileContext) -> [(IPPrefix, nv_infra_origin)] {
        var out: [(IPPrefix, nv_infra_origin)] = []
        var seen = Set<IPPrefix>()
        func add(_ prefix: IPPrefix, _ origin: nv_infra_origin) {
            if seen.insert(prefix.canonical).inserted { out.append((prefix.canonical, origin)) }
        }
        func host(_ a: IPAddress) -> IPPrefix { IPPrefix(address: a, length: a.bytes.count * 8)! }
        p.infrastructurePrefixes.forEach { add($0.prefix, NV_INFRA_LISTED) }
        p.providerAddresses.forEach { add(host($0.address), NV_INFRA_PROVIDER) }
        Set(p.lookupRecords.map(\.providerAddress)).sorted { $0.description < $1.description }.forEach {
            add(host($0), NV_INFRA_PROVIDER)
        }
        let uplinks = Set(p.providerAddresses.map(\.interface))
        for a in ctx.hostAddresses where uplinks.contains(a.interface) { add(a.prefix, NV_INFRA_PROVIDER) }
        p.externalAddresses.forEach { add(host($0.address), NV_INFRA_EXTERNAL) }
        for a in ctx.hostAddresses {
            add(host(a.address), NV_INFRA_HOST)
            if let b = a.prefix.broadcast { add(host(b), NV_INFRA_HOST) }
        }
        InfrastructurePrefix.specialPrefixes.forEach { add($0, NV_INFRA_SPECIAL) }
        return out
    }

    /// Head-end replication (RFC 7637 section 4.3): for each flooding VSID with a port here,
    /// the other PAs its lookup records name (a gateway-type record names a gateway, which
    /// takes no broadcast) and its ports here.
    static func floodLists(
        _ p: Policy, _ ctx: CompileContext, portsOfVSID: [UInt32: [UInt32]], _ errors: inout [PolicyError]
    ) -> [UInt32: nv_flood_list] {
        var out: [UInt32: nv_flood_list] = [:]
        let local = Set(p.providerAddresses.map(\.address))
        let flooding = Set(p.subnets.filter(\.flood).map(\.vsid)).intersection(portsOfVSID.keys)
        var peers: [UInt32: Set<IPAddress>] = [:]
        for r in p.lookupRecords
        where r.type != .gateway && flooding.contains(r.vsid) && !local.contains(r.providerAddress) {
            peers[r.vsid, default: []].insert(r.providerAddress)
        }
        for (i, s) in p.subnets.enumerated() where flooding.contains(s.vsid) {
            let pas = (peers[s.vsid] ?? []).sorted { $0.description < $1.description }
            let ports = portsOfVSID[s.vsid]!.sorted()
            guard pas.count <= nv_flood_list.maxPeers, ports.count <= nv_flood_list.maxPorts else {
                errors.append(
                    PolicyError(
                        "subnets[\(i)].flood", "true",
                        "false for VSID \(s.vsid): head-end replication reaches at most \(nv_flood_list.maxPeers) "
                            + "other hosts and \(nv_flood_list.maxPorts) ports on this one (it has \(pas.count) and "
                            + "\(ports.count))"))
                continue
            }
            out[s.vsid] = nv_flood_list(peers: pas, ports: ports, share: ctx.floodShare, cpus: ctx.cpus)
        }
        return out
    }

    /// The ifindex of each port's interface that exists. Asked on the thread that is in the
    /// host's network namespace (an agent's follower thread is; a worker thread may not be).
    public static func portIndexes(_ p: Policy, _ ctx: CompileContext) -> [String: UInt32] {
        var out: [String: UInt32] = [:]
        for port in p.ports { out[port.interface] = ctx.ifindex(port.interface) }
        return out
    }

    /// VSID -> counter slot: a VSID live now keeps its slot, a new one takes the lowest free
    /// one in the order of the policy's subnets; a VSID with no slot left is missing.
    public static func counterSlots(_ p: Policy, _ ctx: CompileContext) -> [UInt32: UInt32] {
        var slots: [UInt32: UInt32] = [:]
        var used = Set(p.subnets.compactMap { ctx.liveSlots[$0.vsid] })
        var nextFree: UInt32 = 0
        for s in p.subnets where slots[s.vsid] == nil {
            if let live = ctx.liveSlots[s.vsid] {
                slots[s.vsid] = live
                continue
            }
            while used.contains(nextFree) { nextFree += 1 }
            if nextFree >= ctx.slotCount { continue }
            slots[s.vsid] = nextFree
            used.insert(nextFree)
        }
        return slots
    }

    /// The lookups map's image: a record's port ifindex marks a VM on this host, and it
    /// carries its subnet's counter slot (`slots`). It needs nothing that validation decides,
    /// no system call, and is safe on any policy, so an apply builds it on another thread
    /// while the policy is validated.
    public static func lookupsImage(_ p: Policy, portIndexes: [String: UInt32], slots: [UInt32: UInt32]) -> MapImage {
        var portOf: [RecordID: UInt32] = [:]
        for port in p.ports {
            guard let idx = portIndexes[port.interface] else { continue }
            for a in port.addresses { portOf[RecordID(vsid: port.vsid, address: a)] = idx }
        }
        let vsidsWithPorts = Set(p.ports.map(\.vsid))
        // A moving port's VM is where its records say: while they name another host, frames
        // for it go there (the port still sends from its addresses).
        let localPAs = Set(p.providerAddresses.map(\.address))
        if !localPAs.isEmpty {
            for r in p.lookupRecords where vsidsWithPorts.contains(r.vsid) && !localPAs.contains(r.providerAddress) {
                portOf[RecordID(vsid: r.vsid, address: r.customerAddress)] = nil
            }
        }
        var lookups = MapImage(reserving: p.lookupRecords.count)
        let noFlowID = p.endpointsWithoutFlowID
        // (The sets are usually empty or small: a million records are not all hashed into them.)
        let anyNoFlowID = !noFlowID.isEmpty, anyMoved = !p.movedAway.isEmpty
        var slotVSID = UInt32.max, slot: UInt32 = 0  // records come grouped by VSID
        for r in p.lookupRecords {
            if r.vsid != slotVSID { (slotVSID, slot) = (r.vsid, slots[r.vsid] ?? 0) }
            let key = nv_lookup_key(vsid: r.vsid, ca: r.customerAddress)
            let port =
                vsidsWithPorts.contains(r.vsid) ? portOf[RecordID(vsid: r.vsid, address: r.customerAddress)] ?? 0 : 0
            var flags = anyNoFlowID && noFlowID.contains(r.providerAddress) ? NV_REC_NO_FLOWID.rawValue : 0
            if port == 0, anyMoved, p.movedAway.contains(MovedVM(vsid: r.vsid, customerAddress: r.customerAddress)) {
                flags |= NV_REC_MOVED_AWAY.rawValue
            }
            let val = nv_lookup_val(
                pa: r.providerAddress, mac: r.mac, type: r.type.abi, portIfindex: port, flags: nv_record_flags(flags),
                statsSlot: slot)
            lookups[RawBytes(of: key)] = RawBytes(of: val)
        }
        return lookups
    }

    struct RecordID: Hashable {
        let vsid: UInt32
        let address: IPAddress
    }
}

extension RecordType {
    var abi: nv_record_type {
        switch self {
        case .staticRecord: return NV_REC_STATIC
        case .l2Only: return NV_REC_L2_ONLY
        case .gateway: return NV_REC_GATEWAY
        }
    }

    init?(abi: nv_record_type) {
        switch abi {
        case NV_REC_STATIC: self = .staticRecord
        case NV_REC_L2_ONLY: self = .l2Only
        case NV_REC_GATEWAY: self = .gateway
        default: return nil
        }
    }
}
