import Foundation
import NvgreLab
import NvgrePolicy
import NvgreWire
import Testing

/// Tenants against the infrastructure, as an attacker inside a VM would try: UDP, TCP and
/// ICMP from every tenant VM to every provider address, the gateway's external address and
/// loopback, with a listener on each and routes in place that would carry replies back.
/// Nothing arrives; every drop is counted under its reason and its domain; tenant traffic to
/// the outside and to published services (hairpin) keeps working.
@Suite(.serialized)
struct InfrastructureTests {
    static let port: UInt16 = 9100
    let x = DemoPlan.x4, ext = DemoPlan.gExternal4
    /// A monitoring host on the outside network, in a listed infrastructure prefix.
    static let monitoring: IPAddress = "203.0.113.200", monitoringPrefix = IPPrefix(parsing: "203.0.113.192/26")!
    /// Every PA, an unused address of the provider prefix, G's external address, monitoring.
    var targets: [IPAddress] { DemoPlan.hosts.map(\.pa4) + ["198.18.0.77", ext, Self.monitoring] }

    /// Listeners on every host and on X (any address), the attempts from `vms`, then what arrived.
    func attack(_ lab: DemoLab, from vms: [DemoVM]) throws -> (udp: Int, tcp: Int, pings: Int) {
        let listeners = DemoPlan.hosts.map { lab.ns($0) } + [lab.outside]
        let udp = try listeners.map { try Traffic.udpListener(in: $0, family: .v4, port: Self.port) }
        let tcp = try listeners.map { try Traffic.tcpListener(in: $0, family: .v4, port: Self.port) }
        var pings = 0
        for vm in vms {
            // All at once per VM: a datagram, a connection attempt and a ping to each target.
            let script =
                targets.map { d in
                    "(echo probe > /dev/udp/\(d)/\(Self.port)) 2>/dev/null; (timeout 1 bash -c "
                        + "'</dev/tcp/\(d)/\(Self.port)' 2>/dev/null &); (ping -n -c 1 -W 1 \(d) | grep -c ' 0% "
                        + "packet loss' &)"
                }.joined(separator: "; ") + "; wait; sleep 1.2"
            let out = try lab.net.exec(lab.ns(vm), "bash -c \"\(script)\" || true")
            pings += out.split(separator: "\n").compactMap { Int($0) }.reduce(0, +)
            // Loopback cannot leave a VM by its own stack: sent as a frame to the router.
            let udpFrame = UDP.datagram(
                src: vm.ip4, dst: "127.0.0.1", sport: 40000, dport: Self.port, payload: Array("lo".utf8))
            let frame = Ethernet.frame(
                dst: subnetRouterMAC(vm), src: vm.mac, type: .ipv4,
                payload: IPPacket.build(
                    src: vm.ip4, dst: "127.0.0.1", proto: IPProtocol.udp.rawValue, payload: udpFrame))
            try Traffic.sendFrames([frame], interface: "eth0", in: lab.ns(vm))
        }
        let datagrams = udp.map { $0.receive(timeout: 0.3).count }.reduce(0, +)
        let connections = tcp.map { $0.acceptedConnections(timeout: 0.1) }.reduce(0, +)
        return (datagrams, connections, pings)
    }

    func subnetRouterMAC(_ vm: DemoVM) -> MACAddress {
        switch (vm.tenant, vm.vsid) {
        case ("Red", 5001): return "02:00:00:00:ff:01"
        case ("Red", _): return "02:00:00:00:ff:02"
        default: return "02:00:00:00:ff:03"
        }
    }

    /// Hosts A and B route the external prefix to G, so that a reply could come back; X
    /// gets the monitoring address, listed as infrastructure in G's policy.
    func prepare(_ lab: DemoLab, _ edit: (inout Policy) -> Void = { _ in }) throws {
        for h in DemoPlan.hypervisors {
            _ = try lab.net.ip(lab.ns(h), "route replace 203.0.113.0/24 via \(DemoPlan.g.pa4)")
        }
        _ = try lab.net.ip(lab.outside, "addr add \(Self.monitoring)/24 dev eth0")
        try lab.applyEdited(hostG, file: 1) { p in
            p.infrastructurePrefixes = [InfrastructurePrefix(prefix: Self.monitoringPrefix, name: "monitoring")]
            edit(&p)
        }
    }

