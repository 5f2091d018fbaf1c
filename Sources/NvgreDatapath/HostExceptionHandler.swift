import CNvgre
import NvgreWire

/// What an ordinary host does with the frames its fast path hands up: count every reason,
/// start underlay neighbor resolution for NV_EXC_NO_NEIGH so that the next frames of the
/// flow are encapsulated by XDP, answer a packet too big for the underlay once
/// encapsulated (NV_EXC_OVERSIZE) with ICMP "fragmentation needed" or ICMPv6 "packet too
/// big" carrying the MTU that fits, and a packet the distributed router has no route for
/// (NV_EXC_NO_ROUTE) with ICMP "network unreachable" or ICMPv6 "no route to destination".
/// The gateway's own work is NvgreGateway's.
public final class HostExceptionHandler {
    /// Something the handler did or could not do, for a log line.
    public enum Event: CustomStringConvertible {
        case resolving(IPAddress, vsid: UInt32)
        case tooBig(vm: IPAddress, mtu: Int)
        case fragmented(vm: IPAddress, destination: IPAddress, fragments: Int)
        case noRoute(vm: IPAddress, destination: IPAddress)
        case failed(String)

        public var description: String {
            switch self {
            case let .resolving(pa, vsid):
                return "underlay neighbor \(pa) unresolved (VSID \(vsid)): resolution started"
            case let .tooBig(vm, mtu): return "\(vm) sent a packet too big for the underlay: told it MTU \(mtu)"
            case let .fragmented(vm, dst, n):
                return "\(vm) sent a packet to \(dst) too big for the underlay, without DF: sent in \(n) fragments"
            case let .noRoute(vm, dst):
                return "\(vm) sent a packet to \(dst), which no route covers: told it unreachable"
            case let .failed(why): return "could not handle an exception: \(why)"
            }
        }
    }

    private let policy: PolicyLookups
    private let resolver: NeighborResolver
    private let sender: PacketSocket
    /// ICMP errors sent to VMs, and the ones not due (IPv4 without DF for too big, errors
    /// about ICMP errors, no-route without a subnet gateway address); `icmpLimit` counts
    /// the ones it held back.
    public private(set) var icmpErrorsSent = 0
    public private(set) var icmpErrorsNotDue = 0
    /// Fragments of IPv4 packets without DF too big for the underlay, sent encapsulated.
    public private(set) var fragmentsSent = 0
    private var underlaySockets: [IPFamily: RawIPSocket] = [:]
    private let icmpLimit: ICMPRateLimit
    public private(set) var counts: [String: Int] = [:]
    /// Provider addresses whose resolution was started, each once (the set stays small:
    /// one entry per peer host).
    public private(set) var resolutions: Set<IPAddress> = []
    /// The last few failures (bounded: an agent runs for months).
    public private(set) var errors: [String] = []
    public var onEvent: (Event) -> Void = { _ in }

    /// Create it on a thread in the host's network namespace (the resolver's socket is).
    public convenience init(maps: DatapathMaps, icmpLimit: ICMPRateLimit = ICMPRateLimit()) throws {
        try self.init(policy: MapLookups(maps), icmpLimit: icmpLimit)
    }

    /// On the userspace path, the decision core's tables answer instead of the maps.
    public init(policy: PolicyLookups, icmpLimit: ICMPRateLimit = ICMPRateLimit()) throws {
        self.policy = policy
        self.icmpLimit = icmpLimit
        resolver = try NeighborResolver()
        sender = try PacketSocket()
    }

    public func handle(_ e: ExceptionFrame) {
        counts[e.reasonName, default: 0] += 1
        switch e.reason {
        case NV_EXC_NO_NEIGH: resolveUnderlayNeighbor(for: e)
        case NV_EXC_OVERSIZE: answerTooBig(e)
        case NV_EXC_NO_ROUTE: answerNoRoute(e)
        default: break
        }
    }

