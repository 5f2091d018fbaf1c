import CNvgre
import Foundation
import NvgreControl
import NvgreDatapath
import NvgreLab
import NvgrePolicy
import NvgreUserspace
import NvgreUserspaceIO
import NvgreWire
import Testing

/// The userspace data path on a host with no BPF at all (host A: packet rings on its uplink
/// and VM port, the decision core on the policy compiled for A), facing a host of ours in
/// XDP (host B, brought up with the CLI): the VMs reach each other, and A's VM is answered
/// from policy for its neighbors. First slice of issue 18: the forwarding loop run in the
/// test process rather than by `nvgre agent`.
@Suite(.serialized)
struct UserspacePathTests {
    static let vmA = LabVM(mac: "02:00:00:00:01:01", ip4: "198.19.1.1", ip6: "2001:db8:19:1::1")
    static let vmB = LabVM(mac: "02:00:00:00:01:02", ip4: "198.19.1.2", ip6: "2001:db8:19:1::2")

    static func policy(host: String, pa: IPAddress) -> String {
        let me = host == "a" ? vmA : vmB
        return """
            routingDomains:
              - {id: 1, name: red}
            subnets:
              - {vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/24, "2001:db8:19:1::/64"], gateways: [198.19.1.254], gatewayMAC: 02:00:00:00:ff:01}
            lookupRecords:
              - {vsid: 5001, customerAddress: \(vmA.ip4), providerAddress: 198.18.0.1, mac: \(vmA.mac)}
              - {vsid: 5001, customerAddress: "\(vmA.ip6)", providerAddress: 198.18.0.1, mac: \(vmA.mac)}
              - {vsid: 5001, customerAddress: \(vmB.ip4), providerAddress: 198.18.0.2, mac: \(vmB.mac)}
              - {vsid: 5001, customerAddress: "\(vmB.ip6)", providerAddress: 198.18.0.2, mac: \(vmB.mac)}
            providerAddresses:
              - {address: \(pa), interface: ul}
            ports:
              - {interface: vm1, vsid: 5001, mac: \(me.mac), addresses: [\(me.ip4), "\(me.ip6)"]}

            """
    }

    @Test func aUserspaceHostAndAnXDPHostCarryTheirVMsTraffic() throws {
        try carryTraffic(tag: "uspath", underlayMTU: 1600)
    }

    /// Over a 1500-byte underlay a VM's full segments do not fit once encapsulated: the
    /// userspace path's exception handler answers "fragmentation needed" / "packet too big"
    /// with the MTU that fits, and TCP completes with smaller segments.
    @Test func pathMTUThroughTheUserspacePath() throws {
        try carryTraffic(tag: "uspmtu", underlayMTU: 1500)
    }

