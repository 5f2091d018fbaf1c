import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import Testing

/// Two VMs on this host (port1, port2) in Red's VSID 5001, one remote VM, Blue with the
/// same addresses elsewhere, a default route via a gateway.
let localPolicy = """
    routingDomains:
      - {id: 1, name: red}
      - {id: 2, name: blue}
    subnets:
      - {vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/24], gateways: [198.19.1.254], gatewayMAC: \
    02:00:00:00:ff:01}
      - {vsid: 6001, routingDomain: blue, prefixes: [198.19.1.0/24], gateways: [198.19.1.254], gatewayMAC: \
    02:00:00:00:ff:03}
    lookupRecords:
      - {vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:01}
      - {vsid: 5001, customerAddress: 198.19.1.2, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:02}
      - {vsid: 5001, customerAddress: 198.19.1.3, providerAddress: 198.18.0.2, mac: 02:00:00:00:01:03}
      - {vsid: 6001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.3, mac: 02:00:00:00:01:01}
    customerRoutes:
      - {routingDomain: red, prefix: 0.0.0.0/0, nextHop: 198.19.1.250}
    providerAddresses:
      - {address: 198.18.0.1, interface: ul}
    ports:
      - {interface: port1, vsid: 5001, mac: 02:00:00:00:01:01, addresses: [198.19.1.1]}
      - {interface: port2, vsid: 5001, mac: 02:00:00:00:01:02, addresses: [198.19.1.2]}

    """

