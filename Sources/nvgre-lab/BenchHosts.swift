import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// The topologies the live rows run through. Every host has a VM side (port1 <-> eth0 in
/// the VM's namespace) and an underlay side (ul <-> fab in the fabric's namespace); the
/// remote host B (PA 198.18.0.2) is only a permanent neighbor entry behind fab.
enum BenchPlan {
    static let vm1 = TwoHostLab.vm1, vm2 = TwoHostLab.vm2
    static let paA: IPAddress = "198.18.0.1", paB: IPAddress = "198.18.0.2"
    static let peerMAC: MACAddress = "02:18:00:00:00:02"
    /// Scale records: 2001:db8:19:1::10:0 and up (the low 32 bits count from this).
    static let scaleBase: UInt32 = 0x0010_0000

    /// vm2's UDP frame to vm1 as host B sends it, NVGRE to host A's uplink MAC.
    static func fromB(to ulMAC: MACAddress) -> [UInt8] {
        NVGRE.encapsulate(
            inner: BenchFrames.inbound, vsid: 5001,
            hash: FlowHash(src: vm2.ip4, dst: vm1.ip4, protocol: 17, sport: 2000, dport: 1000),
            outerSrcMAC: peerMAC, outerDstMAC: ulMAC, srcPA: paB, dstPA: paA)
    }

    /// A namespace with IPv6 off, so no router or listener solicitations reach a sink.
    static func quietNamespace(_ net: LabNetwork, _ name: String) throws -> String {
        let ns = try net.namespace(name)
        try net.exec(ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        return ns
    }

    /// port1 <-> eth0 (VM, vm1's MAC) and ul <-> fab (fabric, B's MAC), ul holding PA A
    /// with B as a permanent neighbor, forwarding on.
    static func wireHost(_ net: LabNetwork, _ tag: String, queues: Int) throws -> (h: String, v: String, f: String) {
        let h = try quietNamespace(net, "\(tag)-h"), v = try quietNamespace(net, "\(tag)-v"),
            f = try quietNamespace(net, "\(tag)-f")
        try net.veth("port1", in: h, "eth0", in: v, macB: vm1.mac.description, queues: queues)
        try net.veth("ul", in: h, "fab", in: f, macB: peerMAC.description, queues: queues)
        try net.ip(h, "addr add \(paA)/24 dev ul")
        try net.ip(h, "neigh replace \(paB) lladdr \(peerMAC) dev ul nud permanent")
        try net.setForwarding(true, in: h, uplink: "ul")
        return (h, v, f)
    }
}

/// The hops of the encap and decap paths with nothing done on them: the same wiring as
/// NvgreBenchHost, port1's tc program only redirecting to ul (as the from-VM program does
/// once it has encapsulated) and ul's XDP program only redirecting to port1 (as decap does).
struct BareRedirectHost {
    let ns: (h: String, v: String, f: String)
    let ulMAC: MACAddress
    private var links: [ProgramLink] = []

    init(_ net: LabNetwork, live: LiveTraffic, queues: Int) throws {
        ns = try BenchPlan.wireHost(net, "rd", queues: queues)
        ulMAC = try net.mac("ul", in: ns.h)
        let bare = try Datapath()
        links = try NetworkNamespace.run(in: ns.h) {
            let (port, ul) = (try interfaceIndex("port1"), try interfaceIndex("ul"))
            try live.setRedirect(from: port, to: ul)
            try live.setRedirect(from: ul, to: port)
            // As on NvgreBenchHost's port1: XDP_PASS turns the generator's frames into skbs.
            try attachXDPToInterface(programFD: bare.programFD(.barePass), name: "nv_bare_pass", ifindex: port)
            try attachXDPToInterface(programFD: live.redirectXDPProgramFD, name: "nv_bench_redirect_xdp", ifindex: ul)
            return [
                try attachTCIngress(programFD: live.redirectTCProgramFD, name: "nv_bench_redirect_tc", ifindex: port)
            ]
        }
    }

    var toUplink: LiveBench.Path {
        .init(
            name: "bare redirect, VM port to uplink (tc)", frame: BenchFrames.outbound, from: (ns.v, "eth0"),
            sink: (ns.f, "fab"))
    }

    var toPort: LiveBench.Path {
        .init(
            name: "bare redirect, uplink to VM port (XDP)", frame: BenchPlan.fromB(to: ulMAC), from: (ns.f, "fab"),
            sink: (ns.v, "eth0"))
    }
}

/// The limit: generator -> g0 ==veth==> r0 (bare XDP_TX, MACs swapped) ==> g0 (sink).
struct ReflectorPair {
    let path: LiveBench.Path

