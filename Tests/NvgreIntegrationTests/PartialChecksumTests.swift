import NvgreWire
import Testing

@testable import NvgreUserspaceIO

/// The userspace path finishes a VM's partial checksum in place, from the virtio-net
/// header's start and offset; the expected frames are built whole by the wire codecs.
struct PartialChecksumTests {
    /// `frame` with its transport checksum replaced by the pseudo-header's sum alone (what a
    /// VM with checksum offload sends), and where that field is.
    static func partial(_ frame: [UInt8], l3: Int, v6: Bool, tcp: Bool) -> ([UInt8], start: Int, offset: Int) {
        var f = frame
        let l4 = l3 + (v6 ? 40 : 20)
        let at = tcp ? 16 : 6
        let src = v6 ? IPAddress(v6: f[l3 + 8..<l3 + 24]) : IPAddress(v4: f[l3 + 12..<l3 + 16])
        let dst = v6 ? IPAddress(v6: f[l3 + 24..<l3 + 40]) : IPAddress(v4: f[l3 + 16..<l3 + 20])
        let sum = ~internetChecksum(
            [], initial: pseudoHeaderSum(src: src, dst: dst, protocol: tcp ? 6 : 17, length: f.count - l4))
        f[l4 + at] = UInt8(sum >> 8)
        f[l4 + at + 1] = UInt8(sum & 0xff)
        return (f, l4, at)
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func aPartialChecksumIsFinishedAsTheWholeOne(v6: Bool, tcp: Bool) {
        let src: IPAddress = v6 ? "2001:db8:19:1::1" : "10.1.1.1"
        let dst: IPAddress = v6 ? "2001:db8:19:1::2" : "10.1.1.2"
        for length in [0, 1, 2, 3, 17, 1000, 1401] {
            let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let l4 =
                tcp
                ? TCP.segment(src: src, dst: dst, sport: 40000, dport: 80, seq: 9, flags: 0x18, payload: payload)
                : UDP.datagram(src: src, dst: dst, sport: 5353, dport: 5353, payload: payload)
            let whole = Ethernet.frame(
                dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: v6 ? .ipv6 : .ipv4,
                payload: IPPacket.build(src: src, dst: dst, proto: tcp ? 6 : 17, payload: l4))
            var (f, start, offset) = Self.partial(whole, l3: 14, v6: v6, tcp: tcp)
            #expect(f != whole)
            PartialChecksum(start: start, offset: offset).finish(&f)
            #expect(f == whole, "\(v6 ? "IPv6" : "IPv4") \(tcp ? "TCP" : "UDP") with \(length) bytes")
        }
    }

    /// A header pointing past the frame changes nothing (and does not trap).
    @Test func anOffsetOutsideTheFrameChangesNothing() {
        var f = [UInt8](repeating: 7, count: 60)
        PartialChecksum(start: 50, offset: 16).finish(&f)
        #expect(f == [UInt8](repeating: 7, count: 60))
    }
}
