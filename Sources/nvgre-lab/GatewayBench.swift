import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// A gateway host under test, brought up with the CLI: G's uplink ul (peer fab in the
/// fabric namespace, host B = 198.18.0.2 behind it as a permanent neighbor) and its external
/// interface ext (peer eth0 in the outside namespace, X = 203.0.113.2 a permanent neighbor).
/// Red's VM 198.19.1.1 lives on B; Red is served with NAT on 203.0.113.1; `nvgre gateway`
/// runs for the flows' first packets.
final class GatewayBenchHost {
    static let ext: IPAddress = "203.0.113.1", x: IPAddress = "203.0.113.2"
    static let xMAC: MACAddress = "02:00:cb:00:71:02"
    static let vsid: UInt32 = 5001

    let ns: (g: String, f: String, x: String)
    let ulMAC: MACAddress, extMAC: MACAddress
    let instance: String
    let nvgre = builtBinary("nvgre")
    let maps: DatapathMaps
    private let policyFile: String, log: String
    private var gateway: pid_t = 0

    init(_ net: LabNetwork, queues: Int) throws {
        let g = try BenchPlan.quietNamespace(net, "gw-g"), f = try BenchPlan.quietNamespace(net, "gw-f")
        let x = try BenchPlan.quietNamespace(net, "gw-x")
        ns = (g, f, x)
        try net.veth("ul", in: g, "fab", in: f, macB: BenchPlan.peerMAC.description, queues: queues)
        try net.veth("ext", in: g, "eth0", in: x, macB: Self.xMAC.description, queues: queues)
        try net.ip(g, "addr add \(BenchPlan.paA)/24 dev ul")
        try net.ip(g, "addr add \(Self.ext)/24 dev ext")
        try net.ip(g, "neigh replace \(BenchPlan.paB) lladdr \(BenchPlan.peerMAC) dev ul nud permanent")
        try net.ip(g, "neigh replace \(Self.x) lladdr \(Self.xMAC) dev ext nud permanent")
        try net.setForwarding(true, in: g, uplink: "ul")
        try net.exec(g, "sysctl -qw net.ipv4.conf.ext.forwarding=1")
        ulMAC = try net.mac("ul", in: g)
        extMAC = try net.mac("ext", in: g)
        instance = net.prefix + "-gw"
        policyFile = NSTemporaryDirectory() + "\(instance)-bench-policy.yaml"
        log = NSTemporaryDirectory() + "\(instance)-gateway.log"
        let vm = BenchPlan.vm1
        try """
        routingDomains: [{id: 1, name: red}]
        subnets: [{vsid: \(Self.vsid), routingDomain: red, prefixes: [198.19.1.0/24], gateways: [198.19.1.254], \
        gatewayMAC: 02:00:00:00:ff:01}]
        providerAddresses: [{address: \(BenchPlan.paA), interface: ul}]
        lookupRecords: [{vsid: \(Self.vsid), customerAddress: \(vm.ip4), providerAddress: \(BenchPlan.paB), mac: \
        \(vm.mac)}]
        externalAddresses: [{address: \(Self.ext), interface: ext}]
        gatewayDomains: [{routingDomain: red, mode: nat}]

        """.write(toFile: policyFile, atomically: false, encoding: .utf8)
        let up = try Spawn.run([
            nvgre, "-n", g, "--instance", instance, "up", "--uplink", "ul", "--policy", policyFile,
            // The bench measures the gateway process itself, not one domain's share of it.
            "--exception-rate", "0"
        ])
        guard up.status == 0 else {
            unlink(policyFile)
            throw ShellErrorText("nvgre up on the benchmark's gateway failed: \(up.output)")
        }
        do {
            maps = try DatapathMaps(pinDirectory: "/sys/fs/bpf/\(instance)")
            // Opening TCP flows expire after a second, so that each trial of new flows finds
            // the external ports free again; the UDP flow of the Mpps rows stays.
            gateway = try Spawn.start(
                [nvgre, "-n", g, "--instance", instance, "gateway", "--tcp-transitory", "1", "--udp", "3600"],
                output: log, detached: false)
            try Spawn.waitForOutput(log, containing: "handling exceptions", what: "the benchmark's gateway")
        } catch {
            // Nothing left behind.
            Self.tearDown(nvgre: nvgre, instance: instance, gateway: gateway, files: [policyFile, log])
            throw error
        }
    }

    func down() { Self.tearDown(nvgre: nvgre, instance: instance, gateway: gateway, files: [policyFile, log]) }

    private static func tearDown(nvgre: String, instance: String, gateway: pid_t, files: [String]) {
        if gateway > 0 { Spawn.stop(gateway) }
        _ = try? Spawn.run([nvgre, "--instance", instance, "down"])
        files.forEach { unlink($0) }
    }

