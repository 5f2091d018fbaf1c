import ArgumentParser
import Foundation
import NvgreLab
import NvgreWire

/// The main job: the demo topology brought up through the `nvgre` CLI, then each claim
/// checked with real traffic and narrated as one pass/fail line.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Two tenants with overlapping addresses on two hosts, over a bridge underlay, checked with real traffic.")

    @Flag(help: "Leave everything up for poking at (remove it with `make demo-down`).") var keep = false
    @Option(
        help: ArgumentHelp(
            "The hosts' data path: xdp (default), userspace (A, B and the gateway G), or mixed (A in XDP, B and "
                + "G in userspace).",
            valueName: "datapath")) var datapath = "xdp"
    @Option(
        help: ArgumentHelp(
            "Where the tables live: none (default: each host's files applied to its maps) or etcd (a three-member "
                + "etcd cluster on loopback; the files applied to it once per host, each host's agent following it).",
            valueName: "store")) var store = "none"

    func run() throws {
        let lab = DemoLab(net: LabNetwork(untagged: ()))
        switch datapath {
        case "xdp": break
        case "userspace": lab.userspaceHosts = [DemoPlan.a.name, DemoPlan.b.name, DemoPlan.g.name]
        case "mixed": lab.userspaceHosts = [DemoPlan.b.name, DemoPlan.g.name]
        default: throw ValidationError("--datapath: \(datapath) is not valid: xdp, userspace or mixed")
        }
        var cluster: EtcdCluster?
        switch store {
        case "none": break
        case "etcd":
            cluster = try EtcdCluster(prefix: lab.net.prefix, kept: keep)
            lab.store = cluster
            lab.spare = true  // host C, where a VM migrates
        default: throw ValidationError("--store: \(store) is not valid: none or etcd")
        }
        // A 1500-byte underlay, as many fabrics are: full-size customer packets no longer fit
        // once encapsulated, and the hosts tell the VMs so (fragmentation needed).
        lab.underlayMTU = 1500
        var failures = 0
        func check(_ ok: Bool, _ line: String) {
            if !ok { failures += 1 }
            print("[\(ok ? "pass" : "FAIL")] \(line)")
        }
        let (a, b) = (DemoPlan.a, DemoPlan.b)
        let (redA, redB) = (DemoPlan.vm(a, "red1"), DemoPlan.vm(b, "red1"))
        let (blueA, blueB) = (DemoPlan.vm(a, "blue1"), DemoPlan.vm(b, "blue1"))
        let (red2A, red2B) = (DemoPlan.vm(a, "red2"), DemoPlan.vm(b, "red2"))

        print(
            """
            nvgre demo: hosts A (PA \(a.pa4)) and B (PA \(b.pa4)) and gateway host G (PA \(DemoPlan.g.pa4)) on a bridge
            underlay (br0 in \(lab.fabric)); outside host X (\(DemoPlan.x4)) behind G.
              Red:  VSID 5001 198.19.1.0/24 and VSID 5002 198.19.2.0/24 (one routing domain), VMs on A and B
              Blue: VSID 6001 198.19.1.0/24, the very addresses and MACs of Red's 5001 VMs
              Both reach X through G, which NATs them to \(DemoPlan.gExternal4); the underlay MTU is 1500
            """)
        try lab.build()
        for h in lab.hosts {
            for cmd in [lab.upCommand(h), try lab.applyCommand(h)] {
                print("$ " + shown(cmd))
                let r = try Spawn.run(cmd)
                for line in r.output.split(separator: "\n") { print("    \(line)") }
                if r.status != 0 { throw ExitCode(1) }
            }
        }
        try lab.startAgents(detached: keep)
        print(
            "agents: `nvgre agent` on A and B (logs in \(lab.agentLog(a)), \(lab.agentLog(b))); `nvgre gateway` on "
                + "G (log in \(lab.gatewayLog))" + (cluster == nil ? "" : ", each with --store and its --host")
        )
        if let cluster, let seconds = lab.firstSyncSeconds {
            print(
                "store: etcd members \(cluster.address) (data in \(cluster.directory)); every host applied its part "
                    + String(format: "%.2f s after its agent started", seconds))
        }
        print("")

        for (from, to, tenant) in [(redA, redB, "Red"), (blueA, blueB, "Blue")] {
            let got = Traffic.ping(from: lab.ns(from), to: to.ip4)
            check(
                got == 5, "\(tenant) VM on A reaches \(tenant) VM on B: ping \(from.ip4) -> \(to.ip4), \(got)/5 replies"
            )
            let t = Result { try Traffic.tcpTransfer(from: lab.ns(from), to: lab.ns(to), address: to.ip4) }
            check((try? t.get().ok) == true, "\(tenant) VM on A sends 1 MiB over TCP to \(tenant) VM on B: \(t.text)")
        }
        let got6 = Traffic.ping(from: lab.ns(redA), to: redB.ip6)
        check(got6 == 5, "Red over IPv6: ping \(redA.ip6) -> \(redB.ip6), \(got6)/5 replies")
        let routed = Traffic.ping(from: lab.ns(redA), to: red2B.ip4)
        check(
            routed == 5,
            "Red 5001 on A reaches Red 5002 on B through the distributed router: ping \(redA.ip4) -> \(red2B.ip4), "
                + "\(routed)/5 replies"
        )
        let routedLocal = Traffic.ping(from: lab.ns(red2A), to: redA.ip4)
        check(
            routedLocal == 5,
            "Red 5002 reaches Red 5001 on the same host A: ping \(red2A.ip4) -> \(redA.ip4), \(routedLocal)/5 replies")

        let blueBefore = try Traffic.receivedPackets("eth0", in: lab.ns(blueB))
        let redGot = Traffic.ping(from: lab.ns(redA), to: blueB.ip4)
        let blueAfter = try Traffic.receivedPackets("eth0", in: lab.ns(blueB))
        check(
            redGot == 5 && blueAfter == blueBefore,
            "Red never reaches Blue: Red's ping to \(blueB.ip4) was answered by Red's VM (\(redGot)/5); Blue's VM "
                + "with that address received \(blueAfter - blueBefore) packets"
        )

        let capture = try Capture(
            in: lab.fabric, interface: "to-a", filter: "ip proto 47 or ip6 proto 47", name: "\(lab.net.prefix)-demo")
        _ = Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 2)
        _ = Traffic.ping(from: lab.ns(blueA), to: blueB.ip4, count: 2)
        let lines = try capture.tcpdumpLines()
        // The pings' frames (a VM's own ARP or ND, flooded meanwhile, may pass too).
        let keys = lines.filter { $0.contains("ICMP echo") }.compactMap(greKey)
        let redKeys = keys.filter { $0 >> 8 == 5001 }.count, blueKeys = keys.filter { $0 >> 8 == 6001 }.count
        check(
            redKeys == 4 && blueKeys == 4 && keys.count == 8,
            "the underlay carries NVGRE: tcpdump on A's bridge port saw \(keys.count) GRE frames of pings, \(redKeys) with "
                + "VSID 5001 (key 0x1389xx) for Red, \(blueKeys) with VSID 6001 (key 0x1771xx) for Blue"
        )
        let red = lines.filter { greKey($0).map { $0 >> 8 == 5001 } ?? false },
            blue = lines.filter { greKey($0).map { $0 >> 8 == 6001 } ?? false }
        for line in red.prefix(2) + blue.prefix(2) { print("    " + excerpt(line)) }

        try gatewayClaims(lab, check)
        if let cluster {
            try storeClaims(lab, cluster, check)
            try migrationClaims(lab, cluster, check)
        }

        print("\n$ nvgre -n \(lab.ns(a)) --instance \(lab.instance(a)) stats")
        print(try lab.cli(a, ["stats"]).output.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        print("\n$ nvgre -n \(lab.ns(DemoPlan.g)) --instance \(lab.instance(DemoPlan.g)) stats    (the gateway's part)")
        let gStats = try lab.cli(DemoPlan.g, ["stats"]).output.split(separator: "\n")
        if let i = gStats.firstIndex(where: { $0.hasPrefix("gateway:") }) {
            for line in gStats[i...] { print("    " + line) }
        }

        if keep {
            lab.keep = true
            print(
                """

                Kept for you. Try:
                  ip netns exec \(lab.ns(redA)) ping \(redB.ip4)
                  nvgre -n \(lab.ns(a)) --instance \(lab.instance(a)) show      (the binary is .build/debug/nvgre)
                  ip netns exec \(lab.fabric) tcpdump -n -i to-a     (A's port on the underlay bridge)
                Remove it all with: make demo-down
                """)
        }
        print(failures == 0 ? "\ndemo: every check passed" : "\ndemo: \(failures) check(s) FAILED")
        if failures > 0 { throw ExitCode(1) }
    }

    /// The gateway host G: outbound NAT for two tenants with the same address at once,
    /// services published on the external address (one from the policy file, one added live),
    /// and path MTU discovery over the 1500-byte underlay.
    private func gatewayClaims(_ lab: DemoLab, _ check: (Bool, String) -> Void) throws {
        let (redA, blueA) = (DemoPlan.vm(DemoPlan.a, "red1"), DemoPlan.vm(DemoPlan.a, "blue1"))
        let (redB, blueB) = (DemoPlan.vm(DemoPlan.b, "red1"), DemoPlan.vm(DemoPlan.b, "blue1"))
        let (x, ext) = (DemoPlan.x4, DemoPlan.gExternal4)
        print("")
        let pmtu = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", lab.ns(redA), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472",
            x.description
        ])
        check(
            pmtu.output.contains("mtu = 1458"),
            "Red VM sends a 1500-byte DF packet to X: told \"fragmentation needed, MTU 1458\" (20 outer IP + 8 GRE "
                + "+ 14 inner Ethernet fit in 1500)"
        )

        let fetched = Transfers()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let vm = i == 0 ? redA : blueA
            fetched.set(
                i,
                Result {
                    try Traffic.tcpTransfer(
                        from: lab.ns(vm), to: lab.outside, address: x, port: 5201 + UInt16(i), fetch: true)
                })
        }
        for (i, vm) in [redA, blueA].enumerated() {
            check(
                (try? fetched.get(i).get().ok) == true,
                "\(vm.tenant) VM \(vm.ip4) on A fetches 1 MiB from X over TCP through NAT, both tenants at once, "
                    + "full-size segments after PMTU discovery: \(fetched.get(i).text)"
            )
        }

        let add = [
            "service", "add", "tcp", "\(ext):\(DemoPlan.blueService)", "--domain", "blue", "--to", "\(blueB.ip4):80"
        ]
        let target =
            lab.store == nil
            ? "-n \(lab.ns(DemoPlan.g)) --instance \(lab.instance(DemoPlan.g))"
            : lab.storeArguments(DemoPlan.g).joined(separator: " ")
        print("$ nvgre \(target) " + add.joined(separator: " "))
        let added = try lab.edit(DemoPlan.g, add)
        for line in added.output.split(separator: "\n") { print("    \(line)") }
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let (vm, port) = i == 0 ? (redB, DemoPlan.redService) : (blueB, DemoPlan.blueService)
            fetched.set(
                i,
                Result {
                    try Traffic.tcpTransfer(from: lab.outside, to: lab.ns(vm), address: ext, port: port, serverPort: 80)
                })
        }
        for (i, (vm, port)) in [(redB, DemoPlan.redService), (blueB, DemoPlan.blueService)].enumerated() {
            check(
                added.status == 0 && (try? fetched.get(i).get().ok) == true,
                "X reaches \(vm.tenant)'s service \(ext):\(port) -> \(vm.ip4):80 on B, 1 MiB over TCP, both at "
                    + "once: \(fetched.get(i).text)"
            )
        }
        // A tenant reaches another tenant's published service as any client would (hairpin).
        let hairpin = Result {
            try Traffic.tcpTransfer(
                from: lab.ns(blueA), to: lab.ns(redB), address: ext, port: DemoPlan.redService,
                serverPort: 80, bytes: 65536, timeout: 5)
        }
        check(
            (try? hairpin.get().ok) == true,
            "Blue VM on A reaches Red's published service \(ext):\(DemoPlan.redService) through G like any client "
                + "(hairpin): \(hairpin.text)"
        )
        // ...and never the provider network or the gateway itself.
        let infraHosts = [DemoPlan.a, DemoPlan.b, DemoPlan.g]
        let listeners = try infraHosts.map { try Traffic.udpListener(in: lab.ns($0), family: .v4, port: 9100) }
        let blocked0 = try dropCount(lab, "to-infrastructure")
        for target in infraHosts.map(\.pa4) + [ext] {
            _ = try? lab.net.exec(lab.ns(redA), "bash -c 'echo probe > /dev/udp/\(target)/9100'")
        }
        let arrived = listeners.map { $0.receive(timeout: 0.5).count }.reduce(0, +)
        let blocked = try dropCount(lab, "to-infrastructure") - blocked0
        check(
            arrived == 0 && blocked == infraHosts.count + 1,
            "Red VM sends UDP to every provider address and G's external address: \(arrived) arrived, \(blocked) "
                + "dropped at G as to-infrastructure"
        )

        let g = try lab.cli(DemoPlan.g, ["-j", "stats"])
        let json = (try? JSONSerialization.jsonObject(with: Data(g.output.utf8))) as? [String: Any]
        let gw = (json?["gateway"] as? [String: Any]) ?? [:]
        func n(_ k: String) -> Int { ((gw[k] as? [String: Any])?["packets"] as? Int) ?? (gw[k] as? Int) ?? 0 }
        let userspace = n("userspace-out") + n("userspace-in"), offloaded = n("offloaded-out") + n("offloaded-in")
        if lab.userspaceHosts.contains(DemoPlan.g.name) {
            check(
                n("flows-created") >= 4 && offloaded == 0 && userspace > 1000,
                "G on the userspace path: its agent's gateway engine translated all \(userspace) packets of "
                    + "\(n("flows-created")) flows (no offload step)")
        } else {
            check(
                n("flows-offloaded") >= 4 && offloaded > 10 * userspace,
                "established flows run in XDP on G: \(n("flows-offloaded")) flows offloaded, \(offloaded) packets "
                    + "translated by XDP, \(userspace) by the gateway process"
            )
        }
    }

    /// Many hosts on one store: a record added once reaches every host; with the whole store
    /// down the hosts forward on and say how stale they are; back, a change converges again.
    private func storeClaims(_ lab: DemoLab, _ cluster: EtcdCluster, _ check: (Bool, String) -> Void) throws {
        let (redA, redB) = (DemoPlan.vm(DemoPlan.a, "red1"), DemoPlan.vm(DemoPlan.b, "red1"))
        print("")
        func hasRecord(_ h: DemoHost, _ ca: String) -> Bool {
            ((try? lab.cli(h, ["save", "--format", "json"]).output) ?? "").contains("\"\(ca)\"")
        }
        let add = ["lookup", "add", "5001", "198.19.1.77", "--pa", "\(DemoPlan.b.pa4)", "--mac", "02:00:00:00:01:77"]
        print("$ nvgre --store \(cluster.address) " + add.joined(separator: " "))
        let start = Date()
        let added = try lab.edit(DemoPlan.a, add)
        let seconds = Date().timeIntervalSince(start)
        let everywhere = DemoPlan.hosts.filter { hasRecord($0, "198.19.1.77") }.map(\.name)
        check(
            added.status == 0 && everywhere.count == 3,
            "a lookup record written once to the store is in the maps of \(everywhere.joined(separator: ", ")) "
                + String(format: "%.3f s after the command started", seconds))

        cluster.killAll()
        print("(every etcd member killed)")
        let pinged = Traffic.ping(from: lab.ns(redA), to: redB.ip4)
        usleep(1_500_000)
        let show = try lab.cli(DemoPlan.a, ["show", "-j"])
        let json = (try? JSONSerialization.jsonObject(with: Data(show.output.utf8))) as? [String: Any]
        let store = json?["store"] as? [String: Any]
        check(
            pinged == 5 && store?["lastError"] != nil,
            "with the whole store down, Red on A still reaches Red on B (\(pinged)/5 replies) and `nvgre show` on A "
                + "says the state is \(store?["staleSeconds"] ?? "?") s old: \(store?["lastError"] ?? "no error")")
        try cluster.startAll()
        let removed = try lab.edit(DemoPlan.a, ["lookup", "del", "5001", "198.19.1.77"])
        let nowhere = DemoPlan.hosts.filter { hasRecord($0, "198.19.1.77") }.map(\.name)
        check(
            removed.status == 0 && nowhere.isEmpty,
            "the store back, a record removed from it is gone from every host's maps"
                + (nowhere.isEmpty ? "" : " (still on \(nowhere.joined(separator: ", ")))"))
    }

    /// Red's VM on A migrates to spare host C (`nvgre migrate`, three steps) while Red's VM
    /// on B pings it every 10 ms; A sends on what still arrives for it.
    private func migrationClaims(_ lab: DemoLab, _ cluster: EtcdCluster, _ check: (Bool, String) -> Void) throws {
        let (vm, pinger, c) = (DemoPlan.vm(DemoPlan.a, "red1"), DemoPlan.vm(DemoPlan.b, "red1"), DemoPlan.c)
        print("\nRed's VM \(vm.ip4) migrates from host A to host C (PA \(c.pa4)); B's Red VM pings it every 10 ms")
        try lab.makeTap(for: vm, on: c, interface: "red1")
        let replies = PingCount()
        let pinging = Thread { replies.set(Traffic.ping(from: lab.ns(pinger), to: vm.ip4, count: 300, interval: 0.01)) }
        pinging.start()
        usleep(300_000)
        for step in ["prepare", "switch", "finish"] {
            let cmd = ["migrate", "red1", "--from", "A", "--to", "C", "--step", step]
            print("$ nvgre --store \(cluster.address) " + cmd.joined(separator: " "))
            // The VM resumes on C as the switch is written (the end of a live migration's
            // stop-and-copy pause), before the hosts apply it.
            let r = try lab.edit(DemoPlan.a, cmd, then: step == "switch" ? { try lab.resumeOnNewTap(vm) } : nil)
            for line in r.output.split(separator: "\n") { print("    \(line)") }
            if step == "switch" {
                print("    (the VM resumed on C as the switch was written)")
                let show = try lab.cli(DemoPlan.a, ["show"]).output.split(separator: "\n")
                for line in show where line.contains("moved away") {
                    print("    A: " + line.trimmingCharacters(in: .whitespaces))
                }
            }
        }
        try lab.removeOldTap(vm)
        let got = replies.wait()
        check(
            got >= 290,
            "the VM moved from A to C: \(300 - got) of 300 pings lost (\(String(format: "%.2f", Double(300 - got) * 0.01)) s "
                + "worth); B reaches it on C")
        let tcp = Result { try Traffic.tcpTransfer(from: lab.ns(pinger), to: lab.ns(vm), address: vm.ip4) }
        check((try? tcp.get().ok) == true, "after the move, Red on B sends 1 MiB over TCP to the VM on C: \(tcp.text)")
    }

    /// A drop counter of G, from `nvgre -j stats`.
    private func dropCount(_ lab: DemoLab, _ reason: String) throws -> Int {
        let r = try lab.cli(DemoPlan.g, ["-j", "stats"])
        let json = (try? JSONSerialization.jsonObject(with: Data(r.output.utf8))) as? [String: Any]
        return (((json?["drops"] as? [String: Any])?[reason] as? [String: Any])?["packets"] as? Int) ?? 0
    }

    /// The command line as a user would type it (binary name only).
    private func shown(_ argv: [String]) -> String {
        ([URL(fileURLWithPath: argv[0]).lastPathComponent]
            + argv.dropFirst().map { arg in
                arg.hasPrefix(DemoLab.examples) ? "examples/demo" + arg.dropFirst(DemoLab.examples.count) : arg
            }).joined(separator: " ")
    }

    /// tcpdump's "key=0x13890a" read independently of our decoder.
    private func greKey(_ line: String) -> UInt32? {
        guard let r = line.range(of: #"key=0x[0-9a-f]+"#, options: .regularExpression) else { return nil }
        return UInt32(line[r].dropFirst(6), radix: 16)
    }

    /// The line without its timestamp, cut to a screen's width.
    private func excerpt(_ line: String) -> String {
        let text = line.split(separator: " ", maxSplits: 1).last.map(String.init) ?? line
        return text.count > 150 ? String(text.prefix(147)) + "..." : text
    }
}

extension Result where Success == Traffic.Transfer {
    var text: String {
        switch self {
        case .success(let t): return "\(t)"
        case .failure(let e): return "\(e)"
        }
    }
}

/// A ping's reply count, from another thread.
final class PingCount: @unchecked Sendable {
    private var value = -1
    private let done = DispatchSemaphore(value: 0)
    func set(_ n: Int) {
        value = n
        done.signal()
    }
    func wait() -> Int {
        done.wait()
        return value
    }
}

/// Transfers finished on concurrent threads.
final class Transfers: @unchecked Sendable {
    private var results: [Int: Result<Traffic.Transfer, Error>] = [:]
    private let lock = NSLock()
    func set(_ i: Int, _ r: Result<Traffic.Transfer, Error>) {
        lock.lock()
        results[i] = r
        lock.unlock()
    }
    func get(_ i: Int) -> Result<Traffic.Transfer, Error> {
        lock.lock()
        defer { lock.unlock() }
        return results[i] ?? .failure(ShellErrorText("no result"))
    }
}
