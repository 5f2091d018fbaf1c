/// Classic pcap files (the libpcap format tcpdump writes), Ethernet link type only.
public enum Pcap {
    public static let linkTypeEthernet: UInt32 = 1

    public struct ReadError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The frames of a pcap file, in order.
    public static func frames(from data: [UInt8]) throws -> [[UInt8]] {
        guard data.count >= 24 else {
            throw ReadError(description: "too short for a pcap header (\(data.count) bytes)")
        }
        let magic = data.le32(at: 0)
        let swapped: Bool
        switch magic {
        case 0xa1b2_c3d4, 0xa1b2_3c4d: swapped = false
        case 0xd4c3_b2a1, 0x4d3c_b2a1: swapped = true
        default:
            throw ReadError(
                description:
                    "not a pcap file (magic \(String(magic, radix: 16))); pcapng is not read, convert with `tshark "
                    + "-F pcap`"
            )
        }
        func u32(_ at: Int) -> UInt32 { swapped ? data.le32(at: at).byteSwapped : data.le32(at: at) }
        let link = u32(20)
        guard link == linkTypeEthernet else { throw ReadError(description: "link type \(link) is not Ethernet (1)") }
        var frames: [[UInt8]] = []
        var at = 24
        while at < data.count {
            guard at + 16 <= data.count else { throw ReadError(description: "truncated record header at byte \(at)") }
            let len = Int(u32(at + 8))
            guard at + 16 + len <= data.count else { throw ReadError(description: "truncated frame at byte \(at)") }
            frames.append(Array(data[(at + 16)..<(at + 16 + len)]))
            at += 16 + len
        }
        return frames
    }

    /// A pcap file holding `frames` (microsecond timestamps, all zero).
    public static func file(_ frames: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE32(0xa1b2_c3d4)
        out += [2, 0, 4, 0]  // version 2.4
        out.appendLE32(0)  // thiszone
        out.appendLE32(0)  // sigfigs
        out.appendLE32(65535)  // snaplen
        out.appendLE32(linkTypeEthernet)
        for f in frames {
            out.appendLE32(0)
            out.appendLE32(0)
            out.appendLE32(UInt32(f.count))
            out.appendLE32(UInt32(f.count))
            out += f
        }
        return out
    }
}

extension Array where Element == UInt8 {
    func le32(at i: Int) -> UInt32 {
        UInt32(self[i]) | UInt32(self[i + 1]) << 8 | UInt32(self[i + 2]) << 16 | UInt32(self[i + 3]) << 24
    }

    mutating func appendLE32(_ v: UInt32) {
        append(contentsOf: [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)])
    }
}
