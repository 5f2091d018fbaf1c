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
        guard gsoSize > 0, frame.count >= 14 else { return nil }
        let l3 = 14
        let type = frame.be16(at: 12)
        let v4 = type == EtherType.ipv4.rawValue
        guard v4 || type == EtherType.ipv6.rawValue else { return nil }
        let ipLength: Int
        if v4 {
            guard frame.count >= l3 + 20, frame[l3] >> 4 == 4, frame[l3 + 9] == IPProtocol.tcp.rawValue else {
                return nil
            }
            ipLength = Int(frame[l3] & 0x0f) * 4
        } else {
            guard frame.count >= l3 + 40, frame[l3] >> 4 == 6, frame[l3 + 6] == IPProtocol.tcp.rawValue else {
                return nil
            }
            ipLength = 40
        }
        let tcp = l3 + ipLength
        guard frame.count >= tcp + 20 else { return nil }
        let tcpLength = Int(frame[tcp + 12] >> 4) * 4
        let payloadStart = tcp + tcpLength
        guard tcpLength >= 20, frame.count >= payloadStart else { return nil }
        let payload = frame[payloadStart...]
        let seq = frame.be32(at: tcp + 4)
        let id = v4 ? frame.be16(at: l3 + 4) : 0
        let flags = frame[tcp + 13]
        let src = IPAddress(bytes: Array(frame[(v4 ? l3 + 12 : l3 + 8)..<(v4 ? l3 + 16 : l3 + 24)]))
        let dst = IPAddress(bytes: Array(frame[(v4 ? l3 + 16 : l3 + 24)..<(v4 ? l3 + 20 : l3 + 40)]))
        var out: [[UInt8]] = []
        var offset = 0
        let count = max(1, (payload.count + gsoSize - 1) / gsoSize)
        for i in 0..<count {
            let chunk = payload.dropFirst(offset).prefix(gsoSize)
            var s = Array(frame[..<payloadStart]) + chunk
            let last = i == count - 1
            // Sequence, flags.
            let n = seq &+ UInt32(offset)
            s[tcp + 4] = UInt8(n >> 24)
            s[tcp + 5] = UInt8(n >> 16 & 0xff)
            s[tcp + 6] = UInt8(n >> 8 & 0xff)
            s[tcp + 7] = UInt8(n & 0xff)
            var f = flags
            if !last { f &= ~0x09 }  // FIN, PSH
            if i > 0 { f &= ~0x80 }  // CWR
            s[tcp + 13] = f
            // IP lengths (and IPv4 identification and header checksum).
            if v4 {
                s.setBE16(UInt16(ipLength + tcpLength + chunk.count), at: l3 + 2)
                s.setBE16(id &+ UInt16(truncatingIfNeeded: i), at: l3 + 4)
                s[l3 + 10] = 0
                s[l3 + 11] = 0
                s.setBE16(internetChecksum(Array(s[l3..<tcp])), at: l3 + 10)
            } else {
                s.setBE16(UInt16(tcpLength + chunk.count), at: l3 + 4)
            }
            // TCP checksum over pseudo header, header and payload.
            s[tcp + 16] = 0
            s[tcp + 17] = 0
            let segment = Array(s[tcp...])
            let sum = internetChecksum(
                segment, initial: pseudoHeaderSum(src: src, dst: dst, protocol: 6, length: segment.count))
            s.setBE16(sum, at: tcp + 16)
            out.append(s)
            offset += chunk.count
        }
        return out
    }
}

extension IPAddress {
    /// 4 bytes IPv4, 16 bytes IPv6.
    init(bytes: [UInt8]) {
        self = bytes.count == 4 ? IPAddress(v4: bytes) : IPAddress(v6: bytes)
    }
}

/// UDP segmentation (USO) as a NIC does it for a VM's UDP GSO frame (a socket with
/// UDP_SEGMENT): the payload cut into datagrams of `gsoSize` bytes, each with a copy of the
/// Ethernet, IP and UDP headers, its own lengths and checksums, IPv4 identification
/// counting up.
public enum UDPSegmenter {
    public static func segments(ofFrame frame: [UInt8], gsoSize: Int) -> [[UInt8]]? {
        guard gsoSize > 0, frame.count >= 14 else { return nil }
        let l3 = 14
        let v4 = frame.be16(at: 12) == EtherType.ipv4.rawValue
        guard v4 || frame.be16(at: 12) == EtherType.ipv6.rawValue else { return nil }
        let ipLength: Int
        if v4 {
            guard frame.count >= l3 + 20, frame[l3] >> 4 == 4, frame[l3 + 9] == IPProtocol.udp.rawValue else {
                return nil
            }
            ipLength = Int(frame[l3] & 0x0f) * 4
        } else {
            guard frame.count >= l3 + 40, frame[l3] >> 4 == 6, frame[l3 + 6] == IPProtocol.udp.rawValue else {
                return nil
            }
            ipLength = 40
        }
        let udp = l3 + ipLength, payloadStart = udp + 8
        guard frame.count >= payloadStart else { return nil }
        let payload = frame[payloadStart...]
        let id = v4 ? frame.be16(at: l3 + 4) : 0
        let src = IPAddress(bytes: Array(frame[(v4 ? l3 + 12 : l3 + 8)..<(v4 ? l3 + 16 : l3 + 24)]))
        let dst = IPAddress(bytes: Array(frame[(v4 ? l3 + 16 : l3 + 24)..<(v4 ? l3 + 20 : l3 + 40)]))
        var out: [[UInt8]] = []
        var offset = 0
        let count = max(1, (payload.count + gsoSize - 1) / gsoSize)
        for i in 0..<count {
            let chunk = payload.dropFirst(offset).prefix(gsoSize)
            var s = Array(frame[..<payloadStart]) + chunk
            let udpLength = 8 + chunk.count
            s.setBE16(UInt16(udpLength), at: udp + 4)
            if v4 {
                s.setBE16(UInt16(ipLength + udpLength), at: l3 + 2)
                s.setBE16(id &+ UInt16(truncatingIfNeeded: i), at: l3 + 4)
                s[l3 + 10] = 0
                s[l3 + 11] = 0
                s.setBE16(internetChecksum(Array(s[l3..<udp])), at: l3 + 10)
            } else {
                s.setBE16(UInt16(udpLength), at: l3 + 4)
            }
            s[udp + 6] = 0
            s[udp + 7] = 0
            let datagram = Array(s[udp...])
            var sum = internetChecksum(
                datagram, initial: pseudoHeaderSum(src: src, dst: dst, protocol: 17, length: datagram.count))
            if sum == 0 { sum = 0xffff }
            s.setBE16(sum, at: udp + 6)
            out.append(s)
            offset += chunk.count
        }
        return out
    }
}
