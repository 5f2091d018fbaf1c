/// IPv4 fragmentation as a router does it (RFC 791): a packet without DF that does not fit
/// the next link is cut into fragments of at most `mtu` bytes, each with the original
/// header (same identification), its offset in 8-byte units, and MF on all but the last
/// (and on the last too when the packet was itself a non-final fragment).
public enum IPv4Fragmenter {
    /// The fragments of `packet` (an IPv4 packet from its header on) for a link of `mtu`
    /// bytes; nil when it may not or cannot be fragmented (DF set, options, truncated, or an
    /// MTU too small for 8 bytes of data).
    public static func fragments(of packet: [UInt8], mtu: Int) -> [[UInt8]]? {
        guard packet.count >= 20, packet[0] == 0x45 else { return nil }  // no options: none to copy or drop
        let total = Int(packet.be16(at: 2))
        guard total <= packet.count, total > 20 else { return nil }
        let flags = packet.be16(at: 6)
        guard flags & 0x4000 == 0 else { return nil }  // DF: not ours to cut
        let chunk = (mtu - 20) & ~7
        guard chunk >= 8 else { return nil }
        if total <= mtu { return [Array(packet.prefix(total))] }
        let data = Array(packet[20..<total])
        let firstOffset = Int(flags & 0x1fff), moreAfter = flags & 0x2000 != 0
        var out: [[UInt8]] = []
        var start = 0
        while start < data.count {
            let end = min(start + chunk, data.count)
            let last = end == data.count
            var header = Array(packet[0..<20])
            header.setBE16(UInt16(20 + end - start), at: 2)
            let more: UInt16 = (!last || moreAfter) ? 0x2000 : 0
            header.setBE16(more | UInt16(firstOffset + start / 8), at: 6)
            header.setBE16(0, at: 10)
            header.setBE16(internetChecksum(header), at: 10)
            out.append(header + data[start..<end])
            start = end
        }
        return out
    }
}