    func carryTraffic(tag: String, underlayMTU: Int) throws {
        let net = LabNetwork(tag: tag)
        let fabric = try LabFabric(net, mtu: underlayMTU)
        // Host B: XDP, through the CLI.
        let b = try CLIHost(net, fabric: fabric, name: "b", pa: "198.18.0.2")
        let vmBNS = try b.addVM(port: "vm1", Self.vmB).ns
        try b.start(policy: Self.policy(host: "b", pa: "198.18.0.2"))
        defer { b.stop() }
        // Host A: no BPF anywhere, only its interfaces and the userspace path.
        let a = try net.namespace("a")
        try fabric.connect(a, port: "to-a")
        try net.ip(a, "addr add 198.18.0.1/24 dev ul")
        let vmANS = try net.namespace("a-vm")
        try net.veth("vm1", in: a, "eth0", in: vmANS, macB: Self.vmA.mac.description)
        try net.exec(a, "sysctl -qw net.ipv6.conf.vm1.disable_ipv6=1")  // the host says nothing on the port
        try net.ip(vmANS, "addr add \(Self.vmA.ip4)/24 dev eth0")
        try net.ip(vmANS, "addr add \(Self.vmA.ip6)/64 dev eth0 nodad")

        let policy = try PolicyDocument.decode(Self.policy(host: "a", pa: "198.18.0.1"))
        let forwarder = try NetworkNamespace.run(in: a) { () throws -> UserspaceForwarder in
            let ctx = CompileContext(uplinkIfindex: try interfaceIndex("ul"), ifindex: { existingInterfaceIndex($0) })
            let compiled = try PolicyCompiler.compile(policy, ctx)
            return try UserspaceForwarder(
                tables: compiled.decisionTables, uplinkIfindex: try interfaceIndex("ul"),
                portIfindexes: [try interfaceIndex("vm1")])
        }
        let stopped = StopFlag()
        let loop = Thread { forwarder.run { stopped.isSet } }
        loop.start()
        defer { stopped.set() }

        // The path asked the kernel to resolve B's PA at start; as with the XDP path, frames
        // before that completes meet an unresolved neighbor.
        let deadline = Date().addingTimeInterval(10)
        while !((try? sh("ip -n \(a) neigh show 198.18.0.2 dev ul")) ?? "").contains("lladdr"), Date() < deadline {
            usleep(20_000)
        }
        usleep(100_000)  // the path looks an unresolved hop up again after 50 ms
        for (from, to, what) in [
            (vmANS, Self.vmB.ip4, "A's VM (userspace) to B's (XDP), IPv4"),
            (vmBNS, Self.vmA.ip4, "B's VM (XDP) to A's (userspace), IPv4"),
            (vmANS, Self.vmB.ip6, "A's VM to B's, IPv6"), (vmBNS, Self.vmA.ip6, "B's VM to A's, IPv6")
        ] {
            #expect(Traffic.ping(from: from, to: to, count: 3) == 3, "\(what)")
        }
        // UDP from A's VM at its defaults: the partial checksums it leaves (the ring says so)
        // are completed before the frames leave; B's VM's kernel checks them. Unicast, then
        // broadcast (replicated by the userspace path to B, by B's XDP to its port).
        let unicast = try FloodTests.listen(in: vmBNS, port: 9996, seconds: 2)
        _ = try sh(
            "ip netns exec \(vmANS) \(systemPython) -c \"import socket; s=socket.socket(2,2); "
                + "[s.sendto(b'x'*200, ('\(Self.vmB.ip4)', 9996)) for _ in range(3)]\"")
        #expect(try unicast() == 3, "UDP from A's VM to B's")
        // UDP GSO (a socket with UDP_SEGMENT, as QUIC stacks use): one 3,000-byte send is
        // one GSO frame on the port, three datagrams of 1,000 bytes on the wire.
        let gso = try FloodTests.listen(in: vmBNS, port: 9994, seconds: 2)
        _ = try sh(
            "ip netns exec \(vmANS) \(systemPython) -c \"import socket; s=socket.socket(2,2); "
                + "s.setsockopt(17, 103, 1000); [s.sendto(b'y'*3000, ('\(Self.vmB.ip4)', 9994)) for _ in range(2)]\"")
        #expect(try gso() == 6, "UDP GSO from A's VM: six datagrams expected at B's")
        let broadcast = try FloodTests.listen(in: vmBNS, port: 9995, seconds: 2)
        #expect(try FloodTests.sendBroadcasts(from: vmANS, port: 9995, count: 3) == 3)
        #expect(try broadcast() == 3, "broadcast from A's VM to B's")

        // TCP both ways, A's VM at its defaults handing its port 64 KiB GSO frames: cut into
        // segments by the userspace path before encapsulation.
        for family in [IPFamily.v4, .v6] {
            let there = try Traffic.tcpTransfer(
                from: vmANS, to: vmBNS, address: family == .v4 ? Self.vmB.ip4 : Self.vmB.ip6, bytes: 1 << 20,
                timeout: 20)
            #expect(there.ok, "TCP from A's VM (userspace) to B's over \(family): \(there)")
            let back = try Traffic.tcpTransfer(
                from: vmBNS, to: vmANS, address: family == .v4 ? Self.vmA.ip4 : Self.vmA.ip6, port: 5202,
                bytes: 1 << 20, timeout: 20)
            #expect(back.ok, "TCP from B's VM to A's (userspace) over \(family): \(back)")
        }

        // A's VM learnt B's MAC from the userspace path's answer, B's VM A's from B's port.
        #expect(try sh("ip -n \(vmANS) neigh show \(Self.vmB.ip4)").contains("\(Self.vmB.mac)"))
        let counters = forwarder.counterSnapshot()
        let slot = UInt32(0)
        #expect((counters[.vsid(slot: slot, NV_CNT_ENCAP)] ?? 0) >= 6, "\(counters)")
        #expect((counters[.vsid(slot: slot, NV_CNT_DECAP)] ?? 0) >= 6, "\(counters)")
    }
}