    /// `e.mtu` is the underlay route's MTU; the customer packet may use what is left after
    /// the outer IP header, GRE and the inner Ethernet header. The outer family is the
    /// destination record's PA family (with no record to say, the host's own PA family
    /// decides, IPv6 when it has both, the smaller answer). IPv4 without DF is fragmented
    /// here, as a router would, and each fragment encapsulated; everything else hears the MTU.
    private func answerTooBig(_ e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let dst = f.dst else {
            fail("oversize exception in VSID \(e.vsid) without a decodable frame")
            return
        }
        let record = destinationRecord(vsid: e.vsid, dst: dst)
        let outerV6: Bool
        if let record {
            outerV6 = record.providerAddress.family == .v6
        } else {
            outerV6 = policy.hostConfig?.has(NV_CFG_HAS_PA6) ?? false
        }
        let mtu = NVGRE.customerMTU(underlayMTU: Int(e.mtu), outer: outerV6 ? .v6 : .v4)
        if let record, mayFragment(f, e) {
            return fragmentAndSend(e, f, record: record, mtu: mtu)
        }
        if sendToVM(.tooBig(mtu: mtu), about: e, f), let src = f.src { onEvent(.tooBig(vm: src, mtu: mtu)) }
    }

    /// The record a frame of VSID `vsid` to `dst` is encapsulated toward: the destination's,
    /// or, behind a customer route, its next hop's.
    private func destinationRecord(vsid: UInt32, dst: IPAddress) -> nv_lookup_val? {
        if let r = policy.record(vsid: vsid, ca: dst) { return r }
        guard let sn = policy.subnet(vsid), let route = policy.route(rdid: sn.rdid, to: dst),
            route.routeKind == NV_ROUTE_CUSTOMER, let nextHop = route.nextHop
        else { return nil }
        return policy.record(vsid: route.vsid, ca: nextHop)
    }

    /// IPv4 without DF, all of it in the exception (frames past the snap length are not).
    private func mayFragment(_ f: DecodedFrame, _ e: ExceptionFrame) -> Bool {
        guard f.etherType == EtherType.ipv4.rawValue, e.frame.count == e.originalLength,
            e.frame.count > f.l3Offset + 6
        else { return false }
        return e.frame[f.l3Offset + 6] & 0x40 == 0
    }

    /// Cuts the customer packet into fragments that fit `mtu` and sends each, under the
    /// frame's own Ethernet header, NVGRE-encapsulated to the record's PA with the FlowID of
    /// the whole packet's flow.
    private func fragmentAndSend(_ e: ExceptionFrame, _ f: DecodedFrame, record: nv_lookup_val, mtu: Int) {
        let ethernet = Array(e.frame[0..<f.l3Offset])
        // From a VM with checksum offload the TCP/UDP checksum may be a pseudo-header sum only.
        let packet = completingTransportChecksum(ofIPv4: Array(e.frame[f.l3Offset...]))
        guard let src = f.src, let dst = f.dst, let fragments = IPv4Fragmenter.fragments(of: packet, mtu: mtu),
            let cfg = policy.hostConfig, let srcPA = cfg.providerAddress(record.providerAddress.family)
        else {
            icmpErrorsNotDue += 1
            return
        }
        // The FlowID of the whole packet's flow (ports of TCP and UDP, as the fast path hashes them).
        let proto = f.ipProtocol ?? 0
        let hasPorts = (proto == IPProtocol.tcp.rawValue || proto == IPProtocol.udp.rawValue) && packet.count >= 24
        let port = { (i: Int) -> UInt16 in hasPorts ? UInt16(packet[20 + i]) << 8 | UInt16(packet[21 + i]) : 0 }
        let hash = FlowHash(src: src, dst: dst, protocol: proto, sport: port(0), dport: port(2))
        do {
            for fragment in fragments {
                let frame = NVGRE.encapsulate(
                    inner: ethernet + fragment, vsid: e.vsid, hash: hash, tos: packet[1],
                    outerSrcMAC: MACAddress([2, 0, 0, 0, 0, 0]),
                    outerDstMAC: MACAddress([2, 0, 0, 0, 0, 0]), srcPA: srcPA, dstPA: record.providerAddress,
                    sendFlowID: record.sendsFlowID)
                try underlay(record.providerAddress.family).send(
                    Array(frame.dropFirst(Ethernet.headerLength)), to: record.providerAddress)
            }
            fragmentsSent += fragments.count
            onEvent(.fragmented(vm: src, destination: dst, fragments: fragments.count))
        } catch {
            fail("\(error)")
        }
    }

    private func underlay(_ family: IPFamily) throws -> RawIPSocket {
        if let s = underlaySockets[family] { return s }
        let s = try RawIPSocket(family)
        underlaySockets[family] = s
        return s
    }

