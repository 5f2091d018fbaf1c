import CNvgre
import NvgreDatapath
import NvgreWire

/// Head-end replication (bpf/flood.h).
extension DecisionCore {
    /// tc_flood_from_vm: the copies to the VSID's other ports here and to each PA of its flood
    /// list the underlay reaches. The transport sends them; the verdict counts them. (The
    /// port's share of replication is the transport's: it keeps the per-CPU buckets.)
    func floodFromVM(_ f: [UInt8], vsid: UInt32, ingress: UInt32, off: nv_drop_reason, _ run: inout Run) -> Outcome {
        guard let sn = tables.subnets[vsid] else { return run.drop(NV_DROP_SUBNET_UNKNOWN) }
        if !sn.floods { return run.drop(off) }
        run.count(.vsid(slot: sn.stats_slot, NV_CNT_FLOOD))
        var copies = 0
        if let list = tables.floodLists[vsid] {
            copies += list.portIfindexes.filter { $0 != ingress }.count
            for pa in list.peerAddresses {
                if case .go = underlayRoute(to: pa, innerLength: f.count) { copies += 1 }
            }
        }
        run.count(.vsid(slot: sn.stats_slot, NV_CNT_FLOOD_COPY), UInt64(copies))
        return run.end(.flood(copies: copies))
    }

    /// The copies themselves, as the transport sends them: (egress, frame) for each port and
    /// each reachable PA of the flood list, encapsulated with FlowID 0.
    public func floodCopies(_ f: [UInt8], vsid: UInt32, ingress: UInt32) -> [(egress: UInt32, frame: [UInt8])] {
        guard let list = tables.floodLists[vsid] else { return [] }
        var out = list.portIfindexes.filter { $0 != ingress }.map { (egress: $0, frame: f) }
        for pa in list.peerAddresses {
            guard case let .go(egress, source, nextHop, sourcePA) = underlayRoute(to: pa, innerLength: f.count) else {
                continue
            }
            let payload = NVGRE.greHeader(vsid: vsid, flowID: 0) + f
            let ip =
                pa.family == .v4
                ? IPv4Header(src: sourcePA, dst: pa, proto: 47, payloadLength: payload.count).bytes
                : IPv6Header(src: sourcePA, dst: pa, nextHeader: 47, payloadLength: payload.count).bytes
            let header = Ethernet.header(dst: nextHop, src: source, type: pa.family == .v4 ? 0x0800 : 0x86dd)
            out.append((egress, header + ip + payload))
        }
        return out
    }

    /// xdp_flood_from_fabric with flood_vouched: a broadcast or multicast for the VSID's
    /// ports here, when the subnet floods, this host has ports in it, the outer source hosts
    /// it, and a source CA with a record is that record's (PA and MAC) or stays on the link.
    func floodFromFabric(
        _ f: [UInt8], _ outer: Flow, outerLength: Int, source: IPAddress, subnet sn: nv_subnet, vsid: UInt32,
        off: nv_drop_reason, _ run: inout Run
    ) -> Outcome {
        if !sn.floods { return run.drop(off) }
        guard let list = tables.floodLists[vsid], list.n_ports > 0 else { return run.drop(NV_DROP_DST_NOT_LOCAL) }
        if !list.peerAddresses.contains(outer.src) { return run.drop(NV_DROP_PA_SPOOF) }
        let rec = tables.record(vsid, source)
        if rec == nil && !Parse.linkScoped(source) { return run.drop(NV_DROP_INNER_SRC_UNKNOWN) }
        if let rec, rec.providerAddress != outer.src { return run.drop(NV_DROP_PA_SPOOF) }
        if let rec, f.mac(outerLength + 6) != rec.customerMAC { return run.drop(NV_DROP_SRC_MAC_SPOOF) }
        let inner = Array(f[outerLength...])
        run.count(.vsid(slot: sn.stats_slot, NV_CNT_FLOOD))
        return run.end(.floodUp(vsid: vsid, frame: inner))
    }
}
