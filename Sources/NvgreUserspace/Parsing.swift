import CNvgre
import NvgreWire

/// The fields of an IP packet the decisions use (bpf/parsing.h's struct flow).
struct Flow {
    var family: IPFamily
    var proto: UInt8
    var tos: UInt8
    var ttl: UInt8
    var src: IPAddress
    var dst: IPAddress
    var sport: UInt16 = 0
    var dport: UInt16 = 0
    /// Offset of the transport header (past IPv4 options; IPv6 extension headers are not walked).
    var l4: Int

    var hash: FlowHash { FlowHash(src: src, dst: dst, protocol: proto, sport: sport, dport: dport) }
}

extension Array where Element == UInt8 {
    func be16(_ at: Int) -> UInt16 { UInt16(self[at]) << 8 | UInt16(self[at + 1]) }
    func be32(_ at: Int) -> UInt32 { UInt32(be16(at)) << 16 | UInt32(be16(at + 2)) }
    func mac(_ at: Int) -> MACAddress { MACAddress(self[at..<at + 6]) }
    mutating func setMAC(_ m: MACAddress, at: Int) { m.store(into: &self, at: at) }
}

enum Parse {
    static let ethernetLength = 14

    /// parse_ipv4 at `at`: nil when the header is cut short, not version 4 or its options do
    /// not fit. Ports are read (when there) unless the packet is a fragment.
    static func ipv4(_ f: [UInt8], at: Int) -> Flow? {
        guard f.count >= at + 20, f[at] >> 4 == 4, f[at] & 0x0f >= 5 else { return nil }
        let l4 = at + Int(f[at] & 0x0f) * 4
        guard l4 <= f.count else { return nil }
        var flow = Flow(
            family: .v4, proto: f[at + 9], tos: f[at + 1], ttl: f[at + 8],
            src: IPAddress(v4: f[at + 12..<at + 16]), dst: IPAddress(v4: f[at + 16..<at + 20]), l4: l4)
        if !isFragment(f, ipAt: at) { ports(f, &flow) }
        return flow
    }

    static func isFragment(_ f: [UInt8], ipAt at: Int) -> Bool { f.be16(at + 6) & 0x3fff != 0 }

    /// parse_ipv6 at `at`: nil when cut short or not version 6.
    static func ipv6(_ f: [UInt8], at: Int) -> Flow? {
        guard f.count >= at + 40, f[at] >> 4 == 6 else { return nil }
        var flow = Flow(
            family: .v6, proto: f[at + 6], tos: (f[at] & 0x0f) << 4 | f[at + 1] >> 4, ttl: f[at + 7],
            src: IPAddress(v6: f[at + 8..<at + 24]), dst: IPAddress(v6: f[at + 24..<at + 40]),
            l4: at + 40)
        ports(f, &flow)
        return flow
    }

    static func ports(_ f: [UInt8], _ flow: inout Flow) {
        guard flow.proto == 6 || flow.proto == 17, flow.l4 + 4 <= f.count else { return }
        flow.sport = f.be16(flow.l4)
        flow.dport = f.be16(flow.l4 + 2)
    }

    /// is_neighbor_solicitation: ICMPv6 type 135 code 0 with its 24-byte header there.
    static func isNeighborSolicitation(_ f: [UInt8], _ flow: Flow) -> Bool {
        flow.proto == 58 && flow.l4 + 24 <= f.count && f[flow.l4] == 135 && f[flow.l4 + 1] == 0
    }

    static func isMulticast(_ f: [UInt8], macAt at: Int) -> Bool { f[at] & 1 != 0 }
    static func isBroadcast(_ f: [UInt8], macAt at: Int) -> Bool { f[at..<at + 6].allSatisfy { $0 == 0xff } }

    /// Addresses a VM may broadcast from without owning them (flood.h's link_scoped_source).
    static func linkScoped(_ a: IPAddress) -> Bool {
        if a.family == .v4 { return a.isUnspecified }
        return (a.byte(0) == 0xfe && a.byte(1) & 0xc0 == 0x80) || a.isUnspecified
    }

    /// flood.h's icmp6_type: the ICMPv6 type past up to three extension headers, or nil.
    static func icmp6Type(_ f: [UInt8], at l4: Int, nextHeader: UInt8) -> UInt8? {
        var pos = l4, next = nextHeader
        for _ in 0..<4 {
            if next == 58 { return pos + 1 <= f.count ? f[pos] : nil }
            guard pos + 8 <= f.count else { return nil }
            let h = pos
            switch next {
            case 44:
                if f.be16(h + 2) & 0xfff8 != 0 { return nil }
                pos += 8
            case 0, 43, 60: pos += (Int(f[h + 1]) + 1) * 8
            default: return nil
            }
            next = f[h]
        }
        return nil
    }
}

/// The Internet checksum's incremental update of one 16-bit word (checksum.h's csum_replace2).
func checksumReplacing(_ sum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
    var s = UInt32(~sum) + UInt32(~old) + UInt32(new)
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    return ~UInt16(truncatingIfNeeded: s)
}