    // MARK: frames

    /// A customer frame from Red's VM as host B encapsulates it toward G.
    func fromTenant(_ inner: [UInt8], sport: UInt16, dport: UInt16, proto: UInt8) -> [UInt8] {
        NVGRE.encapsulate(
            inner: inner, vsid: Self.vsid,
            hash: FlowHash(src: BenchPlan.vm1.ip4, dst: Self.x, protocol: proto, sport: sport, dport: dport),
            outerSrcMAC: BenchPlan.peerMAC, outerDstMAC: ulMAC, srcPA: BenchPlan.paB, dstPA: BenchPlan.paA)
    }

    /// The benchmarks' UDP flow from the VM (port 1000) to X (port 2000), encapsulated.
    var outboundUDP: [UInt8] {
        fromTenant(
            BenchFrames.udp(
                srcMAC: BenchPlan.vm1.mac, dstMAC: "02:00:00:00:fe:01", src: BenchPlan.vm1.ip4, dst: Self.x),
            sport: 1000, dport: 2000, proto: IPProtocol.udp.rawValue)
    }

    /// X's answer to the external address and the port the gateway gave the flow.
    func inboundUDP(extPort: UInt16) -> [UInt8] {
        BenchFrames.udp(srcMAC: Self.xMAC, dstMAC: extMAC, src: Self.x, dst: Self.ext, sport: 2000, dport: extPort)
    }

    /// A TCP SYN from the VM's port `sport` to X's port 80: a new flow each.
    func syn(sport: UInt16) -> [UInt8] {
        let vm = BenchPlan.vm1.ip4
        let inner = Ethernet.frame(
            dst: "02:00:00:00:fe:01", src: BenchPlan.vm1.mac, type: .ipv4,
            payload: IPPacket.build(
                src: vm, dst: Self.x, proto: IPProtocol.tcp.rawValue,
                payload: TCP.segment(src: vm, dst: Self.x, sport: sport, dport: 80)))
        return fromTenant(inner, sport: sport, dport: 80, proto: IPProtocol.tcp.rawValue)
    }

    /// The same size to X with a protocol NAT does not translate (SCTP): the gateway process
    /// reads it from the ring, parses it and counts it, and sets up nothing.
    var unsupported: [UInt8] {
        let vm = BenchPlan.vm1.ip4
        let inner = Ethernet.frame(
            dst: "02:00:00:00:fe:01", src: BenchPlan.vm1.mac, type: .ipv4,
            payload: IPPacket.build(
                src: vm, dst: Self.x, proto: 132, payload: [UInt8](repeating: 0, count: 20)))
        return fromTenant(inner, sport: 0, dport: 0, proto: 132)
    }

    // MARK: set-up

    /// Opens the UDP flow through the gateway process (one packet each way) and waits until
    /// it is offloaded; returns its external port.
    func offloadedUDPFlow(_ live: LiveTraffic) throws -> UInt16 {
        _ = try live.send(outboundUDP, namespace: ns.f, interface: "fab", cpus: [0], countPerCPU: 1)
        let flow = try waitFor("the gateway to open the benchmark's UDP flow") {
            maps.natOut.keys().compactMap { maps.natOut.lookup($0) }.map { NATFlow($0) }
                .first { $0.proto == IPProtocol.udp.rawValue && $0.caPort == 1000 && $0.remotePort == 2000 }
        }
        _ = try live.send(
            inboundUDP(extPort: flow.extPort), namespace: ns.x, interface: "eth0", cpus: [0], countPerCPU: 1)
        _ = try waitFor("the gateway to offload the benchmark's UDP flow") {
            maps.natIn.lookup(flow.inKey)?.natFlags.contains(.offloaded) == true ? true : nil
        }
        return flow.extPort
    }