    func domainCounters(_ lab: DemoLab) throws -> [String: [String: Int]] {
        let r = try lab.cli(hostG, ["-j", "stats"])
        let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
        var out: [String: [String: Int]] = [:]
        for d in (json?["domains"] as? [[String: Any]]) ?? [] {
            guard let name = d["domain"] as? String else { continue }
            out[name] = d.compactMapValues { ($0 as? [String: Any])?["packets"] as? Int }
        }
        return out
    }

    @Test func tenantsReachNoInfrastructureAddressThroughTheGateway() throws {
        try tenantsReachNoInfrastructure(userspace: false)
    }

    /// Every host on the userspace path, G's gateway engine in its agent: the same attempts
    /// fail the same way.
    @Test func tenantsReachNoInfrastructureThroughAUserspaceGateway() throws {
        try tenantsReachNoInfrastructure(userspace: true)
    }

    func tenantsReachNoInfrastructure(userspace: Bool) throws {
        let lab = try startedLab(
            userspace ? "usinfra" : "infra", userspace: userspace ? Set(DemoPlan.hosts.map(\.name)) : [])
        defer { lab.stop() }
        try prepare(lab)
        if userspace { usleep(1_200_000) }  // the agent takes a policy change within a second
        #expect(Traffic.ping(from: lab.ns(redA), to: x, count: 2) == 2, "control: Red reaches X")
        // What G holds as infrastructure, and why.
        let shown = try lab.cli(hostG, ["-j", "show", "infrastructure"])
        let infra =
            ((try JSONSerialization.jsonObject(with: Data(shown.output.utf8)) as? [String: Any])?["infrastructure"]
                as? [[String: Any]]) ?? []
        let why = Dictionary(
            infra.compactMap { e in (e["prefix"] as? String).map { ($0, e["why"] as? String ?? "") } },
            uniquingKeysWith: { a, _ in a })
        #expect(
            why["203.0.113.192/26"] == "listed" && why["198.18.0.0/24"] == "provider"
                && why["198.18.0.1/32"] == "provider"
                && why["203.0.113.1/32"] == "external" && why["127.0.0.0/8"] == "special"
                && why["203.0.113.255/32"] == "host", "\(shown.output)")
        let before = try lab.counters(hostG).drops["to-infrastructure"] ?? 0

        let seen = try attack(lab, from: DemoPlan.vms)
        #expect(seen.udp == 0 && seen.tcp == 0 && seen.pings == 0, "arrived at the infrastructure: \(seen)")
        lab.settle(hostG)
        let drops = try lab.counters(hostG).drops
        // Per VM and target: a datagram, at least one SYN, a ping; and the loopback frame.
        let least = DemoPlan.vms.count * (targets.count * 3 + 1)
        #expect((drops["to-infrastructure"] ?? 0) - before >= least, "\(drops)")
        let domains = try domainCounters(lab)
        #expect(
            (domains["red"]?["to-infrastructure"] ?? 0) > 0 && (domains["blue"]?["to-infrastructure"] ?? 0) > 0,
            "\(domains)")

        // The outside and published services still work, for both tenants; a tenant reaches
        // a service at its external address (hairpin), its own and another tenant's.
        #expect(Traffic.ping(from: lab.ns(blueA), to: x, count: 2) == 2, "Blue reaches X")
        #expect(
            try Traffic.tcpTransfer(from: lab.ns(redA), to: lab.outside, address: x, bytes: 65536).ok, "Red sends to X")
        let hairpinRed = try Traffic.tcpTransfer(
            from: lab.ns(red2A), to: lab.ns(redB), address: ext, port: DemoPlan.redService,
            serverPort: 80, bytes: 65536, timeout: 5)
        #expect(hairpinRed.ok, "Red 5002 reaches Red's service at \(ext):\(DemoPlan.redService): \(hairpinRed)")
        let hairpinBlue = try Traffic.tcpTransfer(
            from: lab.ns(blueA), to: lab.ns(redB), address: ext, port: DemoPlan.redService,
            serverPort: 80, bytes: 65536, timeout: 5)
        #expect(hairpinBlue.ok, "Blue reaches Red's published service like any client: \(hairpinBlue)")
        lab.settle(hostG)
        #expect((try lab.gatewayCounters()["hairpin"] ?? 0) > 0)
        // ...but nothing else on that address.
        let closed = Traffic.connectSeconds(from: lab.ns(blueA), to: ext, port: 22, timeout: 1)
        #expect(closed == nil, "port 22 of the external address")
    }

    @Test func aRouteModeDomainReachesNoInfrastructureEither() throws {
        let lab = try startedLab("infraroute")
        try prepare(lab) { p in
            p.gatewayDomains[0] = GatewayDomain(
                routingDomain: "red", mode: .route, prefixes: [IPPrefix(parsing: "203.0.113.0/24")!])
            p.publishedServices = []
        }
        _ = try lab.net.exec(lab.outside, "ip route add 198.19.0.0/16 via \(ext)")
        #expect(Traffic.ping(from: lab.ns(redA), to: x, count: 2) == 2, "control: Red is routed to X")

        let before = try lab.counters(hostG).drops["to-infrastructure"] ?? 0
        let red = DemoPlan.vms.filter { $0.tenant == "Red" }
        let seen = try attack(lab, from: red)
        #expect(seen.udp == 0 && seen.tcp == 0 && seen.pings == 0, "arrived at the infrastructure: \(seen)")
        #expect(
            (try lab.counters(hostG).drops["to-infrastructure"] ?? 0) - before >= red.count * (targets.count * 3 + 1))
        #expect(
            try Traffic.tcpTransfer(from: lab.ns(redA), to: lab.outside, address: x, fetch: true).ok,
            "Red still fetches from X")
    }
}

