import CNvgre
import Foundation
import NvgreDatapath
import NvgreGateway
import NvgrePolicy
import NvgreUserspace
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// The userspace data path's loop: frames from the uplink's and the ports' packet rings go
/// through the decision core and out as its verdicts say. The kernel sees every frame too
/// (a packet socket only taps): raw GRE sockets keep it from answering NVGRE to our PAs
/// with "protocol unreachable". Exceptions go to the same handler an XDP host's agent runs.
///
/// First slice of issue 18: one thread, a copy per frame, TCP and UDP GSO frames from VMs
/// cut into segments here.
public final class UserspaceForwarder: @unchecked Sendable {
    private let lock = NSLock()
    private var core: DecisionCore
    private let uplink: PacketRing
    private var ports: [UInt32: PacketRing]
    private let underlay: KernelUnderlay
    private let greSockets: [Int32]
    private var counters: [Counter: UInt64] = [:]
    /// The exception path, as on an XDP host: ICMP "too big" and "no route" answers, IPv4
    /// fragmentation without DF, underlay neighbor resolution, on the same tables.
    private let lookups: TableLookups
    private let exceptions: HostExceptionHandler
    /// On a gateway host: the gateway engine (NAT, published services, route mode) on its
    /// in-memory maps, and the external interface's ring.
    private let gateway: (engine: Gateway, maps: UserspaceGatewayMaps, external: PacketRing)?
    private var pendingGatewaySettings: GatewaySettings?

    /// What a gateway host's engine needs beyond the tables (the policy's gateway section).
    public struct GatewaySettings: Sendable {
        public var externalAddresses: [ExternalAddress]
        public var natShares: [UInt32: UInt32]
        public var timeouts: NATTimeouts

        public init(externalAddresses: [ExternalAddress], natShares: [UInt32: UInt32], timeouts: NATTimeouts) {
            self.externalAddresses = externalAddresses
            self.natShares = natShares
            self.timeouts = timeouts
        }
    }

    /// Opens the rings; call on a thread in the host's network namespace. With `gateway`
    /// (and an external interface in the tables' config) it is a gateway host.
    public init(
        tables: DecisionTables, uplinkIfindex: UInt32, portIfindexes: [UInt32],
        gateway settings: GatewaySettings? = nil,
        gatewayEvents: @escaping (Gateway.Event) -> Void = { _ in }
    ) throws {
        underlay = try KernelUnderlay()
        core = DecisionCore(tables: tables, underlay: underlay)
        lookups = TableLookups(tables)
        exceptions = try HostExceptionHandler(policy: lookups)
        if let settings, let ext = tables.config?.external_ifindex, ext != 0 {
            let maps = UserspaceGatewayMaps(lookups)
            let hosts = HostAddressCache()
            let engine = Gateway(
                maps: maps,
                sender: try SocketGatewaySender(externalInterface: settings.externalAddresses.first?.interface),
                externalAddresses: settings.externalAddresses, timeouts: settings.timeouts,
                natShares: settings.natShares, isHostAddress: { hosts.contains($0) }, clock: monotonicNanoseconds)
            engine.offloads = false
            engine.onEvent = gatewayEvents
            gateway = (engine, maps, try PacketRing(ifindex: ext))
            core.flows = maps
        } else {
            gateway = nil
        }
        uplink = try PacketRing(ifindex: uplinkIfindex)
        try uplink.attachFilter(UplinkFilter.program(localPAs: Array(tables.localPAs)))
        var rings: [UInt32: PacketRing] = [:]
        for p in portIfindexes { rings[p] = try PacketRing(ifindex: p, vnetHeader: true) }
        ports = rings
        greSockets = [AF_INET, AF_INET6].map { socket($0, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 47) }
        underlay.prime(Self.remotePAs(tables))
    }

    /// The PAs the policy sends to: every record's that is not this host's.
    static func remotePAs(_ t: DecisionTables) -> [IPAddress] {
        Array(Set(t.records.values.map(\.providerAddress)).subtracting(t.localPAs))
    }

    deinit { greSockets.filter { $0 >= 0 }.forEach { close($0) } }

    /// New tables (a policy change): frames after this call are decided on them.
    public func setTables(_ tables: DecisionTables) {
        lock.lock()
        let pasChanged = core.tables.localPAs != tables.localPAs
        core.tables = tables
        lock.unlock()
        if pasChanged { try? uplink.attachFilter(UplinkFilter.program(localPAs: Array(tables.localPAs))) }
        lookups.tables = tables
        underlay.prime(Self.remotePAs(tables))
    }

    /// A changed gateway section of the policy: taken between frames.
    public func setGatewaySettings(_ settings: GatewaySettings) {
        lock.lock()
        pendingGatewaySettings = settings
        lock.unlock()
    }

    /// Every counter moved so far.
    public func counterSnapshot() -> [Counter: UInt64] {
        lock.lock()
        defer { lock.unlock() }
        return counters
    }

    /// The gateway engine's counts and flows, on a gateway host.
    public var gatewaySnapshot:
        (
            gateway: [nv_gw_counter: (packets: UInt64, bytes: UInt64)],
            domains: [DomainCounter: (packets: UInt64, bytes: UInt64)], flows: Int
        )?
    { gateway?.maps.snapshot() }

