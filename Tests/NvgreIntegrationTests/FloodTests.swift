import Foundation
import NvgreLab
import NvgreWire
import Testing

/// Head-end replication between three hosts of ours. On each host a Red VM (VSID 5001) and a
/// Blue VM (VSID 6001) with exactly the same CA and MAC: a broadcast from Red on host A
/// reaches Red on B and C, and no Blue VM anywhere; a VM flooding gets its port's share.
@Suite(.serialized)
struct FloodTests {
    static let hosts = ["a", "b", "c"]
    static func pa(_ i: Int) -> IPAddress { IPAddress(v4: [198, 18, 0, UInt8(i + 1)]) }
    static func vm(_ i: Int) -> LabVM {
        LabVM(
            mac: MACAddress([2, 0, 0, 0, 1, UInt8(i + 1)]), ip4: IPAddress(v4: [198, 19, 1, UInt8(i + 1)]),
            ip6: IPAddress(parsing: "2001:db8:19:1::\(i + 1)")!)
    }

    /// Host `i`'s policy: both tenants (the same on every host) and its own PA and ports.
    static func policy(host i: Int) -> String {
        var records = ""
        for h in hosts.indices {
            for vsid in [5001, 6001] {
                for a in [vm(h).ip4, vm(h).ip6] {
                    records +=
                        "  - {vsid: \(vsid), customerAddress: \"\(a)\", providerAddress: \(pa(h)), mac: \(vm(h).mac)}\n"
                }
            }
        }
        let me = vm(i)
        return """
            routingDomains:
              - {id: 1, name: red}
              - {id: 2, name: blue}
            subnets:
              - {vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/24, "2001:db8:19:1::/64"], gatewayMAC: 02:00:00:00:ff:01}
              - {vsid: 6001, routingDomain: blue, prefixes: [198.19.1.0/24, "2001:db8:19:1::/64"], gatewayMAC: 02:00:00:00:ff:03}
            lookupRecords:
            \(records)providerAddresses:
              - {address: \(pa(i)), interface: ul}
            ports:
              - {interface: red, vsid: 5001, mac: \(me.mac), addresses: [\(me.ip4), "\(me.ip6)"]}
              - {interface: blue, vsid: 6001, mac: \(me.mac), addresses: [\(me.ip4), "\(me.ip6)"]}

            """
    }

    struct Lab {
        let net: LabNetwork
        let hosts: [CLIHost]
        func vmNS(_ host: Int, _ port: String) -> String { hosts[host].vms.first { $0.port == port }!.ns }
        func stop() { hosts.forEach { $0.stop() } }
    }

    static func lab(_ tag: String, upArguments: [String] = []) throws -> Lab {
        let net = LabNetwork(tag: tag)
        let fabric = try LabFabric(net, mtu: 1600)
        var hosts: [CLIHost] = []
        for (i, name) in Self.hosts.enumerated() {
            let h = try CLIHost(net, fabric: fabric, name: name, pa: pa(i))
            try h.addVM(port: "red", vm(i))
            try h.addVM(port: "blue", vm(i))
            hosts.append(h)
        }
        for (i, h) in hosts.enumerated() { try h.start(policy: policy(host: i), upArguments: upArguments) }
        return Lab(net: net, hosts: hosts)
    }

    static let script = "\(decodersDirectory)/udp_broadcast.py"

    /// Starts a listener for UDP port `port` in namespace `ns` for `seconds`; returns a
    /// function that waits for it and gives the count of datagrams it got.
    static func listen(in ns: String, port: UInt16, seconds: Double) throws -> () throws -> Int {
        let out = "\(NSTemporaryDirectory())nvgre-listen-\(getpid())-\(UUID().uuidString)"
        let pid = try Spawn.start(
            ["/usr/sbin/ip", "netns", "exec", ns, systemPython, script, "listen", "\(port)", "\(seconds)"],
            output: out, detached: false)
        try Spawn.waitForOutput(out, containing: "READY", what: "the UDP listener in \(ns)")
        return {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            defer { unlink(out) }
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            guard let n = text.split(separator: "\n").last.flatMap({ Int($0) }) else {
                throw ShellErrorText("the listener in \(ns) said: \(text)")
            }
            return n
        }
    }

