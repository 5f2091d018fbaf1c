/// An IPv4 packet as NAT44 sees it: addresses, the ports of TCP and UDP or the identifier of
/// an ICMP echo, TTL and TCP flags, with setters that keep every checksum right. The echo
/// identifier stands in for the port on the side that chose it: the source port of a
/// request, the destination port of a reply (the other port reads 0).
public struct NATPacket: Sendable, Equatable {
    public private(set) var bytes: [UInt8]  // from the IPv4 header to the end of the packet
    public let headerLength: Int
    public let proto: UInt8

    public static let echoRequest: UInt8 = 8
    public static let echoReply: UInt8 = 0

    /// nil for what NAT does not translate: not IPv4, truncated, a fragment, a protocol other
    /// than TCP or UDP, ICMP other than echo request and reply.
    public init?(ip: [UInt8]) {
        guard ip.count >= 20, ip[0] >> 4 == 4 else { return nil }
        let ihl = Int(ip[0] & 0x0f) * 4
        let total = Int(ip.be16(at: 2))
        guard ihl >= 20, total >= ihl, total <= ip.count, ip.be16(at: 6) & 0x3fff == 0 else { return nil }
        let p = ip[9]
        let l4Needed: Int
        switch p {
        case IPProtocol.tcp.rawValue: l4Needed = 20
        case IPProtocol.udp.rawValue: l4Needed = 8
        case IPProtocol.icmp.rawValue: l4Needed = 8
        default: return nil
        }
        guard total - ihl >= l4Needed else { return nil }
        if p == IPProtocol.icmp.rawValue, ip[ihl] != Self.echoRequest, ip[ihl] != Self.echoReply { return nil }
        bytes = Array(ip.prefix(total))
        headerLength = ihl
        proto = p
    }

    public var source: IPAddress { IPAddress(v4: Array(bytes[12..<16])) }
    public var destination: IPAddress { IPAddress(v4: Array(bytes[16..<20])) }
    public var ttl: UInt8 { bytes[8] }
    private var isICMP: Bool { proto == IPProtocol.icmp.rawValue }
    private var icmpType: UInt8 { bytes[headerLength] }

    public var sourcePort: UInt16 {
        if isICMP { return icmpType == Self.echoRequest ? bytes.be16(at: headerLength + 4) : 0 }
        return bytes.be16(at: headerLength)
    }

    public var destinationPort: UInt16 {
        if isICMP { return icmpType == Self.echoReply ? bytes.be16(at: headerLength + 4) : 0 }
        return bytes.be16(at: headerLength + 2)
    }

    /// TCP flags (0 for other protocols).
    public var tcpFlags: UInt8 { proto == IPProtocol.tcp.rawValue ? bytes[headerLength + 13] : 0 }
    public static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, ack: UInt8 = 0x10

    public mutating func setSource(_ address: IPAddress, port: UInt16) {
        bytes.replaceSubrange(12..<16, with: address.bytes.prefix(4))
        if isICMP { bytes.setBE16(port, at: headerLength + 4) } else { bytes.setBE16(port, at: headerLength) }
        fixChecksums()
    }

    public mutating func setDestination(_ address: IPAddress, port: UInt16) {
        bytes.replaceSubrange(16..<20, with: address.bytes.prefix(4))
        if isICMP { bytes.setBE16(port, at: headerLength + 4) } else { bytes.setBE16(port, at: headerLength + 2) }
        fixChecksums()
    }

    /// Returns false (and leaves the packet) when the TTL would reach 0.
    public mutating func decrementTTL() -> Bool {
        guard bytes[8] > 1 else { return false }
        bytes[8] -= 1
        fixChecksums()
        return true
    }

    /// Recomputes the header checksum and the TCP, UDP or ICMP checksum (a UDP datagram sent
    /// without checksum stays without one).
    private mutating func fixChecksums() {
        bytes.setBE16(0, at: 10)
        bytes.setBE16(internetChecksum(Array(bytes[0..<headerLength])), at: 10)
        let l4 = headerLength
        let segment = Array(bytes[l4...])
        switch proto {
        case IPProtocol.tcp.rawValue:
            bytes.setBE16(0, at: l4 + 16)
            let sum = internetChecksum(
                Array(bytes[l4...]),
                initial: pseudoHeaderSum(src: source, dst: destination, protocol: proto, length: segment.count))
            bytes.setBE16(sum, at: l4 + 16)
        case IPProtocol.udp.rawValue:
            guard bytes.be16(at: l4 + 6) != 0 else { return }
            bytes.setBE16(0, at: l4 + 6)
            var sum = internetChecksum(
                Array(bytes[l4...]),
                initial: pseudoHeaderSum(src: source, dst: destination, protocol: proto, length: segment.count))
            if sum == 0 { sum = 0xffff }
            bytes.setBE16(sum, at: l4 + 6)
        default:
            bytes.setBE16(0, at: l4 + 2)
            bytes.setBE16(internetChecksum(Array(bytes[l4...])), at: l4 + 2)
        }
    }
}