extension UserspacePathTests {
    /// The same hosts, A through the CLI as a user runs it where BPF is not allowed:
    /// `nvgre up` under capsh without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (auto falls
    /// back, saying why), `apply`, `agent`; then a policy change taking effect within a
    /// second, `show` and `stats`.
    @Test func withoutBPFPrivilegesUpFallsBackAndTheCLIDrivesTheUserspacePath() throws {
        let net = LabNetwork(tag: "uscli")
        let fabric = try LabFabric(net, mtu: 1600)
        let b = try CLIHost(net, fabric: fabric, name: "b", pa: "198.18.0.2")
        let vmBNS = try b.addVM(port: "vm1", Self.vmB).ns
        try b.start(policy: Self.policy(host: "b", pa: "198.18.0.2"))
        defer { b.stop() }
        let a = try CLIHost(net, fabric: fabric, name: "a", pa: "198.18.0.1")
        let vmANS = try a.addVM(port: "vm1", Self.vmA).ns
        try net.exec(a.ns, "sysctl -qw net.ipv6.conf.vm1.disable_ipv6=1")
        // Into the namespace first (setns needs CAP_SYS_ADMIN), then without the capabilities;
        // the agent too: forwarding needs packet sockets, not BPF.
        func unprivileged(_ args: String) -> [String] {
            [
                "/usr/sbin/ip", "netns", "exec", a.ns, "/usr/sbin/capsh", "--drop=cap_bpf,cap_perfmon,cap_sys_admin",
                "--", "-c", "exec \(a.nvgre) --instance \(a.instance) \(args)"
            ]
        }
        try a.start(
            policy: Self.policy(host: "a", pa: "198.18.0.1"), upCommand: unprivileged("up --uplink ul"),
            agentCommand: unprivileged("agent"))
        defer { a.stop() }
        #expect(a.upOutput.contains("XDP is not available here"), "\(a.upOutput)")
        #expect(a.upOutput.contains("userspace data path"), "\(a.upOutput)")
        let show = try JSONSerialization.jsonObject(with: Data(try a.cli(["-j", "show"]).output.utf8)) as? [String: Any]
        let instance = show?["instance"] as? [String: Any]
        #expect(instance?["datapath"] as? String == "userspace", "\(show ?? [:])")
        #expect((instance?["fallback"] as? String)?.isEmpty == false, "the fallback's reason: \(show ?? [:])")

        let deadline = Date().addingTimeInterval(10)
        while !((try? sh("ip -n \(a.ns) neigh show 198.18.0.2 dev ul")) ?? "").contains("lladdr"), Date() < deadline {
            usleep(20_000)
        }
        usleep(100_000)
        #expect(Traffic.ping(from: vmANS, to: Self.vmB.ip4, count: 3) == 3, "A's VM (userspace, CLI) to B's")
        #expect(Traffic.ping(from: vmBNS, to: Self.vmA.ip4, count: 3) == 3, "B's VM to A's (userspace, CLI)")
        let tcp = try Traffic.tcpTransfer(from: vmANS, to: vmBNS, address: Self.vmB.ip4, bytes: 1 << 20, timeout: 20)
        #expect(tcp.ok, "TCP from A's VM: \(tcp)")

        // A change takes effect within a second, made with the same commands as on an XDP
        // host: without B's VM's record, A's VM gets no answer; with it again, it does.
        let del = try a.cli(["lookup", "del", "5001", "\(Self.vmB.ip4)"])
        #expect(del.status == 0, "\(del.output)")
        usleep(1_000_000)
        try sh("ip -n \(vmANS) neigh flush all")
        #expect(Traffic.ping(from: vmANS, to: Self.vmB.ip4, count: 2) == 0, "still forwarded a second after the change")
        let add = try a.cli([
            "lookup", "add", "5001", "\(Self.vmB.ip4)", "--pa", "198.18.0.2", "--mac", "\(Self.vmB.mac)"
        ])
        #expect(add.status == 0, "\(add.output)")
        let again = try a.cli([
            "lookup", "add", "5001", "\(Self.vmB.ip4)", "--pa", "198.18.0.2", "--mac", "\(Self.vmB.mac)"
        ])
        #expect(again.status != 0 && again.output.contains("exists already"), "\(again.output)")
        usleep(1_000_000)
        #expect(Traffic.ping(from: vmANS, to: Self.vmB.ip4, count: 3) == 3, "not forwarded again after the change back")
        // trace runs the userspace path's core on the instance's policy: encapsulated to B.
        let trace = try a.cli(["-j", "trace", "--port", "vm1", "--dst", "\(Self.vmB.ip4)", "--proto", "udp"])
        let traced = (try? JSONSerialization.jsonObject(with: Data(trace.output.utf8)) as? [[String: Any]])?.first
        #expect(traced?["datapath"] as? String == "userspace", "\(trace.output)")
        #expect(traced?["decision"] as? String == "forward" && traced?["egress"] as? String == "ul", "\(trace.output)")
        #expect(
            (traced?["output"] as? [String])?.contains { $0.contains("NVGRE vsid 5001") } == true, "\(trace.output)")