    init(_ net: LabNetwork, queues: Int) throws {
        let gen = try BenchPlan.quietNamespace(net, "refl-g"), refl = try BenchPlan.quietNamespace(net, "refl-r")
        try net.veth("g0", in: gen, "r0", in: refl, queues: queues)
        let bare = try Datapath()
        try NetworkNamespace.run(in: refl) {
            try attachXDPToInterface(
                programFD: bare.programFD(.bareTX), name: "nv_bare_tx", ifindex: try interfaceIndex("r0"))
        }
        path = .init(name: "bare XDP_TX reflector", frame: BenchFrames.outbound, from: (gen, "g0"), sink: (gen, "g0"))
    }
}

/// Host A running an nvgre instance brought up with the CLI: VM vm1 on port1 in VSID 5001,
/// vm2 behind host B. Extra IPv6 records (all behind B) make the scale rows.
final class NvgreBenchHost {
    let ns: (h: String, v: String, f: String)
    let ulMAC: MACAddress
    let instance: String
    let nvgre = builtBinary("nvgre")
    private let policyFile: String
    private var agentLog: String { NSTemporaryDirectory() + "\(instance)-bench-agent.log" }
    private var agent: pid_t?

    init(_ net: LabNetwork, queues: Int) throws {
        ns = try BenchPlan.wireHost(net, "nv", queues: queues)
        ulMAC = try net.mac("ul", in: ns.h)
        instance = net.prefix
        policyFile = NSTemporaryDirectory() + "\(net.prefix)-bench-policy.yaml"
        try writePolicy(scaleRecords: 0)
        try cli(["up", "--uplink", "ul", "--policy", policyFile])
        // As a user runs it: with its agent, which keeps the underlay next hops (nexthops).
        agent = try Spawn.start([nvgre, "-n", ns.h, "--instance", instance, "agent"], output: agentLog, detached: false)
        try Spawn.waitForOutput(agentLog, containing: "handling exceptions", what: "the agent of the bench host")
        // The generator's frames are XDP frames, which a veth takes only when it runs XDP:
        // port1 gets a bare XDP_PASS, as the kernel vxlan row's port1 does, so both rows
        // pay the same to turn them into skbs before the VM-port hook (tc) sees them.
        let bare = try Datapath()
        try NetworkNamespace.run(in: ns.h) {
            try attachXDPToInterface(
                programFD: bare.programFD(.barePass), name: "nv_bare_pass", ifindex: try interfaceIndex("port1"))
        }
    }

    func down() {
        if let agent { Spawn.stop(agent) }
        _ = try? Spawn.run([nvgre, "--instance", instance, "down"])
        unlink(policyFile)
        unlink(agentLog)
    }

    @discardableResult
    func cli(_ args: [String]) throws -> String {
        let r = try Spawn.run([nvgre, "-n", ns.h, "--instance", instance] + args)
        guard r.status == 0 else { throw ShellErrorText("nvgre \(args.joined(separator: " ")) failed: \(r.output)") }
        return r.output
    }

    /// Applies the policy with `count` extra IPv6 lookup records; returns the apply's seconds.
    func applyScale(records count: Int) throws -> Double {
        try writePolicy(scaleRecords: count)
        let t0 = monotonicSeconds()
        try cli(["apply", policyFile])
        return monotonicSeconds() - t0
    }

    private func writePolicy(scaleRecords: Int) throws {
        try Self.policyText(scaleRecords: scaleRecords).write(toFile: policyFile, atomically: false, encoding: .utf8)
    }

    /// Host A's policy: vm1 on port1, vm2 behind B, and `scaleRecords` more IPv6 records.
    static func policyText(scaleRecords: Int) -> String {
        let (vm1, vm2, paA, paB) = (BenchPlan.vm1, BenchPlan.vm2, BenchPlan.paA, BenchPlan.paB)
        var text = """
            routingDomains: [{id: 1, name: red}]
            subnets: [{vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/24, "2001:db8:19:1::/64"], gateways: \
            [198.19.1.254], gatewayMAC: 02:00:00:00:ff:01}]
            providerAddresses: [{address: \(paA), interface: ul}]
            ports: [{interface: port1, vsid: 5001, mac: \(vm1.mac), addresses: [\(vm1.ip4), "\(vm1.ip6)"]}]
            lookupRecords:
              - {vsid: 5001, customerAddress: \(vm1.ip4), providerAddress: \(paA), mac: \(vm1.mac)}
              - {vsid: 5001, customerAddress: "\(vm1.ip6)", providerAddress: \(paA), mac: \(vm1.mac)}
              - {vsid: 5001, customerAddress: \(vm2.ip4), providerAddress: \(paB), mac: \(vm2.mac)}

            """
        text.reserveCapacity(text.utf8.count + scaleRecords * 100)
        for i in 0..<UInt32(scaleRecords) {
            let low = BenchPlan.scaleBase + i
            text +=
                "  - {vsid: 5001, customerAddress: "
                + "\"2001:db8:19:1::\(String(low >> 16, radix: 16)):\(String(low & 0xffff, radix: 16))\", "
                + "providerAddress: \(paB), mac: \(vm2.mac)}\n"
        }
        return text
    }

