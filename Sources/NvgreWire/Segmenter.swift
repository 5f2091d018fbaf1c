/// Where a GSO frame's headers are (Ethernet, IPv4 or IPv6 without extension headers, then
/// the transport header), and what every segment cut from it repeats: what the TCP and UDP
/// segmenters share.
struct GSOFrame {
    static let l3 = 14
    let v4: Bool
    let ipLength: Int
    let src: IPAddress
    let dst: IPAddress
    let id: UInt16
    var l4: Int { Self.l3 + ipLength }

    init?(_ frame: [UInt8], carrying proto: IPProtocol) {
        let l3 = Self.l3
        guard frame.count >= l3 else { return nil }
        let type = frame.be16(at: 12)
        v4 = type == EtherType.ipv4.rawValue
        guard v4 || type == EtherType.ipv6.rawValue else { return nil }
        if v4 {
            guard frame.count >= l3 + 20, frame[l3] >> 4 == 4, frame[l3 + 9] == proto.rawValue else { return nil }
            ipLength = Int(frame[l3] & 0x0f) * 4
        } else {
            guard frame.count >= l3 + 40, frame[l3] >> 4 == 6, frame[l3 + 6] == proto.rawValue else { return nil }
            ipLength = 40
        }
        let a = v4 ? l3 + 12 : l3 + 8, n = v4 ? 4 : 16
        src = IPAddress(bytes: Array(frame[a..<a + n]))
        dst = IPAddress(bytes: Array(frame[a + n..<a + 2 * n]))
        id = v4 ? frame.be16(at: l3 + 4) : 0
    }

    /// Segment `i`'s IP lengths for `l4Length` bytes of transport header and payload, and for
    /// IPv4 its identification (counting up) and header checksum.
    func fixIP(_ s: inout [UInt8], segment i: Int, l4Length: Int) {
        let l3 = Self.l3
        if v4 {
            s.setBE16(UInt16(ipLength + l4Length), at: l3 + 2)
            s.setBE16(id &+ UInt16(truncatingIfNeeded: i), at: l3 + 4)
            s[l3 + 10] = 0
            s[l3 + 11] = 0
            s.setBE16(internetChecksum(Array(s[l3..<l4])), at: l3 + 10)
        } else {
            s.setBE16(UInt16(l4Length), at: l3 + 4)
        }
    }

    /// The transport checksum (at `at` in the segment) over the pseudo header and all that
    /// follows the IP header; for UDP a computed 0 is sent as 0xffff.
    func setTransportChecksum(_ s: inout [UInt8], at: Int, proto: IPProtocol) {
        s[at] = 0
        s[at + 1] = 0
        let l4Part = Array(s[l4...])
        var sum = internetChecksum(
            l4Part, initial: pseudoHeaderSum(src: src, dst: dst, protocol: proto.rawValue, length: l4Part.count))
        if sum == 0 && proto == .udp { sum = 0xffff }
        s.setBE16(sum, at: at)
    }

    /// The payload cut into chunks of `size` bytes (one chunk when it is empty).
    static func chunks(_ payload: ArraySlice<UInt8>, size: Int) -> [ArraySlice<UInt8>] {
        guard !payload.isEmpty else { return [payload] }
        return stride(from: payload.startIndex, to: payload.endIndex, by: size).map {
            payload[$0..<min($0 + size, payload.endIndex)]
        }
    }
}

/// TCP segmentation as a NIC does it for a GSO frame (what a VM with TSO hands over): the
/// frame's payload cut into segments of `gsoSize` bytes, each with a copy of the Ethernet,
/// IP and TCP headers; sequence numbers advanced, IPv4 identification incremented per
/// segment, lengths and checksums computed for each, FIN and PSH only on the last segment
/// and CWR only on the first.
public enum TCPSegmenter {
    /// The segments of `frame` (Ethernet, IPv4 or IPv6 without extension headers, TCP), or
    /// nil when it is not such a frame or `gsoSize` is 0. A frame that fits one segment comes
    /// back as it is, its checksums completed.
    public static func segments(ofFrame frame: [UInt8], gsoSize: Int) -> [[UInt8]]? {
        guard gsoSize > 0, let g = GSOFrame(frame, carrying: .tcp) else { return nil }
        let tcp = g.l4
        guard frame.count >= tcp + 20 else { return nil }
        let tcpLength = Int(frame[tcp + 12] >> 4) * 4
        let payloadStart = tcp + tcpLength
        guard tcpLength >= 20, frame.count >= payloadStart else { return nil }
        let seq = frame.be32(at: tcp + 4)
        let flags = frame[tcp + 13]
        let chunks = GSOFrame.chunks(frame[payloadStart...], size: gsoSize)
        var offset = 0
        return chunks.enumerated().map { i, chunk in
            var s = Array(frame[..<payloadStart]) + chunk
            let n = seq &+ UInt32(offset)
            for k in 0..<4 { s[tcp + 4 + k] = UInt8(truncatingIfNeeded: n >> (24 - 8 * k)) }
            var f = flags
            if i < chunks.count - 1 { f &= ~0x09 }  // FIN, PSH
            if i > 0 { f &= ~0x80 }  // CWR
            s[tcp + 13] = f
            g.fixIP(&s, segment: i, l4Length: tcpLength + chunk.count)
            g.setTransportChecksum(&s, at: tcp + 16, proto: .tcp)
            offset += chunk.count
            return s
        }
    }
}

/// UDP segmentation (USO) as a NIC does it for a VM's UDP GSO frame (a socket with
/// UDP_SEGMENT): the payload cut into datagrams of `gsoSize` bytes, each with a copy of the
/// Ethernet, IP and UDP headers, its own lengths and checksums, IPv4 identification
/// counting up.
public enum UDPSegmenter {
    public static func segments(ofFrame frame: [UInt8], gsoSize: Int) -> [[UInt8]]? {
        guard gsoSize > 0, let g = GSOFrame(frame, carrying: .udp) else { return nil }
        let udp = g.l4, payloadStart = udp + 8
        guard frame.count >= payloadStart else { return nil }
        return GSOFrame.chunks(frame[payloadStart...], size: gsoSize).enumerated().map { i, chunk in
            var s = Array(frame[..<payloadStart]) + chunk
            s.setBE16(UInt16(8 + chunk.count), at: udp + 4)
            g.fixIP(&s, segment: i, l4Length: 8 + chunk.count)
            g.setTransportChecksum(&s, at: udp + 6, proto: .udp)
            return s
        }
    }
}

extension IPAddress {
    /// 4 bytes IPv4, 16 bytes IPv6.
    init(bytes: [UInt8]) {
        self = bytes.count == 4 ? IPAddress(v4: bytes) : IPAddress(v6: bytes)
    }
}
