/// An ICMP error from outside (destination unreachable, time exceeded, parameter problem)
/// about a packet NAT sent: the quote inside left as (external address, port) -> (remote,
/// port). Translated back (RFC 5508 section 4.2), the error goes to the VM's CA, and the
/// quote's source becomes the VM's CA and port again, with every checksum kept right, so
/// the VM's stack matches it to its socket (path MTU, connection refused, traceroute).
public struct NATICMPError: Sendable, Equatable {
    public private(set) var bytes: [UInt8]  // from the outer IPv4 header to the end
    private let headerLength: Int
    private let quote: Int  // offset of the quoted IPv4 header
    private let quoteHeader: Int  // its length
    public let quotedProto: UInt8

    public static let errorTypes: Set<UInt8> = [3, 11, 12]

    /// nil unless an unfragmented IPv4 ICMP error quoting at least the IPv4 header and 8
    /// bytes of a TCP or UDP packet or an ICMP echo request.
    public init?(ip: [UInt8]) {
        guard ip.count >= 20, ip[0] >> 4 == 4, ip[9] == IPProtocol.icmp.rawValue, ip.be16(at: 6) & 0x3fff == 0 else {
            return nil
        }
        let ihl = Int(ip[0] & 0x0f) * 4, total = Int(ip.be16(at: 2))
        guard ihl >= 20, total <= ip.count, total >= ihl + 8 + 20 + 8, Self.errorTypes.contains(ip[ihl]) else {
            return nil
        }
        let q = ihl + 8
        guard ip[q] >> 4 == 4 else { return nil }
        let qihl = Int(ip[q] & 0x0f) * 4
        guard qihl >= 20, total >= q + qihl + 8 else { return nil }
        let p = ip[q + 9]
        guard
            p == IPProtocol.tcp.rawValue || p == IPProtocol.udp.rawValue
                || (p == IPProtocol.icmp.rawValue && ip[q + qihl] == NATPacket.echoRequest)
        else { return nil }
        bytes = Array(ip.prefix(total))
        headerLength = ihl
        quote = q
        quoteHeader = qihl
        quotedProto = p
    }

    /// Who sent the error (X, or a router on the way).
    public var source: IPAddress { IPAddress(v4: Array(bytes[12..<16])) }
    public var quotedSource: IPAddress { IPAddress(v4: Array(bytes[(quote + 12)..<(quote + 16)])) }
    public var quotedDestination: IPAddress { IPAddress(v4: Array(bytes[(quote + 16)..<(quote + 20)])) }
    private var isEcho: Bool { quotedProto == IPProtocol.icmp.rawValue }
    /// The port NAT gave the flow (for an echo, its identifier).
    public var quotedSourcePort: UInt16 { bytes.be16(at: quote + quoteHeader + (isEcho ? 4 : 0)) }
    /// The remote's port (0 for an echo).
    public var quotedDestinationPort: UInt16 { isEcho ? 0 : bytes.be16(at: quote + quoteHeader + 2) }

    /// Rewrites the error for the VM at `ca`, whose flow used `port`; false (and leaves
    /// the packet) when its TTL would reach 0.
    public mutating func translate(toCA ca: IPAddress, port: UInt16) -> Bool {
        guard bytes[8] > 1 else { return false }
        bytes[8] -= 1
        let caBytes = Array(ca.bytes.prefix(4))
        let l4 = quote + quoteHeader
        let portAt = l4 + (isEcho ? 4 : 0)
        let old = words(bytes, at: quote + 12, count: 2) + [bytes.be16(at: portAt)]
        bytes.replaceSubrange(16..<20, with: caBytes)
        bytes.replaceSubrange((quote + 12)..<(quote + 16), with: caBytes)
        bytes.setBE16(port, at: portAt)
        let new = words(bytes, at: quote + 12, count: 2) + [port]
        // The quoted transport checksum, when the quote holds it: TCP and UDP cover the
        // addresses (pseudo-header) and ports, an echo only its identifier.
        let sumAt: Int? =
            quotedProto == IPProtocol.udp.rawValue ? l4 + 6 : quotedProto == IPProtocol.tcp.rawValue ? l4 + 16 : l4 + 2
        if let at = sumAt, at + 2 <= bytes.count, !(quotedProto == IPProtocol.udp.rawValue && bytes.be16(at: at) == 0) {
            let covered = isEcho ? (old.suffix(1), new.suffix(1)) : (old[...], new[...])
            var sum = adjustedChecksum(bytes.be16(at: at), old: Array(covered.0), new: Array(covered.1))
            if quotedProto == IPProtocol.udp.rawValue && sum == 0 { sum = 0xffff }
            bytes.setBE16(sum, at: at)
        }
        bytes.setBE16(0, at: quote + 10)
        bytes.setBE16(internetChecksum(Array(bytes[quote..<(quote + quoteHeader)])), at: quote + 10)
        bytes.setBE16(0, at: headerLength + 2)
        bytes.setBE16(internetChecksum(Array(bytes[headerLength...])), at: headerLength + 2)
        bytes.setBE16(0, at: 10)
        bytes.setBE16(internetChecksum(Array(bytes[0..<headerLength])), at: 10)
        return true
    }

    private func words(_ b: [UInt8], at offset: Int, count: Int) -> [UInt16] {
        (0..<count).map { b.be16(at: offset + 2 * $0) }
    }
}
