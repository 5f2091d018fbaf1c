import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreUserspace
import NvgreUserspaceIO
import NvgreWire

/// Where a traced frame enters the data path.
public enum TraceIngress: Equatable, Sendable {
    case port(String)
    case uplink
}

/// A frame described in a few words (`nvgre trace --port p1 --dst 198.19.1.2 --proto tcp`).
public struct TraceFrameSpec: Sendable {
    public var ingress: TraceIngress
    public var dst: IPAddress
    public var src: IPAddress?
    public var proto = TraceProtocol.icmp
    public var dport: UInt16?
    public var payloadBytes = 32
    public var vsid: UInt32?  // from the uplink: the frame's VSID
    public var outerSource: IPAddress?  // from the uplink: default, the PA of the source CA's record
    public var dstMAC: MACAddress?

    public init(ingress: TraceIngress, dst: IPAddress) {
        self.ingress = ingress
        self.dst = dst
    }
}

/// What a described frame carries.
public enum TraceProtocol: String, CaseIterable, Sendable {
    case icmp, tcp, udp, arp, nd
}

/// What the program decided for a frame (its trace record's kind).
public enum TraceDecision: String, Sendable {
    case forward, reply, pass, drop, exception, flood, unknown
}

/// What the program did with one frame.
public struct TraceOutcome {
    public var input: [UInt8]
    public var hook: Hook  // a port's frames run the tc program, the uplink's XDP
    public var verdict: UInt32
    public var kind: TraceDecision
    public var reason: String?  // drop or exception reason name
    public var egressIfindex: UInt32?
    public var egressName: String?
    public var vsid: UInt32?
    /// A flood from a VM: the copies it would make (to ports here and to PAs); tracing sends none.
    public var copies: Int?
    public var output: [UInt8]

    public var verdictName: String {
        if hook == .tc {
            switch Int32(bitPattern: verdict) {
            case TC_ACT_OK: return "TC_ACT_OK"
            case TC_ACT_SHOT: return "TC_ACT_SHOT"
            case TC_ACT_REDIRECT: return "TC_ACT_REDIRECT"
            default: return "verdict \(verdict)"
            }
        }
        switch verdict {
        case UInt32(XDP_ABORTED.rawValue): return "XDP_ABORTED"
        case UInt32(XDP_DROP.rawValue): return "XDP_DROP"
        case UInt32(XDP_PASS.rawValue): return "XDP_PASS"
        case UInt32(XDP_TX.rawValue): return "XDP_TX"
        case UInt32(XDP_REDIRECT.rawValue): return "XDP_REDIRECT"
        default: return "verdict \(verdict)"
        }
    }
}

/// Runs frames through the real XDP programs with BPF_PROG_TEST_RUN, in a private load with
/// tracing on: either on a running instance's policy maps (its counters are not touched),
/// or on maps programmed from a policy file, with nothing attached or pinned.
public final class Tracer {
    /// The programs (a private tracing load), or on a userspace instance its decision core.
    let dp: Datapath?
    let core: DecisionCore?
    public let policy: Policy
    let ifindexOf: [String: UInt32]
    let nameOf: [UInt32: String]
    let uplinkIfindex: UInt32
    /// Whether the decisions are the userspace data path's (a userspace instance).
    public var isUserspace: Bool { dp == nil }
    /// True when interfaces of the policy do not exist here and stand-ins are used.
    public private(set) var standIns: [String] = []