    /// The frame is as the VM sent it (the router hands it up before rewriting anything).
    private func answerNoRoute(_ e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let src = f.src, let dst = f.dst else {
            fail("no-route exception in VSID \(e.vsid) without a decodable frame")
            return
        }
        if sendToVM(.noRoute, about: e, f) { onEvent(.noRoute(vm: src, destination: dst)) }
    }

    /// Sends `error` about the exception's frame (decoded: `f`) back out of the port it came
    /// in on, from the VM's subnet gateway. True when sent.
    private func sendToVM(_ error: ICMPError, about e: ExceptionFrame, _ f: DecodedFrame) -> Bool {
        guard let dst = f.dst, let sn = policy.subnet(e.vsid) else {
            fail("\(e.reasonName) exception in VSID \(e.vsid) without a subnet")
            return false
        }
        let gateway: IPAddress? = dst.family == .v4 ? sn.gateway4 : sn.gateway6
        // A routed packet carries the router's MACs by now: the VM is the one on the port.
        // Answers go only to a VM port, never out of the uplink or to the host's stack.
        guard let port = policy.port(e.ingressIfindex) else {
            fail("\(e.reasonName) exception from interface \(e.ingressIfindex), which is no VM port: not answered")
            return false
        }
        let vm = MACAddress(bytes(of: port.mac, count: 6))
        guard let answer = error.answer(to: e.frame, gatewayMAC: sn.gatewayMAC, gateway: gateway, vm: vm) else {
            icmpErrorsNotDue += 1
            return false
        }
        guard icmpLimit.allow() else { return false }
        do {
            try sender.send(answer, ifindex: e.ingressIfindex)
            icmpErrorsSent += 1
            return true
        } catch {
            fail("\(error)")
            return false
        }
    }

    /// The frame is the customer frame; its lookup record names the PA to resolve.
    private func resolveUnderlayNeighbor(for e: ExceptionFrame) {
        guard let f = DecodedFrame(e.frame), let dst = f.dst,
            let record = policy.record(vsid: e.vsid, ca: dst),
            let cfg = policy.hostConfig
        else {
            fail("no-neighbor exception in VSID \(e.vsid) without a usable lookup record")
            return
        }
        do {
            try resolver.resolve(record.providerAddress, ifindex: cfg.uplink_ifindex)
            if resolutions.insert(record.providerAddress).inserted {
                onEvent(.resolving(record.providerAddress, vsid: e.vsid))
            }
        } catch {
            fail("\(error)")
        }
    }

    /// Asks the kernel to resolve (or keep fresh) every remote provider address that a
    /// lookup record names, so that XDP finds them resolved: its lookups do not refresh
    /// neighbor entries, and the frame that meets an unresolved one goes to userspace and is
    /// lost. Returns the addresses it asked for.
    @discardableResult
    public func refreshUnderlayNeighbors() throws -> Set<IPAddress> {
        guard let cfg = policy.hostConfig, cfg.uplink_ifindex != 0 else { return [] }
        let remote = try policy.remoteProviderAddresses()
        var failed: [String] = []
        for pa in remote {
            do { try resolver.resolve(pa, ifindex: cfg.uplink_ifindex) } catch { failed.append("\(error)") }
        }
        // One line for the round, not one per address (thousands of PAs, a full neighbor table).
        if let first = failed.first {
            fail(
                failed.count == 1
                    ? first : "\(failed.count) of \(remote.count) provider addresses not resolved; the first: \(first)")
        }
        return remote
    }

    private func fail(_ why: String) {
        errors.append(why)
        if errors.count > 32 { errors.removeFirst() }
        onEvent(.failed(why))
    }
}

/// At most `perSecond` ICMP errors a second, `burst` at once (RFC 1812 4.3.2.8, RFC 4443
/// 2.4(f)): a VM that floods unroutable packets does not get a flood back. One per process,
/// shared by everything in it that answers (the host handler and the gateway).
public final class ICMPRateLimit {
    public let perSecond: Double
    public let burst: Double
    private var tokens: Double
    private var last: Double?
    /// Answers held back.
    public private(set) var limited = 0

    public init(perSecond: Double = 1000, burst: Double = 50) {
        self.perSecond = perSecond
        self.burst = burst
        tokens = burst
    }

    /// True when an answer may go now.
    public func allow(now: Double = monotonicSeconds()) -> Bool {
        if let last { tokens = min(burst, tokens + (now - last) * perSecond) }
        last = now
        guard tokens >= 1 else {
            limited += 1
            return false
        }
        tokens -= 1
        return true
    }
}
