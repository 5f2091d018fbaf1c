import CNvgre
import NvgreDatapath
import NvgreWire

/// nv_from_external (bpf/from_external.h): every frame from a gateway's external interface.
/// Packets to a route-mode subnet are routed to the VM here; TCP, UDP and ICMP echo replies
/// to an external address are for the gateway engine (NV_EXC_NAT_IN) when a flow or a
/// published service takes them, dropped and counted otherwise; everything else (ARP, the
/// host's own traffic, pings to the gateway) is the host's.
extension DecisionCore {
    public func fromExternal(_ f: [UInt8]) -> Outcome {
        var run = Run()
        let gw = tables.gateway
        guard f.count >= Parse.ethernetLength, f.be16(12) == 0x0800, let ip = Parse.ipv4(f, at: 14) else {
            return run.end(.pass)
        }
        if !gw.externalAddresses.contains(ip.dst) {
            guard let to = gw.routedSubnet(ip.dst) else { return run.end(.pass) }
            if gw.isInfrastructure(ip.src) { return run.drop(NV_DROP_EXTERNAL_FROM_INFRA) }
            return routeFromOutside(f, ip, to, &run)
        }
        // Nothing for a tenant comes from an infrastructure address: such a source is forged.
        let fromInfrastructure = gw.isInfrastructure(ip.src)
        let fragment = Parse.isFragment(f, ipAt: 14)
        if ip.proto == 1 && !fragment && f.count >= ip.l4 + 8 {
            let type = f[ip.l4]
            if type == 8 { return run.end(.pass) }  // a ping to the gateway itself
            if type == 3 || type == 11 || type == 12 {
                guard let about = flowQuotedIn(f, at: ip.l4 + 8) else { return run.end(.pass) }
                if fromInfrastructure { return run.drop(NV_DROP_EXTERNAL_FROM_INFRA) }
                return run.exception(NV_EXC_NAT_IN, f, vsid: 0, slot: NV_NO_STATS_SLOT)
            }
        }
        if fromInfrastructure { return run.drop(NV_DROP_EXTERNAL_FROM_INFRA) }
        guard !fragment, let ports = natPortsInbound(f, ip) else { return run.drop(NV_DROP_EXTERNAL_UNKNOWN) }
        let key = NATFlow(
            proto: ip.proto, rdid: 0, vsid: 0, ca: ip.dst, caPort: 0, ext: ip.dst, extPort: ports.inside,
            remote: ip.src, remotePort: ports.outside
        ).inKey
        if let flow = flows?.flowIn(key) {
            return run.exception(NV_EXC_NAT_IN, f, vsid: flow.vsid, slot: NV_NO_STATS_SLOT)
        }
        // A new connection to a published service.
        if ip.proto != 1, let svc = gw.service(ip.proto, ip.dst, ports.inside) {
            return run.exception(NV_EXC_NAT_IN, f, vsid: 0, slot: NV_NO_STATS_SLOT)
        }
        return run.drop(NV_DROP_EXTERNAL_UNKNOWN)
    }

    /// nat_parse inbound: the port on the tenant's side (TCP or UDP destination port, ICMP
    /// echo reply identifier) and the remote's (0 for ICMP), when NAT can take the packet.
    func natPortsInbound(_ f: [UInt8], _ ip: Flow) -> (inside: UInt16, outside: UInt16)? {
        switch ip.proto {
        case 6 where f.count >= ip.l4 + 20, 17 where f.count >= ip.l4 + 8:
            return (f.be16(ip.l4 + 2), f.be16(ip.l4))
        case 1 where f.count >= ip.l4 + 8 && f[ip.l4] == 0:
            return (f.be16(ip.l4 + 4), 0)
        default:
            return nil
        }
    }

    /// error_about_nat_flow: the flow of the packet an ICMP error quotes (as NAT sent it, from
    /// the external address and port), if there is one.
    func flowQuotedIn(_ f: [UInt8], at q: Int) -> nv_nat_flow? {
        guard f.count >= q + 28, f[q] & 0x0f == 5 else { return nil }
        let l4 = q + 20
        let proto = f[q + 9]
        let ext = IPAddress(v4: f[q + 12..<q + 16]), remote = IPAddress(v4: f[q + 16..<q + 20])
        let ports: (UInt16, UInt16)
        switch proto {
        case 6, 17: ports = (f.be16(l4), f.be16(l4 + 2))
        case 1: ports = (f.be16(l4 + 4), 0)
        default: return nil
        }
        let key = NATFlow(
            proto: proto, rdid: 0, vsid: 0, ca: ext, caPort: 0, ext: ext, extPort: ports.0, remote: remote,
            remotePort: ports.1
        ).inKey
        return flows?.flowIn(key)
    }

    /// route_from_outside: to a route-mode VM, from one of its domain's physical prefixes.
    func routeFromOutside(_ f: [UInt8], _ ip: Flow, _ to: nv_gw_routed, _ run: inout Run) -> Outcome {
        if !tables.gateway.prefixCovers(to.rdid, ip.src) { return run.drop(NV_DROP_EXTERNAL_SPOOF) }
        let vsid = to.vsid
        guard let sn = tables.subnets[vsid], let rec = tables.record(vsid, ip.dst), rec.recordType == NV_REC_STATIC
        else { return run.drop(NV_DROP_EXTERNAL_NO_RECORD) }
        if ip.ttl <= 1 { return run.drop(NV_DROP_EXTERNAL_TTL) }
        var out = f
        out.setMAC(sn.gatewayMAC, at: 6)
        out.setMAC(rec.customerMAC, at: 0)
        out.decrementIPv4TTL(at: 14)
        run.count(.gateway(NV_GW_ROUTED_IN))
        return deliver(out, ip, rec, vsid: vsid, slot: sn.stats_slot, &run)
    }
}
