import CNvgre
import Foundation
import NvgreDatapath
import NvgreUserspace
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// One forwarding thread's share of the userspace path: its own packet ring on every
/// interface (with more than one lane, the kernel spreads each interface's frames over the
/// lanes by the CPU that received them), its exception handler and its counters.
final class ForwardingLane: @unchecked Sendable {
    let uplink: PacketRing
    let ports: [UInt32: PacketRing]
    let external: PacketRing?
    let exceptions: HostExceptionHandler
    private let lock = NSLock()
    private var counters: [Counter: UInt64] = [:]
    private var sendFailures: UInt64 = 0
    private var ringDrops: UInt64 = 0

    /// `fanout`: the group id base of the forwarder's lanes (nil: a single lane).
    init(
        uplinkIfindex: UInt32, portIfindexes: [UInt32], externalIfindex: UInt32?, localPAs: Set<IPAddress>,
        lookups: TableLookups, icmpLimit: ICMPRateLimit, fanout: UInt16?
    ) throws {
        exceptions = try HostExceptionHandler(policy: lookups, icmpLimit: icmpLimit)
        uplink = try PacketRing(ifindex: uplinkIfindex)
        try uplink.attachFilter(UplinkFilter.program(localPAs: Array(localPAs)))
        var rings: [UInt32: PacketRing] = [:]
        for p in portIfindexes { rings[p] = try PacketRing(ifindex: p, vnetHeader: true) }
        ports = rings
        external = try externalIfindex.map { try PacketRing(ifindex: $0) }
        if let fanout {
            for ring in [uplink] + Array(ports.values) + (external.map { [$0] } ?? []) {
                try ring.joinFanout(group: fanout &+ UInt16(truncatingIfNeeded: ring.ifindex))
            }
        }
    }

    var rings: [PacketRing] {
        [uplink] + ports.values.sorted { $0.ifindex < $1.ifindex } + (external.map { [$0] } ?? [])
    }

    func ring(_ ifindex: UInt32) -> PacketRing? {
        if ifindex == uplink.ifindex { return uplink }
        if let p = ports[ifindex] { return p }
        return external?.ifindex == ifindex ? external : nil
    }

    func add(_ moved: [Counter: UInt64]) {
        guard !moved.isEmpty else { return }
        lock.lock()
        for (c, n) in moved { counters[c, default: 0] += n }
        lock.unlock()
    }

    func counterSnapshot() -> [Counter: UInt64] {
        lock.lock()
        defer { lock.unlock() }
        return counters
    }

    func send(_ frame: [UInt8], on ifindex: UInt32) {
        do {
            guard let ring = ring(ifindex) else { throw DatapathError("no ring on ifindex \(ifindex)", errno: ENODEV) }
            try frame.withUnsafeBytes { try ring.send($0) }
        } catch {
            lock.lock()
            sendFailures += 1
            lock.unlock()
        }
    }

    /// Frames lost in the transport: dropped by the kernel on a full ring, and sends that
    /// failed (a full transmit queue, a frame over the interface's MTU).
    func transportLosses() -> (ringDrops: UInt64, sendFailures: UInt64) {
        let drops = rings.reduce(UInt64(0)) { $0 + $1.takeDrops() }
        let refused = rings.reduce(UInt64(0)) { $0 + $1.transmitFailures }
        lock.lock()
        defer { lock.unlock() }
        ringDrops += drops
        return (ringDrops, sendFailures + refused)
    }
}