        // kill -9 of the agent under a ping flood: restarted, it rebuilds from the stored state
        // and forwards within a second; the gap is lost, and stats says the agent restarted.
        let flood = try Spawn.start(
            ["/usr/sbin/ip", "netns", "exec", vmANS, "ping", "-i", "0.01", "-c", "400", "-W", "1", "\(Self.vmB.ip4)"],
            output: "\(NSTemporaryDirectory())nvgre-flood-\(getpid())", detached: false)
        usleep(500_000)
        let killedAt = Date()
        try a.restartAgentAfterKill()
        #expect(Traffic.ping(from: vmANS, to: Self.vmB.ip4, count: 1) == 1, "not forwarding after the restart")
        let back = Date().timeIntervalSince(killedAt)
        print("userspace agent killed: forwarding again after \(String(format: "%.2f", back)) s (restart included)")
        #expect(back < 3, "took \(back) s to forward again")
        var status: Int32 = 0
        waitpid(flood, &status, 0)
        let floodOutput =
            (try? String(contentsOfFile: "\(NSTemporaryDirectory())nvgre-flood-\(getpid())", encoding: .utf8)) ?? ""
        unlink("\(NSTemporaryDirectory())nvgre-flood-\(getpid())")
        // The gap shows where users look: the sender saw the loss, and stats says the agent
        // started twice (the counters restart from zero).
        let summary = floodOutput.split(separator: "\n").first { $0.contains("packets transmitted") } ?? ""
        print("ping flood across the kill: \(summary)")
        #expect(summary.contains("400 packets transmitted") && !summary.contains(" 0% packet loss"), "\(floodOutput)")
        usleep(600_000)
        let restarted = try a.cli(["stats"]).output
        #expect(restarted.contains("started 2 times"), "\(restarted)")
        let lanes = min(ProcessInfo.processInfo.activeProcessorCount, 16)  // one per CPU
        #expect(restarted.contains("transport: \(lanes) lane(s)"), "\(restarted)")

        usleep(600_000)  // the agent writes its counters twice a second
        let stats =
            try JSONSerialization.jsonObject(with: Data(try a.cli(["-j", "stats"]).output.utf8)) as? [String: Any]
        let red = (stats?["vsids"] as? [[String: Any]])?.first { ($0["vsid"] as? Int) == 5001 }
        let encap = ((red?["encap"] as? [String: Any])?["packets"] as? Int) ?? 0
        #expect(encap > 8, "\(stats ?? [:])")
        let agent = stats?["agent"] as? [String: Any]
        #expect(agent?["lanes"] as? Int == lanes && agent?["ringDrops"] is Int && agent?["sendFailures"] is Int)
    }
}

