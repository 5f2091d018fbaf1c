import CNvgre
import NvgreDatapath
import NvgreWire

/// A gateway host's decisions on a decapsulated frame of a served routing domain that is for
/// no VM here (from_fabric.h's end, gw_egress.h, gw_route.h's route_to_outside). NAT has no
/// offload step on the userspace path: every such packet goes to the gateway engine
/// (NV_EXC_NAT_OUT), which translates it, as XDP hands a flow's first packets up.
extension DecisionCore {
    enum Egress { case out, hairpin, infrastructure }

    func toOutside(
        _ f: [UInt8], _ inner: Flow, outerLength: Int, subnet sn: nv_subnet, vsid: UInt32, mode: UInt32,
        _ run: inout Run
    ) -> Outcome {
        let rdid = sn.rdid, slot = sn.stats_slot
        let egress = tenantEgress(inner, rdid: rdid, mode: mode)
        if egress == .infrastructure {
            run.count(.domain(rdid: rdid, NV_DOM_TO_INFRA))
            return run.drop(NV_DROP_TO_INFRASTRUCTURE)
        }
        let decapsulated = Array(f[outerLength...])
        run.count(.vsid(slot: slot, NV_CNT_DECAP))
        if egress == .hairpin || mode != NV_GW_ROUTE.rawValue {
            return run.exception(NV_EXC_NAT_OUT, decapsulated, vsid: vsid, slot: slot)
        }
        return routeToOutside(decapsulated, rdid: rdid, vsid: vsid, slot: slot, &run)
    }

    /// tenant_egress: never to an infrastructure address, but for a published service (or a
    /// flow through one) on an external address, which the engine translates in again.
    func tenantEgress(_ f: Flow, rdid: UInt32, mode: UInt32) -> Egress {
        let gw = tables.gateway
        if !gw.isInfrastructure(f.dst) { return .out }
        if mode == NV_GW_NAT.rawValue, f.family == .v4, f.dport != 0, f.proto == 6 || f.proto == 17,
            gw.externalAddresses.contains(f.dst),
            gw.service(f.proto, f.dst, f.dport) != nil || hasFlowOut(rdid: rdid, f)
        {
            return .hairpin
        }
        return .infrastructure
    }

    func hasFlowOut(rdid: UInt32, _ f: Flow) -> Bool {
        let key = NATFlow(
            proto: f.proto, rdid: rdid, vsid: 0, ca: f.src, caPort: f.sport, ext: f.dst, extPort: 0, remote: f.dst,
            remotePort: f.dport
        ).outKey
        return flows?.flowOut(key) != nil
    }

    /// route_to_outside: a route-mode domain's packet to one of its physical prefixes leaves
    /// by the external interface's next hop; the engine sends what needs the kernel (a next
    /// hop not resolved yet, TTL running out) and answers the VM what cannot leave.
    func routeToOutside(_ f: [UInt8], rdid: UInt32, vsid: UInt32, slot: UInt32, _ run: inout Run) -> Outcome {
        guard f.count >= Parse.ethernetLength, f.be16(12) == 0x0800 else {
            return run.exception(NV_EXC_NO_ROUTE, f, vsid: vsid, slot: slot)  // IPv4 prefixes only
        }
        guard let ip = Parse.ipv4(f, at: 14) else { return run.drop(NV_DROP_MALFORMED) }
        if !tables.gateway.prefixCovers(rdid, ip.dst) {
            return run.exception(NV_EXC_NO_ROUTE, f, vsid: vsid, slot: slot)
        }
        if ip.ttl <= 1 { return run.exception(NV_EXC_ROUTE_OUT, f, vsid: vsid, slot: slot) }
        switch externalHop(ip.dst, length: Int(f.be16(16))) {
        case let .go(egress, source, nextHop):
            var out = f
            out.setMAC(nextHop, at: 0)
            out.setMAC(source, at: 6)
            out.decrementIPv4TTL(at: 14)
            run.count(.gateway(NV_GW_ROUTED_OUT))
            return run.end(.forward(egress: egress, frame: out))
        case .unresolved: return run.exception(NV_EXC_ROUTE_OUT, f, vsid: vsid, slot: slot)
        case let .tooBig(mtu): return run.exception(NV_EXC_OVERSIZE, f, vsid: vsid, slot: slot, mtu: mtu)
        case .none: return run.exception(NV_EXC_NO_ROUTE, f, vsid: vsid, slot: slot)
        }
    }

    enum ExternalHop {
        case go(egress: UInt32, source: MACAddress, nextHop: MACAddress)
        case unresolved
        case tooBig(mtu: UInt32)
        case none
    }

    /// external_next_hop: the way to `destination` out of the external interface, and only
    /// out of it.
    func externalHop(_ destination: IPAddress, length: Int) -> ExternalHop {
        guard let ext = tables.config?.external_ifindex, ext != 0 else { return .none }
        guard case let .route(ifindex, mtu, source, nextHop) = underlay.hop(to: destination), ifindex == ext else {
            return .none
        }
        if length > mtu { return .tooBig(mtu: UInt32(mtu)) }
        guard let nextHop else { return .unresolved }
        return .go(egress: ifindex, source: source, nextHop: nextHop)
    }
}

extension Array where Element == UInt8 {
    /// ipv4_decrement_ttl: the TTL at `at + 8` less one, the header checksum updated.
    mutating func decrementIPv4TTL(at: Int) {
        let ttl = self[at + 8], proto = self[at + 9]
        self[at + 8] = ttl &- 1
        let sum = checksumReplacing(
            be16(at + 10), old: UInt16(ttl) << 8 | UInt16(proto), new: UInt16(ttl &- 1) << 8 | UInt16(proto))
        self[at + 10] = UInt8(sum >> 8)
        self[at + 11] = UInt8(sum & 0xff)
    }
}