/// The namespace tests share machine-wide state (bpffs, XDP): one at a time.
@Suite(.serialized)
struct CLITests {
    @Test func upShowAddDelDown() throws {
        let h = try CLIHost(tag: "cli1")
        let up = h.run(["up", "--uplink", "ul"])
        #expect(up.status == 0, "\(up.err)")
        #expect(try h.net.ip(h.ns, "link show ul").contains("prog/xdp"))

        for args in [
            ["domain", "add", "red", "--id", "1"],
            [
                "subnet", "add", "5001", "--domain", "red", "--prefix", "198.19.1.0/24", "--gateway", "198.19.1.254",
                "--gateway-mac", "02:00:00:00:ff:01"
            ],
            ["pa", "add", "198.18.0.1"],
            ["lookup", "add", "5001", "198.19.1.1", "--pa", "198.18.0.1", "--mac", "02:00:00:00:01:01"],
            ["lookup", "add", "5001", "198.19.1.3", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:03"],
            ["port", "add", "port1", "--vsid", "5001", "--mac", "02:00:00:00:01:01", "--ca", "198.19.1.1"],
            ["route", "add", "0.0.0.0/0", "--domain", "red", "--via", "198.19.1.250"]
        ] {
            let r = h.run(args)
            #expect(r.status == 0, "\(args): \(r.err)")
        }
        let show = try #require(h.run(["show", "-j"]).json as? [String: Any])
        let records = try #require(show["lookupRecords"] as? [[String: Any]])
        #expect(records.count == 2)
        #expect(
            records.first?["customerAddress"] as? String == "198.19.1.1"
                && records.first?["providerAddress"] as? String == "198.18.0.1")
        let ifaces = try #require(show["interfaces"] as? [[String: Any]])
        #expect(ifaces.map { $0["interface"] as? String } == ["ul", "ul", "port1"])
        #expect(["native", "generic"].contains(ifaces.first?["attach"] as? String), "\(ifaces)")
        // The uplink's tc program, for broadcasts from the fabric, is attached and pinned too.
        #expect(
            ifaces[1]["program"] as? String == "nv_fabric_flood" && ifaces[1]["attach"] as? String == "tcx-ingress"
                && ifaces[1]["pinnedLink"] as? Bool == true, "\(ifaces)")
        #expect(ifaces.last?["attach"] as? String == "tcx-ingress" && ifaces.last?["hook"] as? String == "tc")
        let routes = try #require(show["customerRoutes"] as? [[String: Any]])
        #expect(routes.first?["active"] as? Bool == true)
        // Independently: bpftool lists a tcx link (type 11 to bpftool 7.1) running the
        // instance's pinned nv_from_vm.
        let prog = try #require(
            try JSONSerialization.jsonObject(
                with: Data(try sh("bpftool -j prog show pinned /sys/fs/bpf/\(h.instance)/prog_from_vm").utf8))
                as? [String: Any])
        let links = try #require(
            try JSONSerialization.jsonObject(with: Data(try sh("bpftool -j link show").utf8)) as? [[String: Any]])
        #expect(prog["name"] as? String == "nv_from_vm")
        #expect(
            links.contains {
                ($0["prog_id"] as? Int) == (prog["id"] as? Int) && ["tcx", "11"].contains("\($0["type"] ?? "")")
            }, "\(links)")

        // An independent reader: bpftool dumps the records' table, slots as bytes.
        let entries = try BpftoolTable.records(h.instance)
        #expect(entries.count == 2)
        let wanted = BpftoolEntry(
            vsid: 5001, ca: [198, 19, 1, 3], pa: [198, 18, 0, 2], mac: [2, 0, 0, 0, 1, 3], type: 1, port: 0)
        #expect(entries.contains(wanted), "\(entries)")
        let port1 = try h.net.ifindex("port1", in: h.ns)
        #expect(entries.contains { $0.port == port1 })

        #expect(h.run(["port", "del", "port1"]).status == 0)
        #expect(!(try h.net.ip(h.ns, "link show port1").contains("prog/xdp")))
        #expect(h.run(["lookup", "del", "5001", "198.19.1.3"]).status == 0)
        let after = try #require(h.run(["show", "lookups", "-j"]).json as? [String: Any])
        #expect((after["lookupRecords"] as? [Any])?.count == 1)

        let down = h.run(["down"])
        #expect(down.status == 0, "\(down.err)")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/\(h.instance)"))
        #expect(!FileManager.default.fileExists(atPath: "/run/nvgre/\(h.instance)"))
        #expect(!(try h.net.ip(h.ns, "link show ul").contains("prog/xdp")))
    }

    @Test func saveThenApplyChangesNothing() throws {
        let h = try CLIHost(tag: "cli2")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        let first = h.run(["apply", try h.file("example.yaml", CLIHost.example), "-j"])
        #expect(first.status == 0, "\(first.err)")
        #expect((first.json as? [String: Any])?["changed"] as? Bool == true)
        let again = h.run(["apply", try h.file("example.yaml", CLIHost.example), "-j"])
        #expect((again.json as? [String: Any])?["changed"] as? Bool == false)

        for format in ["yaml", "json"] {
            let saved = h.run(["save", "--format", format])
            #expect(saved.status == 0)
            let path = try h.file("saved.\(format)", saved.out)
            let reapplied = h.run(["apply", path, "-j"])
            #expect(reapplied.status == 0, "\(reapplied.err)")
            #expect((reapplied.json as? [String: Any])?["changed"] as? Bool == false, "\(format): \(reapplied.out)")
            #expect(h.run(["save", "--format", format]).out == saved.out)
        }
        // The saved YAML is the example's policy (comments aside): same objects.
        let saved = h.run(["save"]).out
        #expect(
            saved.contains(
                "- {vsid: 6001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.3, mac: 02:00:00:00:01:01}"))
        #expect(saved.contains("- {interface: port1, vsid: 5001, mac: 02:00:00:00:01:01, addresses: [198.19.1.1]}"))

        // Applying a smaller policy removes what is no longer there, and detaches port1.
        var lines = CLIHost.example.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeAll { $0.contains("vsid: 6001, customerAddress") || $0.contains("interface: port1,") }
        let smaller = h.run(["apply", try h.file("smaller.yaml", lines.joined(separator: "\n")), "-j"])
        #expect(smaller.status == 0, "\(smaller.err)")
        let maps = try #require((smaller.json as? [String: Any])?["maps"] as? [String: [String: Int]], "\(smaller.out)")
        #expect(maps["lookups"]?["removed"] == 1 && maps["ports"]?["removed"] == 1, "\(smaller.out)")
        #expect(!(try h.net.ip(h.ns, "link show port1").contains("prog/xdp")))
    }

    /// The same files applied again with nothing written since change nothing without
    /// reading the live maps; any other writer, a recreated interface or --verify make
    /// the next apply compare every entry again.
    @Test func theSameFilesAgainSkipTheLiveMapsUntilSomethingElseWrites() throws {
        let h = try CLIHost(tag: "cli6")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        let path = try h.file("example.yaml", CLIHost.example)
        func apply(_ extra: [String] = []) -> [String: Any] {
            let r = h.run(["apply", path, "-j"] + extra)
            #expect(r.status == 0, "\(r.err)")
            return (r.json as? [String: Any]) ?? [:]
        }
        func lookupsRemoved(_ j: [String: Any]) -> Int? {
            ((j["maps"] as? [String: [String: Int]])?["lookups"])?["removed"]
        }
        #expect(apply()["changed"] as? Bool == true)
        var again = apply()
        #expect(again["changed"] as? Bool == false && again["unchangedSinceLastApply"] as? Bool == true)

        // A lookup add in between: the apply reads the maps and takes the record out again.
        #expect(
            h.run(["lookup", "add", "5001", "198.19.1.77", "--pa", "198.18.0.9", "--mac", "02:00:00:00:01:77"]).status
                == 0)
        again = apply()
        #expect(again["unchangedSinceLastApply"] as? Bool == false && lookupsRemoved(again) == 1, "\(again)")
        #expect(apply()["unchangedSinceLastApply"] as? Bool == true)

        // Written behind nvgre's back (bpftool changes a record's MAC in its slot): only
        // --verify sees it, and puts it right.
        var (index, slot) = try #require(
            try BpftoolTable.slots(h.instance).first { BpftoolEntry(slot: $0.bytes)?.ca == [198, 19, 1, 2] })
        slot[32 + 21] ^= 0xff
        try BpftoolTable.write(h.instance, slot: index, slot)
        #expect(try BpftoolTable.records(h.instance).contains { $0.ca == [198, 19, 1, 2] && $0.mac[5] == 2 ^ 0xff })
        #expect(apply()["unchangedSinceLastApply"] as? Bool == true)
        again = apply(["--verify"])
        #expect(
            again["unchangedSinceLastApply"] as? Bool == false
                && ((again["maps"] as? [String: [String: Int]])?["lookups"])?["changed"] == 1, "\(again)")
        #expect(try BpftoolTable.records(h.instance).contains { $0.ca == [198, 19, 1, 2] && $0.mac[5] == 2 })

        // A port's interface recreated (a new ifindex): the policy compiles differently.
        #expect(apply()["unchangedSinceLastApply"] as? Bool == true)
        _ = try h.net.ip(h.ns, "link del port1")
        try h.net.veth("port1", in: h.ns, "eth0", in: h.vm1, macB: "02:00:00:00:01:01")
        again = apply()
        #expect(again["unchangedSinceLastApply"] as? Bool == false && again["changed"] as? Bool == true, "\(again)")

        // Standard input is read once, for the digest and the policy alike: another text
        // is another policy, the same text again changes nothing.
        let smaller = CLIHost.example.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("vsid: 6001, customerAddress") }.joined(separator: "\n")
        for (text, removed) in [(CLIHost.example, 0), (smaller, 1), (smaller, 0)] {
            let r = h.run(["apply", "-", "-j"], stdin: text)
            #expect(r.status == 0, "\(r.err)")
            #expect(lookupsRemoved((r.json as? [String: Any]) ?? [:]) ?? 0 == removed, "\(r.out)")
        }
    }

    /// A large policy's records are compiled on a worker thread while it is validated: the
    /// local VM's record still carries its port's ifindex, read in the host's namespace.
    @Test func aLargePolicyKeepsItsVMOnItsPort() throws {
        let h = try CLIHost(tag: "cli7")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        var extra = "lookupRecords:\n"
        for i in 0..<20_000 {
            extra +=
                "  - {vsid: 5001, customerAddress: \"2001:db8:19:1::\(String(i >> 16 + 1, radix: 16)):\(String(i & 0xffff, radix: 16))\", providerAddress: "
                + "198.18.0.2, mac: 02:00:00:01:\(String(format: "%02x:%02x", i >> 8 & 255, i & 255))}\n"
        }
        let r = h.run(["apply", try h.file("example.yaml", CLIHost.example), try h.file("extra.yaml", extra)])
        #expect(r.status == 0, "\(r.err)")
        let port1 = try NetworkNamespace.run(in: h.ns) { try interfaceIndex("port1") }
        let entry = try #require(
            try BpftoolTable.records(h.instance).first { $0.vsid == 5001 && $0.ca == [198, 19, 1, 1] })
        #expect(entry.port == port1, "\(entry)")
    }

    @Test func statsCountRealTraffic() throws {
        let h = try CLIHost(tag: "cli3")
        #expect(h.run(["up", "--uplink", "ul", "--policy", try h.file("local.yaml", localPolicy)]).status == 0)
        try h.net.exec(h.vm1, "ping -c 3 -i 0.2 -W 2 198.19.1.2")
        let stats = try #require(h.run(["stats", "-j"]).json as? [String: Any])
        let vsids = try #require(stats["vsids"] as? [[String: Any]])
        let red = try #require(vsids.first { $0["vsid"] as? Int == 5001 })
        // Three echo requests and three replies switched between the two local ports.
        #expect(((red["local"] as? [String: Int])?["packets"] ?? 0) >= 6, "\(red)")
        let drops = try #require(stats["drops"] as? [String: [String: Int]])
        #expect(drops.count == Int(NV_DROP_MAX.rawValue) && drops["source-ca-spoofed"] != nil)
        #expect((stats["exceptions"] as? [String: Any])?.count == Int(NV_EXC_MAX.rawValue))
        // The watch mode refreshes (two rounds, one second apart).
        let watch = h.run(["stats", "--watch", "1", "--count", "2"])
        #expect(watch.status == 0 && watch.out.components(separatedBy: "drops (packets/bytes):").count == 3)
    }

    @Test func traceShowsTheDecision() throws {
        let h = try CLIHost(tag: "cli4")
        let policyPath = try h.file("local.yaml", localPolicy)
        // Without an instance: from the policy file.
        let fromFile = h.run(["trace", "--policy", policyPath, "--port", "port1", "--dst", "198.19.1.2", "-j"])
        #expect(fromFile.status == 0, "\(fromFile.err)")
        let f0 = try #require((fromFile.json as? [[String: Any]])?.first)
        #expect(f0["decision"] as? String == "forward" && f0["egress"] as? String == "port2")

        #expect(h.run(["up", "--uplink", "ul", "--policy", policyPath]).status == 0)
        func count(_ kind: String, _ reason: String) throws -> Int {
            let stats = try #require(h.run(["stats", "-j"]).json as? [String: Any])
            return try #require((stats[kind] as? [String: [String: Int]])?[reason]?["packets"])
        }
        let tracedReasons = [
            ("drops", "source-ca-spoofed"), ("drops", "provider-address-spoofed"), ("exceptions", "customer-route")
        ]
        let before = try tracedReasons.map { try count($0.0, $0.1) }
        func trace(_ args: [String]) throws -> [String: Any] {
            let r = h.run(["trace"] + args + ["-j"])
            #expect(r.status == 0, "\(args): \(r.err)")
            return try #require((r.json as? [[String: Any]])?.first)
        }
        let local = try trace(["--port", "port1", "--dst", "198.19.1.2", "--proto", "tcp", "--dport", "443"])
        #expect(local["verdict"] as? String == "TC_ACT_REDIRECT" && local["egress"] as? String == "port2")
        #expect((local["output"] as? [String])?.last == "TCP 40000 > 443 [SYN]")
        let spoofed = try trace(["--port", "port1", "--dst", "198.19.1.2", "--src", "198.19.1.9"])
        #expect(spoofed["verdict"] as? String == "TC_ACT_SHOT" && spoofed["reason"] as? String == "source-ca-spoofed")
        let arp = try trace(["--port", "port1", "--dst", "198.19.1.254", "--proto", "arp"])
        #expect(
            arp["verdict"] as? String == "TC_ACT_REDIRECT" && arp["decision"] as? String == "reply"
                && (arp["output"] as? [String])?.last == "ARP reply 198.19.1.254 is-at 02:00:00:00:ff:01")
        // An ARP for an address no record has: replicated (the copies counted, none sent).
        let unknown = try trace(["--port", "port1", "--dst", "198.19.1.99", "--proto", "arp"])
        #expect(unknown["decision"] as? String == "flood" && unknown["copies"] != nil, "\(unknown)")
        let outside = try trace(["--port", "port1", "--dst", "203.0.113.5", "--proto", "udp"])
        #expect(outside["decision"] as? String == "exception" && outside["reason"] as? String == "customer-route")
        let fromFabric = try trace(["--uplink", "--vsid", "5001", "--src", "198.19.1.3", "--dst", "198.19.1.1"])
        #expect(fromFabric["egress"] as? String == "port1" && fromFabric["vsid"] as? Int == 5001)
        let forged = try trace([
            "--uplink", "--vsid", "5001", "--src", "198.19.1.3", "--dst", "198.19.1.1", "--outer-src", "198.18.0.9"
        ])
        #expect(forged["reason"] as? String == "provider-address-spoofed")
        // Tracing uses its own counters: the live ones did not move.
        #expect(try tracedReasons.map { try count($0.0, $0.1) } == before)

        // Frames from a pcap file, output frames to one.
        let outPath = h.temporaryPath("out.pcap")
        #expect(h.run(["trace", "--port", "port1", "--dst", "198.19.1.2", "--write", outPath]).status == 0)
        let text = h.run(["trace", "--uplink", "--pcap", outPath])
        // The output of port1 -> port2 is a plain customer frame: from the fabric it is not NVGRE.
        #expect(text.status == 0 && text.out.contains("verdict: XDP_PASS"), "\(text.out)\(text.err)")
    }

    /// `--version` names the programs' ABI and build and libbpf's version; a user without
    /// the privileges is told so, not that no instance runs (issue 22).
    @Test func versionAndAUserWithoutPrivileges() throws {
        let h = try CLIHost(tag: "version")
        let version = h.run(["--version"])
        #expect(version.status == 0, "\(version.err)")
        #expect(
            version.out.range(
                of: #"^nvgre [0-9]+\.[0-9]+\.[0-9]+ \(programs: ABI 12, build 1; libbpf 1\.[0-9]+\)"#,
                options: .regularExpression) != nil, "\(version.out)")
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        // nobody, with no capability: the pins are closed to it.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = [
            "--reuid", "65534", "--regid", "65534", "--clear-groups", CLIHost.binary, "--instance", h.instance, "show"
        ]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 1, "\(text)")
        #expect(
            text.contains("lacks the privileges to reach instance \(h.instance)") && text.contains("as root"), "\(text)"
        )
    }

    @Test func anApplyThatFailsChangesNothing() throws {
        let h = try CLIHost(tag: "cli5")
        #expect(h.run(["up", "--uplink", "ul", "--policy", try h.file("example.yaml", CLIHost.example)]).status == 0)
        let before = h.run(["save"]).out
        let recordsBefore = Set(try BpftoolTable.records(h.instance))
        // Something else holds XDP on port2 (another tool's program): ours refuses that port
        // after the maps were already written, and the maps are put back.
        let other = try Datapath()
        let held = try NetworkNamespace.run(in: h.ns) { try other.attach(.barePass, interface: "port2") }
        defer { withExtendedLifetime(held) {} }
        let policy = localPolicy.replacingOccurrences(
            of: "198.19.1.3, providerAddress: 198.18.0.2", with: "198.19.1.4, providerAddress: 198.18.0.4")
        let r = h.run(["apply", try h.file("local.yaml", policy)])
        #expect(r.status == 1 && r.err.contains("nothing was changed") && r.err.contains("port2"), "\(r.err)")
        #expect(h.run(["save"]).out == before)
        #expect(Set(try BpftoolTable.records(h.instance)) == recordsBefore)
    }
}

