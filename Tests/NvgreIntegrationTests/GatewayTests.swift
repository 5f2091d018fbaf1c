import Foundation
import NvgreLab
import NvgrePolicy
import NvgreWire
import Testing

/// The gateway host G between the tenants and the outside host X: outbound NAT, published
/// services, offload to XDP, expiry, and a gateway process that dies and comes back.
@Suite(.serialized)
struct GatewayTests {
    let x = DemoPlan.x4, ext = DemoPlan.gExternal4

    @Test func tenantsWithTheSameAddressReachTheOutsideAndArePublished() throws {
        let lab = try startedLab("gwnat")
        // Red and Blue, both 198.19.1.1 on host A, fetch 1 MiB from X at the same time.
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let vm = i == 0 ? redA : blueA
            results.set(
                i,
                try? Traffic.tcpTransfer(
                    from: lab.ns(vm), to: lab.outside, address: x, port: 5201 + UInt16(i), fetch: true))
        }
        #expect(results.get(0)?.ok == true, "Red's transfer to X: \(String(describing: results.get(0)))")
        #expect(results.get(1)?.ok == true, "Blue's transfer to X: \(String(describing: results.get(1)))")
        #expect(Traffic.ping(from: lab.ns(red2B), to: x, count: 3) == 3, "Red 5002 VM on B pings X through NAT")
        // X refuses a datagram to a closed port: its ICMP error, about the translated packet,
        // comes back translated, so the VM's connected socket hears "connection refused".
        let portClosed = try lab.net.exec(
            lab.ns(redA),
            "\(systemPython) -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                + "s.settimeout(3); s.connect(('\(x)', 9)); s.send(b'x'); s.recv(1)\" 2>&1 || true"
        )
        #expect(portClosed.contains("ConnectionRefusedError"), "\(portClosed)")

