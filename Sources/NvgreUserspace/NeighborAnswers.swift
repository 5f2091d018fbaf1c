import CNvgre
import NvgreDatapath
import NvgreWire

/// ARP and neighbor solicitations answered from policy (bpf/neighbor_reply.h for a VM's,
/// bpf/fabric_neighbor.h for those inside NVGRE), or replicated when policy has no answer.
extension DecisionCore {
    /// neighbor_mac: the MAC that answers for `target` in the port's subnet, and whether it is
    /// the router's.
    func neighborMAC(port: nv_port, subnet sn: nv_subnet, target: IPAddress) -> (MACAddress, router: Bool)? {
        let gw = target.family == .v4 ? sn.gateway4 : sn.gateway6
        if gw == target { return (sn.gatewayMAC, true) }
        guard let rec = tables.record(port.vsid, target), rec.customerMAC != port.portMAC else { return nil }
        return (rec.customerMAC, false)
    }

    /// answer_arp: a VM's ARP.
    func answerARP(_ input: [UInt8], port: nv_port, subnet sn: nv_subnet, ingress: UInt32, _ run: inout Run)
        -> Outcome
    {
        guard input.count >= 42, input.be16(14) == 1, input.be16(16) == 0x0800, input[18] == 6, input[19] == 4 else {
            return run.drop(NV_DROP_MALFORMED)
        }
        if input.mac(22) != port.portMAC { return run.drop(NV_DROP_SRC_MAC_SPOOF) }
        let op = input.be16(20)
        let sender = IPAddress(v4: Array(input[28..<32])), target = IPAddress(v4: Array(input[38..<42]))
        let unanswered: nv_drop_reason
        if op == 1 {
            if target != sender, let (mac, _) = neighborMAC(port: port, subnet: sn, target: target) {
                var f = input
                f.setMAC(port.portMAC, at: 0)
                f.setMAC(mac, at: 6)
                f[21] = 2
                f.setMAC(port.portMAC, at: 32)
                f.setMAC(mac, at: 22)
                f.replaceSubrange(38..<42, with: sender.bytes)
                f.replaceSubrange(28..<32, with: target.bytes)
                return run.end(.reply(frame: f))
            }
            unanswered = NV_DROP_ARP_UNANSWERED
        } else if op == 2 && Parse.isBroadcast(input, macAt: 0) {
            unanswered = NV_DROP_ARP_NOT_REQUEST
        } else {
            return run.drop(NV_DROP_ARP_NOT_REQUEST)
        }
        if !Parse.isBroadcast(input, macAt: 0) { return run.drop(unanswered) }
        if !sender.isUnspecified && !tables.portMayUse(ingress, sender) { return run.drop(NV_DROP_SRC_CA_SPOOF) }
        return floodFromVM(input, vsid: port.vsid, ingress: ingress, off: unanswered, &run)
    }

    /// answer_ns: a VM's neighbor solicitation (the frame holds one, checked by the caller).
    func answerNS(_ input: [UInt8], port: nv_port, subnet sn: nv_subnet, ingress: UInt32, _ run: inout Run)
        -> Outcome
    {
        guard input.count >= 14 + 40 + 24, input[21] == 255 else { return run.drop(NV_DROP_MALFORMED) }
        let asker = IPAddress(v6: Array(input[22..<38])), target = IPAddress(v6: Array(input[62..<78]))
        guard !asker.isUnspecified, let (mac, router) = neighborMAC(port: port, subnet: sn, target: target) else {
            if !Parse.linkScoped(asker) && !tables.portMayUse(ingress, asker) {
                return run.drop(NV_DROP_SRC_CA_SPOOF)
            }
            if !Parse.isMulticast(input, macAt: 0) { return run.drop(NV_DROP_ND_UNANSWERED) }
            return floodFromVM(input, vsid: port.vsid, ingress: ingress, off: NV_DROP_ND_UNANSWERED, &run)
        }
        return run.end(
            .reply(frame: Self.advertisement(to: port.portMAC, asker: asker, target: target, mac: mac, router: router)))
    }

    /// The advertisement answering `asker` for `target` (start_na, complete_na): Ethernet from
    /// `mac` to `askerMAC`, IPv6 from the target, NA with S and O (and R for the router), the
    /// target link-layer option.
    static func advertisement(
        to askerMAC: MACAddress, asker: IPAddress, target: IPAddress, mac: MACAddress, router: Bool
    )
        -> [UInt8]
    {
        let na = ICMPv6.neighborAdvertisement(
            target: target, targetMAC: mac, router: router, solicited: true, override: true, src: target, dst: asker)
        let ip = IPv6Header(src: target, dst: asker, nextHeader: 58, payloadLength: na.count, hopLimit: 255).bytes
        return Ethernet.frame(dst: askerMAC, src: mac, type: .ipv6, payload: ip + na)
    }

    /// fabric_answer: the MAC answering for `target` from the fabric: a CA of the VSID with a
    /// port here, or the subnet gateway on a gateway host serving the domain.
    func fabricAnswer(_ sn: nv_subnet, vsid: UInt32, target: IPAddress) -> (MACAddress, router: Bool)? {
        if let rec = tables.record(vsid, target), rec.port_ifindex != 0, rec.recordType != NV_REC_GATEWAY {
            return (rec.customerMAC, false)
        }
        let gw = target.family == .v4 ? sn.gateway4 : sn.gateway6
        if gw == target && tables.gatewayDomains[sn.rdid] != nil { return (sn.gatewayMAC, true) }
        return nil
    }

