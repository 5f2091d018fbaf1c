import CNvgre
import Foundation
import NvgreDatapath
import NvgreGateway
import NvgreUserspace
import NvgreWire

/// The gateway engine's maps on a userspace host: the tables the decision core reads, and
/// the NAT flows in memory (the engine's own, which the core asks about too). The engine
/// and the core run on the forwarding thread; the agent reads the counts from another, so
/// those are behind a lock.
public final class UserspaceGatewayMaps: GatewayMaps, NATFlowView, @unchecked Sendable {
    private let lookups: TableLookups
    private var natOut: [RawBytes: nv_nat_flow] = [:]
    private var natIn: [RawBytes: nv_nat_flow] = [:]
    public let flowCapacity: Int
    private let lock = NSLock()
    private var gatewayCounts: [nv_gw_counter: (packets: UInt64, bytes: UInt64)] = [:]
    private var domainCounts: [DomainCounter: (packets: UInt64, bytes: UInt64)] = [:]
    private var flowCount = 0

    public init(_ lookups: TableLookups, flowCapacity: Int = Int(NV_DEFAULT_MAX_NAT_FLOWS)) {
        self.lookups = lookups
        self.flowCapacity = flowCapacity
    }

    private var tables: DecisionTables { lookups.tables }

    public var hostConfig: nv_config? { tables.config }
    public func subnet(_ vsid: UInt32) -> nv_subnet? { tables.subnets[vsid] }
    public func servedMode(_ rdid: UInt32) -> nv_gw_mode? { tables.gatewayDomains[rdid].map { nv_gw_mode($0) } }
    public func record(vsid: UInt32, ca: IPAddress) -> nv_lookup_val? { lookups.record(vsid: vsid, ca: ca) }
    public func route(rdid: UInt32, address: IPAddress) -> nv_route_val? { lookups.route(rdid: rdid, to: address) }
    public func service(proto: UInt8, address: IPAddress, port: UInt16) -> nv_service? {
        tables.gateway.services[GatewayTables.ServiceKey(proto, address, port)]
    }
    public func isExternalAddress(_ address: IPAddress) -> Bool { tables.gateway.externalAddresses.contains(address) }
    public func isInfrastructure(_ address: IPAddress) -> Bool {
        tables.gateway.infrastructure.contains { $0.contains(address) }
    }

    public func flowOut(_ key: nv_nat_out_key) -> nv_nat_flow? { natOut[RawBytes(of: key)] }
    public func flowIn(_ key: nv_nat_in_key) -> nv_nat_flow? { natIn[RawBytes(of: key)] }

    /// BPF map semantics the engine relies on: BPF_EXIST needs the entry, BPF_NOEXIST its
    /// absence, and a full map refuses a new key.
    public func writeFlowOut(_ key: nv_nat_out_key, _ value: nv_nat_flow, flags: UInt64) throws {
        try Self.write(&natOut, RawBytes(of: key), value, flags: flags, capacity: flowCapacity)
        generation += 1
        setFlowCount(natOut.count)
    }
    public func writeFlowIn(_ key: nv_nat_in_key, _ value: nv_nat_flow, flags: UInt64) throws {
        try Self.write(&natIn, RawBytes(of: key), value, flags: flags, capacity: flowCapacity)
        generation += 1
    }
    public func deleteFlowOut(_ key: nv_nat_out_key) {
        natOut[RawBytes(of: key)] = nil
        generation += 1
        setFlowCount(natOut.count)
    }
    public func deleteFlowIn(_ key: nv_nat_in_key) {
        natIn[RawBytes(of: key)] = nil
        generation += 1
    }
    public func flowOutKeys() -> [nv_nat_out_key] { natOut.keys.map { $0.load(as: nv_nat_out_key.self) } }

    public struct MapError: Error, CustomStringConvertible {
        public let description: String
    }

    private static func write(
        _ map: inout [RawBytes: nv_nat_flow], _ key: RawBytes, _ value: nv_nat_flow, flags: UInt64, capacity: Int
    ) throws {
        let exists = map[key] != nil
        if flags == UInt64(BPF_EXIST) && !exists { throw MapError(description: "no such flow") }
        if flags == UInt64(BPF_NOEXIST) && exists { throw MapError(description: "the flow exists") }
        if !exists && map.count >= capacity { throw MapError(description: "the flow table is full (\(capacity))") }
        map[key] = value
    }

    private func setFlowCount(_ n: Int) {
        lock.lock()
        flowCount = n
        lock.unlock()
    }

    public func addGatewayCounts(_ counts: [nv_gw_counter: (packets: UInt64, bytes: UInt64)]) throws {
        lock.lock()
        Self.merge(counts, into: &gatewayCounts)
        lock.unlock()
    }