        // X reaches Red's published service (from the policy file) and Blue's, added live.
        let add = try lab.cli(
            hostG,
            ["service", "add", "tcp", "\(ext):\(DemoPlan.blueService)", "--domain", "blue", "--to", "198.19.1.2:80"])
        #expect(add.status == 0, "service add: \(add.output)")
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let (vm, port) = i == 0 ? (redB, DemoPlan.redService) : (blueB, DemoPlan.blueService)
            results.set(
                i, try? Traffic.tcpTransfer(from: lab.outside, to: lab.ns(vm), address: ext, port: port, serverPort: 80)
            )
        }
        #expect(results.get(0)?.ok == true, "X to Red's service: \(String(describing: results.get(0)))")
        #expect(results.get(1)?.ok == true, "X to Blue's service: \(String(describing: results.get(1)))")

        // Established flows went to XDP: userspace saw only each flow's first packets.
        let g = try lab.gatewayCounters()
        let userspace = (g["userspace-out"] ?? 0) + (g["userspace-in"] ?? 0)
        let offloaded = (g["offloaded-out"] ?? 0) + (g["offloaded-in"] ?? 0)
        #expect((g["flows-created"] ?? 0) >= 5 && (g["flows-offloaded"] ?? 0) >= 5, "\(g)")
        #expect(offloaded > 10 * userspace, "\(g)")

        // Removed live: a new connection to it is dropped at the external interface, counted.
        let dropsBefore = try lab.counters(hostG).drops["external-unknown"] ?? 0
        #expect(try lab.cli(hostG, ["service", "del", "tcp", "\(ext):\(DemoPlan.blueService)"]).status == 0)
        let refused = try? Traffic.tcpTransfer(
            from: lab.outside, to: lab.ns(blueB), address: ext, port: DemoPlan.blueService,
            serverPort: 80, bytes: 1000, timeout: 2)
        #expect(refused?.ok != true)
        #expect((try lab.counters(hostG).drops["external-unknown"] ?? 0) > dropsBefore)
    }

    @Test func offloadedFlowsKeepForwardingWhileTheGatewayRestarts() throws {
        let lab = try startedLab("gwrestart")
        let session = try TCPSession(from: lab.ns(redA), to: lab.outside, address: x, port: 5301)
        #expect(session.exchange())
        usleep(200_000)  // the gateway flushes its counters between polls
        let settled = try lab.gatewayCounters()
        #expect((settled["flows-offloaded"] ?? 0) >= 1, "\(settled)")
        // Offloaded: more traffic of the flow never reaches userspace.
        #expect(session.exchange(65536))
        usleep(200_000)
        let before = try lab.gatewayCounters()
        #expect(
            before["userspace-out"] == settled["userspace-out"] && before["userspace-in"] == settled["userspace-in"],
            "\(settled) then \(before)")
        #expect((before["offloaded-out"] ?? 0) > (settled["offloaded-out"] ?? 0) + 10, "\(settled) then \(before)")

        lab.killGateway()
        #expect(session.exchange(65536), "the offloaded flow forwards with no gateway process")
        let during = try lab.counters(hostG).exceptions
        #expect(
            (during["nat-outbound"] ?? 0) + (during["nat-inbound"] ?? 0) == (before["userspace-out"] ?? 0)
                + (before["userspace-in"] ?? 0),
            "no packet of the flow needed userspace: \(during)")

        try lab.startGateway()
        let log = (try? String(contentsOfFile: lab.gatewayLog, encoding: .utf8)) ?? ""
        #expect(log.contains("1 flows found in the maps"), "\(log)")
        #expect(session.exchange())
        #expect(Traffic.ping(from: lab.ns(blueA), to: x, count: 2) == 2, "new flows work after the restart")
    }

    @Test func idleFlowsExpireAndUnknownInboundIsDropped() throws {
        let lab = DemoLab(net: LabNetwork(tag: "gwexpire"))
        lab.gatewayArguments = ["--icmp", "2", "--udp", "2"]
        try lab.build()
        try lab.start()
        #expect(Traffic.ping(from: lab.ns(redA), to: x, count: 2) == 2)
        #expect((try lab.gatewayCounters()["flows"] ?? 0) == 1)
        let deadline = Date().addingTimeInterval(10)
        while (try lab.gatewayCounters()["flows"] ?? 0) > 0 && Date() < deadline { usleep(200_000) }
        let g = try lab.gatewayCounters()
        #expect(g["flows"] == 0 && (g["flows-expired"] ?? 0) >= 1, "\(g)")

        // Nothing of X's reaches a tenant unasked: UDP to a NAT port without a flow.
        let before = try lab.counters(hostG).drops["external-unknown"] ?? 0
        _ = try lab.net.exec(lab.outside, "bash -c 'echo hello > /dev/udp/\(ext)/40000'")
        usleep(200_000)
        #expect((try lab.counters(hostG).drops["external-unknown"] ?? 0) == before + 1)
    }

    @Test func portExhaustionIsCountedAndReported() throws {
        let lab = DemoLab(net: LabNetwork(tag: "gwports"))
        try lab.build()
        try lab.start()
        // Two NAT ports only, all of them Red's to take, then a third flow.
        try lab.applyEdited(hostG, file: 1) {
            $0.externalAddresses[0].natPorts = PortRange(first: 40000, last: 40001)
            $0.gatewayDomains[0].natShare = 100
        }
        lab.killGateway()
        try lab.startGateway()
        for _ in 0..<3 { _ = try lab.net.exec(lab.ns(redA), "bash -c 'echo hi > /dev/udp/\(x)/9'") }
        usleep(300_000)
        let g = try lab.gatewayCounters()
        #expect(g["flows"] == 2 && g["ports-exhausted"] == 1, "\(g)")
        let log = (try? String(contentsOfFile: lab.gatewayLog, encoding: .utf8)) ?? ""
        #expect(log.contains("no free external udp port for 198.19.1.1"), "\(log)")
    }
}

/// Red in route mode: its subnets and the physical prefix 203.0.113.0/25 reach each other
/// through G without NAT (X routes 198.19.0.0/16 to G), while Blue stays behind NAT.
@Suite(.serialized)
struct RouteModeTests {
    let x = DemoPlan.x4, stranger: IPAddress = "203.0.113.200"  // on X, outside Red's prefix