extension UserspacePathTests {
    /// The demo topology with host A on the userspace path, B and the gateway G in XDP, set
    /// up through the CLI as the demo does: the tenants' traffic, the distributed router,
    /// Blue isolated from Red, and both tenants out to X through G's NAT.
    @Test func theDemoTopologyWithAOnTheUserspacePath() throws {
        let lab = DemoLab(net: LabNetwork(tag: "usdemo"))
        lab.userspaceHosts = [hostA.name]
        try lab.build()
        try lab.start()
        defer { lab.stop() }
        try DemoTopologyTests().checkTenants(lab, family: .v4)
        for vm in [redA, blueA] {
            #expect(Traffic.ping(from: lab.ns(vm), to: DemoPlan.x4, count: 3) == 3, "\(vm) to X through G's NAT")
        }
        let toX = try Traffic.tcpTransfer(
            from: lab.ns(redA), to: lab.outside, address: DemoPlan.x4, port: 5301, fetch: true)
        #expect(toX.ok, "Red's VM on A fetching from X: \(toX)")
        usleep(600_000)  // the userspace agent writes its counters twice a second
        let a = try lab.counters(hostA)
        #expect((a.vsids[5001]?["encap"] ?? 0) > 0 && (a.vsids[5001]?["routed"] ?? 0) > 0, "\(a.vsids)")
    }
}

