import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreWire
#if canImport(Glibc)
import Glibc
#endif

/// The userspace half of the gateway: the frames the gateway host's fast path hands up for
/// NAT (NV_EXC_NAT_OUT, NV_EXC_NAT_IN) and for routing without NAT (NV_EXC_ROUTE_OUT, and
/// NV_EXC_NO_ROUTE, answered with ICMP unreachable). A flow's first packets are translated and sent
/// here; the flow is written into nat_out and nat_in at once (so that replies find it), and
/// once it is established it is offloaded: XDP translates the rest both ways. Idle flows
/// expire. All state the data path needs lives in the maps, so this process can stop and
/// start again while offloaded flows keep forwarding (`recover` reads them back).
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
                return "no free external \(Self.protoName(p)) port for \(ca) (domain \(rdid)\(share ? ", at its share of the ports" : "")): packet dropped"
            case let .failed(why): return "gateway: \(why)"
            }
        }

        static func protoName(_ p: UInt8) -> String { [1: "icmp", 6: "tcp", 17: "udp"][p] ?? "proto \(p)" }
        static func text(_ f: NATFlow) -> String {
            "\(protoName(f.proto)) \(f.ca):\(f.caPort) (domain \(f.rdid)) = \(f.ext):\(f.extPort) <-> \(f.remote):\(f.remotePort)"
        }
    }

    private let maps: DatapathMaps
    public var externalAddresses: [ExternalAddress]
    public var timeouts: NATTimeouts
    public private(set) var table = NATTable()
    private let outside: RawIPSocket
    private var underlay: [IPFamily: RawIPSocket] = [:]
    private let portSender: PacketSocket
    private var pendingCounts: [UInt32: (packets: UInt64, bytes: UInt64)] = [:]
    /// (routing domain << 32 | enum nv_domain_counter) -> what this process counted.
    private var pendingDomainCounts: [UInt64: (packets: UInt64, bytes: UInt64)] = [:]
    private let icmpLimit: ICMPRateLimit
    /// Routing domain id -> the percentage of each external address's NAT ports (per
    /// protocol) and of the flow table it may hold; domains not listed may hold them all.
    public var natShares: [UInt32: UInt32]
    private var egress: EgressRule!
    private let hostAddresses = HostAddressCache()
    public var onEvent: (Event) -> Void = { _ in }

    /// Create it in the gateway host's network namespace (its sockets send from there).
    /// The raw socket that sends translated packets out is bound to the external interface,
    /// so the kernel never routes them anywhere else.
    public init(maps: DatapathMaps, externalAddresses: [ExternalAddress], timeouts: NATTimeouts = NATTimeouts(),
                icmpLimit: ICMPRateLimit = ICMPRateLimit(), natShares: [UInt32: UInt32] = [:]) throws {
        self.maps = maps
        self.icmpLimit = icmpLimit
        self.externalAddresses = externalAddresses
        self.timeouts = timeouts
        self.natShares = natShares
        outside = try RawIPSocket(.v4)
        if let external = externalAddresses.first?.interface { try outside.bind(toDevice: external) }
        portSender = try PacketSocket()
        let hosts = hostAddresses
        egress = EgressRule(isInfrastructure: { maps.infrastructure.lookup(nv_infra_key(address: $0)) != nil },
                            isHostAddress: { hosts.contains($0) },
                            isExternal: { maps.externalAddresses.lookup(nv_ext_addr_key($0)) != nil },
                            isService: { maps.services.lookup(nv_service_key(proto: $0, address: $1, port: $2)) != nil })
    }

    /// Handles a NAT exception; false for any other reason (the host handler's).
    public func handle(_ e: ExceptionFrame) -> Bool {
        let cfg = maps.config.lookup(0)
        let fromUplink = e.ingressIfindex == cfg?.uplink_ifindex, fromExternal = e.ingressIfindex == cfg?.external_ifindex
        switch e.reason {
        case NV_EXC_NAT_OUT.rawValue: toOutside(e)
        case NV_EXC_NAT_IN.rawValue: fromOutside(e)
        case NV_EXC_OVERSIZE.rawValue where fromExternal: tooBigFromOutside(e)
        case NV_EXC_ROUTE_OUT.rawValue: routeToOutside(e)
        // From the uplink: a route-mode domain's packet that cannot leave; its VM is elsewhere.
        case NV_EXC_NO_ROUTE.rawValue where fromUplink: answerTenant(.noRoute, e)
        case NV_EXC_OVERSIZE.rawValue where fromUplink: answerTenant(.tooBig(mtu: Int(e.mtu)), e)
        default: return false
        }
        return true
    }

    /// A packet from outside, translated by XDP, did not fit the underlay once encapsulated.
    /// The outside host must hear "fragmentation needed" about the packet it sent (to the
    /// external address and port), from the external address, or its transfers stall.
    private func tooBigFromOutside(_ e: ExceptionFrame) {
        if let sn = maps.subnets.lookup(e.vsid), maps.gatewayDomains.lookup(sn.rdid) == NV_GW_ROUTE.rawValue {
            return tooBigRoutedFromOutside(e, sn)
        }
        guard let sn = maps.subnets.lookup(e.vsid), var pkt = ipv4(e.frame),
              let entry = table.outbound(rdid: sn.rdid, proto: pkt.proto, ca: pkt.destination, caPort: pkt.destinationPort,
                                         remote: pkt.source, remotePort: pkt.sourcePort),
              let record = maps.lookups.lookup(nv_lookup_key(vsid: e.vsid, ca: pkt.destination)) else {
            return count(NV_GW_DROP_UNSUPPORTED, e)
        }
        pkt.setDestination(entry.flow.ext, port: entry.flow.extPort)  // the packet as X sent it
        let mtu = NVGRE.customerMTU(underlayMTU: Int(e.mtu), outer: record.providerAddress.family)
        let frame = Ethernet.header(dst: sn.gatewayMAC, src: sn.gatewayMAC, type: EtherType.ipv4.rawValue) + pkt.bytes
        sendOutside(.tooBig(mtu: mtu), about: frame, from: entry.flow.ext, to: pkt.source, e)
    }

    /// The same for a route-mode domain: the packet kept its addresses, and the answer comes
    /// from the gateway's (first) external address.
    private func tooBigRoutedFromOutside(_ e: ExceptionFrame, _ sn: nv_subnet) {
        guard let f = DecodedFrame(e.frame), let src = f.dst.flatMap({ maps.lookups.lookup(nv_lookup_key(vsid: e.vsid, ca: $0)) }),
              let from = externalAddresses.first?.address, let outsider = f.src else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        let mtu = NVGRE.customerMTU(underlayMTU: Int(e.mtu), outer: src.providerAddress.family)
        sendOutside(.tooBig(mtu: mtu), about: e.frame, from: from, to: outsider, e)
    }

    /// Sends `error` about `frame` to a host outside, from `from`.
    private func sendOutside(_ error: ICMPError, about frame: [UInt8], from: IPAddress, to outsider: IPAddress, _ e: ExceptionFrame) {
        guard let answer = error.answer(to: frame, gatewayMAC: MACAddress([2, 0, 0, 0, 0, 0]), gateway: from) else {
            return count(NV_GW_DROP_UNSUPPORTED, e)  // no DF: XDP does not fragment
        }
        guard icmpLimit.allow() else { return }
        do { try outside.send(Array(answer.dropFirst(Ethernet.headerLength)), to: outsider) } catch { onEvent(.failed("\(error)")) }
    }

    // MARK: route mode (no NAT)

    /// A routed packet XDP could not send: its next hop is not resolved yet (the kernel
    /// resolves it when this sends the packet) or its TTL runs out here.
    private func routeToOutside(_ e: ExceptionFrame) {
        let ip = Array(e.frame.dropFirst(Ethernet.headerLength))
        guard e.originalLength <= e.frame.count, ip.count >= 20, ip[0] >> 4 == 4 else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        let destination = IPAddress(v4: Array(ip[16..<20]))
        if egress.verdict(destination: destination, proto: ip[9], port: 0, mode: .route, flowExists: false) != .out {
            return refuseInfrastructure(e)
        }
        guard ip[8] > 1 else { return count(NV_GW_DROP_TTL, e) }
        guard let packet = IPPacket.forwardedIPv4(ip) else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        do {
            try outside.send(packet, to: destination)
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
    private func answerTenant(_ error: ICMPError, _ e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let src = f.src, let dst = f.dst, let sn = maps.subnets.lookup(e.vsid),
              let vsid = subnet(of: src, in: sn.rdid), let vmSubnet = maps.subnets.lookup(vsid),
              let record = maps.lookups.lookup(nv_lookup_key(vsid: vsid, ca: src)),
              let route = maps.routes.lookup(nv_route_key(rdid: sn.rdid, prefix: dst, prefixLength: dst.bytes.count * 8)),
              let nextHop = route.nextHop else { return count(NV_GW_DROP_NO_RECORD, e) }
        guard let answer = error.answer(to: e.frame, gatewayMAC: vmSubnet.gatewayMAC, gateway: nextHop, vm: record.customerMAC) else {
            return count(NV_GW_DROP_UNSUPPORTED, e)  // not due (an ICMP error, or IPv4 without DF)
        }
        guard icmpLimit.allow() else { return }
        let proto = src.family == .v4 ? IPProtocol.icmp.rawValue : IPProtocol.icmpv6.rawValue
        _ = deliver(Array(answer.dropFirst(Ethernet.headerLength)), to: src, vsid: vsid,
                    hash: FlowHash(src: nextHop, dst: src, protocol: proto, sport: 0, dport: 0), e)
    }

    // MARK: tenant -> outside

    private func toOutside(_ e: ExceptionFrame) {
        guard let sn = maps.subnets.lookup(e.vsid), var pkt = ipv4(e.frame) else { return count(NV_GW_DROP_UNSUPPORTED, e) }
        let rdid = sn.rdid
        if subnet(of: pkt.destination, in: rdid) != nil { return count(NV_GW_DROP_INSIDE, e) }
        var entry = table.outbound(rdid: rdid, proto: pkt.proto, ca: pkt.source, caPort: pkt.sourcePort,
                                   remote: pkt.destination, remotePort: pkt.destinationPort)
        let verdict = egress.verdict(destination: pkt.destination, proto: pkt.proto, port: pkt.destinationPort, mode: .nat,
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
            try outside.send(pkt.bytes, to: pkt.destination)
            count(NV_GW_USERSPACE_OUT, e)
        } catch {
            onEvent(.failed("\(error)"))
        }
        observe(&flow, outbound: true, tcpFlags: pkt.tcpFlags)
    }

    private func newOutboundFlow(_ pkt: NATPacket, rdid: UInt32, _ e: ExceptionFrame) -> NATEntry? {
        guard let vsid = subnet(of: pkt.source, in: rdid) else { count(NV_GW_DROP_NO_RECORD, e); return nil }
        guard !externalAddresses.isEmpty else { count(NV_GW_PORTS_EXHAUSTED, e); return nil }
        var atShare = false
        // The same CA keeps the same external address while it has ports there.
        let hint = Int(pkt.source.bytes.reduce(rdid) { $0 &* 31 &+ UInt32($1) } % UInt32(externalAddresses.count))
        for i in 0..<externalAddresses.count {
            let ext = externalAddresses[(hint + i) % externalAddresses.count]
            if let share = natShares[rdid],
               table.ports.held(by: rdid, proto: pkt.proto, address: ext.address) >= natQuota(share: share, of: ext.natPorts) {
                atShare = true
                continue
            }
            guard let port = table.ports.allocate(proto: pkt.proto, address: ext.address, range: ext.natPorts, hint: Int.random(in: 0..<65536),
                                                  for: rdid) else { continue }
            let flow = NATFlow(proto: pkt.proto, rdid: rdid, vsid: vsid, ca: pkt.source, caPort: pkt.sourcePort, ext: ext.address,
                               extPort: port, remote: pkt.destination, remotePort: pkt.destinationPort)
            return create(flow, fromOutside: false, e)
        }
        count(NV_GW_PORTS_EXHAUSTED, e)
        countDomain(rdid, NV_DOM_PORTS_EXHAUSTED, e)
        onEvent(.exhausted(proto: pkt.proto, ca: pkt.source, rdid: rdid, share: atShare))
        return nil
    }

    // MARK: outside -> tenant

    private func fromOutside(_ e: ExceptionFrame) {
        guard let pkt = ipv4(e.frame) else { return icmpErrorFromOutside(e) }
        translateIn(pkt, e)
    }

    /// A packet to an external address (from outside, or a tenant's hairpin): to the flow's
    /// CA and port, or a new flow to a published service.
    private func translateIn(_ packet: NATPacket, _ e: ExceptionFrame) {
        var pkt = packet
        var entry = table.inbound(proto: pkt.proto, ext: pkt.destination, extPort: pkt.destinationPort,
                                  remote: pkt.source, remotePort: pkt.sourcePort)
        if entry == nil { entry = newServiceFlow(pkt, e) }
        guard var flow = entry else { return }
        guard pkt.decrementTTL() else { return count(NV_GW_DROP_TTL, e) }
        pkt.setDestination(flow.flow.ca, port: flow.flow.caPort)
        let hash = FlowHash(src: pkt.source, dst: pkt.destination, protocol: pkt.proto, sport: pkt.sourcePort, dport: pkt.destinationPort)
        if deliver(pkt.bytes, to: pkt.destination, vsid: flow.flow.vsid, hash: hash, e) { count(NV_GW_USERSPACE_IN, e) }
        observe(&flow, outbound: false, tcpFlags: pkt.tcpFlags)
    }

    /// An ICMP error about a packet of a flow (XDP checked that the flow exists): translated
    /// back for the VM. It does not refresh the flow.
    private func icmpErrorFromOutside(_ e: ExceptionFrame) {
        guard e.frame.count > Ethernet.headerLength, var error = NATICMPError(ip: Array(e.frame[Ethernet.headerLength...])),
              let entry = table.inbound(proto: error.quotedProto, ext: error.quotedSource, extPort: error.quotedSourcePort,
                                        remote: error.quotedDestination, remotePort: error.quotedDestinationPort) else {
            return count(NV_GW_DROP_UNSUPPORTED, e)
        }
        guard error.translate(toCA: entry.flow.ca, port: entry.flow.caPort) else { return count(NV_GW_DROP_TTL, e) }
        let hash = FlowHash(src: error.source, dst: entry.flow.ca, protocol: IPProtocol.icmp.rawValue, sport: 0, dport: 0)
        if deliver(error.bytes, to: entry.flow.ca, vsid: entry.flow.vsid, hash: hash, e) { count(NV_GW_USERSPACE_IN, e) }
    }

    /// A first packet to a published service (for TCP, a SYN) opens a flow.
    private func newServiceFlow(_ pkt: NATPacket, _ e: ExceptionFrame) -> NATEntry? {
        let key = nv_service_key(proto: pkt.proto, address: pkt.destination, port: pkt.destinationPort)
        guard let svc = maps.services.lookup(key),
              pkt.proto != IPProtocol.tcp.rawValue || pkt.tcpFlags & (NATPacket.syn | NATPacket.ack) == NATPacket.syn else {
            count(NV_GW_DROP_UNSUPPORTED, e)
            return nil
        }
        guard let vsid = subnet(of: svc.customerAddress, in: svc.rdid) else { count(NV_GW_DROP_NO_RECORD, e); return nil }
        let flow = NATFlow(proto: pkt.proto, rdid: svc.rdid, vsid: vsid, ca: svc.customerAddress, caPort: svc.customerPort,
                           ext: pkt.destination, extPort: pkt.destinationPort, remote: pkt.source, remotePort: pkt.sourcePort)
        return create(flow, fromOutside: true, e)
    }

    /// Sends an IP packet to the VM `vm`: inner Ethernet from the subnet's router MAC to the
    /// VM's, NVGRE to the VM's host (or straight to its port when it runs here).
    private func deliver(_ ip: [UInt8], to vm: IPAddress, vsid: UInt32, hash: FlowHash, _ e: ExceptionFrame) -> Bool {
        guard let record = maps.lookups.lookup(nv_lookup_key(vsid: vsid, ca: vm)),
              let sn = maps.subnets.lookup(vsid), let cfg = maps.config.lookup(0) else {
            count(NV_GW_DROP_NO_RECORD, e)
            return false
        }
        let type: EtherType = vm.family == .v4 ? .ipv4 : .ipv6
        let inner = Ethernet.header(dst: record.customerMAC, src: sn.gatewayMAC, type: type.rawValue) + ip
        do {
            if record.port_ifindex != 0 {
                try portSender.send(inner, ifindex: record.port_ifindex)
                return true
            }
            let pa = record.providerAddress
            guard let src = cfg.providerAddress(pa.family) else {
                onEvent(.failed("no \(pa.family) provider address to send from"))
                return false
            }
            let tos = vm.family == .v4 ? ip[1] : UInt8(truncatingIfNeeded: (UInt16(ip[0]) << 8 | UInt16(ip[1])) >> 4)
            let frame = NVGRE.encapsulate(inner: inner, vsid: vsid, hash: hash, tos: tos, outerSrcMAC: MACAddress([2, 0, 0, 0, 0, 0]),
                                          outerDstMAC: MACAddress([2, 0, 0, 0, 0, 0]), srcPA: src, dstPA: pa)
            try underlaySocket(pa.family).send(Array(frame.dropFirst(Ethernet.headerLength)), to: pa)
            return true
        } catch {
            onEvent(.failed("\(error)"))
            return false
        }
    }

    private func underlaySocket(_ family: IPFamily) throws -> RawIPSocket {
        if let s = underlay[family] { return s }
        let s = try RawIPSocket(family)
        underlay[family] = s
        return s
    }

    // MARK: flows

    /// Writes a new flow into both maps (nat_in first: a reply may come back at once),
    /// within its domain's share of the flow table.
    private func create(_ flow: NATFlow, fromOutside: Bool, _ e: ExceptionFrame) -> NATEntry? {
        if let share = natShares[flow.rdid], table.count(of: flow.rdid) >= natQuota(share: share, ofCount: Int(maps.natOut.maxEntries)) {
            if !fromOutside { table.ports.release(proto: flow.proto, address: flow.ext, port: flow.extPort) }
            count(NV_GW_FLOW_TABLE_FULL, e)
            countDomain(flow.rdid, NV_DOM_FLOW_SHARE_FULL, e)
            return nil
        }
        let now = monotonicNanoseconds()
        let flags = fromOutside ? UInt8(NV_NAT_SERVICE.rawValue) : 0
        let value = flow.value(flags: flags, lastSeenNanoseconds: now)
        do {
            try maps.natIn.update(flow.inKey, value)
            do { try maps.natOut.update(flow.outKey, value) } catch {
                _ = try? maps.natIn.delete(flow.inKey)
                throw error
            }
        } catch {
            table.ports.release(proto: flow.proto, address: flow.ext, port: flow.extPort)
            count(NV_GW_FLOW_TABLE_FULL, e)
            onEvent(.failed("flow \(Event.text(flow)) not written: \(error)"))
            return nil
        }
        let entry = NATEntry(flow: flow, flags: flags, fromOutside: fromOutside, lastSeen: now)
        table.insert(entry)
        add(NV_GW_FLOWS_CREATED, 1, 0)
        onEvent(.created(flow, service: fromOutside))
        return entry
    }

    /// Tracks how far a flow got; offloads it once established: TCP when the initiator
    /// acknowledges the responder's SYN+ACK, UDP and ICMP echo once both ways were seen.
    private func observe(_ e: inout NATEntry, outbound: Bool, tcpFlags: UInt8) {
        e.lastSeen = monotonicNanoseconds()
        if outbound { e.sawOutbound = true } else { e.sawInbound = true }
        if tcpFlags & NATPacket.fin != 0 { e.flags |= UInt8(NV_NAT_FIN.rawValue) }
        if tcpFlags & NATPacket.rst != 0 { e.flags |= UInt8(NV_NAT_RST.rawValue) }
        let fromInitiator = outbound != e.fromOutside
        let established: Bool
        if e.flow.proto == IPProtocol.tcp.rawValue {
            if !fromInitiator && tcpFlags & (NATPacket.syn | NATPacket.ack) == NATPacket.syn | NATPacket.ack { e.synAcked = true }
            established = fromInitiator && e.synAcked && tcpFlags & NATPacket.syn == 0
        } else {
            established = e.sawOutbound && e.sawInbound
        }
        // A hairpin flow (its remote is one of our external addresses) stays here both ways:
        // XDP would send it out of the external interface.
        let hairpin = externalAddresses.contains { $0.address == e.flow.remote }
        if established && !e.offloaded && !e.closing && !hairpin { offload(&e) }
        table.update(e)
    }

    private func offload(_ e: inout NATEntry) {
        let flags = e.flags | UInt8(NV_NAT_OFFLOADED.rawValue)
        let value = e.flow.value(flags: flags, lastSeenNanoseconds: e.lastSeen)
        do {
            try maps.natIn.update(e.flow.inKey, value, flags: UInt64(BPF_EXIST))
            try maps.natOut.update(e.flow.outKey, value, flags: UInt64(BPF_EXIST))
            e.flags = flags
            add(NV_GW_FLOWS_OFFLOADED, 1, 0)
            onEvent(.offloaded(e.flow))
        } catch {
            onEvent(.failed("flow \(Event.text(e.flow)) not offloaded: \(error)"))
        }
    }

    /// Removes flows idle longer than their timeout; what XDP saw counts as activity.
    /// Returns how many expired.
    @discardableResult
    public func expire(now: UInt64 = monotonicNanoseconds()) -> Int {
        var expired = 0
        for var e in table.all {
            var last = e.lastSeen
            for v in [maps.natOut.lookup(e.flow.outKey), maps.natIn.lookup(e.flow.inKey)].compactMap({ $0 }) {
                last = max(last, v.last_seen_ns)
                e.flags |= v.flags & UInt8(NV_NAT_FIN.rawValue | NV_NAT_RST.rawValue)
            }
            let idle = Double(now &- min(last, now)) / 1e9
            if idle <= NATTable.timeout(e, timeouts) {
                table.update(e)
                continue
            }
            _ = try? maps.natOut.delete(e.flow.outKey)
            _ = try? maps.natIn.delete(e.flow.inKey)
            table.remove(e.flow)
            expired += 1
            onEvent(.expired(e.flow))
        }
        if expired > 0 { add(NV_GW_FLOWS_EXPIRED, UInt64(expired), 0) }
        return expired
    }

    /// Reads the flows a previous gateway process left in the maps, so that they expire
    /// and keep their ports. Returns how many it found.
    @discardableResult
    public func recover() -> Int {
        var found = 0
        for key in maps.natOut.keys() {
            guard let v = maps.natOut.lookup(key) else { continue }
            let flow = NATFlow(v)
            guard let back = maps.natIn.lookup(flow.inKey) else {
                _ = try? maps.natOut.delete(key)  // half a flow: nothing can come back to it
                continue
            }
            var e = NATEntry(flow: flow, flags: v.flags | back.flags, fromOutside: v.flags & UInt8(NV_NAT_SERVICE.rawValue) != 0,
                             lastSeen: max(v.last_seen_ns, back.last_seen_ns))
            e.sawOutbound = e.offloaded
            e.sawInbound = e.offloaded
            e.synAcked = e.offloaded
            if !e.fromOutside { table.ports.claim(proto: flow.proto, address: flow.ext, port: flow.extPort, for: flow.rdid) }
            table.insert(e)
            found += 1
        }
        return found
    }

    // MARK: helpers

    /// The frame's IPv4 packet, when NAT can translate it.
    private func ipv4(_ frame: [UInt8]) -> NATPacket? {
        guard frame.count > Ethernet.headerLength, UInt16(frame[12]) << 8 | UInt16(frame[13]) == EtherType.ipv4.rawValue else { return nil }
        return NATPacket(ip: Array(frame[Ethernet.headerLength...]))
    }

    /// The VSID of the subnet of routing domain `rdid` that holds `address`, if any.
    private func subnet(of address: IPAddress, in rdid: UInt32) -> UInt32? {
        guard let r = maps.routes.lookup(nv_route_key(rdid: rdid, prefix: address, prefixLength: address.family == .v4 ? 32 : 128)),
              r.kind == NV_ROUTE_SUBNET.rawValue else { return nil }
        return r.vsid
    }

    private func count(_ c: nv_gw_counter, _ e: ExceptionFrame) { add(c, 1, UInt64(e.originalLength)) }

    /// A tenant's packet to an infrastructure address: dropped, counted for its domain.
    private func refuseInfrastructure(_ e: ExceptionFrame) {
        count(NV_GW_DROP_INFRA, e)
        if let sn = maps.subnets.lookup(e.vsid) { countDomain(sn.rdid, NV_DOM_USERSPACE_TO_INFRA, e) }
    }

    private func countDomain(_ rdid: UInt32, _ c: nv_domain_counter, _ e: ExceptionFrame) {
        let key = UInt64(rdid) << 32 | UInt64(c.rawValue)
        let old = pendingDomainCounts[key] ?? (0, 0)
        pendingDomainCounts[key] = (old.packets + 1, old.bytes + UInt64(e.originalLength))
    }

    private func add(_ c: nv_gw_counter, _ packets: UInt64, _ bytes: UInt64) {
        let old = pendingCounts[c.rawValue] ?? (0, 0)
        pendingCounts[c.rawValue] = (old.packets + packets, old.bytes + bytes)
    }

    /// Adds what this process counted to gw_stats (CPU 0's slots, which XDP never writes
    /// for these counters). Called between polls, not per packet.
    public func flushCounters() {
        for (c, v) in pendingCounts {
            var values = maps.gatewayStats.lookupPerCPU(c)
            guard !values.isEmpty else { continue }
            values[0].packets += v.packets
            values[0].bytes += v.bytes
            do { try maps.gatewayStats.updatePerCPU(c, values) } catch { onEvent(.failed("\(error)")) }
        }
        pendingCounts = [:]
        for (packed, v) in pendingDomainCounts {
            let key = nv_domain_counter_key(rdid: UInt32(packed >> 32), counter: UInt32(truncatingIfNeeded: packed))
            var values = maps.domainStats.lookupPerCPU(key)
            if values.isEmpty { values = Array(repeating: nv_reason_stats(), count: Int(libbpf_num_possible_cpus())) }
            values[0].packets += v.packets
            values[0].bytes += v.bytes
            do { try maps.domainStats.updatePerCPU(key, values) } catch { onEvent(.failed("\(error)")) }
        }
        pendingDomainCounts = [:]
    }
}