/// One tenant floods the gateway with new flows; the others keep getting theirs within a
/// second, and the flood's drops are counted under the flooding domain.
@Suite(.serialized)
struct NoisyNeighbourTests {
    let x = DemoPlan.x4, ext = DemoPlan.gExternal4

    /// A background flood from namespace `ns` for `seconds`: new UDP flows (one socket,
    /// destination ports cycling) and TCP SYNs (non-blocking connects) to `target`.
    func flood(_ lab: DemoLab, from ns: String, to target: IPAddress, port: UInt16? = nil, seconds: Double) throws
        -> pid_t
    {
        let script = """
            import socket, time
            end = time.time() + \(seconds)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held, n = [], 0
            while time.time() < end:
                for i in range(\(port == nil ? 100 : 0)):
                    n += 1
                    u.sendto(b'x', ('\(target)', 1 + n % 60000))
                for i in range(\(port == nil ? 1 : 20)):
                    n += 1
                    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    t.setblocking(False)
                    t.connect_ex(('\(target)', \(port.map(String.init) ?? "1 + n % 60000")))
                    held.append(t)
                if len(held) > 800:
                    for s in held: s.close()
                    held = []
            """
        let file = NSTemporaryDirectory() + "\(lab.net.prefix)-flood-\(ns.hashValue & 0xffff).py"
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        return try Spawn.start(
            ["/usr/sbin/ip", "netns", "exec", ns, systemPython, file], output: "/dev/null", detached: false)
    }

    func throttled(_ lab: DemoLab, _ domain: String) throws -> Int {
        try InfrastructureTests().domainCounters(lab)[domain]?["exception-throttled"] ?? 0
    }

    @Test func aTenantFloodingNewFlowsLeavesTheOthersTheirShare() throws {
        let lab = try startedLab("noisy")
        let server = try Traffic.tcpListener(in: lab.outside, family: .v4, port: 5400)
        let echo = try Traffic.udpListener(in: lab.outside, family: .v4, port: 5401)
        let flooder = try flood(lab, from: lab.ns(redA), to: x, seconds: 6)
        defer { Spawn.stop(flooder) }
        usleep(1_000_000)  // the flood is on

        // Blue opens new TCP connections and UDP flows to X all the while.
        var slowest = 0.0, failed: [String] = []
        for i in 0..<8 {
            if let s = Traffic.connectSeconds(from: lab.ns(blueA), to: x, port: 5400, timeout: 2) {
                slowest = max(slowest, s)
            } else {
                failed.append("tcp \(i)")
            }
            _ = try lab.net.exec(lab.ns(blueA), "bash -c 'echo blue\(i) > /dev/udp/\(x)/5401'")
            usleep(300_000)
        }
        let accepted = server.acceptedConnections(timeout: 0.5)
        let datagrams = echo.receive(timeout: 0.5).map { String(decoding: $0, as: UTF8.self) }
        print(
            "noisy neighbour: Blue's slowest new TCP connection through the gateway during Red's flood: "
                + "\(String(format: "%.3f", slowest)) s"
        )
        #expect(failed.isEmpty && slowest < 1.0, "Blue's connections: failed \(failed), slowest \(slowest) s")
        #expect(accepted == 8, "X accepted \(accepted) of Blue's 8 connections")
        #expect(Set(datagrams).isSuperset(of: (0..<8).map { "blue\($0)\n" }), "Blue's UDP flows: \(datagrams)")

        let redThrottled = try throttled(lab, "red"), blueThrottled = try throttled(lab, "blue")
        #expect(redThrottled > 1000, "the flood is dropped at Red's share: \(redThrottled)")
        #expect(blueThrottled == 0, "Blue lost nothing to Red's flood: \(blueThrottled)")
        #expect((try lab.counters(hostG).drops["exception-ring-full"] ?? 0) == 0)
    }