    /// Forwards until `stop()` returns true (checked at least every `tick` seconds); the
    /// underlay is looked up again every half second.
    public func run(tick: Double = 0.1, stop: () -> Bool) {
        let rings = [uplink] + ports.values.sorted { $0.ifindex < $1.ifindex } + (gateway.map { [$0.external] } ?? [])
        var fds = rings.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var lastRefresh = Date(), lastSecond = Date()
        while !stop() {
            _ = poll(&fds, nfds_t(fds.count), Int32(tick * 1000))
            uplink.drain { frame in self.handle(Array(frame.bytes), from: nil) }
            if let gateway {
                gateway.external.drain { frame in
                    self.handle(Array(frame.bytes), from: nil, fromExternal: gateway.external.ifindex)
                }
            }
            for ring in ports.values {
                ring.drain { frame in
                    for bytes in Self.wireFrames(frame) {
                        self.handle(bytes, from: ring.ifindex, truncated: frame.truncated)
                    }
                }
            }
            if Date().timeIntervalSince(lastRefresh) > 0.5 {
                underlay.refresh()
                lastRefresh = Date()
            }
            if let engine = gateway?.engine {
                applyGatewaySettings(engine)
                engine.afterPoll()
                if Date().timeIntervalSince(lastSecond) >= 1 {
                    engine.everySecond()
                    lastSecond = Date()
                }
            }
        }
    }

    private func applyGatewaySettings(_ engine: Gateway) {
        lock.lock()
        let pending = pendingGatewaySettings
        pendingGatewaySettings = nil
        lock.unlock()
        guard let pending else { return }
        engine.externalAddresses = pending.externalAddresses
        engine.natShares = pending.natShares
        engine.timeouts = pending.timeouts
    }

    /// What a VM's frame is on a wire: a TCP or UDP GSO frame cut into its segments, a
    /// partial checksum completed. A GSO frame of another kind is dropped.
    static func wireFrames(_ frame: PacketRing.Frame) -> [[UInt8]] {
        let bytes = Array(frame.bytes)
        if let v = frame.vnet, v.gsoType != VirtioNetHeader.gsoNone {
            let size = Int(v.gsoSize)
            switch v.gsoType {
            case VirtioNetHeader.gsoTCPv4, VirtioNetHeader.gsoTCPv6:
                return TCPSegmenter.segments(ofFrame: bytes, gsoSize: size) ?? []
            case VirtioNetHeader.gsoUDPL4:
                return UDPSegmenter.segments(ofFrame: bytes, gsoSize: size) ?? []
            default:
                return []
            }
        }
        if frame.checksumNotReady || (frame.vnet?.flags ?? 0) & VirtioNetHeader.needsChecksum != 0 {
            return [completingTransportChecksum(ofFrame: bytes)]
        }
        return [bytes]
    }

    private func handle(_ frame: [UInt8], from port: UInt32?, truncated: Bool = false, fromExternal: UInt32? = nil) {
        lock.lock()
        let core = self.core
        lock.unlock()
        func decide() -> Outcome {
            if truncated {
                return Outcome(.drop(NV_DROP_GSO_UNSUPPORTED), counters: [.drop(NV_DROP_GSO_UNSUPPORTED): 1])
            } else if fromExternal != nil {
                return core.fromExternal(frame)
            } else if let port {
                return core.fromVM(frame, ingress: port)
            }
            return core.fromFabric(frame)
        }
        var outcome = decide()
        if case .exception(NV_EXC_NO_NEIGH, _, _, _) = outcome.verdict, underlay.recheckUnresolved() {
            outcome = decide()
        }
        lock.lock()
        for (c, n) in outcome.counters { counters[c, default: 0] += n }
        lock.unlock()
        switch outcome.verdict {
        case let .forward(egress, out): send(out, on: egress)
        case let .reply(out): send(out, on: fromExternal ?? port ?? uplink.ifindex)
        case .flood:
            guard let port, let vsid = core.tables.ports[port]?.vsid else { return }
            for (egress, copy) in core.floodCopies(frame, vsid: vsid, ingress: port) { send(copy, on: egress) }
        case let .floodUp(vsid, inner):
            for p in core.tables.floodLists[vsid]?.portIfindexes ?? [] { send(inner, on: p) }
        case let .exception(reason, vsid, out, mtu):
            let e = ExceptionFrame(
                reason: reason, ingressIfindex: fromExternal ?? port ?? uplink.ifindex, vsid: vsid,
                originalLength: out.count, mtu: mtu, frame: out)
            if gateway?.engine.handle(e) != true { exceptions.handle(e) }
        case .drop, .pass: break
        }
    }

    private func send(_ frame: [UInt8], on ifindex: UInt32) {
        let ring =
            ifindex == uplink.ifindex
            ? uplink : ports[ifindex] ?? gateway.flatMap { $0.external.ifindex == ifindex ? $0.external : nil }
        frame.withUnsafeBytes { try? ring?.send($0) }
    }
}
