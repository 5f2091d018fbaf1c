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