extension UserspacePathTests {
    /// The demo's gateway claims on a lab whose G may be on the userspace path: both tenants
    /// (the same address) out to X through NAT at once, X in to both tenants' published
    /// services, a tenant to another's service (hairpin), path MTU discovery to X, and the
    /// infrastructure out of reach.
    func checkGateway(_ lab: DemoLab) throws {
        let pmtu = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472",
            DemoPlan.x4.description
        ])
        #expect(pmtu.output.contains("mtu = 14"), "PMTU to X: \(pmtu.output)")
        for (i, vm) in [redA, blueA].enumerated() {
            let t = try Traffic.tcpTransfer(
                from: lab.ns(vm), to: lab.outside, address: DemoPlan.x4, port: 5201 + UInt16(i), fetch: true)
            #expect(t.ok, "\(vm) fetching from X through G's NAT: \(t)\n\(gatewayLog(lab))")
        }
        let ext = DemoPlan.gExternal4
        _ = try lab.cli(
            hostG,
            ["service", "add", "tcp", "\(ext):\(DemoPlan.blueService)", "--domain", "blue", "--to", "\(blueB.ip4):80"])
        usleep(1_200_000)  // the agent takes a change within a second
        for (vm, port) in [(redB, DemoPlan.redService), (blueB, DemoPlan.blueService)] {
            let t = try Traffic.tcpTransfer(from: lab.outside, to: lab.ns(vm), address: ext, port: port, serverPort: 80)
            #expect(t.ok, "X to \(vm)'s service \(ext):\(port): \(t)\n\(gatewayLog(lab))")
        }
        let hairpin = try Traffic.tcpTransfer(
            from: lab.ns(blueA), to: lab.ns(redB), address: ext, port: DemoPlan.redService, serverPort: 80,
            bytes: 65536, timeout: 5)
        #expect(hairpin.ok, "Blue to Red's service through G (hairpin): \(hairpin)")
        let infraHosts = [hostA, hostB, hostG]
        let listeners = try infraHosts.map { try Traffic.udpListener(in: lab.ns($0), family: .v4, port: 9100) }
        for target in infraHosts.map(\.pa4) + [ext] {
            _ = try? lab.net.exec(lab.ns(redA), "bash -c 'echo probe > /dev/udp/\(target)/9100'")
        }
        #expect(
            listeners.map { $0.receive(timeout: 0.5).count }.reduce(0, +) == 0, "a tenant reached the infrastructure")
    }

    func gatewayLog(_ lab: DemoLab) -> String {
        (try? String(contentsOfFile: lab.gatewayLog, encoding: .utf8)).map { String($0.suffix(3000)) } ?? ""
    }

    /// Every host of the demo on the userspace path, the gateway G included (its engine runs
    /// in the agent: NAT, published services, hairpin, with no offload step).
    @Test func theDemoTopologyWithEveryHostOnTheUserspacePath() throws {
        let lab = DemoLab(net: LabNetwork(tag: "usall"))
        lab.userspaceHosts = [hostA.name, hostB.name, hostG.name]
        lab.underlayMTU = 1500
        try lab.build()
        // B's uplink as a NIC's is by default: GRO on, which would merge a flow's NVGRE
        // frames into ones larger than any port's MTU. The agent turns it off and says so.
        _ = try lab.net.exec(lab.ns(hostB), "ethtool -K ul gro on")
        try lab.start()
        defer { lab.stop() }
        let log = (try? String(contentsOfFile: lab.agentLog(hostB), encoding: .utf8)) ?? ""
        #expect(log.contains("generic receive offload turned off on ul"), "\(log)")
        try DemoTopologyTests().checkTenants(lab, family: .v4)
        try DemoTopologyTests().checkTenants(lab, family: .v6)
        try checkGateway(lab)
        try checkHostOutOfReach(lab, hostA, redA)

        // kill -9 of G's agent in the middle of a connection through its NAT: restarted, it
        // takes the flows up from its state directory (kept once a second) and the
        // connection goes on, through the same external port.
        let session = try TCPSession(from: lab.ns(redA), to: lab.outside, address: DemoPlan.x4, port: 5302)
        #expect(session.exchange())
        usleep(1_300_000)
        lab.killGateway()
        try lab.startGateway()
        let restartLog = gatewayLog(lab)
        let taken = restartLog.range(of: #"(\d+) NAT flows taken up"#, options: .regularExpression).map {
            Int(restartLog[$0].split(separator: " ")[0]) ?? 0
        }
        #expect((taken ?? 0) >= 1, "\(restartLog)")
        #expect(session.exchange(65536), "the connection through G's NAT after the restart")
        #expect(Traffic.ping(from: lab.ns(blueA), to: DemoPlan.x4, count: 2) == 2, "a new flow after the restart")
    }

    /// The issue's mix: A in XDP, B and the gateway G on the userspace path.
    @Test func theDemoTopologyMixed() throws {
        let lab = DemoLab(net: LabNetwork(tag: "usmix"))
        lab.userspaceHosts = [hostB.name, hostG.name]
        lab.underlayMTU = 1500
        try lab.build()
        try lab.start()
        defer { lab.stop() }
        try DemoTopologyTests().checkTenants(lab, family: .v4)
        try checkGateway(lab)
        try checkHostOutOfReach(lab, hostB, blueB)
    }

    /// A packet socket only taps: the host's own stack sees a userspace host's port frames
    /// too unless it is kept out. A VM tries the host as an attacker would, on its own link:
    /// ARP for the host's provider address, and a ping to the host side of its port (its
    /// IPv6 link-local address, which the kernel would answer neighbor solicitations for).
    func checkHostOutOfReach(_ lab: DemoLab, _ host: DemoHost, _ vm: DemoVM) throws {
        let arp = try sh("ip netns exec \(lab.ns(vm)) arping -c 2 -w 2 -I eth0 \(host.pa4) 2>&1 || true")
        #expect(arp.contains("Received 0 response"), "the host answered \(vm)'s ARP for its PA: \(arp)")
        let addresses = try sh("ip -n \(lab.ns(host)) -6 -o addr show dev \(vm.name) scope link")
        guard
            let linkLocal = addresses.split(separator: " ").first(where: { $0.hasPrefix("fe80:") })?.split(
                separator: "/"
            ).first
        else {
            Issue.record("no link-local address on \(host.name)'s port \(vm.name): \(addresses)")
            return
        }
        let ping = try sh("ip netns exec \(lab.ns(vm)) ping -6 -c 2 -W 1 \(linkLocal)%eth0 2>&1 || true")
        #expect(ping.contains(" 0 received"), "\(vm) reached the host side of its port: \(ping)")
    }
}
