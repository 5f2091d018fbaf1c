import Foundation
import NvgreLab
import NvgreWire
import Testing

/// The demo's claims as assertions, over an IPv4 and an IPv6 underlay, for IPv4 and IPv6
/// customers. Traffic is real (ping, TCP through sockets in the VMs' namespaces).
@Suite(.serialized)
struct DemoTopologyTests {
    /// Each tenant's VMs reach each other across hosts, Red's subnets are routed, and Red's
    /// traffic to an address Blue also uses never reaches Blue.
    func checkTenants(_ lab: DemoLab, family: IPFamily) throws {
        for (from, to) in [(redA, redB), (blueA, blueB), (redB, redA), (blueB, blueA)] {
            #expect(Traffic.ping(from: lab.ns(from), to: to.address(family)) == 5, "\(from) -> \(to) over \(family)")
        }
        for (from, to) in [(redA, redB), (blueA, blueB)] {
            let t = try Traffic.tcpTransfer(from: lab.ns(from), to: lab.ns(to), address: to.address(family))
            #expect(t.ok, "TCP \(from) -> \(to) over \(family): \(t)")
        }
        // The distributed router: 5001 -> 5002 across hosts and on one host, both ways.
        for (from, to) in [(redA, red2B), (red2B, redA), (red2A, redA)] {
            #expect(
                Traffic.ping(from: lab.ns(from), to: to.address(family)) == 5, "routed \(from) -> \(to) over \(family)")
        }
        // Blue has no route to Red's 5002: the same ping from Blue gets nothing.
        #expect(Traffic.ping(from: lab.ns(blueA), to: red2B.address(family), count: 2) == 0)

        // Everything Blue's VM receives meanwhile, to show what arrived if anything of Red's did
        // (the hosts' own IPv6 housekeeping, MLD reports from a port's link-local address,
        // may arrive too: those are not Red's).
        let seen = try Capture(
            in: lab.ns(blueB), interface: "eth0", filter: "", name: "\(lab.net.prefix)-blue-\(family)")
        #expect(Traffic.ping(from: lab.ns(redA), to: blueB.address(family)) == 5)
        let lines = try seen.tcpdumpLines()
        #expect(
            !lines.contains { $0.contains("echo request") || $0.contains("echo reply") },
            "Blue received Red's traffic: \(lines.joined(separator: "\n"))")
    }

    /// Drops other than the VMs' own duplicate address detection of their link-local
    /// addresses (neighbor solicitations no policy answers, as it should be).
    func unexpectedDrops(_ drops: [String: Int]) -> [String: Int] {
        drops.filter { $0.value > 0 && $0.key != "nd-target-unknown" }
    }

    @Test func ipv4CustomersOverIPv4Underlay() throws {
        let lab = try startedLab("v4v4")
        try checkTenants(lab, family: .v4)
        let a = try lab.counters(hostA)
        #expect((a.vsids[5001]?["encap"] ?? 0) > 0 && (a.vsids[6001]?["encap"] ?? 0) > 0)
        #expect((a.vsids[5001]?["routed"] ?? 0) > 0, "the distributed router counted nothing")
        #expect(unexpectedDrops(a.drops).isEmpty, "drops on A: \(unexpectedDrops(a.drops))")
    }

    @Test func ipv6CustomersOverIPv4Underlay() throws {
        let lab = try startedLab("v6v4")
        try checkTenants(lab, family: .v6)
        let b = try lab.counters(hostB).drops
        #expect(unexpectedDrops(b).isEmpty, "drops on B: \(unexpectedDrops(b))")
    }

    /// Provider addresses of IPv6 (the same policy with 2001:db8:18::N for 198.18.0.N): the
    /// underlay frames are IPv6 and both customer families cross it.
    @Test func bothCustomerFamiliesOverIPv6Underlay() throws {
        let lab = try startedLab("v46v6", underlay: .v6)
        let capture = try Capture(
            in: lab.fabric, interface: "to-a", filter: "ip6 proto 47 or ip proto 47", name: "\(lab.net.prefix)-v6ul")
        try checkTenants(lab, family: .v4)
        try checkTenants(lab, family: .v6)
        let frames = try capture.frames().compactMap(DecodedNVGRE.init)
        #expect(!frames.isEmpty)
        #expect(
            frames.allSatisfy { $0.outer.etherType == EtherType.ipv6.rawValue },
            "an NVGRE frame with an IPv4 outer header")
        #expect(Set(frames.map(\.vsid)).isSuperset(of: [5001, 5002, 6001]))
        let a = try lab.counters(hostA).drops
        #expect(unexpectedDrops(a).isEmpty, "drops on A: \(unexpectedDrops(a))")
    }

    /// The data path keeps forwarding with the agents stopped and the CLI not running.
    @Test func forwardingNeedsNoRunningProcess() throws {
        let lab = try startedLab("noproc")
        lab.stopAgents()
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4) == 5)
        #expect(try Traffic.tcpTransfer(from: lab.ns(blueB), to: lab.ns(blueA), address: blueA.ip4).ok)
    }
}