    @Test func aDomainInRouteModeIsRoutedWithoutNATBothWays() throws {
        let lab = try startedLab("gwroute")
        try lab.applyEdited(hostG, file: 1) { p in
            p.gatewayDomains[0] = GatewayDomain(
                routingDomain: "red", mode: .route, prefixes: [IPPrefix(parsing: "203.0.113.0/25")!])
            p.publishedServices = []  // services are NAT's
        }
        _ = try lab.net.exec(lab.outside, "ip route add 198.19.0.0/16 via \(DemoPlan.gExternal4)")
        _ = try lab.net.exec(lab.outside, "ip addr add \(stranger)/24 dev eth0")

        // Both ways, by the tenant's own addresses: X reaches the CAs themselves.
        #expect(Traffic.ping(from: lab.ns(redA), to: x, count: 3) == 3, "Red A pings X")
        #expect(Traffic.ping(from: lab.outside, to: redA.ip4, count: 3) == 3, "X pings Red A's CA")
        #expect(Traffic.ping(from: lab.outside, to: red2B.ip4, count: 3) == 3, "X pings Red 5002 on B")
        #expect(
            try Traffic.tcpTransfer(from: lab.ns(redA), to: lab.outside, address: x, fetch: true).ok,
            "Red A fetches from X")
        #expect(
            try Traffic.tcpTransfer(from: lab.outside, to: lab.ns(redB), address: redB.ip4, port: 80).ok,
            "X sends to Red B's CA")
        // Data out too: with the VMs' offloads on, receivers acknowledge joined segments, so
        // the fetches alone send few packets out.
        #expect(try Traffic.tcpTransfer(from: lab.ns(redB), to: lab.outside, address: x).ok, "Red B sends to X")
        // Blue, same CA, still through NAT.
        #expect(Traffic.ping(from: lab.ns(blueA), to: x, count: 3) == 3, "Blue A pings X through NAT")

        usleep(200_000)  // the gateway flushes its counters between polls
        let g = try lab.gatewayCounters()
        #expect((g["routed-out"] ?? 0) > 100 && (g["routed-in"] ?? 0) > 100, "\(g)")
        #expect(
            (g["routed-out"] ?? 0) + (g["routed-in"] ?? 0) > 50 * max(1, g["userspace-routed"] ?? 0),
            "XDP routes, not userspace: \(g)")
        #expect(g["flows-created"] == 1, "only Blue's ping made a NAT flow: \(g)")

        // From outside Red's prefix: dropped and counted, never delivered.
        let spoofBefore = try lab.counters(hostG).drops["external-source-not-routed"] ?? 0
        let fromStranger = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.outside, "ping", "-c", "2", "-W", "1", "-I", stranger.description,
            redA.ip4.description
        ])
        #expect(fromStranger.status != 0, "\(fromStranger.output)")
        #expect((try lab.counters(hostG).drops["external-source-not-routed"] ?? 0) >= spoofBefore + 2)

        // To outside Red's prefix: no route. G answers from the next hop the VM's packet took
        // (the gateway record, 198.19.1.250), which the VM's host accepts from G's PA.
        let noRouteBefore = try lab.counters(hostG).exceptions["no-route"] ?? 0
        let v4 = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "1", "-W", "1", stranger.description
        ])
        #expect(v4.output.contains("From 198.19.1.250") && v4.output.contains("Net Unreachable"), "\(v4.output)")
        // A VM of Red's other subnet: the packet reached G in the next hop's VSID (5001);
        // the answer goes back in the VM's own (5002).
        let other = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(red2A), "ping", "-c", "1", "-W", "1", stranger.description
        ])
        #expect(
            other.output.contains("From 198.19.1.250") && other.output.contains("Net Unreachable"), "\(other.output)")
        #expect((try lab.counters(hostG).exceptions["no-route"] ?? 0) == noRouteBefore + 2)

        // Too big for the external link: G tells the VM the link's MTU, from the next hop.
        try lab.net.ip(lab.ns(hostG), "link set ext mtu 1400")
        let big = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472",
            x.description
        ])
        #expect(big.output.contains("From 198.19.1.250") && big.output.contains("mtu = 1400"), "\(big.output)")
        #expect(Traffic.ping(from: lab.ns(redA), to: x, count: 1) == 1, "small packets still pass")
    }
}

/// Results written from concurrent closures.
final class ResultBox: @unchecked Sendable {
    private var values: [Int: Traffic.Transfer] = [:]
    private let lock = NSLock()
    func set(_ i: Int, _ v: Traffic.Transfer?) {
        lock.lock()
        values[i] = v
        lock.unlock()
    }
    func get(_ i: Int) -> Traffic.Transfer? {
        lock.lock()
        defer { lock.unlock() }
        return values[i]
    }
}
