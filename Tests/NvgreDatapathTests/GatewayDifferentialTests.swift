import CNvgre
import Foundation
import NvgreDatapath
import NvgreUserspace
import NvgreWire
import Testing

/// The differential test on a gateway host: the fixture made a gateway for Red and Blue
/// (GatewayEgressTests' setup: NAT for both, an external address, a published service,
/// infrastructure prefixes) with NAT flows the gateway process set up and has not offloaded
/// yet. Frames from the fabric (tenants leaving: to the outside, to infrastructure, to a
/// service through the hairpin) and from the external interface (replies to the flows, new
/// connections to the service, ICMP errors about a flow, forged infrastructure sources, the
/// host's own traffic), mutated, go through nv_from_fabric and nv_from_external by test-run
/// and through the core with the same flows; verdict, bytes and counters must agree. An
/// offloaded flow is where the two differ by design (XDP translates it; the userspace path
/// has no offload step), so there is none here. NVGRE_DIFF_FRAMES / 5 frames (default
/// 20,000), NVGRE_DIFF_SEED replays a run.
@Suite(.serialized)
struct GatewayDifferentialTests {
    static let ext = GatewayEgressTests.ext, x = GatewayEgressTests.outsider
    static let infraSource: IPAddress = "10.9.3.4"

    /// The gateway process's flows, as the core asks about them.
    final class Flows: NATFlowView, @unchecked Sendable {
        var out: [RawBytes: nv_nat_flow] = [:]
        var inbound: [RawBytes: nv_nat_flow] = [:]
        func flowOut(_ key: nv_nat_out_key) -> nv_nat_flow? { out[RawBytes(of: key)] }
        func flowIn(_ key: nv_nat_in_key) -> nv_nat_flow? { inbound[RawBytes(of: key)] }
    }

    static let flows = [
        NATFlow(
            proto: 6, rdid: 1, vsid: Plan.red.vsid, ca: Plan.vm3.ip4, caPort: 40000, ext: ext, extPort: 50000,
            remote: x,
            remotePort: 80),
        NATFlow(
            proto: 17, rdid: 2, vsid: Plan.blue.vsid, ca: Plan.blue3.ip4, caPort: 40000, ext: ext, extPort: 50001,
            remote: x, remotePort: 53),
        NATFlow(
            proto: 1, rdid: 1, vsid: Plan.red.vsid, ca: Plan.vm3.ip4, caPort: 77, ext: ext, extPort: 50002, remote: x,
            remotePort: 0)
    ]

    static func echo(_ type: UInt8, id: UInt16, from src: IPAddress, to dst: IPAddress, mac: MACAddress) -> [UInt8] {
        var icmp = ICMP.echoRequest(id: id, sequence: 1, payload: Frames.payload)
        icmp[0] = type
        icmp[2] = 0
        icmp[3] = 0
        let sum = internetChecksum(icmp)
        icmp[2] = UInt8(sum >> 8)
        icmp[3] = UInt8(sum & 0xff)
        let ip = IPPacket.build(src: src, dst: dst, proto: IPProtocol.icmp.rawValue, payload: icmp)
        return Ethernet.frame(dst: Plan.uplinkMAC, src: mac, type: .ipv4, payload: ip)
    }

    /// An ICMP error from X about a packet the gateway sent (quoted from its IP header).
    static func icmpError(about quoted: [UInt8], from src: IPAddress) -> [UInt8] {
        var icmp: [UInt8] = [3, 3, 0, 0, 0, 0, 0, 0] + Array(quoted.prefix(28))
        let sum = internetChecksum(icmp)
        icmp[2] = UInt8(sum >> 8)
        icmp[3] = UInt8(sum & 0xff)
        let ip = IPPacket.build(src: src, dst: ext, proto: IPProtocol.icmp.rawValue, payload: icmp)
        return Ethernet.frame(dst: Plan.uplinkMAC, src: Plan.macC, type: .ipv4, payload: ip)
    }

