import CNvgre
import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// How long an idle flow lives, by protocol and TCP state (RFC 5382: an established TCP
/// flow at least 2 h 4 min, a transitory one 4 min; RFC 4787: UDP at least 2 min).
public struct NATTimeouts: Sendable, Equatable {
    public var tcpEstablished: Double = 7440
    public var tcpTransitory: Double = 240
    public var udp: Double = 300
    public var icmp: Double = 60

    public init() {}
}

/// One flow through the gateway: its addresses and ports on both sides, where it stands,
/// and what the gateway process saw of it.
public struct NATEntry: Sendable {
    public var flow: NATFlow
    /// The flags as last written to (or read from) the maps.
    public var flags: NATFlags
    /// Opened from outside, to a published service.
    public var fromOutside: Bool
    public var sawOutbound = false
    public var sawInbound = false
    /// The responder answered a SYN with SYN+ACK (TCP).
    public var synAcked = false
    /// CLOCK_MONOTONIC nanoseconds of the last packet the process handled.
    public var lastSeen: UInt64

    public var offloaded: Bool { flags.contains(.offloaded) }
    public var closing: Bool { !flags.isDisjoint(with: .closing) }
}

/// The most of a shared NAT resource that a domain with `share` percent may hold (at least
/// one): ports of a range, or entries of the flow table.
func natQuota(share: UInt32, of range: PortRange) -> Int { natQuota(share: share, ofCount: range.count) }

func natQuota(share: UInt32, ofCount count: Int) -> Int { max(1, count * Int(min(share, 100)) / 100) }

/// Which external ports are taken, per (protocol, external address): a port is given to one
/// flow at a time, so flows of tenants with the same CA and ports never meet. Each port
/// remembers the routing domain holding it, for the domains' shares of the pool.
struct PortPool {
    private struct Owner: Hashable {
        let proto: UInt8
        let address: IPAddress
    }
    private struct Holder: Hashable {
        let owner: Owner
        let rdid: UInt32
    }
    private var used: [Owner: [UInt16: UInt32]] = [:]
    private var held: [Holder: Int] = [:]

    /// The most ports of `range` that a domain with `share` percent may hold (at least one).
    static func quota(share: UInt32, of range: PortRange) -> Int { quota(share: share, ofCount: range.count) }

    /// The same of any pool of `count`.
    static func quota(share: UInt32, ofCount count: Int) -> Int { max(1, count * Int(min(share, 100)) / 100) }

    /// A free port of `range` for domain `rdid`, searched from a pseudo-random start; nil
    /// when all are taken.
    mutating func allocate(proto: UInt8, address: IPAddress, range: PortRange, hint: Int, for rdid: UInt32) -> UInt16? {
        let owner = Owner(proto: proto, address: address)
        var taken = used[owner, default: [:]]
        guard taken.count < range.count else { return nil }
        let start = abs(hint) % range.count
        for i in 0..<range.count {
            let port = UInt16(Int(range.first) + (start + i) % range.count)
            if taken[port] == nil {
                taken[port] = rdid
                used[owner] = taken
                held[Holder(owner: owner, rdid: rdid), default: 0] += 1
                return port
            }
        }
        return nil
    }

    /// Marks a port taken (flows found in the maps after a restart); false if it already was.
    @discardableResult
    mutating func claim(proto: UInt8, address: IPAddress, port: UInt16, for rdid: UInt32) -> Bool {
        let owner = Owner(proto: proto, address: address)
        guard used[owner]?[port] == nil else { return false }
        used[owner, default: [:]][port] = rdid
        held[Holder(owner: owner, rdid: rdid), default: 0] += 1
        return true
    }

    mutating func release(proto: UInt8, address: IPAddress, port: UInt16) {
        let owner = Owner(proto: proto, address: address)
        guard let rdid = used[owner]?.removeValue(forKey: port) else { return }
        held[Holder(owner: owner, rdid: rdid), default: 1] -= 1
    }

    func inUse(proto: UInt8, address: IPAddress) -> Int { used[Owner(proto: proto, address: address)]?.count ?? 0 }

    /// How many ports of (protocol, address) domain `rdid` holds.
    func held(by rdid: UInt32, proto: UInt8, address: IPAddress) -> Int {
        held[Holder(owner: Owner(proto: proto, address: address), rdid: rdid)] ?? 0
    }
}

/// The gateway's flows, found by either direction's key. Pure bookkeeping: the maps are
/// written by Gateway.
public struct NATTable {
    struct OutKey: Hashable {
        let rdid: UInt32, proto: UInt8, ca: IPAddress, caPort: UInt16, remote: IPAddress, remotePort: UInt16
    }
    struct InKey: Hashable {
        let proto: UInt8, ext: IPAddress, extPort: UInt16, remote: IPAddress, remotePort: UInt16
    }

    private(set) var entries: [OutKey: NATEntry] = [:]
    private var inbound: [InKey: OutKey] = [:]
    private var perDomain: [UInt32: Int] = [:]
    var ports = PortPool()

    public var count: Int { entries.count }

    /// How many flows routing domain `rdid` holds.
    public func count(of rdid: UInt32) -> Int { perDomain[rdid] ?? 0 }
    public var all: [NATEntry] { Array(entries.values) }

    static func outKey(_ f: NATFlow) -> OutKey {
        OutKey(rdid: f.rdid, proto: f.proto, ca: f.ca, caPort: f.caPort, remote: f.remote, remotePort: f.remotePort)
    }

    static func inKey(_ f: NATFlow) -> InKey {
        InKey(proto: f.proto, ext: f.ext, extPort: f.extPort, remote: f.remote, remotePort: f.remotePort)
    }

    func outbound(rdid: UInt32, proto: UInt8, ca: IPAddress, caPort: UInt16, remote: IPAddress, remotePort: UInt16)
        -> NATEntry?
    {
        entries[OutKey(rdid: rdid, proto: proto, ca: ca, caPort: caPort, remote: remote, remotePort: remotePort)]
    }

    func inbound(proto: UInt8, ext: IPAddress, extPort: UInt16, remote: IPAddress, remotePort: UInt16) -> NATEntry? {
        inbound[InKey(proto: proto, ext: ext, extPort: extPort, remote: remote, remotePort: remotePort)].flatMap {
            entries[$0]
        }
    }

    mutating func insert(_ e: NATEntry) {
        let k = Self.outKey(e.flow)
        if entries[k] == nil { perDomain[e.flow.rdid, default: 0] += 1 }
        entries[k] = e
        inbound[Self.inKey(e.flow)] = k
    }

    mutating func update(_ e: NATEntry) { entries[Self.outKey(e.flow)] = e }

    mutating func remove(_ f: NATFlow) {
        if entries.removeValue(forKey: Self.outKey(f)) != nil { perDomain[f.rdid, default: 1] -= 1 }
        inbound[Self.inKey(f)] = nil
        ports.release(proto: f.proto, address: f.ext, port: f.extPort)
    }

    /// How long `e` may stay idle.
    static func timeout(_ e: NATEntry, _ t: NATTimeouts) -> Double {
        switch e.flow.proto {
        case IPProtocol.tcp.rawValue:
            let established = e.offloaded || e.flags.contains(.established)
            return established && !e.closing ? t.tcpEstablished : t.tcpTransitory
        case IPProtocol.udp.rawValue: return t.udp
        default: return t.icmp
        }
    }
}
