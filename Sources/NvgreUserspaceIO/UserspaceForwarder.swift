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
/// through the decision core and out as its verdicts say. The host's own stack is kept out
/// of those frames by the agent's nftables table (HostStackGuard). Exceptions go to the
/// same handler an XDP host's agent runs; on a gateway host, first to the gateway engine.
///
/// One lane (thread) per CPU, each with its own rings on every interface, the kernel
/// spreading each interface's frames over them by receiving CPU (PACKET_FANOUT_CPU). A
/// gateway host runs one lane: its engine and its flows are one thread's. TCP and UDP GSO
/// frames from VMs are cut into segments here; a frame is copied out of its ring.
public final class UserspaceForwarder: @unchecked Sendable {
    private let lock = NSLock()
    private var core: DecisionCore
    private let lanes: [ForwardingLane]
    private let underlay: KernelUnderlay
    /// The exception path's view of the tables, as on an XDP host: ICMP "too big" and "no
    /// route" answers, IPv4 fragmentation without DF, underlay neighbor resolution.
    private let lookups: TableLookups
    /// On a gateway host: the gateway engine (NAT, published services, route mode) on its
    /// in-memory maps (the external interface's ring is lane 0's).
    private let gateway: (engine: Gateway, maps: UserspaceGatewayMaps)?
    private var pendingGatewaySettings: GatewaySettings?

    /// What a gateway host's engine needs beyond the tables (the policy's gateway section).
    public struct GatewaySettings: Sendable {
        public var externalAddresses: [ExternalAddress]
        public var natShares: [UInt32: UInt32]
        public var timeouts: NATTimeouts
        /// Where the NAT flows are kept across a restart of the agent.
        public var flowsPath: String?

        public init(
            externalAddresses: [ExternalAddress], natShares: [UInt32: UInt32], timeouts: NATTimeouts,
            flowsPath: String? = nil
        ) {
            self.externalAddresses = externalAddresses
            self.natShares = natShares
            self.timeouts = timeouts
            self.flowsPath = flowsPath
        }
    }

