import Foundation
import NvgreLab
import NvgreWire
import Testing

/// VMs at their defaults (checksum offload, TSO and GSO on) hand the port 64 KiB frames with
/// unfinished checksums. On the underlay each segment must be a valid NVGRE frame within the
/// MTU, with DF, its VSID and its flow's FlowID, and an inner checksum that scapy, computing
/// it afresh, finds right.
@Suite(.serialized)
struct OffloadTests {
    /// One segment as scapy reads it off the underlay.
    struct Segment: Decodable {
        let outer_len: Int
        let df: Bool
        let vsid: Int
        let flow_id: Int
        let proto: String
        let sport: Int
        let dport: Int
        let payload: Int
        let checksum_ok: Bool
    }

    static func segments(_ capture: Capture) throws -> [Segment] {
        capture.stop()
        let out = try sh("\(systemPython) \(decodersDirectory)/nvgre_scapy.py segments \(capture.path)")
        return try out.split(separator: "\n").map { try JSONDecoder().decode(Segment.self, from: Data($0.utf8)) }
    }

    /// The longest frame the VM handed its port (tcpdump on the port sees a GSO frame whole).
    static func longestFrame(_ capture: Capture) throws -> Int {
        capture.stop()
        let out = try sh("\(systemPython) \(decodersDirectory)/nvgre_scapy.py sizes \(capture.path)")
        let sizes = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Int]
        return sizes?["max"] ?? 0
    }

    /// 4 MiB over TCP from Red's VM on A to Red's VM on B, with captures on A's port and on
    /// A's uplink, where frames leave the host as a NIC puts them on the wire (the fabric's
    /// end runs GRO, so a capture there would see segments joined again); checks the segments
    /// and returns them.
    func transfer(_ lab: DemoLab, _ family: IPFamily, mtu: Int, _ what: String) throws -> [Segment] {
        let onPort = try Capture(
            in: lab.ns(hostA), interface: "red1", filter: "tcp", name: "\(lab.net.prefix)-port", snapLength: 0)
        let onWire = try Capture(
            in: lab.ns(hostA), interface: "ul", filter: "ip proto 47 or ip6 proto 47",
            name: "\(lab.net.prefix)-wire", snapLength: 0)
        let t = try Traffic.tcpTransfer(
            from: lab.ns(redA), to: lab.ns(redB), address: redB.address(family), bytes: 4 << 20, timeout: 30)
        #expect(t.ok, "\(what): \(t)")
        let longest = try Self.longestFrame(onPort)
        #expect(longest > 1514, "\(what): the VM sent no GSO frame (longest \(longest) bytes): offloads are off")

        let segments = try Self.segments(onWire).filter { $0.proto == "tcp" && $0.dport == 5201 }
        #expect(segments.count > (4 << 20) / 1500, "\(what): \(segments.count) data segments on the underlay")
        #expect(segments.allSatisfy { $0.outer_len <= mtu }, "\(what): a segment over the \(mtu)-byte MTU")
        #expect(segments.allSatisfy { $0.checksum_ok }, "\(what): \(segments.filter { !$0.checksum_ok }.count) bad")
        #expect(segments.allSatisfy { $0.vsid == 5001 }, "\(what): a segment outside VSID 5001")
        #expect(Set(segments.map(\.flow_id)).count == 1, "\(what): one flow, several FlowIDs")
        if lab.underlay == .v4 { #expect(segments.allSatisfy { $0.df }, "\(what): a segment without DF") }
        return segments
    }

    @Test(arguments: [(IPFamily.v4, IPFamily.v4), (.v6, .v4), (.v4, .v6), (.v6, .v6)])
    func segmentsOfAVMAtDefaultsAreValidNVGRE(_ family: IPFamily, _ underlay: IPFamily) throws {
        let lab = try startedLab("gso-\(family)-\(underlay)", underlay: underlay)
        let segments = try transfer(lab, family, mtu: lab.underlayMTU, "\(family) over a \(underlay) underlay")
        // Full-size segments: the VM's MSS for a 1500-byte MTU, each sent once encapsulated.
        let mss = family == .v4 ? 1448 : 1428
        #expect(segments.contains { $0.payload == mss }, "\(family): no segment of \(mss) bytes")
        let a = try lab.counters(hostA)
        #expect((a.exceptions["oversize"] ?? 0) == 0, "\(family): segments that fit were taken for too big")
    }

    /// Routed between two VMs on one host (5001 to 5002), a GSO frame stays one frame: the
    /// tc program rewrites it and the VM on the other port takes it whole, as from a bridge.
    @Test func routedOnOneHostAGSOFrameStaysWhole() throws {
        let lab = try startedLab("gso-local")
        let toVM = try Capture(
            in: lab.ns(hostA), interface: "red2", filter: "tcp", name: "\(lab.net.prefix)-red2", snapLength: 0)
        let t = try Traffic.tcpTransfer(from: lab.ns(redA), to: lab.ns(red2A), address: red2A.ip4, bytes: 4 << 20)
        #expect(t.ok, "\(t)")
        let longest = try Self.longestFrame(toVM)
        #expect(longest > 1514, "the VM on red2 got no GSO frame (longest \(longest) bytes)")
        let a = try lab.counters(hostA)
        #expect((a.vsids[5001]?["routed"] ?? 0) > 0 && (a.vsids[5002]?["local"] ?? 0) > 0)
    }

    /// On a 1500-byte underlay a VM's 1500-byte segments do not fit once encapsulated: the VM
    /// hears "fragmentation needed" / "packet too big" for its GSO frames and its segments
    /// shrink to fit, with no segment over the MTU on the wire.
    @Test(arguments: [IPFamily.v4, .v6])
    func pathMTUOverA1500ByteUnderlay(_ family: IPFamily) throws {
        let lab = DemoLab(net: LabNetwork(tag: "gso-pmtu-\(family)"))
        lab.underlayMTU = 1500
        try lab.build()
        try lab.start()
        let segments = try transfer(lab, family, mtu: 1500, "\(family) over a 1500-byte underlay")
        #expect(segments.allSatisfy { $0.outer_len <= 1500 })
        let a = try lab.counters(hostA)
        #expect((a.exceptions["oversize"] ?? 0) > 0, "the VM's first GSO frames were not too big?")
    }
}
