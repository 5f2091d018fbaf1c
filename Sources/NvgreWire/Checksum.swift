/// The Internet checksum (RFC 1071) over bytes, folded and complemented.
public func internetChecksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
    var sum = initial
    var i = 0
    while i + 1 < bytes.count {
        sum &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { sum &+= UInt32(bytes[i]) << 8 }
    while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

/// A one's-complement checksum after some of the 16-bit words it covers changed (RFC 1624
/// eqn. 3: HC' = ~(~HC + ~m + m')).
func adjustedChecksum(_ checksum: UInt16, old: [UInt16], new: [UInt16]) -> UInt16 {
    var sum = UInt32(~checksum)
    for w in old { sum += UInt32(~w) }
    for w in new { sum += UInt32(w) }
    while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

/// The un-complemented sum of an IPv4/IPv6 pseudo header, to pass as `initial`.
public func pseudoHeaderSum(src: IPAddress, dst: IPAddress, protocol proto: UInt8, length: Int) -> UInt32 {
    var sum: UInt32 = 0
    for addr in [src.bytes, dst.bytes] {
        for i in stride(from: 0, to: addr.count, by: 2) {
            sum &+= UInt32(addr[i]) << 8 | UInt32(addr[i + 1])
        }
    }
    sum &+= UInt32(proto)
    sum &+= UInt32(length >> 16) &+ UInt32(length & 0xffff)
    return sum
}

extension Array where Element == UInt8 {
    mutating func appendBE16(_ v: UInt16) {
        append(UInt8(v >> 8))
        append(UInt8(v & 0xff))
    }
    mutating func appendBE32(_ v: UInt32) {
        append(UInt8(v >> 24))
        append(UInt8((v >> 16) & 0xff))
        append(UInt8((v >> 8) & 0xff))
        append(UInt8(v & 0xff))
    }
    func be16(at i: Int) -> UInt16 { UInt16(self[i]) << 8 | UInt16(self[i + 1]) }
    func be32(at i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }
    mutating func setBE16(_ v: UInt16, at i: Int) {
        self[i] = UInt8(v >> 8)
        self[i + 1] = UInt8(v & 0xff)
    }
}

/// An unfragmented IPv4 packet with its TCP or UDP checksum computed in full. A frame from a
/// VM with checksum offload on carries only the pseudo-header sum there, which the kernel or
/// the NIC completes on the way out; a frame that userspace sends on itself (in fragments)
/// must be completed first. A UDP checksum of 0 (none) stays 0; other packets are unchanged.
public func completingTransportChecksum(ofIPv4 packet: [UInt8]) -> [UInt8] {
    guard packet.count >= 20, packet[0] >> 4 == 4, packet[6] & 0x3f == 0, packet[7] == 0 else { return packet }
    let headerLength = Int(packet[0] & 0x0f) * 4
    let totalLength = min(packet.count, Int(packet[2]) << 8 | Int(packet[3]))
    let proto = packet[9]
    let at: Int
    switch proto {
    case IPProtocol.tcp.rawValue: at = headerLength + 16
    case IPProtocol.udp.rawValue: at = headerLength + 6
    default: return packet
    }
    guard at + 2 <= totalLength else { return packet }
    if proto == IPProtocol.udp.rawValue && packet[at] == 0 && packet[at + 1] == 0 { return packet }
    var out = packet
    out[at] = 0
    out[at + 1] = 0
    let src = IPAddress(v4: Array(packet[12..<16])), dst = IPAddress(v4: Array(packet[16..<20]))
    let l4 = Array(out[headerLength..<totalLength])
    var sum = internetChecksum(
        l4, initial: pseudoHeaderSum(src: src, dst: dst, protocol: proto, length: l4.count))
    if sum == 0 && proto == IPProtocol.udp.rawValue { sum = 0xffff }
    out[at] = UInt8(sum >> 8)
    out[at + 1] = UInt8(sum & 0xff)
    return out
}

/// The same for an IPv6 packet whose next header is TCP or UDP (no extension headers); a
/// UDP checksum over IPv6 is never 0.
public func completingTransportChecksum(ofIPv6 packet: [UInt8]) -> [UInt8] {
    guard packet.count >= 40, packet[0] >> 4 == 6 else { return packet }
    let proto = packet[6]
    let at: Int
    switch proto {
    case IPProtocol.tcp.rawValue: at = 40 + 16
    case IPProtocol.udp.rawValue: at = 40 + 6
    default: return packet
    }
    let end = min(packet.count, 40 + (Int(packet[4]) << 8 | Int(packet[5])))
    guard at + 2 <= end else { return packet }
    var out = packet
    out[at] = 0
    out[at + 1] = 0
    let src = IPAddress(v6: Array(packet[8..<24])), dst = IPAddress(v6: Array(packet[24..<40]))
    let l4 = Array(out[40..<end])
    var sum = internetChecksum(l4, initial: pseudoHeaderSum(src: src, dst: dst, protocol: proto, length: l4.count))
    if sum == 0 && proto == IPProtocol.udp.rawValue { sum = 0xffff }
    out[at] = UInt8(sum >> 8)
    out[at + 1] = UInt8(sum & 0xff)
    return out
}

/// An Ethernet frame (untagged, or with one 802.1Q tag) with its IPv4 or IPv6 transport
/// checksum completed: what a frame a VM left with a partial checksum needs before it goes
/// anywhere the kernel will not finish it.
public func completingTransportChecksum(ofFrame frame: [UInt8]) -> [UInt8] {
    guard frame.count >= 14 else { return frame }
    let l3 = frame.be16(at: 12) == 0x8100 && frame.count >= 18 ? 18 : 14
    let type = frame.be16(at: l3 - 2)
    let packet = Array(frame[l3...])
    switch type {
    case EtherType.ipv4.rawValue: return Array(frame[..<l3]) + completingTransportChecksum(ofIPv4: packet)
    case EtherType.ipv6.rawValue: return Array(frame[..<l3]) + completingTransportChecksum(ofIPv6: packet)
    default: return frame
    }
}