    public func addDomainCounts(_ counts: [DomainCounter: (packets: UInt64, bytes: UInt64)]) throws {
        lock.lock()
        Self.merge(counts, into: &domainCounts)
        lock.unlock()
    }

    private static func merge<Key>(
        _ counts: [Key: (packets: UInt64, bytes: UInt64)], into total: inout [Key: (packets: UInt64, bytes: UInt64)]
    ) {
        for (c, v) in counts {
            let old = total[c] ?? (0, 0)
            total[c] = (old.packets + v.packets, old.bytes + v.bytes)
        }
    }

    // MARK: kept across a restart

    /// Where the flows are kept (the instance's state directory), so that a restarted agent
    /// takes them up again as an XDP gateway's process finds them in the maps: established
    /// connections survive, no port is given twice.
    public var flowsPath: String?
    private var savedGeneration = 0
    private var generation = 0
    static let recordMagic = Array("NVFLOWS1".utf8)
    static let recordSize =
        MemoryLayout<nv_nat_out_key>.size + MemoryLayout<nv_nat_in_key>.size + 2 * MemoryLayout<nv_nat_flow>.size

    private let writer = DispatchQueue(label: "nvgre.nat-flows")

    /// Writes the flows when they changed since the last write, from a snapshot on a thread
    /// of its own (the maps are copied on write; the forwarding thread goes on). `wait`: return
    /// once written (the forwarder stopping).
    public func saveFlows(wait: Bool = false) {
        guard let path = flowsPath else { return }
        lock.lock()
        let due = generation != savedGeneration
        lock.unlock()
        if due {
            let out = natOut, back = natIn, gen = generation
            writer.async {
                var bytes = Self.recordMagic
                bytes.reserveCapacity(8 + out.count * Self.recordSize)
                for (k, v) in out {
                    let inKey = NATFlow(v).inKey
                    guard let w = back[RawBytes(of: inKey)] else { continue }
                    for part in [k, RawBytes(of: inKey), RawBytes(of: v), RawBytes(of: w)] { bytes += part.bytes }
                }
                if (try? Files.replace(path, with: bytes)) != nil {
                    self.lock.lock()
                    self.savedGeneration = max(self.savedGeneration, gen)
                    self.lock.unlock()
                }
            }
        }
        if wait { writer.sync {} }
    }

    /// The engine's view of when each flow last moved: the maps hold only what the engine
    /// wrote at creation (on XDP, the programs keep last_seen current in the maps).
    public func noteActivity(_ entries: [NATEntry]) {
        let kept: NATFlags = [.established, .fin, .rst]
        for e in entries {
            let out = RawBytes(of: e.flow.outKey), back = RawBytes(of: e.flow.inKey)
            guard var v = natOut[out] else { continue }
            let flags = v.natFlags.union(e.flags.intersection(kept))
            guard v.last_seen_ns < e.lastSeen || flags != v.natFlags else { continue }
            v.last_seen_ns = max(v.last_seen_ns, e.lastSeen)
            v.natFlags = flags
            natOut[out] = v
            if var w = natIn[back] {
                w.last_seen_ns = v.last_seen_ns
                w.natFlags = w.natFlags.union(flags)
                natIn[back] = w
            }
            generation += 1
        }
    }

    /// Reads back the flows a previous agent saved; returns how many. A file that is not
    /// whole records is ignored (the engine then starts with none).
    @discardableResult
    public func restoreFlows() -> Int {
        guard let path = flowsPath, let data = FileManager.default.contents(atPath: path) else { return 0 }
        let bytes = [UInt8](data)
        let n = Self.recordSize
        guard bytes.count >= 8, Array(bytes.prefix(8)) == Self.recordMagic, (bytes.count - 8) % n == 0 else { return 0 }
        let sizes = [
            MemoryLayout<nv_nat_out_key>.size, MemoryLayout<nv_nat_in_key>.size, MemoryLayout<nv_nat_flow>.size,
            MemoryLayout<nv_nat_flow>.size
        ]
        var at = 8
        var count = 0
        while at < bytes.count {
            var parts: [RawBytes] = []
            for size in sizes {
                parts.append(bytes[at..<at + size].withUnsafeBytes { RawBytes($0) })
                at += size
            }
            natOut[parts[0]] = parts[2].load(as: nv_nat_flow.self)
            natIn[parts[1]] = parts[3].load(as: nv_nat_flow.self)
            count += 1
        }
        setFlowCount(natOut.count)
        lock.lock()
        savedGeneration = generation
        lock.unlock()
        return count
    }

    /// What the engine counted so far, and the flows it holds.
    public func snapshot() -> (
        gateway: [nv_gw_counter: (packets: UInt64, bytes: UInt64)],
        domains: [DomainCounter: (packets: UInt64, bytes: UInt64)], flows: Int
    ) {
        lock.lock()
        defer { lock.unlock() }
        return (gatewayCounts, domainCounts, flowCount)
    }
}
