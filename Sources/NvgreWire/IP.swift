/// IPv4 and IPv6 headers.
public enum IPProtocol: UInt8, Sendable {
    case icmp = 1
    case tcp = 6
    case udp = 17
    case gre = 47
    case icmpv6 = 58
}

public struct IPv4Header: Sendable {
    public var tos: UInt8 = 0
    public var totalLength: UInt16
    public var identification: UInt16 = 0
    public var flagsAndFragment: UInt16 = 0x4000  // DF
    public var ttl: UInt8 = 64
    public var proto: UInt8
    public var src: IPAddress
    public var dst: IPAddress

    public init(
        src: IPAddress, dst: IPAddress, proto: UInt8, payloadLength: Int, ttl: UInt8 = 64,
        tos: UInt8 = 0, identification: UInt16 = 0, flagsAndFragment: UInt16 = 0x4000
    ) {
        self.src = src
        self.dst = dst
        self.proto = proto
        self.totalLength = UInt16(20 + payloadLength)
        self.ttl = ttl
        self.tos = tos
        self.identification = identification
        self.flagsAndFragment = flagsAndFragment
    }

    /// The 20-byte header with a correct checksum.
    public var bytes: [UInt8] {
        var h: [UInt8] = [0x45, tos]
        h.appendBE16(totalLength)
        h.appendBE16(identification)
        h.appendBE16(flagsAndFragment)
        h += [ttl, proto, 0, 0]
        h += src.bytes + dst.bytes
        h.setBE16(internetChecksum(h), at: 10)
        return h
    }
}

public struct IPv6Header: Sendable {
    public var trafficClass: UInt8 = 0
    public var flowLabel: UInt32 = 0
    public var payloadLength: UInt16
    public var nextHeader: UInt8
    public var hopLimit: UInt8 = 64
    public var src: IPAddress
    public var dst: IPAddress

    public init(
        src: IPAddress, dst: IPAddress, nextHeader: UInt8, payloadLength: Int, hopLimit: UInt8 = 64,
        trafficClass: UInt8 = 0, flowLabel: UInt32 = 0
    ) {
        self.src = src
        self.dst = dst
        self.nextHeader = nextHeader
        self.payloadLength = UInt16(payloadLength)
        self.hopLimit = hopLimit
        self.trafficClass = trafficClass
        self.flowLabel = flowLabel
    }

    public var bytes: [UInt8] {
        var h: [UInt8] = []
        h.appendBE32(6 << 28 | UInt32(trafficClass) << 20 | (flowLabel & 0xfffff))
        h.appendBE16(payloadLength)
        h += [nextHeader, hopLimit]
        return h + src.bytes + dst.bytes
    }
}

/// An IP packet (header + payload) of either family.
public enum IPPacket {
    public static func build(
        src: IPAddress, dst: IPAddress, proto: UInt8, payload: [UInt8],
        ttl: UInt8 = 64, tos: UInt8 = 0
    ) -> [UInt8] {
        precondition(src.family == dst.family, "mixed families")
        switch src.family {
        case .v4:
            return IPv4Header(src: src, dst: dst, proto: proto, payloadLength: payload.count, ttl: ttl, tos: tos).bytes
                + payload
        case .v6:
            return IPv6Header(
                src: src, dst: dst, nextHeader: proto, payloadLength: payload.count, hopLimit: ttl,
                trafficClass: tos
            ).bytes + payload
        }
    }

    /// An IPv4 packet as a router sends it on: TTL one lower, header checksum recomputed,
    /// trailing bytes past the total length cut. nil when the header is not a valid IPv4
    /// one or the TTL would reach 0.
    public static func forwardedIPv4(_ packet: [UInt8]) -> [UInt8]? {
        guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
        let ihl = Int(packet[0] & 0x0f) * 4, total = Int(packet.be16(at: 2))
        guard ihl >= 20, total >= ihl, total <= packet.count, packet[8] > 1 else { return nil }
        var out = Array(packet.prefix(total))
        out[8] -= 1
        out.setBE16(0, at: 10)
        out.setBE16(internetChecksum(Array(out[0..<ihl])), at: 10)
        return out
    }
}