    private func waitFor<T>(_ what: String, within seconds: Double = 5, _ probe: () -> T?) throws -> T {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            if let v = probe() { return v }
            usleep(10_000)
        }
        throw ShellErrorText("timed out waiting for \(what)")
    }

    // MARK: rows

    var natOut: LiveBench.Path {
        .init(
            name: "nvgre NAT out, offloaded (decap + NAT)", frame: outboundUDP, from: (ns.f, "fab"),
            sink: (ns.x, "eth0"), restore: true)
    }

    func natIn(extPort: UInt16) -> LiveBench.Path {
        .init(
            name: "nvgre NAT in, offloaded (NAT + encap)", frame: inboundUDP(extPort: extPort), from: (ns.x, "eth0"),
            sink: (ns.f, "fab"),
            restore: true)
    }

    /// Sends `count` frames (`frame(i)`) one by one from the fabric side as fast as the
    /// generator goes, and times how fast the gateway process takes them: gw_stats `counter`
    /// is read every millisecond until it reaches `count` or stands still for half a second.
    /// Returns events per second (from the first send to the last change seen), with the
    /// raw figures. Frames beyond what the ring holds are dropped there (counted), so the
    /// rate is the process's own, not the sender's.
    func userspaceRate(
        _ live: LiveTraffic, count: Int, counting counter: nv_gw_counter,
        frame: (Int) -> [UInt8]
    ) throws -> (perSecond: Double, details: [String: Double]) {
        let frames = (0..<count).map(frame)
        let before = maps.gatewayCount(counter).packets
        let ringFullBefore = maps.dropCount(NV_DROP_EXCEPTION_RING_FULL).packets
        let t0 = monotonicSeconds()
        try NetworkNamespace.run(in: ns.f) {
            let ifindex = try interfaceIndex("fab")
            for f in frames { try live.send(f, ifindex: ifindex, count: 1, batch: 1) }
        }
        let sent = monotonicSeconds() - t0
        // The process flushes its counters between polls, so a busy ring can hide them for a
        // while: standing still counts from the end of sending, not from the first send.
        var last = before, lastChange = t0, stillSince = t0 + sent
        while true {
            let now = monotonicSeconds(), c = maps.gatewayCount(counter).packets
            if c != last { (last, lastChange, stillSince) = (c, now, now) }
            if c - before >= UInt64(count) || now - stillSince > 0.5 { break }
            usleep(1000)
        }
        let done = Double(last - before), seconds = max(lastChange - t0, 1e-6)
        return (
            done / seconds,
            [
                "framesSent": Double(count), "handled": done, "seconds": seconds, "sendSeconds": sent,
                "ringFullDrops": Double(maps.dropCount(NV_DROP_EXCEPTION_RING_FULL).packets - ringFullBefore)
            ]
        )
    }

    /// Waits until the TCP flows of a trial expired (their ports free again).
    func waitForFlowsToExpire(keeping: Int, within seconds: Double = 15) throws {
        _ = try waitFor("the benchmark's opening TCP flows to expire", within: seconds) {
            maps.natOut.keys().count <= keeping ? true : nil
        }
    }
}

/// `make bench` rows of the gateway: new flows per second set up through userspace (the
/// same frames' exception path without flow work as the baseline), and the Mpps of an
/// offloaded NAT flow both ways as a ratio to the plain encap path (its frame restored per
/// send, as theirs are).
struct GatewayBench {
    let live: LiveTraffic
    let bench: LiveBench
    let quick: Bool

    var flowsPerTrial: Int { quick ? 5000 : 30000 }
    var trials: Int { quick ? 1 : 3 }

    static let section = "gateway: NAT44 on host G (new flows through the gateway process; offloaded flows in XDP)"
    static let newFlows = "new TCP flows set up through userspace (SYNs/s)"
    static let exceptionBaseline = "baseline: exceptions handled by the gateway process, no flow set up (frames/s)"

    /// The flow-setup rows, then the Mpps rows on each core set, `baseline` first.
    func run(_ net: LabNetwork, coreSets: [[Int]], baseline: LiveBench.Path) throws -> (
        rows: [BenchRow], paths: [LiveBench.Path]
    ) {
        let host = try GatewayBenchHost(net, queues: coreSets.last?.count ?? 1)
        defer { host.down() }
        let extPort = try host.offloadedUDPFlow(live)
        let paths = [host.natOut, host.natIn(extPort: extPort)]
        try bench.attachSink(paths[0])  // X swallows what the gateway sends it
        let kept = host.maps.natOut.keys().count

        var rows: [BenchRow] = []
        let n = flowsPerTrial
        var flows: [(Double, [String: Double])] = [], exceptions: [(Double, [String: Double])] = []
        for _ in 0..<trials {
            let unsupported = host.unsupported
            exceptions.append(
                try host.userspaceRate(live, count: n, counting: NV_GW_DROP_UNSUPPORTED) { _ in unsupported })
            flows.append(
                try host.userspaceRate(live, count: n, counting: NV_GW_FLOWS_CREATED) {
                    host.syn(sport: UInt16(10000 + $0))
                })
            try host.waitForFlowsToExpire(keeping: kept)
        }
        for (name, runs) in [(Self.exceptionBaseline, exceptions), (Self.newFlows, flows)] {
            let sorted = runs.sorted { $0.0 < $1.0 }
            var details = sorted[sorted.count / 2].1
            for (i, r) in runs.enumerated() { details["trial\(i + 1)PerSecond"] = r.0 }
            rows.append(.figure(Self.section, name, sorted[sorted.count / 2].0, "/s", details: details))
        }
        for cpus in coreSets {
            for path in [baseline] + paths { rows.append(try bench.measure(path, section: Self.section, cpus: cpus)) }
        }
        return (rows, paths)
    }
}