/// One entry of `bpftool -j map dump` of the lookups map, decoded from its hex bytes by
/// the ABI's layout (struct nv_lookup_key / nv_lookup_val in bpf/nvgre_abi.h).
/// A lookup record as bpftool reads it, decoded by the ABI's layout (nvgre_abi.h) without
/// nvgre's code: a 64-byte slot of the records' table (state, mask, key, value).
struct BpftoolEntry: Hashable {
    var vsid: UInt32, ca: [UInt8], pa: [UInt8], mac: [UInt8], type: UInt8, port: UInt32

    init(vsid: UInt32, ca: [UInt8], pa: [UInt8], mac: [UInt8], type: UInt8, port: UInt32) {
        (self.vsid, self.ca, self.pa, self.mac, self.type, self.port) = (vsid, ca, pa, mac, type, port)
    }

    /// Nil unless the slot holds a record (state 1).
    init?(slot: [UInt8]) {
        guard slot.count == 64, BpftoolTable.le32(slot, 0) == 1 else { return nil }
        let k = Array(slot[8..<32]), v = Array(slot[32..<64])
        let family = k[4]
        vsid = BpftoolTable.le32(k, 0)
        ca = Array(k[8..<(family == 4 ? 12 : 24)])
        pa = Array(v[0..<(v[22] == 4 ? 4 : 16)])
        mac = Array(v[16..<22])
        type = v[23]
        port = BpftoolTable.le32(v, 24)
    }
}