    @Test func aTenantTakesAtMostItsShareOfTheNATPorts() throws {
        let lab = try startedLab("portshare")
        // Four UDP ports on the shared address; each domain may hold half (the default).
        try lab.applyEdited(hostG, file: 1) { $0.externalAddresses[0].natPorts = PortRange(first: 40000, last: 40003) }
        lab.killGateway()
        try lab.startGateway()
        let echo = try Traffic.udpListener(in: lab.outside, family: .v4, port: 5402)
        // Four new flows of Red's (each datagram from a new source port): two get ports, the
        // others find Red at its share; then Blue's two still get the other two ports.
        for (vm, text) in [
            (redA, "red0"), (redA, "red1"), (redA, "red2"), (redB, "red3"), (blueA, "Ablue"), (blueB, "Bblue")
        ] {
            _ = try lab.net.exec(lab.ns(vm), "bash -c 'echo \(text) > /dev/udp/\(x)/5402'")
            usleep(50_000)
        }
        let got = Set(echo.receive(timeout: 1).map { String(decoding: $0, as: UTF8.self) })
        #expect(got.contains("Ablue\n") && got.contains("Bblue\n"), "Blue still gets both of its ports: \(got)")
        #expect(got.filter { $0.hasPrefix("red") }.count == 2, "Red gets two of the four: \(got)")
        usleep(300_000)  // the gateway flushes its counters between polls
        let domains = try InfrastructureTests().domainCounters(lab)
        #expect(
            domains["red"]?["ports-exhausted"] == 2 && (domains["blue"]?["ports-exhausted"] ?? 0) == 0, "\(domains)")
        let log = (try? String(contentsOfFile: lab.gatewayLog, encoding: .utf8)) ?? ""
        #expect(log.contains("at its share of the ports"), "\(log)")
    }

    @Test func aSYNFloodAtOneServiceLeavesTheOtherServicesAndEgressWorking() throws {
        let lab = try startedLab("synflood")
        #expect(
            try lab.cli(
                hostG,
                ["service", "add", "tcp", "\(ext):\(DemoPlan.blueService)", "--domain", "blue", "--to", "198.19.1.2:80"]
            ).status == 0)
        let flooder = try flood(lab, from: lab.outside, to: ext, port: DemoPlan.redService, seconds: 6)
        defer { Spawn.stop(flooder) }
        usleep(1_000_000)

        let blueService = try Traffic.tcpListener(in: lab.ns(blueB), family: .v4, port: 80)
        var slowest = 0.0, failed = 0
        for _ in 0..<5 {
            if let s = Traffic.connectSeconds(from: lab.outside, to: ext, port: DemoPlan.blueService, timeout: 2) {
                slowest = max(slowest, s)
            } else {
                failed += 1
            }
            usleep(300_000)
        }
        print("SYN flood at Red's service: slowest connection to Blue's service \(String(format: "%.3f", slowest)) s")
        #expect(
            failed == 0 && slowest < 1.0, "X to Blue's service during the flood: \(failed) failed, slowest \(slowest) s"
        )
        #expect(blueService.acceptedConnections(timeout: 0.5) == 5)
        // Every tenant's egress, the flooded tenant's too: outsiders have a share of their own.
        #expect(Traffic.ping(from: lab.ns(redA), to: x, count: 2) == 2, "Red's egress during the flood at its service")
        #expect(Traffic.ping(from: lab.ns(blueA), to: x, count: 2) == 2, "Blue's egress during the flood")
        #expect(try throttled(lab, "red") > 1000 && throttled(lab, "blue") == 0)
    }
}
