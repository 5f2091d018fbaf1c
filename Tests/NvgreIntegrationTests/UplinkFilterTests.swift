import CNvgre
import NvgreLab
import NvgreUserspaceIO
import NvgreWire
import Testing

/// The uplink ring's classic BPF filter, run by a small interpreter of the instructions it
/// uses (absolute loads, equality jumps, returns) on frames built with the wire codecs.
struct UplinkFilterTests {
    static func run(_ program: [sock_filter], _ frame: [UInt8]) -> UInt32 {
        var a: UInt32 = 0
        var pc = 0
        func load(_ k: UInt32, _ size: Int) -> UInt32? {
            let at = Int(k)
            guard at + size <= frame.count else { return nil }
            return frame[at..<at + size].reduce(0) { $0 << 8 | UInt32($1) }
        }
        while pc < program.count {
            let i = program[pc]
            switch Int32(i.code) {
            case BPF_LD | BPF_B | BPF_ABS, BPF_LD | BPF_H | BPF_ABS, BPF_LD | BPF_W | BPF_ABS:
                let size = Int32(i.code) & 0x18 == BPF_B ? 1 : Int32(i.code) & 0x18 == BPF_H ? 2 : 4
                guard let v = load(i.k, size) else { return 0 }  // the kernel's rule: out of bounds rejects
                a = v
            case BPF_JMP | BPF_JEQ | BPF_K: pc += Int(a == i.k ? i.jt : i.jf)
            case BPF_RET | BPF_K: return i.k
            default: Issue.record("unexpected instruction \(i.code)")
            }
            pc += 1
        }
        Issue.record("the program ran off its end")
        return 0
    }

    static let pa4: IPAddress = "198.18.0.1", pa6: IPAddress = "2001:db8:18::1"

    static func outer(_ src: IPAddress, _ dst: IPAddress, proto: UInt8) -> [UInt8] {
        let inner = Ethernet.frame(
            dst: MACAddress("02:00:00:00:01:01"), src: MACAddress("02:00:00:00:01:02"), type: .ipv4,
            payload: [UInt8](repeating: 0, count: 28))
        let ip = IPPacket.build(
            src: src, dst: dst, proto: proto, payload: NVGRE.greHeader(vsid: 5001, flowID: 1) + inner)
        return Ethernet.frame(
            dst: MACAddress("02:00:00:00:00:01"), src: MACAddress("02:00:00:00:00:02"),
            type: src.family == .v4 ? .ipv4 : .ipv6, payload: ip)
    }

    @Test func onlyNVGREForThisHostsProviderAddressesReachesTheRing() {
        let program = UplinkFilter.program(localPAs: [Self.pa4, Self.pa6, "198.18.0.7"])
        let accepted: [(String, [UInt8])] = [
            ("GRE to the IPv4 PA", Self.outer("198.18.0.2", Self.pa4, proto: 47)),
            ("GRE to the second IPv4 PA", Self.outer("198.18.0.2", "198.18.0.7", proto: 47)),
            ("GRE to the IPv6 PA", Self.outer("2001:db8:18::2", Self.pa6, proto: 47)),
            ("an IPv6 fragment to the PA", Self.outer("2001:db8:18::2", Self.pa6, proto: 44))
        ]
        let rejected: [(String, [UInt8])] = [
            ("UDP to the PA", Self.outer("198.18.0.2", Self.pa4, proto: 17)),
            ("GRE to another address", Self.outer("198.18.0.2", "198.18.0.9", proto: 47)),
            ("GRE to another IPv6 address", Self.outer("2001:db8:18::2", "2001:db8:18::9", proto: 47)),
            (
                "IPv6 GRE to a PA differing in its last word",
                Self.outer("2001:db8:18::2", "2001:db8:18::1:1", proto: 47)
            ),
            (
                "ARP",
                Ethernet.frame(
                    dst: .broadcast, src: MACAddress("02:00:00:00:00:02"), type: .arp,
                    payload: [UInt8](repeating: 0, count: 28))
            ),
            ("a frame cut short", Array(Self.outer("198.18.0.2", Self.pa4, proto: 47).prefix(20)))
        ]
        for (what, frame) in accepted { #expect(Self.run(program, frame) > 0, "\(what) was rejected") }
        for (what, frame) in rejected { #expect(Self.run(program, frame) == 0, "\(what) was accepted") }
        #expect(Self.run(UplinkFilter.program(localPAs: []), accepted[0].1) == 0, "no PA: nothing accepted")
    }
}

/// The host stack guard's nftables script, given to the real nft in a namespace with the
/// interfaces it names: every kind of rule it can write is accepted and in place.
@Suite(.serialized)
struct HostStackGuardTests {
    @Test func nftTakesEveryRuleTheGuardWrites() throws {
        let net = LabNetwork(tag: "nftguard")
        let ns = try net.namespace("h")
        let peer = try net.namespace("p")
        for (a, b) in [("vm-1", "e1"), ("vm2", "e2"), ("ul", "fab"), ("ext", "out")] {
            try net.veth(a, in: ns, b, in: peer)
        }
        let scope = HostStackGuard.Scope(
            ports: ["vm-1", "vm2"], uplink: "ul", providerAddresses: ["198.18.0.1", "2001:db8:18::1"],
            externalInterface: "ext", externalAddresses: ["203.0.113.1", "203.0.113.9"],
            routedPrefixes: [IPPrefix(parsing: "198.19.0.0/16")!])
        let script = HostStackGuard.script(instance: "test-1", scope)
        let applied = try sh("ip netns exec \(ns) bash -c \"nft -f - <<'EOF'\n\(script)EOF\" 2>&1 && echo applied")
        #expect(applied.contains("applied"), "nft refused:\n\(script)\n\(applied)")
        let listed = try sh("ip netns exec \(ns) nft list table netdev nvgre_test_2d1")
        // nft lists protocol numbers by name where it knows them.
        for expected in [
            ["policy drop"], ["ip daddr 198.18.0.1 ip protocol gre drop", "ip daddr 198.18.0.1 ip protocol 47 drop"],
            ["ip6 daddr 2001:db8:18::1 ip6 nexthdr gre drop", "ip6 daddr 2001:db8:18::1 ip6 nexthdr 47 drop"],
            ["ip protocol { tcp, udp } drop", "ip protocol { 6, 17 } drop"], ["ip daddr 198.19.0.0/16 drop"]
        ] {
            #expect(expected.contains { listed.contains($0) }, "\(expected[0]) missing:\n\(listed)")
        }
        // Applied again (a policy change), it replaces the table in one transaction.
        _ = try sh("ip netns exec \(ns) bash -c \"nft -f - <<'EOF'\n\(script)EOF\"")
        let tables = try sh("ip netns exec \(ns) nft list tables")
        #expect(tables.split(separator: "\n").filter { $0.contains("nvgre_test_2d1") }.count == 1, "\(tables)")
    }
}