    /// Traces against a running instance.
    public init(instance: Instance) throws {
        var options = LoadOptions()
        options.trace = true
        options.policyMapsFrom = instance.maps
        options.exceptionRingBytes = 1 << 16
        dp = try Datapath(options: options)
        core = nil
        policy = try instance.livePolicy()
        var byName: [String: UInt32] = [instance.settings.uplink: instance.settings.uplinkIfindex]
        for p in policy.ports { if let i = existingInterfaceIndex(p.interface) { byName[p.interface] = i } }
        ifindexOf = byName
        nameOf = Dictionary(byName.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        uplinkIfindex = instance.settings.uplinkIfindex
    }

    /// Traces against a policy file: interfaces that do not exist here get stand-in
    /// indexes (the entry port the loopback's, which test-run needs to exist).
    public init(policy: Policy, entering ingress: TraceIngress) throws {
        self.policy = try policy.validated()
        var byName: [String: UInt32] = [:]
        var next: UInt32 = 0x7fff_0000
        var standIns: [String] = []
        let uplinkName = policy.providerAddresses.first?.interface ?? "uplink"
        for name in [uplinkName] + policy.ports.map(\.interface) where byName[name] == nil {
            if let i = existingInterfaceIndex(name) {
                byName[name] = i
            } else {
                let entering = ingress == .port(name) || (ingress == .uplink && name == uplinkName)
                byName[name] = entering ? 1 : next
                if !entering { next += 1 }
                standIns.append(name)
            }
        }
        ifindexOf = byName
        nameOf = Dictionary(byName.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        uplinkIfindex = byName[uplinkName]!
        self.standIns = standIns
        var options = LoadOptions()
        options.trace = true
        options.exceptionRingBytes = 1 << 16
        options.maxLookups = UInt32(max(1024, policy.lookupRecords.count))
        let dp = try Datapath(options: options)
        self.dp = dp
        core = nil
        let ctx = CompileContext(uplinkIfindex: uplinkIfindex, ifindex: { byName[$0] })
        let compiled = try PolicyCompiler.compile(self.policy, ctx)
        try MapTransaction(maps: dp.maps).apply(MapPlan(live: [:], desired: compiled.images))
    }

    /// Traces against a userspace instance: its decision core on its stored policy, the
    /// underlay as the kernel has it. No BPF involved, nothing sent.
    public init(userspace instance: UserspaceInstance) throws {
        policy = try instance.storedPolicy()
        let compiled = try instance.compile(policy)
        var byName: [String: UInt32] = [:]
        for name in [instance.uplink] + policy.ports.map(\.interface) {
            if let i = existingInterfaceIndex(name) { byName[name] = i }
        }
        ifindexOf = byName
        nameOf = Dictionary(byName.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        uplinkIfindex = byName[instance.uplink] ?? 0
        dp = nil
        core = DecisionCore(tables: compiled.decisionTables, underlay: try KernelUnderlay())
    }

    public func run(_ frame: [UInt8], entering ingress: TraceIngress) throws -> TraceOutcome {
        let program: Program
        let idx: UInt32
        switch ingress {
        case let .port(name):
            guard let i = ifindexOf[name], policy.ports.contains(where: { $0.interface == name }) else {
                throw PolicyErrors(errors: [
                    PolicyError(
                        "port", name, "a port of the policy (\(policy.ports.map(\.interface).joined(separator: ", ")))")
                ])
            }
            (program, idx) = (.fromVM, i)
        case .uplink:
            (program, idx) = (.fromFabric, uplinkIfindex)
        }
        guard let dp else { return coreOutcome(frame, program: program, ingress: idx) }
        let r = try dp.testRun(program, frame: frame, ingressIfindex: idx)
        var out = TraceOutcome(input: frame, hook: program.hook, verdict: r.verdict, kind: .unknown, output: r.output)
        if let t = r.trace {
            switch t.traceKind {
            case NV_TRACE_FORWARD:
                out.kind = .forward
                out.egressIfindex = t.egress_ifindex
                out.egressName = nameOf[t.egress_ifindex] ?? interfaceName(t.egress_ifindex)
            case NV_TRACE_REPLY: out.kind = .reply
            case NV_TRACE_PASS: out.kind = .pass
            case NV_TRACE_DROP:
                out.kind = .drop
                out.reason = ReasonNames.drop(t.dropReason)
            case NV_TRACE_EXCEPTION:
                out.kind = .exception
                out.reason = ReasonNames.exception(t.exceptionReason)
            case NV_TRACE_FLOOD:
                out.kind = .flood
                out.copies = Int(t.code)
            default: break
            }
            if t.vsid != 0 { out.vsid = t.vsid }
        }
        return out
    }

    /// The decision core's verdict as a trace outcome, with the verdict the program would
    /// return for it.
    func coreOutcome(_ frame: [UInt8], program: Program, ingress: UInt32) -> TraceOutcome {
        let fromVM = program == .fromVM
        let o = fromVM ? core!.fromVM(frame, ingress: ingress) : core!.fromFabric(frame)
        func verdict(tc: Int32, xdp: xdp_action) -> UInt32 { fromVM ? UInt32(bitPattern: tc) : UInt32(xdp.rawValue) }
        var out = TraceOutcome(input: frame, hook: program.hook, verdict: 0, kind: .unknown, output: frame)
        switch o.verdict {
        case let .forward(egress, bytes):
            (out.kind, out.output, out.egressIfindex) = (.forward, bytes, egress)
            out.egressName = nameOf[egress] ?? interfaceName(egress)
            out.verdict = verdict(tc: TC_ACT_REDIRECT, xdp: XDP_REDIRECT)
        case let .reply(bytes):
            (out.kind, out.output) = (.reply, bytes)
            out.verdict = verdict(tc: TC_ACT_REDIRECT, xdp: XDP_TX)
        case .pass:
            out.kind = .pass
            out.verdict = verdict(tc: TC_ACT_OK, xdp: XDP_PASS)
        case let .drop(reason):
            (out.kind, out.reason) = (.drop, ReasonNames.drop(reason))
            out.verdict = verdict(tc: TC_ACT_SHOT, xdp: XDP_DROP)
        case let .exception(reason, vsid, _, _):
            (out.kind, out.reason, out.vsid) = (.exception, ReasonNames.exception(reason), vsid)
            out.verdict = verdict(tc: TC_ACT_SHOT, xdp: XDP_DROP)
        case let .flood(copies):
            (out.kind, out.copies) = (.flood, copies)
            out.vsid = core!.tables.ports[ingress]?.vsid
            out.verdict = verdict(tc: TC_ACT_SHOT, xdp: XDP_DROP)
        case let .floodUp(vsid, bytes):
            (out.kind, out.vsid, out.output) = (.flood, vsid, bytes)
            out.verdict = verdict(tc: TC_ACT_OK, xdp: XDP_PASS)
        }
        if out.vsid == nil, case .forward = o.verdict {
            out.vsid = fromVM ? core!.tables.ports[ingress]?.vsid : nil
        }
        return out
    }

    // MARK: frames from a description

    public func frame(_ spec: TraceFrameSpec) throws -> [UInt8] {
        func bad(_ field: String, _ value: String, _ allowed: String) -> PolicyErrors {
            PolicyErrors(errors: [PolicyError(field, value, allowed)])
        }
        if spec.proto == .arp && spec.dst.family != .v4 {
            throw bad("dst", "\(spec.dst)", "an IPv4 address (ARP); use protocol nd for IPv6")
        }
        if spec.proto == .nd && spec.dst.family != .v6 {
            throw bad("dst", "\(spec.dst)", "an IPv6 address (neighbor discovery)")
        }
        func record(_ vsid: UInt32, _ ca: IPAddress) -> LookupRecord? {
            policy.lookupRecords.first { $0.vsid == vsid && $0.customerAddress == ca }
        }
        switch spec.ingress {
        case let .port(name):
            guard let port = policy.ports.first(where: { $0.interface == name }) else {
                throw bad(
                    "port", name, "a port of the policy (\(policy.ports.map(\.interface).joined(separator: ", ")))")
            }
            guard let src = spec.src ?? port.addresses.first(where: { $0.family == spec.dst.family }) else {
                throw bad("src", "", "an \(spec.dst.family) source address (port \(name) has none)")
            }
            if src.family != spec.dst.family {
                throw bad("src", "\(src)", "an \(spec.dst.family) address, like the destination")
            }
            let subnet = policy.subnets.first { $0.vsid == port.vsid }
            let inSubnet = subnet?.prefixes.contains { $0.contains(spec.dst) } ?? false
            let dstMAC =
                spec.dstMAC ?? (inSubnet ? record(port.vsid, spec.dst)?.mac : nil) ?? subnet?.gatewayMAC ?? .broadcast
            return customerFrame(spec, src: src, srcMAC: port.mac, dstMAC: dstMAC)
        case .uplink:
            guard let vsid = spec.vsid else {
                throw bad("vsid", "", "the VSID of the NVGRE frame (required from the uplink)")
            }
            guard let src = spec.src else {
                throw bad("src", "", "the inner source customer address (required from the uplink)")
            }
            if src.family != spec.dst.family {
                throw bad("src", "\(src)", "an \(spec.dst.family) address, like the destination")
            }
            let srcRecord = record(vsid, src)
            guard let outerSrc = spec.outerSource ?? srcRecord?.providerAddress else {
                throw bad(
                    "outerSource", "",
                    "the sender's provider address (no lookup record for \(src) in VSID \(vsid) names one)")
            }
            guard
                let outerDst = policy.providerAddresses.first(where: { $0.address.family == outerSrc.family })?.address
            else {
                throw bad("outerSource", "\(outerSrc)", "an address of a family this host has a provider address in")
            }
            let dstMAC =
                spec.dstMAC ?? record(vsid, spec.dst)?.mac ?? policy.subnets.first { $0.vsid == vsid }?.gatewayMAC
                ?? .broadcast
            let inner = customerFrame(
                spec, src: src, srcMAC: srcRecord?.mac ?? MACAddress([2, 0, 0, 0, 0, 1]), dstMAC: dstMAC)
            let d = DecodedFrame(inner)
            let hash = FlowHash(src: src, dst: spec.dst, protocol: d?.ipProtocol ?? 0)
            return NVGRE.encapsulate(
                inner: inner, vsid: vsid, hash: hash, outerSrcMAC: MACAddress([2, 0, 0, 0, 0, 0xfe]),
                outerDstMAC: MACAddress([2, 0, 0, 0, 0, 0xfd]), srcPA: outerSrc, dstPA: outerDst)
        }
    }

    private func customerFrame(_ spec: TraceFrameSpec, src: IPAddress, srcMAC: MACAddress, dstMAC: MACAddress)
        -> [UInt8]
    {
        let data = [UInt8](repeating: 0x5a, count: spec.payloadBytes)
        let ethType: EtherType = src.family == .v4 ? .ipv4 : .ipv6
        switch spec.proto {
        case .arp:
            return Ethernet.frame(
                dst: .broadcast, src: srcMAC, type: .arp,
                payload: ARP.packet(
                    op: 1, senderMAC: srcMAC, senderIP: src, targetMAC: MACAddress([0, 0, 0, 0, 0, 0]),
                    targetIP: spec.dst))
        case .nd:
            let (group, groupMAC) = ICMPv6.solicitedNode(spec.dst)
            let icmp = ICMPv6.neighborSolicitation(target: spec.dst, sourceMAC: srcMAC, src: src, dst: group)
            let ip = IPv6Header(
                src: src, dst: group, nextHeader: IPProtocol.icmpv6.rawValue, payloadLength: icmp.count, hopLimit: 255
            ).bytes
            return Ethernet.frame(dst: groupMAC, src: srcMAC, type: .ipv6, payload: ip + icmp)
        case .tcp:
            let l4 = TCP.segment(src: src, dst: spec.dst, sport: 40000, dport: spec.dport ?? 80)
            return Ethernet.frame(
                dst: dstMAC, src: srcMAC, type: ethType,
                payload: IPPacket.build(src: src, dst: spec.dst, proto: IPProtocol.tcp.rawValue, payload: l4))
        case .udp:
            let l4 = UDP.datagram(src: src, dst: spec.dst, sport: 40000, dport: spec.dport ?? 53, payload: data)
            return Ethernet.frame(
                dst: dstMAC, src: srcMAC, type: ethType,
                payload: IPPacket.build(src: src, dst: spec.dst, proto: IPProtocol.udp.rawValue, payload: l4))
        case .icmp:
            let l4 =
                src.family == .v4
                ? ICMP.echoRequest(id: 1, sequence: 1, payload: data)
                : ICMPv6.echoRequest(id: 1, sequence: 1, payload: data, src: src, dst: spec.dst)
            let proto = src.family == .v4 ? IPProtocol.icmp.rawValue : IPProtocol.icmpv6.rawValue
            return Ethernet.frame(
                dst: dstMAC, src: srcMAC, type: ethType,
                payload: IPPacket.build(src: src, dst: spec.dst, proto: proto, payload: l4))
        }
    }
}
