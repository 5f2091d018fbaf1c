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

    /// `nvgre -j stats` of G: the gateway section.
    func gateway(_ lab: DemoLab) throws -> [String: Int] {
        let r = try lab.cli(hostG, ["-j", "stats"])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
              let gw = json["gateway"] as? [String: Any] else { throw ShellErrorText("nvgre stats on G: \(r.output)") }
        var out: [String: Int] = [:]
        for (k, v) in gw {
            if let n = v as? Int { out[k] = n } else if let p = (v as? [String: Any])?["packets"] as? Int { out[k] = p }
        }
        return out
    }

    @Test func tenantsWithTheSameAddressReachTheOutsideAndArePublished() throws {
        let lab = try startedLab("gwnat")
        // Red and Blue, both 198.19.1.1 on host A, fetch 1 MiB from X at the same time.
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let vm = i == 0 ? redA : blueA
            results.set(i, try? Traffic.tcpTransfer(from: lab.ns(vm), to: lab.outside, address: x, port: 5201 + UInt16(i), fetch: true))
        }
        #expect(results.get(0)?.ok == true, "Red's transfer to X: \(String(describing: results.get(0)))")
        #expect(results.get(1)?.ok == true, "Blue's transfer to X: \(String(describing: results.get(1)))")
        #expect(Traffic.ping(from: lab.ns(red2B), to: x, count: 3) == 3, "Red 5002 VM on B pings X through NAT")

        // X reaches Red's published service (from the policy file) and Blue's, added live.
        let add = try lab.cli(hostG, ["service", "add", "tcp", "\(ext):\(DemoPlan.blueService)", "--domain", "blue", "--to", "198.19.1.2:80"])
        #expect(add.status == 0, "service add: \(add.output)")
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let (vm, port) = i == 0 ? (redB, DemoPlan.redService) : (blueB, DemoPlan.blueService)
            results.set(i, try? Traffic.tcpTransfer(from: lab.outside, to: lab.ns(vm), address: ext, port: port, serverPort: 80))
        }
        #expect(results.get(0)?.ok == true, "X to Red's service: \(String(describing: results.get(0)))")
        #expect(results.get(1)?.ok == true, "X to Blue's service: \(String(describing: results.get(1)))")

        // Established flows went to XDP: userspace saw only each flow's first packets.
        let g = try gateway(lab)
        let userspace = (g["userspace-out"] ?? 0) + (g["userspace-in"] ?? 0)
        let offloaded = (g["offloaded-out"] ?? 0) + (g["offloaded-in"] ?? 0)
        #expect((g["flows-created"] ?? 0) >= 5 && (g["flows-offloaded"] ?? 0) >= 5, "\(g)")
        #expect(offloaded > 10 * userspace, "\(g)")

        // Removed live: a new connection to it is dropped at the external interface, counted.
        let dropsBefore = try lab.counters(hostG).drops["external-unknown"] ?? 0
        #expect(try lab.cli(hostG, ["service", "del", "tcp", "\(ext):\(DemoPlan.blueService)"]).status == 0)
        let refused = try? Traffic.tcpTransfer(from: lab.outside, to: lab.ns(blueB), address: ext, port: DemoPlan.blueService,
                                                serverPort: 80, bytes: 1000, timeout: 2)
        #expect(refused?.ok != true)
        #expect((try lab.counters(hostG).drops["external-unknown"] ?? 0) > dropsBefore)
    }

    @Test func offloadedFlowsKeepForwardingWhileTheGatewayRestarts() throws {
        let lab = try startedLab("gwrestart")
        let session = try TCPSession(from: lab.ns(redA), to: lab.outside, address: x, port: 5301)
        #expect(session.exchange())
        usleep(200_000)  // the gateway flushes its counters between polls
        let settled = try gateway(lab)
        #expect((settled["flows-offloaded"] ?? 0) >= 1, "\(settled)")
        // Offloaded: more traffic of the flow never reaches userspace.
        #expect(session.exchange(65536))
        usleep(200_000)
        let before = try gateway(lab)
        #expect(before["userspace-out"] == settled["userspace-out"] && before["userspace-in"] == settled["userspace-in"], "\(settled) then \(before)")
        #expect((before["offloaded-out"] ?? 0) > (settled["offloaded-out"] ?? 0) + 10, "\(settled) then \(before)")

        lab.killGateway()
        #expect(session.exchange(65536), "the offloaded flow forwards with no gateway process")
        let during = try lab.counters(hostG).exceptions
        #expect((during["nat-outbound"] ?? 0) + (during["nat-inbound"] ?? 0) == (before["userspace-out"] ?? 0) + (before["userspace-in"] ?? 0),
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
        #expect((try gateway(lab)["flows"] ?? 0) == 1)
        let deadline = Date().addingTimeInterval(10)
        while (try gateway(lab)["flows"] ?? 0) > 0 && Date() < deadline { usleep(200_000) }
        let g = try gateway(lab)
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
        // Two NAT ports only, then a third flow.
        var files = try lab.policyFiles(hostG)
        var p = try PolicyDocument.decode(bytes: [UInt8](FileManager.default.contents(atPath: files[1]) ?? Data()), validate: false)
        p.externalAddresses[0].natPorts = PortRange(first: 40000, last: 40001)
        let path = NSTemporaryDirectory() + "\(lab.net.prefix)-g-two-ports.yaml"
        try PolicyWriter.write(p, as: .yaml).write(toFile: path, atomically: false, encoding: .utf8)
        defer { unlink(path) }
        files[1] = path
        #expect(try lab.cli(hostG, ["apply"] + files).status == 0)
        lab.killGateway()
        try lab.startGateway()
        for _ in 0..<3 { _ = try lab.net.exec(lab.ns(redA), "bash -c 'echo hi > /dev/udp/\(x)/9'") }
        usleep(300_000)
        let g = try gateway(lab)
        #expect(g["flows"] == 2 && g["ports-exhausted"] == 1, "\(g)")
        let log = (try? String(contentsOfFile: lab.gatewayLog, encoding: .utf8)) ?? ""
        #expect(log.contains("no free external udp port for 198.19.1.1"), "\(log)")
    }
}

/// Results written from concurrent closures.
final class ResultBox: @unchecked Sendable {
    private var values: [Int: Traffic.Transfer] = [:]
    private let lock = NSLock()
    func set(_ i: Int, _ v: Traffic.Transfer?) { lock.lock(); values[i] = v; lock.unlock() }
    func get(_ i: Int) -> Traffic.Transfer? { lock.lock(); defer { lock.unlock() }; return values[i] }
}
