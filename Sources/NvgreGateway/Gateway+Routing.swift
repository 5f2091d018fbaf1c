import CNvgre
import NvgreDatapath
import NvgreWire

/// Route mode (no NAT) and the ICMP errors the gateway answers: to a route-mode VM (no
/// route out, too big for the external link) and to an outside host whose packet did not
/// fit the underlay once encapsulated.
extension Gateway {
    /// A routed packet XDP could not send: its next hop is not resolved yet (the kernel
    /// resolves it when this sends the packet) or its TTL runs out here.
    func routeToOutside(_ e: ExceptionFrame) {
        let ip = Array(e.frame.dropFirst(Ethernet.headerLength))
        guard e.originalLength <= e.frame.count, ip.count >= 20, ip[0] >> 4 == 4 else {
            return count(NV_GW_DROP_UNSUPPORTED, e)
        }
        let destination = IPAddress(v4: Array(ip[16..<20]))
        if egress.verdict(destination: destination, proto: ip[9], port: 0, mode: .route, flowExists: false) != .out {
            return refuseInfrastructure(e)
        }
        guard ip[8] > 1 else { return count(NV_GW_DROP_TTL, e) }
        guard let packet = IPPacket.forwardedIPv4(ip) else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        do {
            try sender.sendOutside(packet, to: destination)
            count(NV_GW_USERSPACE_ROUTED, e)
        } catch {
            onEvent(.failed("\(error)"))
        }
    }

    /// An ICMP error for a route-mode domain's VM about a packet that reached G (no route
    /// out, or too big for the external link), encapsulated to the VM's host. The packet
    /// came in the VSID of the customer route's next hop (the gateway record), so the VM's
    /// own subnet is looked up by its address. The answer comes from that next hop's CA, the
    /// one source outside the VM's subnet that its host accepts from G's PA; the VM's MAC
    /// comes from its record (the decapsulated frame carries router MACs).
    func answerTenant(_ error: ICMPError, _ e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let src = f.src, let dst = f.dst, let sn = maps.subnet(e.vsid),
            let vsid = subnet(of: src, in: sn.rdid), let vmSubnet = maps.subnet(vsid),
            let record = maps.record(vsid: vsid, ca: src),
            let route = maps.route(rdid: sn.rdid, address: dst),
            let nextHop = route.nextHop
        else { return count(NV_GW_DROP_NO_RECORD, e) }
        guard
            let answer = error.answer(
                to: e.frame, gatewayMAC: vmSubnet.gatewayMAC, gateway: nextHop, vm: record.customerMAC)
        else {
            return count(NV_GW_DROP_UNSUPPORTED, e)  // not due (an ICMP error, or IPv4 without DF)
        }
        guard icmpLimit.allow() else { return }
        let proto = src.family == .v4 ? IPProtocol.icmp.rawValue : IPProtocol.icmpv6.rawValue
        _ = deliver(
            Array(answer.dropFirst(Ethernet.headerLength)), to: src, vsid: vsid,
            hash: FlowHash(src: nextHop, dst: src, protocol: proto, sport: 0, dport: 0), e)
    }

    /// A packet from outside, translated by XDP, did not fit the underlay once encapsulated.
    /// Without DF it is fragmented here, as a router would, and each fragment delivered; with
    /// DF the outside host must hear "fragmentation needed" about the packet it sent (to the
    /// external address and port), from the external address, or its transfers stall.
    func tooBigFromOutside(_ e: ExceptionFrame) {
        if deliverInFragments(e) { return }
        if let sn = maps.subnet(e.vsid), maps.servedMode(sn.rdid) == NV_GW_ROUTE {
            return tooBigRoutedFromOutside(e, sn)
        }
        guard let sn = maps.subnet(e.vsid), var pkt = ipv4(e.frame),
            let entry = table.outbound(
                rdid: sn.rdid, proto: pkt.proto, ca: pkt.destination, caPort: pkt.destinationPort,
                remote: pkt.source, remotePort: pkt.sourcePort),
            let record = maps.record(vsid: e.vsid, ca: pkt.destination)
        else {
            return count(NV_GW_DROP_UNSUPPORTED, e)
        }
        pkt.setDestination(entry.flow.ext, port: entry.flow.extPort)  // the packet as X sent it
        let mtu = NVGRE.customerMTU(underlayMTU: Int(e.mtu), outer: record.providerAddress.family)
        let frame = Ethernet.header(dst: sn.gatewayMAC, src: sn.gatewayMAC, type: EtherType.ipv4.rawValue) + pkt.bytes
        sendOutside(.tooBig(mtu: mtu), about: frame, from: entry.flow.ext, to: pkt.source, e)
    }

    /// The same for a route-mode domain: the packet kept its addresses, and the answer comes
    /// from the gateway's (first) external address.
    func tooBigRoutedFromOutside(_ e: ExceptionFrame, _ sn: nv_subnet) {
        guard let f = DecodedFrame(e.frame), let src = f.dst.flatMap({ maps.record(vsid: e.vsid, ca: $0) }),
            let from = externalAddresses.first?.address, let outsider = f.src
        else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        let mtu = NVGRE.customerMTU(underlayMTU: Int(e.mtu), outer: src.providerAddress.family)
        sendOutside(.tooBig(mtu: mtu), about: e.frame, from: from, to: outsider, e)
    }

    /// An IPv4 packet toward a VM (translated, or routed in) without DF, all of it in the
    /// exception: cut into fragments that fit the customer MTU, each delivered to the VM.
    /// False when it is not such a packet.
    func deliverInFragments(_ e: ExceptionFrame) -> Bool {
        guard e.frame.count == e.originalLength, let f = DecodedFrame(e.frame), f.etherType == EtherType.ipv4.rawValue,
            let vm = f.dst, let record = maps.record(vsid: e.vsid, ca: vm)
        else { return false }
        let packet = Array(e.frame[f.l3Offset...])
        let mtu = NVGRE.customerMTU(underlayMTU: Int(e.mtu), outer: record.providerAddress.family)
        guard let fragments = IPv4Fragmenter.fragments(of: packet, mtu: mtu), let src = f.src else { return false }
        let ports = NATPacket(ip: packet)  // TCP, UDP or echo: the flow's ports, for the FlowID
        let hash = FlowHash(
            src: src, dst: vm, protocol: f.ipProtocol ?? 0, sport: ports?.sourcePort ?? 0,
            dport: ports?.destinationPort ?? 0)
        var sent = 0
        for fragment in fragments where deliver(fragment, to: vm, vsid: e.vsid, hash: hash, e) { sent += 1 }
        if sent == fragments.count { count(NV_GW_USERSPACE_IN, e) }
        return true
    }

    /// Sends `error` about `frame` to a host outside, from `from`.
    func sendOutside(
        _ error: ICMPError, about frame: [UInt8], from: IPAddress, to outsider: IPAddress, _ e: ExceptionFrame
    ) {
        guard let answer = error.answer(to: frame, gatewayMAC: MACAddress([2, 0, 0, 0, 0, 0]), gateway: from) else {
            return count(NV_GW_DROP_UNSUPPORTED, e)  // no DF: XDP does not fragment
        }
        guard icmpLimit.allow() else { return }
        do {
            try sender.sendOutside(Array(answer.dropFirst(Ethernet.headerLength)), to: outsider)
            count(NV_GW_TOO_BIG_OUTSIDE, e)
        } catch {
            onEvent(.failed("\(error)"))
        }
    }
}
