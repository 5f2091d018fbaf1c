import Foundation
import NvgreLab
import NvgreWire
import Testing

/// What our data path puts on the underlay, read by decoders that share no code with it
/// (tshark, scapy), and NVGRE built by scapy, delivered by our receiver.
@Suite(.serialized)
struct DecoderTests {
    /// Frames captured on A's bridge port while Red and Blue each ping once across hosts.
    static func captureTenantPings(_ lab: DemoLab) throws -> Capture {
        let capture = try Capture(
            in: lab.fabric, interface: "to-a", filter: "ip proto 47", name: "\(lab.net.prefix)-decoders")
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 1) == 1)
        #expect(Traffic.ping(from: lab.ns(blueA), to: blueB.ip4, count: 1) == 1)
        _ = try capture.frames()  // stops tcpdump, flushing the file
        return capture
    }

    /// Expected (outer src, outer dst, VSID, inner src MAC, inner src, inner dst) of the four
    /// frames: request A->B and reply B->A for Red, then for Blue.
    static let expected: [[String]] = [(5001, redA, redB), (6001, blueA, blueB)].flatMap { vsid, a, b in
        [
            ["198.18.0.1", "198.18.0.2", "\(vsid)", a.mac.description, a.ip4.description, b.ip4.description],
            ["198.18.0.2", "198.18.0.1", "\(vsid)", b.mac.description, b.ip4.description, a.ip4.description]
        ]
    }

    @Test func tsharkReadsTheUnderlay() throws {
        let lab = try startedLab("tshark")
        let capture = try Self.captureTenantPings(lab)
        // Outer and inner occurrences of a field come joined by '|', outer first.
        let out = try sh(
            "tshark -r \(capture.path) -T fields -E aggregator='|' -e ip.src -e ip.dst -e gre.flags_and_version -e "
                + "gre.proto -e gre.key -e eth.src -e ip.proto 2>/dev/null"
        )
        // The VMs' own multicast (IPv6 router solicitations, MLD) is replicated between the
        // hosts too: the pings are the unicast frames.
        let rows = out.split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }.filter { $0.count == 7 && $0[6].hasSuffix("|1") }
        #expect(rows.count == 4, "tshark rows: \(out)")
        var seen: [[String]] = []
        for r in rows where r.count == 7 {
            let ips = r[0].split(separator: "|").map(String.init), dsts = r[1].split(separator: "|").map(String.init)
            let macs = r[5].split(separator: "|").map(String.init)
            #expect(r[2] == "0x2000", "GRE flags and version: \(r[2])")
            #expect(r[3] == "0x6558", "GRE protocol: \(r[3])")
            #expect(r[6].split(separator: "|").map(String.init) == ["47", "1"], "outer GRE, inner ICMP: \(r[6])")
            guard ips.count == 2, dsts.count == 2, macs.count == 2, let key = UInt32(r[4].dropFirst(2), radix: 16)
            else {
                Issue.record("unexpected tshark row \(r)")
                continue
            }
            seen.append([ips[0], dsts[0], "\(key >> 8)", macs[1], ips[1], dsts[1]])
        }
        #expect(seen == Self.expected)

        // contrib/nvgre.lua shows the key as VSID and FlowID (issue 22), on the same frames.
        let script = URL(fileURLWithPath: decodersDirectory).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("contrib/nvgre.lua").path
        let lua = try sh(
            "tshark -X lua_script:\(script) -r \(capture.path) -Y 'icmp && !eth.dst[0]&1' -T fields "
                + "-e nvgre.vsid -e nvgre.flowid -e gre.key 2>/dev/null")
        let shown = lua.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(shown.count == 4, "tshark with the dissector: \(lua)")
        for row in shown {
            guard row.count == 3, let vsid = UInt32(row[0]), let flow = UInt32(row[1].dropFirst(2), radix: 16),
                let key = UInt32(row[2].dropFirst(2), radix: 16)
            else {
                Issue.record("unexpected row \(row)")
                continue
            }
            #expect(vsid == key >> 8 && flow == key & 0xff, "\(row)")
        }
        #expect(shown.compactMap { $0.first } == Self.expected.map { $0[2] }, "\(lua)")
    }

    @Test func scapyReadsTheUnderlay() throws {
        let lab = try startedLab("scapyread")
        let capture = try Self.captureTenantPings(lab)
        let out = try sh("\(systemPython) \(decodersDirectory)/nvgre_scapy.py decode \(capture.path)")
        let frames = out.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { ($0["inner_dst_mac"] as? String).flatMap(MACAddress.init(parsing:))?.isMulticast == false }
        #expect(frames.count == 4, "scapy said: \(out)")
        #expect(
            frames.allSatisfy {
                $0["gre_flags"] as? Int == 0x2000 && $0["gre_proto"] as? Int == 0x6558
                    && $0["outer_version"] as? Int == 4
            })
        let seen = frames.map { f in
            ["outer_src", "outer_dst", "vsid", "inner_src_mac", "inner_src", "inner_dst"].map { "\(f[$0] ?? "")" }
        }
        #expect(seen == Self.expected)
        // FlowID: the same flow keeps its FlowID in each direction.
        let flows = Dictionary(grouping: frames, by: { "\($0["outer_src"]!)\($0["vsid"]!)" }).mapValues {
            Set($0.map { "\($0["flow_id"]!)" })
        }
        #expect(flows.values.allSatisfy { $0.count == 1 })
    }

    @Test func scapyBuiltNVGREReachesTheRightVM() throws {
        let lab = try startedLab("scapyinject")
        let bMAC = try lab.net.mac("ul", in: lab.ns(hostB))
        let port: UInt16 = 7001
        let red = try Traffic.udpListener(in: lab.ns(redB), family: .v4, port: port)
        let blue = try Traffic.udpListener(in: lab.ns(blueB), family: .v4, port: port)
        // Same inner addresses and MACs; only the VSID says which tenant.
        for (vsid, marker) in [(5001, "for-red"), (6001, "for-blue")] {
            try sh(
                "ip netns exec \(lab.ns(hostG)) \(systemPython) \(decodersDirectory)/nvgre_scapy.py inject ul \(bMAC) "
                    + "\(hostA.pa4) \(hostB.pa4) \(vsid) \(redA.mac) \(redB.mac) \(redA.ip4) \(redB.ip4) \(port) "
                    + "\(marker)"
            )
        }
        #expect(red.receive(timeout: 1).map { String(decoding: $0, as: UTF8.self) } == ["for-red"])
        #expect(blue.receive(timeout: 0.5).map { String(decoding: $0, as: UTF8.self) } == ["for-blue"])
        let b = try lab.counters(hostB)
        #expect(b.vsids[5001]?["decap"] == 1 && b.vsids[6001]?["decap"] == 1)
    }

    /// An L2 endpoint that is not ours (Open vSwitch floods a VM's ARP request into the VSID)
    /// asks, inside NVGRE, for Red's VM on A: A answers from policy in XDP, encapsulated back
    /// to the asking PA in the same VSID, and scapy reads the answer off the underlay. The
    /// same question from a PA the sender's record does not name gets nothing.
    @Test func anARPRequestFromAForeignEndpointIsAnsweredBackOverTheTunnel() throws {
        let lab = try startedLab("fabricarp")
        let aMAC = try lab.net.mac("ul", in: lab.ns(hostA))
        let capture = try Capture(
            in: lab.fabric, interface: "to-g", filter: "ip proto 47", name: "\(lab.net.prefix)-arp", snapLength: 0)
        // From G's place on the underlay, as the endpoint at B's PA (whose record vouches for
        // Red B's CA and MAC); then the same from G's own PA. The answer goes back where the
        // request came from: to the MAC it came from (G's), to the PA it came from (B's).
        for outerSource in [hostB.pa4, hostG.pa4] {
            try sh(
                "ip netns exec \(lab.ns(hostG)) \(systemPython) \(decodersDirectory)/nvgre_scapy.py inject-arp ul "
                    + "\(aMAC) \(outerSource) \(hostA.pa4) 5001 \(redB.mac) \(redB.ip4) \(redA.ip4)")
        }
        usleep(300_000)
        capture.stop()
        let out = try sh("\(systemPython) \(decodersDirectory)/nvgre_scapy.py arp-replies \(capture.path)")
        let replies = out.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        // (The bridge may flood the first request before it knows A's MAC, and B, which
        // forwards, sends A its copy: a second identical answer then comes back.)
        #expect(!replies.isEmpty, "scapy said: \(out)")
        for r in replies {
            #expect(r["outer_src"] as? String == "\(hostA.pa4)" && r["outer_dst"] as? String == "\(hostB.pa4)", "\(r)")
            #expect(r["vsid"] as? Int == 5001)
            #expect(r["hwsrc"] as? String == "\(redA.mac)" && r["psrc"] as? String == "\(redA.ip4)")
            #expect(r["hwdst"] as? String == "\(redB.mac)" && r["pdst"] as? String == "\(redB.ip4)")
            #expect(r["inner_dst_mac"] as? String == "\(redB.mac)")
        }
        let a = try lab.counters(hostA)
        #expect(a.drops["provider-address-spoofed"] == 1, "the forged one: \(a.drops)")
    }
}