    /// make_way_back + write_outer: an answer encapsulated back to the asking PA, outer MACs
    /// swapped, the question's GRE key, standard outer headers.
    static func wayBack(_ request: [UInt8], _ outer: Flow, key: UInt32, inner: [UInt8]) -> [UInt8] {
        let payload = NVGRE.greHeader(vsid: key >> 8, flowID: UInt8(key & 0xff)) + inner
        let ip =
            outer.family == .v4
            ? IPv4Header(src: outer.dst, dst: outer.src, proto: 47, payloadLength: payload.count).bytes
            : IPv6Header(src: outer.dst, dst: outer.src, nextHeader: 47, payloadLength: payload.count).bytes
        let type: UInt16 = outer.family == .v4 ? 0x0800 : 0x86dd
        return Ethernet.header(dst: request.mac(6), src: request.mac(0), type: type) + ip + payload
    }

    /// answer_arp_from_fabric: `at` is the inner Ethernet header, after `outerLength` bytes.
    func answerARPFromFabric(
        _ f: [UInt8], _ outer: Flow, key: UInt32, outerLength: Int, subnet sn: nv_subnet, vsid: UInt32,
        _ run: inout Run
    ) -> Outcome {
        let e = outerLength, a = outerLength + 14
        guard f.count >= a + 28 else { return run.drop(NV_DROP_MALFORMED) }
        guard f.be16(a) == 1, f.be16(a + 2) == 0x0800, f[a + 4] == 6, f[a + 5] == 4 else {
            return run.drop(NV_DROP_MALFORMED)
        }
        let op = f.be16(a + 6)
        let gratuitousReply = op == 2 && Parse.isBroadcast(f, macAt: e)
        if op != 1 && !gratuitousReply { return run.drop(NV_DROP_ARP_NOT_REQUEST) }
        let asker = IPAddress(v4: f[a + 14..<a + 18]), target = IPAddress(v4: f[a + 24..<a + 28])
        guard let sender = tables.record(vsid, asker) else { return run.drop(NV_DROP_INNER_SRC_UNKNOWN) }
        if sender.providerAddress != outer.src { return run.drop(NV_DROP_PA_SPOOF) }
        if f.mac(a + 8) != sender.customerMAC { return run.drop(NV_DROP_SRC_MAC_SPOOF) }
        let answer = asker == target || gratuitousReply ? nil : fabricAnswer(sn, vsid: vsid, target: target)
        guard let (mac, _) = answer else {
            let why = gratuitousReply ? NV_DROP_ARP_NOT_REQUEST : NV_DROP_ARP_UNANSWERED
            if !Parse.isBroadcast(f, macAt: e) { return run.drop(why) }
            return floodFromFabric(
                f, outer, outerLength: outerLength, source: asker, subnet: sn, vsid: vsid, off: why, &run)
        }
        let reply = Ethernet.frame(
            dst: sender.customerMAC, src: mac, type: .arp,
            payload: ARP.packet(op: 2, senderMAC: mac, senderIP: target, targetMAC: sender.customerMAC, targetIP: asker)
        )
        return run.end(.reply(frame: Self.wayBack(f, outer, key: key, inner: reply)))
    }

    /// answer_ns_from_fabric: the solicitation's IPv6 header is at `outerLength + 14`.
    func answerNSFromFabric(
        _ f: [UInt8], _ outer: Flow, key: UInt32, outerLength: Int, subnet sn: nv_subnet, vsid: UInt32,
        _ run: inout Run
    ) -> Outcome {
        let ip = outerLength + 14
        guard f.count >= ip + 40 + 24, f[ip + 7] == 255 else { return run.drop(NV_DROP_MALFORMED) }
        let asker = IPAddress(v6: f[ip + 8..<ip + 24]), target = IPAddress(v6: f[ip + 48..<ip + 64])
        if asker.isUnspecified { return floodNSFromFabric(f, outer, outerLength, asker, sn, vsid, &run) }
        guard let sender = tables.record(vsid, asker) else { return run.drop(NV_DROP_INNER_SRC_UNKNOWN) }
        if sender.providerAddress != outer.src { return run.drop(NV_DROP_PA_SPOOF) }
        if f.mac(outerLength + 6) != sender.customerMAC { return run.drop(NV_DROP_SRC_MAC_SPOOF) }
        guard let (mac, router) = fabricAnswer(sn, vsid: vsid, target: target) else {
            return floodNSFromFabric(f, outer, outerLength, asker, sn, vsid, &run)
        }
        let na = Self.advertisement(to: sender.customerMAC, asker: asker, target: target, mac: mac, router: router)
        return run.end(.reply(frame: Self.wayBack(f, outer, key: key, inner: na)))
    }

    func floodNSFromFabric(
        _ f: [UInt8], _ outer: Flow, _ outerLength: Int, _ asker: IPAddress, _ sn: nv_subnet, _ vsid: UInt32,
        _ run: inout Run
    ) -> Outcome {
        if !Parse.isMulticast(f, macAt: outerLength) { return run.drop(NV_DROP_ND_UNANSWERED) }
        return floodFromFabric(
            f, outer, outerLength: outerLength, source: asker, subnet: sn, vsid: vsid, off: NV_DROP_ND_UNANSWERED,
            &run)
    }
}
