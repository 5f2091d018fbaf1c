import CNvgre
import NvgreDatapath
import NvgreWire

/// nv_from_vm (bpf/from_vm.h): every frame a VM sends, in the order the tc program decides.
extension DecisionCore {
    public func fromVM(_ input: consuming [UInt8], ingress: UInt32) -> Outcome {
        var run = Run()
        guard let port = tables.ports[ingress] else { return run.drop(NV_DROP_PORT_UNKNOWN) }
        let vsid = port.vsid
        guard let sn = tables.subnets[vsid] else { return run.drop(NV_DROP_SUBNET_UNKNOWN) }
        var f = consume input  // the frame's own array: changed in place when not shared
        // strip_vlan: one tag goes (the kernel would have taken it already); two are refused.
        guard f.count >= Parse.ethernetLength else { return run.drop(NV_DROP_MALFORMED) }
        let type = f.be16(12)
        if type == 0x8100 || type == 0x88a8 {
            guard f.count >= 18 else { return run.drop(NV_DROP_MALFORMED) }
            let inner = f.be16(16)
            if inner == 0x8100 || inner == 0x88a8 { return run.drop(NV_DROP_DOUBLE_VLAN) }
            f.removeSubrange(12..<16)
        }
        guard f.count >= Parse.ethernetLength else { return run.drop(NV_DROP_MALFORMED) }
        if f.mac(6) != port.portMAC { return run.drop(NV_DROP_SRC_MAC_SPOOF) }

        let ethertype = f.be16(12)
        if ethertype == 0x0806 { return answerARP(f, port: port, subnet: sn, ingress: ingress, &run) }
        var flow: Flow?
        if ethertype == 0x86dd {
            guard let v6 = Parse.ipv6(f, at: 14) else { return run.drop(NV_DROP_MALFORMED) }
            if Parse.isNeighborSolicitation(f, v6) {
                return answerNS(f, port: port, subnet: sn, ingress: ingress, &run)
            }
            flow = v6
        } else if ethertype == 0x0800 {
            guard let v4 = Parse.ipv4(f, at: 14) else { return run.drop(NV_DROP_MALFORMED) }
            flow = v4
        }
        guard let flow else { return run.drop(NV_DROP_NOT_IP) }
        if let guardReason = guardViolation(f, port: port, flow) { return run.drop(guardReason) }
        if Parse.isMulticast(f, macAt: 0) {
            if !Parse.linkScoped(flow.src) && !tables.portMayUse(ingress, flow.src) {
                return run.drop(NV_DROP_SRC_CA_SPOOF)
            }
            return floodFromVM(f, vsid: vsid, ingress: ingress, off: NV_DROP_FLOOD_OFF, &run)
        }
        if !tables.portMayUse(ingress, flow.src) { return run.drop(NV_DROP_SRC_CA_SPOOF) }

        if f.mac(0) == sn.gatewayMAC { return route(consume f, flow, from: sn, vsid: vsid, &run) }
        guard let rec = tables.record(vsid, flow.dst) else {
            return run.exception(NV_EXC_NO_LOOKUP, f, vsid: vsid, slot: sn.stats_slot)
        }
        if rec.recordType == NV_REC_GATEWAY { return run.exception(NV_EXC_GATEWAY, f, vsid: vsid, slot: sn.stats_slot) }
        return deliver(consume f, flow, rec, vsid: vsid, slot: sn.stats_slot, &run)
    }

    /// Hyper-V's router and DHCP guards (flood.h's guard_violation).
    func guardViolation(_ f: [UInt8], port: nv_port, _ flow: Flow) -> nv_drop_reason? {
        let flags = UInt32(port.flags)
        if flow.proto == 17 && flags & NV_PORT_ALLOW_DHCP_SERVER.rawValue == 0
            && flow.sport == (flow.family == .v4 ? 67 : 547)
        {
            return NV_DROP_DHCP_GUARD
        }
        if flow.family == .v6 && flags & NV_PORT_ALLOW_RA.rawValue == 0
            && Parse.icmp6Type(f, at: flow.l4, nextHeader: flow.proto) == 134
        {
            return NV_DROP_ROUTER_GUARD
        }
        return nil
    }

    /// tc_deliver: a port here, or encapsulated toward the record's PA.
    func deliver(
        _ f: consuming [UInt8], _ flow: Flow, _ rec: nv_lookup_val, vsid: UInt32, slot: UInt32, _ run: inout Run
    ) -> Outcome {
        if rec.port_ifindex != 0 {
            run.count(.vsid(slot: slot, NV_CNT_LOCAL))
            return run.end(.forward(egress: rec.port_ifindex, frame: consume f))
        }
        switch underlayRoute(to: rec.providerAddress, innerLength: f.count) {
        case let .drop(reason): return run.drop(reason)
        case let .exception(reason, mtu): return run.exception(reason, f, vsid: vsid, slot: slot, mtu: mtu)
        case let .go(egress, source, nextHop, sourcePA):
            var out = consume f
            out.prependNVGRE(
                vsid: vsid, hash: flow.hash, tos: flow.tos, sendFlowID: rec.sendsFlowID, srcMAC: source,
                dstMAC: nextHop, srcPA: sourcePA, dstPA: rec.providerAddress)
            run.count(.vsid(slot: slot, NV_CNT_ENCAP))
            return run.end(.forward(egress: egress, frame: out))
        }
    }

    /// tc_route: the distributed router.
    func route(_ input: consuming [UInt8], _ flow: Flow, from sn: nv_subnet, vsid: UInt32, _ run: inout Run) -> Outcome
    {
        let slot = sn.stats_slot
        guard let r = tables.routes.lookup(sn.rdid, flow.dst), let dst = tables.subnets[r.vsid] else {
            return run.exception(NV_EXC_NO_ROUTE, input, vsid: vsid, slot: slot)
        }
        let rec: nv_lookup_val
        if r.routeKind == NV_ROUTE_SUBNET {
            guard let found = tables.record(r.vsid, flow.dst), found.recordType != NV_REC_L2_ONLY else {
                return run.exception(NV_EXC_NO_LOOKUP, input, vsid: vsid, slot: slot)
            }
            if found.recordType == NV_REC_GATEWAY {
                return run.exception(NV_EXC_GATEWAY, input, vsid: vsid, slot: slot)
            }
            rec = found
        } else {
            guard let found = r.nextHop.flatMap({ tables.record(r.vsid, $0) }), found.recordType != NV_REC_L2_ONLY
            else { return run.exception(NV_EXC_CUSTOMER_ROUTE, input, vsid: vsid, slot: slot) }
            rec = found
        }
        if flow.ttl <= 1 { return run.exception(NV_EXC_TTL_EXPIRED, input, vsid: vsid, slot: slot) }
        var f = consume input
        f.setMAC(dst.gatewayMAC, at: 6)
        f.setMAC(rec.customerMAC, at: 0)
        if flow.family == .v4 {
            f.decrementIPv4TTL(at: 14)
        } else {
            f[21] &-= 1
        }
        run.count(.vsid(slot: slot, NV_CNT_ROUTE))
        return deliver(consume f, flow, rec, vsid: r.vsid, slot: dst.stats_slot, &run)
    }
}

extension nv_port {
    public var portMAC: MACAddress { withUnsafeBytes(of: mac) { MACAddress($0) } }
}
