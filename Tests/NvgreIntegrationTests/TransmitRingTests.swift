import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire
import Testing

/// The userspace path's transmit ring (PacketRing) against a real veth: what the kernel
/// cannot send is neither kept forever nor lost uncounted.
@Suite(.serialized)
struct TransmitRingTests {
    static let frame = Ethernet.frame(
        dst: "02:00:00:00:01:02", src: "02:00:00:00:01:01", type: .ipv4,
        payload: IPPacket.build(
            src: "198.19.1.1", dst: "198.19.1.2", proto: 17,
            payload: UDP.datagram(src: "198.19.1.1", dst: "198.19.1.2", sport: 1, dport: 2, payload: [1, 2, 3])))

    /// Frames for a port whose other end is down are refused by the device, and the kernel
    /// would retry them at every flush: after a bounded number of flushes they are dropped
    /// and counted, and the ring is free again. With the other end up, frames arrive (counted
    /// by the peer's interface), none left queued.
    @Test func framesForADownPeerAreDroppedAndCountedThenTrafficFlowsAgain() throws {
        let net = LabNetwork(tag: "txring")
        let host = try net.namespace("h")
        let vm = try net.namespace("v")
        // No IPv6 on either end: its own frames (MLD, router solicitations) would be counted
        // with ours at the peer.
        for ns in [host, vm] {
            try net.exec(ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        }
        try net.veth("port", in: host, "eth0", in: vm)
        try net.ip(vm, "link set eth0 down")
        func received() throws -> Int {
            Int(
                try net.exec(vm, "cat /sys/class/net/eth0/statistics/rx_packets").trimmingCharacters(
                    in: .whitespacesAndNewlines)) ?? -1
        }
        try NetworkNamespace.run(in: host) {
            let ring = try PacketRing(ifindex: try interfaceIndex("port"), vnetHeader: true)
            for _ in 0..<10 { try Self.frame.withUnsafeBytes { try ring.send($0) } }
            ring.flush()
            #expect(ring.hasQueued, "the device took frames with its peer down")
            var flushes = 1
            while ring.hasQueued && flushes < 1000 {
                ring.flush()
                flushes += 1
            }
            #expect(!ring.hasQueued, "still queued after \(flushes) flushes")
            #expect(ring.transmitFailures == 10)
            #expect(flushes <= 100)

            try net.ip(vm, "link set eth0 up")
            usleep(200_000)  // the carrier comes up
            let before = try received()
            for _ in 0..<20 { try Self.frame.withUnsafeBytes { try ring.send($0) } }
            ring.flush()
            #expect(!ring.hasQueued)
            usleep(100_000)
            let arrived = try received() - before
            #expect(arrived == 20, "the peer received \(arrived) of 20")
            #expect(ring.transmitFailures == 10)
        }
    }
}
