import Foundation
import NvgreLab
import NvgreWire
import Testing

/// A port that is a tap, as KVM/QEMU and libvirt make them: this process plays the VM, with
/// the virtio-net header, and sends one GSO frame of three TCP segments whose checksum it
/// leaves to the host, as a Linux guest with TSO does.
@Suite(.serialized)
struct TapPortTests {
    static let tapCA: IPAddress = "198.19.1.9"
    static let tapMAC: MACAddress = "02:00:00:00:01:09"
    static let mss = 1448, segments = 3

    /// The frame as the guest hands it over: one IPv4 packet of all the payload, the TCP
    /// checksum field holding the pseudo-header sum only (VIRTIO_NET_HDR_F_NEEDS_CSUM).
    static func gsoFrame(seq: UInt32) -> (VirtioNetHeader, [UInt8]) {
        let payload = (0..<(mss * segments)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var tcp = TCP.segment(
            src: tapCA, dst: redB.ip4, sport: 40123, dport: 9, seq: seq, flags: 0x08, payload: payload)
        let pseudo = pseudoHeaderSum(src: tapCA, dst: redB.ip4, protocol: 6, length: tcp.count)
        let partial = ~internetChecksum([], initial: pseudo)  // the folded sum, not complemented
        tcp[16] = UInt8(partial >> 8)
        tcp[17] = UInt8(partial & 0xff)
        let frame = Ethernet.frame(
            dst: redB.mac, src: tapMAC, type: .ipv4,
            payload: IPPacket.build(src: tapCA, dst: redB.ip4, proto: 6, payload: tcp))
        let header = VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4, headerLength: 54,
            gsoSize: UInt16(mss), checksumStart: 34, checksumOffset: 16)
        return (header, frame)
    }

    @Test func aGuestsGSOFrameThroughATapReachesAVMOnAnotherHostIntact() throws {
        let lab = try startedLab("tap")
        let tap = try TapVM(name: "tap1", in: lab.ns(hostA))
        try lab.net.ip(lab.ns(hostA), "link set tap1 up")
        let record = ["lookup", "add", "5001", "\(Self.tapCA)", "--pa", "198.18.0.1", "--mac", "\(Self.tapMAC)"]
        for h in [hostA, hostB] {
            let r = try lab.cli(h, record)
            try #require(r.status == 0, "\(r.output)")
        }
        let add = try lab.cli(
            hostA, ["port", "add", "tap1", "--vsid", "5001", "--mac", "\(Self.tapMAC)", "--ca", "\(Self.tapCA)"])
        try #require(add.status == 0, "\(add.output)")

        let onWire = try Capture(
            in: lab.ns(hostA), interface: "ul", filter: "ip proto 47", name: "\(lab.net.prefix)-tapwire", snapLength: 0)
        let seq: UInt32 = 1_000_000
        let (header, frame) = Self.gsoFrame(seq: seq)
        try tap.send(frame, header: header)

        // No socket listens on port 9 in B's VM: its stack answers each segment it accepts
        // (checksum right, in order) with a reset acknowledging everything up to its end.
        // Resets come back through the tap, to the guest.
        var acked: UInt32 = 0
        let deadline = Date().addingTimeInterval(5)
        while acked < seq + UInt32(Self.mss * Self.segments), Date() < deadline {
            guard let (_, reply) = tap.receive(timeout: 1), let d = DecodedFrame(reply), d.ipProtocol == 6,
                d.src == redB.ip4, reply.count >= d.l3Offset + 20 + 14
            else { continue }
            let tcp = Array(reply[(d.l3Offset + 20)...])
            guard tcp[13] & 0x04 != 0 else { continue }  // RST
            acked = max(acked, UInt32(tcp[8]) << 24 | UInt32(tcp[9]) << 16 | UInt32(tcp[10]) << 8 | UInt32(tcp[11]))
        }
        #expect(acked == seq + UInt32(Self.mss * Self.segments), "B's VM acknowledged up to \(acked)")

        // On the wire: three NVGRE segments, each within the MTU with a right checksum.
        let wire = try OffloadTests.segments(onWire).filter { $0.dport == 9 }
        #expect(wire.count == Self.segments, "\(wire.count) segments on the underlay")
        #expect(wire.allSatisfy { $0.payload == Self.mss && $0.checksum_ok && $0.vsid == 5001 && $0.df })
        #expect(wire.allSatisfy { $0.outer_len <= lab.underlayMTU })
    }
}
