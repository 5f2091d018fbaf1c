import CNvgre
import NvgreDatapath
import NvgreWire

/// NAT44 both ways for a flow's first packets: a tenant's packet out (a new flow gets a port
/// within its domain's share), an outsider's packet in (a flow's, or a new one to a
/// published service), a hairpin through both, ICMP errors about a flow (RFC 5508).
extension Gateway {
    // MARK: tenant -> outside

    func toOutside(_ e: ExceptionFrame) {
        guard let sn = maps.subnet(e.vsid), var pkt = ipv4(e.frame) else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        let rdid = sn.rdid
        if subnet(of: pkt.destination, in: rdid) != nil { return count(NV_GW_DROP_INSIDE, e) }
        var entry = table.outbound(
            rdid: rdid, proto: pkt.proto, ca: pkt.source, caPort: pkt.sourcePort,
            remote: pkt.destination, remotePort: pkt.destinationPort)
        let verdict = egress.verdict(
            destination: pkt.destination, proto: pkt.proto, port: pkt.destinationPort, mode: .nat,
            flowExists: entry != nil)
        if verdict == .infrastructure { return refuseInfrastructure(e) }
        if entry == nil { entry = newOutboundFlow(pkt, rdid: rdid, e) }
        guard var flow = entry else { return }
        guard pkt.decrementTTL() else { return count(NV_GW_DROP_TTL, e) }
        pkt.setSource(flow.flow.ext, port: flow.flow.extPort)
        if verdict == .hairpin {
            // To a published service (or back to a tenant that reached one): in again from
            // the external address, exactly as an outside client's packet would come.
            observe(&flow, outbound: true, tcpFlags: pkt.tcpFlags)
            count(NV_GW_HAIRPIN, e)
            return translateIn(pkt, e)
        }
        do {
            try sender.sendOutside(pkt.bytes, to: pkt.destination)
            count(NV_GW_USERSPACE_OUT, e)
        } catch {
            onEvent(.failed("\(error)"))
        }
        observe(&flow, outbound: true, tcpFlags: pkt.tcpFlags)
    }

    func newOutboundFlow(_ pkt: NATPacket, rdid: UInt32, _ e: ExceptionFrame) -> NATEntry? {
        guard let vsid = subnet(of: pkt.source, in: rdid) else {
            count(NV_GW_DROP_NO_RECORD, e)
            return nil
        }
        guard !externalAddresses.isEmpty else {
            count(NV_GW_PORTS_EXHAUSTED, e)
            return nil
        }
        var atShare = false
        // The same CA keeps the same external address while it has ports there.
        let hint = Int(pkt.source.bytes.reduce(rdid) { $0 &* 31 &+ UInt32($1) } % UInt32(externalAddresses.count))
        for i in 0..<externalAddresses.count {
            let ext = externalAddresses[(hint + i) % externalAddresses.count]
            if let share = natShares[rdid],
                table.ports.held(by: rdid, proto: pkt.proto, address: ext.address)
                    >= natQuota(share: share, of: ext.natPorts)
            {
                atShare = true
                continue
            }
            guard
                let port = table.ports.allocate(
                    proto: pkt.proto, address: ext.address, range: ext.natPorts, hint: Int.random(in: 0..<65536),
                    for: rdid)
            else { continue }
            let flow = NATFlow(
                proto: pkt.proto, rdid: rdid, vsid: vsid, ca: pkt.source, caPort: pkt.sourcePort, ext: ext.address,
                extPort: port, remote: pkt.destination, remotePort: pkt.destinationPort)
            return create(flow, fromOutside: false, e)
        }
        count(NV_GW_PORTS_EXHAUSTED, e)
        countDomain(rdid, NV_DOM_PORTS_EXHAUSTED, e)
        onEvent(.exhausted(proto: pkt.proto, ca: pkt.source, rdid: rdid, share: atShare))
        return nil
    }

    // MARK: outside -> tenant

    func fromOutside(_ e: ExceptionFrame) {
        guard let pkt = ipv4(e.frame) else { return icmpErrorFromOutside(e) }
        translateIn(pkt, e)
    }

    /// A packet to an external address (from outside, or a tenant's hairpin): to the flow's
    /// CA and port, or a new flow to a published service.
    func translateIn(_ packet: NATPacket, _ e: ExceptionFrame) {
        var pkt = packet
        var entry = table.inbound(
            proto: pkt.proto, ext: pkt.destination, extPort: pkt.destinationPort,
            remote: pkt.source, remotePort: pkt.sourcePort)
        if entry == nil { entry = newServiceFlow(pkt, e) }
        guard var flow = entry else { return }
        guard pkt.decrementTTL() else { return count(NV_GW_DROP_TTL, e) }
        pkt.setDestination(flow.flow.ca, port: flow.flow.caPort)
        if let oversize = oversize(pkt.bytes, to: pkt.destination, vsid: flow.flow.vsid, e) {
            observe(&flow, outbound: false, tcpFlags: pkt.tcpFlags)
            return tooBigFromOutside(oversize)
        }
        let hash = FlowHash(
            src: pkt.source, dst: pkt.destination, protocol: pkt.proto, sport: pkt.sourcePort,
            dport: pkt.destinationPort)
        if deliver(pkt.bytes, to: pkt.destination, vsid: flow.flow.vsid, hash: hash, e) { count(NV_GW_USERSPACE_IN, e) }
        observe(&flow, outbound: false, tcpFlags: pkt.tcpFlags)
    }

    /// An ICMP error about a packet of a flow (XDP checked that the flow exists): translated
    /// back for the VM. It does not refresh the flow.
    func icmpErrorFromOutside(_ e: ExceptionFrame) {
        guard e.frame.count > Ethernet.headerLength,
            var error = NATICMPError(ip: Array(e.frame[Ethernet.headerLength...])),
            let entry = table.inbound(
                proto: error.quotedProto, ext: error.quotedSource, extPort: error.quotedSourcePort,
                remote: error.quotedDestination, remotePort: error.quotedDestinationPort)
        else {
            return count(NV_GW_DROP_UNSUPPORTED, e)
        }
        guard error.translate(toCA: entry.flow.ca, port: entry.flow.caPort) else { return count(NV_GW_DROP_TTL, e) }
        let hash = FlowHash(
            src: error.source, dst: entry.flow.ca, protocol: IPProtocol.icmp.rawValue, sport: 0, dport: 0)
        if deliver(error.bytes, to: entry.flow.ca, vsid: entry.flow.vsid, hash: hash, e) {
            count(NV_GW_USERSPACE_IN, e)
        }
    }

    /// A first packet to a published service (for TCP, a SYN) opens a flow.
    func newServiceFlow(_ pkt: NATPacket, _ e: ExceptionFrame) -> NATEntry? {
        guard let svc = maps.service(proto: pkt.proto, address: pkt.destination, port: pkt.destinationPort),
            pkt.proto != IPProtocol.tcp.rawValue || pkt.tcpFlags & (NATPacket.syn | NATPacket.ack) == NATPacket.syn
        else {
            count(NV_GW_DROP_UNSUPPORTED, e)
            return nil
        }
        guard let vsid = subnet(of: svc.customerAddress, in: svc.rdid) else {
            count(NV_GW_DROP_NO_RECORD, e)
            return nil
        }
        let flow = NATFlow(
            proto: pkt.proto, rdid: svc.rdid, vsid: vsid, ca: svc.customerAddress, caPort: svc.customerPort,
            ext: pkt.destination, extPort: pkt.destinationPort, remote: pkt.source, remotePort: pkt.sourcePort)
        return create(flow, fromOutside: true, e)
    }
}