    static func sendBroadcasts(from ns: String, port: UInt16, count: Int) throws -> Int {
        let out = try sh("ip netns exec \(ns) \(systemPython) \(script) send eth0 \(port) \(count)")
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// A VSID counter of a host (`nvgre -j stats`).
    static func vsidCount(_ h: CLIHost, _ vsid: UInt32, _ counter: String) throws -> Int {
        let vsids = (try h.stats()["vsids"] as? [[String: Any]]) ?? []
        let v = vsids.first { ($0["vsid"] as? Int) == Int(vsid) }
        return ((v?[counter] as? [String: Any])?["packets"] as? Int) ?? 0
    }

    @Test func aBroadcastReachesItsVSIDOnEveryHostAndNoOtherTenant() throws {
        let lab = try Self.lab("flood")
        defer { lab.stop() }
        let port: UInt16 = 9999
        var waits: [(String, () throws -> Int)] = []
        for h in 0..<3 {
            if h != 0 {
                waits.append(
                    ("red on \(Self.hosts[h])", try Self.listen(in: lab.vmNS(h, "red"), port: port, seconds: 3)))
            }
            waits.append(("blue on \(Self.hosts[h])", try Self.listen(in: lab.vmNS(h, "blue"), port: port, seconds: 3)))
        }
        let a = lab.hosts[0]
        let floodsBefore = try Self.vsidCount(a, 5001, "flood")
        #expect(try Self.sendBroadcasts(from: lab.vmNS(0, "red"), port: port, count: 5) == 5)
        for (who, wait) in waits {
            let n = try wait()
            if who.hasPrefix("red") {
                #expect(n == 5, "\(who) got \(n) of Red's 5 broadcasts")
            } else {
                #expect(n == 0, "\(who) got \(n) of Red's broadcasts: another tenant")
            }
        }
        // Counted where it was replicated: once a frame on A, a copy per other host.
        #expect(try Self.vsidCount(a, 5001, "flood") - floodsBefore >= 5)
        #expect(try Self.vsidCount(a, 5001, "flood-copies") >= 10)
        for h in [1, 2] {
            #expect(try Self.vsidCount(lab.hosts[h], 5001, "flood-copies") >= 5, "host \(Self.hosts[h])")
        }
        #expect(try a.count("drops", "flood-throttled") == 0)

        // `nvgre show flood`: A's flood list for 5001 names B and C and its Red port.
        let show = try a.cli(["-j", "show", "flood"])
        let lists = try JSONSerialization.jsonObject(with: Data(show.output.utf8)) as? [String: Any]
        let red = (lists?["flood"] as? [[String: Any]])?.first { ($0["vsid"] as? Int) == 5001 }
        #expect(red?["providerAddresses"] as? [String] == ["198.18.0.2", "198.18.0.3"], "\(show.output)")
        #expect(red?["ports"] as? [String] == ["red"], "\(show.output)")
    }

    /// A VM sending broadcasts as fast as it can gets its port's share (--flood-rate 100,
    /// --flood-burst 20 here), the rest counted as flood-throttled.
    @Test func aFloodingVMGetsItsPortsShare() throws {
        let lab = try Self.lab("floodrate", upArguments: ["--flood-rate", "100", "--flood-burst", "20"])
        defer { lab.stop() }
        let port: UInt16 = 9998
        let wait = try Self.listen(in: lab.vmNS(1, "red"), port: port, seconds: 3)
        let started = Date()
        let sent = try Self.sendBroadcasts(from: lab.vmNS(0, "red"), port: port, count: 5000)
        let seconds = Date().timeIntervalSince(started)
        let got = try wait()
        let allowed = 20 + Int(100 * (seconds + 0.5)) + 10
        print("flood share: \(sent) broadcasts sent in \(String(format: "%.2f", seconds)) s, \(got) replicated to B")
        #expect(sent == 5000)
        #expect(
            got > 0 && got <= allowed, "B's Red VM got \(got) of \(sent) in \(seconds) s; the share allows \(allowed)")
        #expect(try lab.hosts[0].count("drops", "flood-throttled") >= sent - allowed)
    }
}