/// The lookup records' table through bpftool alone: `lookups` (pinned) holds the id of the
/// table the programs read; that table's slots are dumped and written by id.
enum BpftoolTable {
    static func le32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
    static func bytes(_ v: Any?) -> [UInt8] { (v as? [String])?.compactMap { UInt8($0.dropFirst(2), radix: 16) } ?? [] }

    static func id(_ instance: String) throws -> UInt32 {
        let dump = try sh("bpftool -j map dump pinned /sys/fs/bpf/\(instance)/lookups")
        let slot = (try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [[String: Any]])?.first
        return le32(bytes(slot?["value"]), 0)
    }

    /// Every slot: its index and 64 bytes.
    static func slots(_ instance: String) throws -> [(index: UInt32, bytes: [UInt8])] {
        let dump = try sh("bpftool -j map dump id \(try id(instance))")
        let entries = try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [[String: Any]] ?? []
        return entries.map { (le32(bytes($0["key"]), 0), bytes($0["value"])) }
    }

    static func records(_ instance: String) throws -> [BpftoolEntry] {
        try slots(instance).compactMap { BpftoolEntry(slot: $0.bytes) }
    }

    static func write(_ instance: String, slot index: UInt32, _ bytes: [UInt8]) throws {
        let key = withUnsafeBytes(of: index.littleEndian) { $0.map { String($0) } }.joined(separator: " ")
        _ = try sh(
            "bpftool map update id \(try id(instance)) key \(key) value \(bytes.map { String($0) }.joined(separator: " "))"
        )
    }
}