    /// Opens the rings; call on a thread in the host's network namespace. With `gateway`
    /// (and an external interface in the tables' config) it is a gateway host, on one lane;
    /// otherwise `lanes` threads (default: one per CPU).
    public init(
        tables: DecisionTables, uplinkIfindex: UInt32, portIfindexes: [UInt32],
        gateway settings: GatewaySettings? = nil, lanes requested: Int? = nil,
        gatewayEvents: @escaping (Gateway.Event) -> Void = { _ in }
    ) throws {
        underlay = try KernelUnderlay()
        core = DecisionCore(tables: tables, underlay: underlay)
        lookups = TableLookups(tables)
        var externalIfindex: UInt32?
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
            maps.flowsPath = settings.flowsPath
            restoredFlows = maps.restoreFlows() > 0 ? engine.recover() : 0
            gateway = (engine, maps)
            core.flows = maps
            externalIfindex = ext
        } else {
            gateway = nil
        }
        let count =
            gateway != nil ? 1 : max(1, min(requested ?? ProcessInfo.processInfo.activeProcessorCount, 16))
        // One fan-out group per interface; the random base keeps a restarted forwarder's
        // groups apart from the old one's while both exist.
        let fanout = UInt16.random(in: 0...UInt16.max)
        let lookups = self.lookups
        func open(_ count: Int) throws -> [ForwardingLane] {
            try (0..<count).map { i in
                try ForwardingLane(
                    uplinkIfindex: uplinkIfindex, portIfindexes: portIfindexes,
                    externalIfindex: i == 0 ? externalIfindex : nil, localPAs: tables.localPAs, lookups: lookups,
                    icmpLimit: ICMPRateLimit(perSecond: 1000 / Double(count), burst: max(5, 50 / Double(count))),
                    fanout: count > 1 ? fanout : nil)
            }
        }
        do {
            lanes = try open(count)
        } catch  where count > 1 {
            lanes = try open(1)  // a kernel without what fan-out needs here (Linux 6.4+): one lane
        }
        underlay.prime(Self.remotePAs(tables))
    }

    /// How many forwarding threads run.
    public var laneCount: Int { lanes.count }
    /// On a gateway host: the NAT flows taken up from the previous agent's.
    public private(set) var restoredFlows = 0

    /// The PAs the policy sends to: every record's that is not this host's.
    static func remotePAs(_ t: DecisionTables) -> [IPAddress] {
        Array(Set(t.records.values.map(\.providerAddress)).subtracting(t.localPAs))
    }

    /// New tables (a policy change): frames after this call are decided on them.
    public func setTables(_ tables: DecisionTables) {
        lock.lock()
        let pasChanged = core.tables.localPAs != tables.localPAs
        core.tables = tables
        lock.unlock()
        for lane in lanes where pasChanged {
            try? lane.uplink.attachFilter(UplinkFilter.program(localPAs: Array(tables.localPAs)))
        }
        lookups.tables = tables
        underlay.prime(Self.remotePAs(tables))
    }

    /// A changed gateway section of the policy: taken between frames.
    public func setGatewaySettings(_ settings: GatewaySettings) {
        lock.lock()
        pendingGatewaySettings = settings
        lock.unlock()
    }

    /// Every counter moved so far, all lanes together.
    public func counterSnapshot() -> [Counter: UInt64] {
        var all: [Counter: UInt64] = [:]
        for lane in lanes {
            for (c, n) in lane.counterSnapshot() { all[c, default: 0] += n }
        }
        return all
    }

    /// Frames the transport lost, all lanes together (see ForwardingLane.transportLosses).
    public func transportLosses() -> (ringDrops: UInt64, sendFailures: UInt64) {
        lanes.map { $0.transportLosses() }.reduce((0, 0)) { ($0.0 + $1.ringDrops, $0.1 + $1.sendFailures) }
    }

    /// The gateway engine's counts and flows, on a gateway host.
    public var gatewaySnapshot:
        (
            gateway: [nv_gw_counter: (packets: UInt64, bytes: UInt64)],
            domains: [DomainCounter: (packets: UInt64, bytes: UInt64)], flows: Int
        )?
    { gateway?.maps.snapshot() }

    /// Forwards until `stop()` returns true (checked at least every `tick` seconds): lane 0
    /// on the calling thread, with the housekeeping (the underlay looked up again every half
    /// second, the gateway engine's counters and expiry), the others on threads of their own.
    public func run(tick: Double = 0.1, stop: @escaping @Sendable () -> Bool) {
        let done = DispatchGroup()
        for lane in lanes.dropFirst() {
            done.enter()
            Thread {
                self.forward(lane, tick: tick, stop: stop, housekeeping: {})
                done.leave()
            }.start()
        }
        var lastRefresh = Date(), lastSecond = Date(), saveRound = 0
        forward(lanes[0], tick: tick, stop: stop) {
            if Date().timeIntervalSince(lastRefresh) > 0.5 {
                self.underlay.refresh()
                lastRefresh = Date()
            }
            if let engine = self.gateway?.engine {
                self.applyGatewaySettings(engine)
                engine.afterPoll()
                if Date().timeIntervalSince(lastSecond) >= 1 {
                    engine.everySecond()
                    // Kept every second, or every ten with many flows (it walks them all).
                    saveRound += 1
                    if engine.table.count < 10_000 || saveRound % 10 == 0 { self.keepFlows(wait: false) }
                    lastSecond = Date()
                }
            }
        }
        keepFlows(wait: true)  // what the last second created too, before a new forwarder reads them
        done.wait()
    }

    /// A gateway's flows written to the state directory, with the engine's last activity.
    private func keepFlows(wait: Bool) {
        guard let (engine, maps) = gateway else { return }
        maps.noteActivity(engine.table.all)
        maps.saveFlows(wait: wait)
    }

    /// One lane's loop: every ring drained after each poll, on the core as it was when the
    /// poll returned; the counters moved are added once per round. A frame is copied out of
    /// its ring into the lane's frame buffer, which goes through the core and comes back
    /// with the frame sent: forwarding allocates nothing per frame (see `handle`).
    private func forward(_ lane: ForwardingLane, tick: Double, stop: () -> Bool, housekeeping: () -> Void) {
        // Named for `top -H`, perf and the benchmark's per-thread counts: "nvgre-lane0", ...
        _ = nv_name_thread("nvgre-lane\(lanes.firstIndex { $0 === lane } ?? 0)")
        let rings = lane.rings
        var fds = rings.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var buffer = Self.frameBuffer()
        var moved: [Counter: UInt64] = [:]
        while !stop() {
            // Frames left in a transmit ring (a busy device) are sent again after 1 ms.
            let waiting = rings.contains { $0.hasQueued }
            _ = poll(&fds, nfds_t(fds.count), waiting ? 1 : Int32(tick * 1000))
            lock.lock()
            let core = self.core
            lock.unlock()
            moved.removeAll(keepingCapacity: true)
            lane.uplink.drain { frame in
                self.handle(frame.bytes, core, lane, &moved, &buffer, from: nil)
            }
            if let external = lane.external {
                external.drain { frame in
                    self.handle(frame.bytes, core, lane, &moved, &buffer, from: nil, fromExternal: external.ifindex)
                }
            }
            for ring in lane.ports.values {
                ring.drain { frame in
                    if frame.truncated {
                        self.handle(frame.bytes, core, lane, &moved, &buffer, from: ring.ifindex, truncated: true)
                    } else if let partial = PartialChecksum(frame) {
                        self.handle(frame.bytes, core, lane, &moved, &buffer, from: ring.ifindex, complete: partial)
                    } else if Self.isPlain(frame) {
                        self.handle(frame.bytes, core, lane, &moved, &buffer, from: ring.ifindex)
                    } else {
                        for bytes in Self.wireFrames(frame) {
                            bytes.withUnsafeBytes { self.handle($0, core, lane, &moved, &buffer, from: ring.ifindex) }
                        }
                    }
                }
            }
            for ring in rings { ring.flush() }  // what the round queued in the transmit rings
            lane.add(moved)
            housekeeping()
        }
    }

    /// A lane's frame buffer: room for a 1500-byte frame and the outer headers the core puts
    /// in front; it grows to the largest frame forwarded and keeps that size.
    static func frameBuffer() -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(4096)
        return b
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

    /// A VM's frame that is already what it is on a wire: not GSO, no checksum to finish.
    static func isPlain(_ frame: PacketRing.Frame) -> Bool {
        guard !frame.checksumNotReady else { return false }
        guard let v = frame.vnet else { return true }
        return v.gsoType == VirtioNetHeader.gsoNone && v.flags & VirtioNetHeader.needsChecksum == 0
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

    /// One frame (`bytes`, still in its ring or a segment) decided and sent. It is copied into
    /// `buffer`, whose array the core takes, changes in place and hands back in its verdict;
    /// once the frame is sent, the array is `buffer` again for the next frame. `complete`: a
    /// partial checksum finished in the copy first.
    private func handle(
        _ bytes: UnsafeRawBufferPointer, _ core: DecisionCore, _ lane: ForwardingLane,
        _ moved: inout [Counter: UInt64], _ buffer: inout [UInt8], from port: UInt32?, truncated: Bool = false,
        fromExternal: UInt32? = nil, complete: PartialChecksum? = nil
    ) {
        // The buffer went with a drop, a reply or a flood: a new one for the next frame.
        defer { if buffer.capacity == 0 { buffer = Self.frameBuffer() } }
        func decide() -> Outcome {
            if truncated {
                return Outcome(.drop(NV_DROP_GSO_UNSUPPORTED), counters: [.drop(NV_DROP_GSO_UNSUPPORTED): 1])
            }
            var frame: [UInt8] = []
            swap(&frame, &buffer)
            frame.removeAll(keepingCapacity: true)
            frame.append(contentsOf: bytes)
            if let complete { complete.finish(&frame) }
            if fromExternal != nil {
                return core.fromExternal(frame)
            } else if let port {
                return core.fromVM(consume frame, ingress: port)
            }
            return core.fromFabric(consume frame)
        }
        var outcome = decide()
        if case .exception(NV_EXC_NO_NEIGH, _, _, _) = outcome.verdict, underlay.recheckUnresolved() {
            outcome = decide()
        }
        for (c, n) in outcome.counters { moved[c, default: 0] += n }
        switch outcome.verdict {
        case let .forward(egress, out):
            lane.send(out, on: egress)
            outcome.verdict = .pass  // the array is `out`'s alone again
            var back = consume out
            back.removeAll(keepingCapacity: true)
            if back.capacity > buffer.capacity { buffer = back }
        case let .reply(out): lane.send(out, on: fromExternal ?? port ?? lane.uplink.ifindex)
        case .flood:
            guard let port, let vsid = core.tables.ports[port]?.vsid else { return }
            var frame = Array(bytes)
            complete?.finish(&frame)
            for (egress, copy) in core.floodCopies(frame, vsid: vsid, ingress: port) { lane.send(copy, on: egress) }
        case let .floodUp(vsid, inner):
            for p in core.tables.floodLists[vsid]?.portIfindexes ?? [] { lane.send(inner, on: p) }
        case let .exception(reason, vsid, out, mtu):
            let e = ExceptionFrame(
                reason: reason, ingressIfindex: fromExternal ?? port ?? lane.uplink.ifindex, vsid: vsid,
                originalLength: out.count, mtu: mtu, frame: out)
            if gateway?.engine.handle(e) != true { lane.exceptions.handle(e) }
        case .drop, .pass: break
        }
    }
}