    var encap: LiveBench.Path {
        .init(name: "nvgre encap path", frame: BenchFrames.outbound, from: (ns.v, "eth0"), sink: (ns.f, "fab"))
    }

    var decap: LiveBench.Path {
        .init(
            name: "nvgre decap path", frame: BenchPlan.fromB(to: ulMAC), from: (ns.f, "fab"), sink: (ns.v, "eth0"))
    }

    /// IPv6 frames to one of the first `records` scale records, picked at random per frame;
    /// `table`: how many the instance holds when that is more (the row's name says so).
    func scale(records: Int, table: Int? = nil) -> LiveBench.Path {
        let prefix: IPAddress = "2001:db8:19:1::"
        var dst = prefix.bytes
        withUnsafeBytes(of: BenchPlan.scaleBase.bigEndian) { dst.replaceSubrange(12..<16, with: $0) }
        let frame = BenchFrames.udp(
            srcMAC: BenchPlan.vm1.mac, dstMAC: BenchPlan.vm2.mac, src: BenchPlan.vm1.ip6, dst: IPAddress(v6: dst))
        // Ethernet 14 + IPv6 40: the destination's low word is at 14 + 24 + 12, the UDP checksum at 14 + 40 + 6.
        return .init(
            name: table.map { "nvgre encap, \(records.formatted()) of \($0.formatted()) records at random" }
                ?? "nvgre encap, \(records.formatted()) records at random", frame: frame,
            from: (ns.v, "eth0"), sink: (ns.f, "fab"),
            spread: .init(base: BenchPlan.scaleBase, count: UInt32(records), wordOffset: 50, checksumOffset: 60))
    }
}

/// The kernel's own overlay on the same path: port1 and a vxlan device (VNI 5001, to B's
/// PA) in a bridge on host A. port1 runs a bare XDP_PASS (a veth takes XDP frames only when
/// its peer has a program), so frames enter the kernel stack there; ul does the same for
/// VXLAN frames from the fabric.
struct VXLANBenchHost {
    let ns: (h: String, v: String, f: String)
    let ulMAC: MACAddress

    init(_ net: LabNetwork, queues: Int, tag: String = "vx") throws {
        ns = try BenchPlan.wireHost(net, tag, queues: queues)
        ulMAC = try net.mac("ul", in: ns.h)
        let h = ns.h
        // Bridged frames skip iptables, as on a tuned overlay host.
        try LabFabric.bridgesSkipIptables(net, in: h)
        try net.ip(h, "link add vx0 type vxlan id 5001 local \(BenchPlan.paA) dstport 4789 nolearning dev ul")
        try net.ip(h, "link add br0 type bridge")
        for dev in ["port1", "vx0"] { try net.ip(h, "link set \(dev) master br0") }
        for dev in ["vx0", "br0"] { try net.ip(h, "link set \(dev) up") }
        try net.exec(h, "bridge fdb add \(BenchPlan.vm2.mac) dev vx0 master static")
        try net.exec(h, "bridge fdb add \(BenchPlan.vm2.mac) dev vx0 dst \(BenchPlan.paB) self permanent")
        try net.exec(h, "bridge fdb add \(BenchPlan.vm1.mac) dev port1 master static")
        let bare = try Datapath()
        try NetworkNamespace.run(in: h) {
            for dev in ["port1", "ul"] {
                try attachXDPToInterface(
                    programFD: bare.programFD(.barePass), name: "nv_bare_pass", ifindex: try interfaceIndex(dev))
            }
        }
    }

    var encap: LiveBench.Path {
        .init(name: "kernel vxlan encap", frame: BenchFrames.outbound, from: (ns.v, "eth0"), sink: (ns.f, "fab"))
    }

    var decap: LiveBench.Path {
        // VXLAN (RFC 7348): flags with the I bit, 24 reserved bits, the VNI, 8 reserved bits.
        let vxlan: [UInt8] = [0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0] + BenchFrames.inbound
        let udp = UDP.datagram(src: BenchPlan.paB, dst: BenchPlan.paA, sport: 49152, dport: 4789, payload: vxlan)
        let frame = Ethernet.frame(
            dst: ulMAC, src: BenchPlan.peerMAC, type: .ipv4,
            payload: IPPacket.build(
                src: BenchPlan.paB, dst: BenchPlan.paA, proto: IPProtocol.udp.rawValue, payload: udp))
        return .init(name: "kernel vxlan decap", frame: frame, from: (ns.f, "fab"), sink: (ns.v, "eth0"))
    }
}
