import Foundation
import NvgreLab
import NvgreWire
import Testing

/// An underlay of MTU 1500 leaves a customer 1458 bytes over IPv4 PAs (20 outer IP + 8 GRE
/// + 14 inner Ethernet). The host's agent answers bigger packets with ICMP "fragmentation
/// needed" / ICMPv6 "packet too big", so path MTU discovery works and TCP completes.
@Suite(.serialized)
struct TooBigTests {
    static func lab(_ tag: String) throws -> DemoLab {
        let lab = DemoLab(net: LabNetwork(tag: tag))
        lab.underlayMTU = 1500
        try lab.build()
        try lab.start()
        return lab
    }

    @Test func fullSizePacketsLearnTheMTUThatFits() throws {
        let lab = try Self.lab("toobig")
        // ping's own report of the ICMP error names the MTU it was told.
        let v4 = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "2", "-W", "1", "-M", "do", "-s", "1472",
            redB.ip4.description
        ])
        #expect(v4.output.contains("mtu = 1458"), "ping -M do -s 1472: \(v4.output)")
        let v6 = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-6", "-c", "2", "-W", "1", "-M", "do", "-s", "1452",
            redB.ip6.description
        ])
        #expect(
            v6.output.contains("mtu=1458") || v6.output.contains("mtu = 1458"), "ping -6 -M do -s 1452: \(v6.output)")
        // Small enough: delivered.
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 2) == 2)
        let fits = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "2", "-W", "1", "-M", "do", "-s", "1430",
            redB.ip4.description
        ])
        #expect(fits.status == 0, "ping -M do -s 1430 (1458 bytes): \(fits.output)")
        // TCP sends full-size DF segments, learns 1458 and completes, both tenants.
        #expect(try Traffic.tcpTransfer(from: lab.ns(redA), to: lab.ns(redB), address: redB.ip4).ok)
        #expect(try Traffic.tcpTransfer(from: lab.ns(blueB), to: lab.ns(blueA), address: blueA.ip4).ok)
        // Routed toward the gateway (the router rewrote the MACs): the answer still reaches the VM.
        let routed = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472",
            DemoPlan.x4.description
        ])
        #expect(routed.output.contains("mtu = 1458"), "ping -M do -s 1472 to X: \(routed.output)")
        // Through the gateway: X's full-size segments to a VM do not fit either; G tells X
        // about the packet X sent (to the external address), so X's transfer completes too.
        #expect(
            try Traffic.tcpTransfer(from: lab.ns(redA), to: lab.outside, address: DemoPlan.x4, fetch: true).ok,
            "Red fetches from X")
        #expect(
            try Traffic.tcpTransfer(
                from: lab.outside, to: lab.ns(redB), address: DemoPlan.gExternal4, port: DemoPlan.redService,
                serverPort: 80
            ).ok, "X sends to Red's published service")
        // X learns the MTU from G either way: XDP hands up a translated packet too big for the
        // underlay (an oversize exception), or the gateway process meets one of the flow's
        // first packets itself; both answer X.
        #expect(
            (try lab.counters(hostG).exceptions["oversize"] ?? 0)
                + (try lab.gatewayCounters()["too-big-told-outside"] ?? 0) > 0)
        let a = try lab.counters(hostA)
        #expect((a.exceptions["oversize"] ?? 0) > 0, "exceptions on A: \(a.exceptions)")
    }

    /// IPv4 without DF too big for the underlay is fragmented by the host's agent, as a
    /// router would, and each fragment encapsulated: the echo (2028 bytes each way) gets
    /// through, both hosts fragmenting, routed too; the underlay carries only frames that fit.
    @Test func packetsWithoutDFAreFragmentedNotDropped() throws {
        let lab = try Self.lab("fragment")
        let capture = try Capture(
            in: lab.fabric, interface: "to-a", filter: "ip proto 47", name: "\(lab.net.prefix)-fragments")
        for (vm, target, what) in [
            (redA, redB.ip4, "Red on A to Red on B"), (red2A, redB.ip4, "Red 5002 on A to Red 5001 on B, routed"),
            (blueB, blueA.ip4, "Blue on B to Blue on A")
        ] {
            let r = try Spawn.run([
                "/usr/sbin/ip", "netns", "exec", lab.ns(vm), "ping", "-c", "2", "-W", "2", "-M", "dont", "-s", "2000",
                target.description
            ])
            #expect(r.output.contains("2 received"), "\(what), ping -M dont -s 2000: \(r.output)")
        }
        // tcpdump's reading: every NVGRE packet's IP length within the 1500-byte underlay.
        let lines = try capture.tcpdumpLines()
        let lengths = lines.compactMap { line -> Int? in
            guard let r = line.range(of: "GREv0, ") else { return nil }
            let rest = line[r.upperBound...]
            guard let l = rest.range(of: "length ") else { return nil }
            return Int(rest[l.upperBound...].prefix { $0.isNumber })
        }
        #expect(lengths.count >= 8, "\(lines.prefix(10))")
        #expect(lengths.allSatisfy { $0 + 20 <= 1500 }, "GRE payload lengths on A's port: \(lengths)")
        let log = (try? String(contentsOfFile: lab.agentLog(hostA), encoding: .utf8)) ?? ""
        #expect(log.contains("without DF: sent in 2 fragments"), "\(log)")
    }

    /// A 1500-byte datagram from X without DF, answering a VM through NAT, does not fit the
    /// underlay once encapsulated: the gateway fragments it and the VM gets all of it, the
    /// first answer through the gateway process, the second (the flow offloaded by then)
    /// handed up by XDP as oversize.
    @Test func aBigAnswerFromOutsideWithoutDFReachesTheVMInFragments() throws {
        let lab = try Self.lab("fragout")
        let server = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: no DF
            s.bind(('0.0.0.0', 7001)); s.settimeout(10)
            for i in range(2):
                d, a = s.recvfrom(100); s.sendto(b'x' * 1472, a)
            """
        let file = NSTemporaryDirectory() + "\(lab.net.prefix)-udp-answer.py"
        try server.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let log = file + ".log"
        defer { unlink(log) }
        let pid = try Spawn.start(
            ["/usr/sbin/ip", "netns", "exec", lab.outside, systemPython, file], output: log, detached: false)
        defer { Spawn.stop(pid) }
        usleep(300_000)
        let client =
            "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
            + "s.connect(('\(DemoPlan.x4)', 7001)); s.send(b'hi'); print(len(s.recv(4000))); time.sleep(0.3); "
            + "s.send(b'hi'); print(len(s.recv(4000)))"
        let got = try lab.net.exec(lab.ns(redA), "\(systemPython) -c \"\(client)\" 2>&1 || true")
        #expect(got.split(separator: "\n") == ["1472", "1472"], "the VM received: \(got)")
        #expect((try lab.counters(hostG).exceptions["oversize"] ?? 0) >= 1)
    }
}