    /// The corpus: (program, frame).
    static func corpus() -> [(Program, [UInt8])] {
        let outsideMAC = Plan.macC
        func red(_ inner: [UInt8]) -> [UInt8] { Frames.nvgre(inner, vsid: Plan.red.vsid, from: Plan.paB) }
        func blue(_ inner: [UInt8]) -> [UInt8] { Frames.nvgre(inner, vsid: Plan.blue.vsid, from: Plan.paC) }
        let (vm3, b3, gw) = (Plan.vm3, Plan.blue3, Plan.red.gwMAC)
        var fabric: [[UInt8]] = [
            red(Frames.udp(vm3.mac, gw, vm3.ip4, x, dport: 53)),
            red(Frames.tcp(vm3.mac, gw, vm3.ip4, x, sport: 40000, dport: 80)),
            red(Frames.tcp(vm3.mac, gw, vm3.ip4, ext, sport: 40001, dport: 8080)),
            red(Frames.tcp(vm3.mac, gw, vm3.ip4, ext, sport: 40001, dport: 22)),
            red(Frames.udp(vm3.mac, gw, vm3.ip4, "198.18.0.2")),
            red(Frames.udp(vm3.mac, gw, vm3.ip4, "127.0.0.1")),
            red(echo(8, id: 77, from: vm3.ip4, to: x, mac: vm3.mac)),
            red(Frames.udp(vm3.mac, gw, vm3.ip6, "2001:db8:18::9")),
            red(Frames.udp(vm3.mac, gw, vm3.ip6, "2001:db8:99::1")),
            red(Frames.udp(vm3.mac, gw, vm3.ip4, Plan.vm1.ip4)),
            blue(Frames.udp(b3.mac, Plan.blue.gwMAC, b3.ip4, x, sport: 40000, dport: 53)),
            blue(Frames.tcp(b3.mac, Plan.blue.gwMAC, b3.ip4, ext, sport: 40002, dport: 8080)),
            blue(Frames.udp(b3.mac, Plan.blue.gwMAC, b3.ip4, "10.9.0.1"))
        ]
        fabric = fabric.map { f in
            var g = f
            g.replaceSubrange(0..<6, with: Plan.uplinkMAC.bytes)
            return g
        }
        let quotedTCP = IPPacket.build(
            src: ext, dst: x, proto: 6, payload: TCP.segment(src: ext, dst: x, sport: 50000, dport: 80))
        let quotedOther = IPPacket.build(
            src: ext, dst: x, proto: 6, payload: TCP.segment(src: ext, dst: x, sport: 61000, dport: 80))
        var external: [[UInt8]] = [
            Frames.tcp(outsideMAC, Plan.uplinkMAC, x, ext, sport: 80, dport: 50000),
            Frames.udp(outsideMAC, Plan.uplinkMAC, x, ext, sport: 53, dport: 50001),
            echo(0, id: 50002, from: x, to: ext, mac: outsideMAC),
            echo(8, id: 9, from: x, to: ext, mac: outsideMAC),
            Frames.tcp(outsideMAC, Plan.uplinkMAC, x, ext, sport: 33000, dport: 8080),
            Frames.tcp(outsideMAC, Plan.uplinkMAC, x, ext, sport: 33000, dport: 9999),
            Frames.tcp(outsideMAC, Plan.uplinkMAC, infraSource, ext, sport: 80, dport: 50000),
            icmpError(about: quotedTCP, from: x),
            icmpError(about: quotedOther, from: x),
            icmpError(about: quotedTCP, from: infraSource),
            Frames.udp(outsideMAC, Plan.uplinkMAC, x, "203.0.113.77"),
            Frames.arpRequest(outsideMAC, x, target: ext),
            Frames.udp(outsideMAC, Plan.uplinkMAC, "2001:db8:99::1", "2001:db8:99::2")
        ]
        external = external.map { f in
            var g = f
            g.replaceSubrange(0..<6, with: Plan.uplinkMAC.bytes)
            return g
        }
        return fabric.map { (.fromFabric, $0) } + external.map { (.fromExternal, $0) }
    }

    @Test func theUserspaceCoreDecidesAsTheProgramsDoOnAGateway() throws {
        let env = ProcessInfo.processInfo.environment
        let count = (env["NVGRE_DIFF_FRAMES"].flatMap { Int($0) } ?? 100_000) / 5
        let seed = env["NVGRE_DIFF_SEED"].flatMap { UInt64($0) } ?? UInt64(Date().timeIntervalSince1970 * 1000)
        let host = try GatewayEgressTests().gateway("gwdiff")
        let memory = Flows()
        for f in Self.flows {
            let v = f.value(flags: [], lastSeenNanoseconds: 1)
            try host.dp.maps.natOut.update(f.outKey, v)
            try host.dp.maps.natIn.update(f.inKey, v)
            memory.out[RawBytes(of: f.outKey)] = v
            memory.inbound[RawBytes(of: f.inKey)] = v
        }
        let programs = try DifferentialTests.ProgramRunner(host)
        let corpus = Self.corpus()
        var r = DifferentialTests.Random(state: seed)
        var differences: [String] = []
        var kinds: [String: Int] = [:]
        var refused = 0
        try NetworkNamespace.run(in: host.ns) {
            let core = DecisionCore(
                tables: try DifferentialTests.snapshot(host.dp),
                underlay: DifferentialTests.FixtureUnderlay(uplink: host.port("ul")), flows: memory)
            for i in 0..<count {
                let (program, base) = r.pick(corpus)
                let ingress = host.port(program == .fromExternal ? "port5" : "ul")
                let frame = r.chance(85) ? DifferentialTests.mutate(base, &r) : base
                guard let (programSaid, moved) = try programs.run(program, frame, ingress: ingress) else {
                    refused += 1
                    continue
                }
                let expected = DifferentialTests.asTestRunShowsIt(
                    program == .fromExternal ? core.fromExternal(frame) : core.fromFabric(frame))
                kinds[
                    "\(program == .fromExternal ? "external" : "fabric") \(expected.verdict)".prefix { $0 != "(" }
                        .description, default: 0] += 1
                let counters = DifferentialTests.names(expected.counters)
                if programSaid != expected.verdict || moved != counters {
                    differences.append(
                        "frame \(i) (\(program.rawValue)): \(hex(frame))\n  program: "
                            + "\(programSaid.map { "\($0)" } ?? "no trace") \(moved)\n  core:    \(expected.verdict) "
                            + "\(counters)")
                    if differences.count >= 3 { break }
                }
            }
        }
        #expect(
            differences.isEmpty,
            "\(differences.count) differences; replay with NVGRE_DIFF_SEED=\(seed):\n\(differences.joined(separator: "\n"))"
        )
        print(
            "gateway differential: \(count) frames, seed \(seed), \(refused) refused by test-run: "
                + "\(kinds.sorted { $0.key < $1.key })")
        #expect(refused < count / 10, "test-run refused \(refused) of \(count) frames")
        for kind in ["fabric drop", "fabric exception", "external drop", "external exception", "external pass"] {
            #expect((kinds[kind] ?? 0) > 0, "no frame ended in \(kind): \(kinds)")
        }
    }
}
