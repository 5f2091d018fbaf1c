import Foundation
import NvgreLab
import NvgreWire
import Testing

/// Without customer routes, a VM's packet to an address outside its routing domain meets no
/// route on its own host (the distributed router); the host's agent answers from the
/// subnet's gateway with ICMP "network unreachable" / ICMPv6 "no route to destination".
struct NoRouteTests {
    @Test func anOrdinaryHostAnswersNoRoute() throws {
        let lab = try startedLab("noroute")
        try lab.applyEdited(hostA, file: 0) { $0.customerRoutes = [] }
        let before = try lab.counters(hostA).exceptions["no-route"] ?? 0

        let v4 = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "1", "-W", "1", DemoPlan.x4.description
        ])
        #expect(v4.output.contains("From \(redA.gateway4)") && v4.output.contains("Net Unreachable"), "\(v4.output)")
        let v6 = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(blueA), "ping", "-6", "-c", "1", "-W", "1", DemoPlan.x6.description
        ])
        #expect(v6.output.contains("From \(blueA.gateway6)") && v6.output.contains("No route"), "\(v6.output)")
        #expect((try lab.counters(hostA).exceptions["no-route"] ?? 0) == before + 2)
        // Inside the domain nothing changed.
        #expect(Traffic.ping(from: lab.ns(redA), to: red2B.ip4, count: 2) == 2)
        let log = (try? String(contentsOfFile: lab.agentLog(hostA), encoding: .utf8)) ?? ""
        #expect(log.contains("\(redA.ip4) sent a packet to \(DemoPlan.x4), which no route covers"), "\(log)")
    }
}
