import CNvgre
import NvgreDatapath
import NvgreWire

/// nv_from_fabric (bpf/from_fabric.h): every frame from the underlay, in the order the XDP
/// program decides. On a gateway host, a frame for outside its domain goes on in
/// ToOutside.swift.
extension DecisionCore {
    public func fromFabric(_ f: consuming [UInt8]) -> Outcome {
        var run = Run()
        guard f.count >= Parse.ethernetLength else { return run.end(.pass) }
        let outer: Flow
        switch f.be16(12) {
        case 0x0800:
            guard let v4 = Parse.ipv4(f, at: 14), v4.proto == 47, tables.localPAs.contains(v4.dst) else {
                return run.end(.pass)
            }
            if Parse.isFragment(f, ipAt: 14) { return run.drop(NV_DROP_OUTER_FRAGMENT) }
            outer = v4
        case 0x86dd:
            guard let v6 = Parse.ipv6(f, at: 14) else { return run.end(.pass) }
            if v6.proto == 44 {
                if f.count >= v6.l4 + 8, f[v6.l4] == 47, tables.localPAs.contains(v6.dst) {
                    return run.drop(NV_DROP_OUTER_FRAGMENT)
                }
                return run.end(.pass)
            }
            guard v6.proto == 47, tables.localPAs.contains(v6.dst) else { return run.end(.pass) }
            outer = v6
        default:
            return run.end(.pass)
        }

        let g = outer.l4
        guard f.count >= g + 8 else { return run.drop(NV_DROP_MALFORMED) }
        if f.be16(g) != NVGRE.flagsAndVersion { return run.drop(NV_DROP_GRE_FLAGS) }
        if f.be16(g + 2) != EtherType.transparentEthernet.rawValue { return run.drop(NV_DROP_GRE_PROTOCOL) }
        let key = f.be32(g + 4)
        let vsid = key >> 8
        if vsid < NV_VSID_MIN || vsid > NV_VSID_MAX { return run.drop(NV_DROP_VSID_RESERVED) }
        guard let sn = tables.subnets[vsid] else { return run.drop(NV_DROP_VSID_UNKNOWN) }
        let outerLength = g + 8

        let e = outerLength
        guard f.count >= e + 14 else { return run.drop(NV_DROP_MALFORMED) }
        let type = f.be16(e + 12)
        if type == 0x8100 || type == 0x88a8 { return run.drop(NV_DROP_INNER_VLAN) }
        if type == 0x0806 {
            return answerARPFromFabric(f, outer, key: key, outerLength: outerLength, subnet: sn, vsid: vsid, &run)
        }
        let inner: Flow
        if type == 0x0800 {
            guard let v4 = Parse.ipv4(f, at: e + 14) else { return run.drop(NV_DROP_MALFORMED) }
            inner = v4
        } else if type == 0x86dd {
            guard let v6 = Parse.ipv6(f, at: e + 14) else { return run.drop(NV_DROP_MALFORMED) }
            if Parse.isNeighborSolicitation(f, v6) {
                return answerNSFromFabric(f, outer, key: key, outerLength: outerLength, subnet: sn, vsid: vsid, &run)
            }
            inner = v6
        } else {
            return run.drop(NV_DROP_INNER_NOT_IP)
        }
        if Parse.isMulticast(f, macAt: e) {
            return floodFromFabric(
                f, outer, outerLength: outerLength, source: inner.src, subnet: sn, vsid: vsid, off: NV_DROP_FLOOD_OFF,
                &run)
        }

        guard let src = tables.record(vsid, inner.src) ?? tables.recordInDomain(sn.rdid, inner.src) else {
            return run.drop(NV_DROP_INNER_SRC_UNKNOWN)
        }
        if src.providerAddress != outer.src { return run.drop(NV_DROP_PA_SPOOF) }
        let dst = tables.record(vsid, inner.dst)
        if dst == nil, let mode = tables.gatewayDomains[sn.rdid] {
            // A gateway host: no record at all means outside the domain, for NAT or routing.
            return toOutside(f, inner, outerLength: outerLength, subnet: sn, vsid: vsid, mode: mode, &run)
        }
        if let dst, dst.port_ifindex == 0, dst.flags & NV_REC_MOVED_AWAY.rawValue != 0 {
            return forwardMoved(f, outer, dst, outerLength: outerLength, slot: sn.stats_slot, vsid: vsid, &run)
        }
        guard let dst, dst.port_ifindex != 0 else { return run.drop(NV_DROP_DST_NOT_LOCAL) }
        var decapsulated = consume f  // the frame's own array, cut in place
        decapsulated.removeSubrange(0..<outerLength)
        run.count(.vsid(slot: sn.stats_slot, NV_CNT_DECAP))
        return run.end(.forward(egress: dst.port_ifindex, frame: decapsulated))
    }

    /// forward_moved (bpf/moved.h): a frame for a VM that moved from this host moments ago
    /// goes on to its new host, only the outer Ethernet header, destination and TTL changed
    /// (the outer source stays the sender's, for the new host's receiver checks).
    func forwardMoved(
        _ input: consuming [UInt8], _ outer: Flow, _ dst: nv_lookup_val, outerLength: Int, slot: UInt32, vsid: UInt32,
        _ run: inout Run
    ) -> Outcome {
        let pa = dst.providerAddress
        guard pa.family == outer.family, outer.ttl > 1,
            case let .go(egress, source, nextHop, _) = underlayRoute(to: pa, innerLength: input.count - outerLength)
        else { return run.drop(NV_DROP_MOVED_UNSENT) }
        var f = consume input
        f.setMAC(nextHop, at: 0)
        f.setMAC(source, at: 6)
        if pa.family == .v6 {
            pa.store(into: &f, at: 14 + 24)
            f[14 + 7] &-= 1
        } else {
            var sum = f.be16(14 + 10)
            for word in 0..<2 {
                let at = 14 + 16 + 2 * word
                let new = UInt16(pa.byte(2 * word)) << 8 | UInt16(pa.byte(2 * word + 1))
                sum = checksumReplacing(sum, old: f.be16(at), new: new)
            }
            f[14 + 10] = UInt8(sum >> 8)
            f[14 + 11] = UInt8(sum & 0xff)
            pa.store(into: &f, at: 14 + 16)
            f.decrementIPv4TTL(at: 14)
        }
        run.count(.vsid(slot: slot, NV_CNT_MOVED))
        return run.end(.forward(egress: egress, frame: f))
    }
}
