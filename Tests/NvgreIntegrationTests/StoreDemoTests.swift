import Foundation
import NvgreLab
import NvgrePolicy
import NvgreWire
import Testing

/// The demo topology with its tables in a real three-member etcd cluster instead of files
/// applied to each host: the files are applied to the store once per host (`--store
/// --host`), each host's agent (the gateway on G) follows it, and the demo's checks pass.
@Suite(.serialized)
struct StoreDemoTests {
    /// The lookup records in a host's maps, as "VSID CA PA".
    func records(_ lab: DemoLab, _ h: DemoHost) -> Set<String> {
        guard let saved = try? lab.cli(h, ["save", "--format", "json"]), saved.status == 0,
            let p = try? PolicyDocument.decode(bytes: Array(saved.output.utf8), validate: false)
        else { return [] }
        return Set(p.lookupRecords.map { "\($0.vsid) \($0.customerAddress) \($0.providerAddress)" })
    }

    @Test func everyHostConvergesOnTheStoreAndTheDemoHolds() throws {
        let lab = try startedLab("storedemo", store: true)
        let first = try #require(lab.firstSyncSeconds)
        #expect(first < 5, "the hosts took \(first) s to apply the store")
        try DemoTopologyTests().checkTenants(lab, family: .v4)
        // G's part (its external address, the domains it serves) came from the store too.
        #expect(Traffic.ping(from: lab.ns(redA), to: DemoPlan.x4) == 5, "Red does not reach X through G")

        // A record written once reaches the maps of all three hosts within a measured bound.
        var times: [Double] = []
        for i in 1...5 {
            let start = Date()
            let r = try lab.edit(
                hostA,
                ["lookup", "add", "5001", "198.19.1.\(60 + i)", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:6\(i)"])
            try #require(r.status == 0, "\(r.output)")
            times.append(Date().timeIntervalSince(start))
            for h in DemoPlan.hosts {
                #expect(records(lab, h).contains("5001 198.19.1.\(60 + i) 198.18.0.2"), "host \(h.name) lacks it")
            }
        }
        // Each includes the command (a process start) and three `nvgre show` per poll.
        #expect(times.max()! < 2, "a change took \(times) s to reach every host")
        print(
            "store demo: first sync \(first) s; one record to three hosts: \(times.map { String(format: "%.3f", $0) }) s"
        )
    }

    /// The etcd leader killed under traffic: forwarding is not touched (a ping every 10 ms
    /// loses nothing), and the agents reach the new leader: a change made right after
    /// converges on every host.
    @Test func theLeaderDiesUnderTraffic() throws {
        let lab = try startedLab("storeleader", store: true)
        let cluster = try #require(lab.store)
        let replies = Box()
        let pinging = Thread { replies.set(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 300, interval: 0.01)) }
        pinging.start()
        usleep(500_000)
        let leader = try cluster.leader()
        cluster.kill(leader)
        let start = Date()
        let r = try lab.edit(
            hostA, ["lookup", "add", "5001", "198.19.1.80", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:80"])
        #expect(r.status == 0, "the write after the leader's death: \(r.output)")
        let converged = Date().timeIntervalSince(start)
        for h in DemoPlan.hosts {
            #expect(records(lab, h).contains("5001 198.19.1.80 198.18.0.2"), "host \(h.name) lacks the change")
        }
        #expect(replies.wait() == 300, "pings answered while the leader died: \(replies.value ?? -1)/300")
        print("store leader killed: a change reached every host \(String(format: "%.2f", converged)) s later")
        try cluster.start(leader)
    }
}

/// A count set by another thread.
final class Box: @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private(set) var value: Int?
    func set(_ v: Int) {
        lock.withLock { value = v }
        done.signal()
    }
    func wait() -> Int {
        done.wait()
        return lock.withLock { value ?? -1 }
    }
}

/// VM migration through the store (`nvgre migrate`: prepare, switch, finish): Red's VM on
/// host A moves to spare host C while Red's VM on host B pings it every 10 ms.
@Suite(.serialized)
struct StoreMigrationTests {
    func movesLab(_ tag: String, userspace: Set<String> = []) throws -> DemoLab {
        let lab = DemoLab(net: LabNetwork(tag: tag))
        lab.userspaceHosts = userspace
        lab.spare = true
        lab.store = try EtcdCluster(prefix: lab.net.prefix)
        try lab.build()
        try lab.start()
        return lab
    }

    /// One step of moving port red1; `then` runs as soon as the store has it (the VM resumes
    /// on the new host as the switch is written, at the end of a live migration's pause).
    func migrate(
        _ lab: DemoLab, from: DemoHost, to: DemoHost, step: String, except: Set<String> = [],
        then: (() throws -> Void)? = nil
    ) throws {
        let r = try lab.edit(
            from, ["migrate", "red1", "--from", from.name, "--to", to.name, "--step", step], except: except,
            then: then)
        try #require(r.status == 0, "migrate --step \(step): \(r.output)")
    }

    /// The moved-on counter of VSID 5001 on host `h` (frames sent on to a VM's new host).
    func movedOn(_ lab: DemoLab, _ h: DemoHost) throws -> Int {
        let json = try JSONSerialization.jsonObject(with: Data(try lab.cli(h, ["-j", "stats"]).output.utf8))
        let vsids = ((json as? [String: Any])?["vsids"] as? [[String: Any]]) ?? []
        let red = vsids.first { ($0["vsid"] as? Int) == 5001 }
        return ((red?["moved-on"] as? [String: Any])?["packets"] as? Int) ?? 0
    }

    @Test func aVMMovesWhileAnotherPingsItAndLittleIsLost() throws {
        let lab = try movesLab("storemove")
        let c = DemoPlan.c
        let vm = redA  // 198.19.1.1
        try lab.makeTap(for: vm, on: c, interface: "red1")
        // What C sends B, on the switch port to B (XDP takes frames on B's uplink before any
        // capture): the VM's arrival is announced into VSID 5001 (read by tcpdump).
        let toB = try Capture(
            in: lab.fabric, interface: "to-b", filter: "proto 47 and src host \(c.pa4)",
            name: "\(lab.net.prefix)-arrival")
        let replies = Box()
        Thread { replies.set(Traffic.ping(from: lab.ns(redB), to: vm.ip4, count: 300, interval: 0.01)) }.start()
        usleep(500_000)
        try migrate(lab, from: hostA, to: c, step: "prepare")
        try migrate(lab, from: hostA, to: c, step: "switch") { try lab.resumeOnNewTap(vm) }
        try migrate(lab, from: hostA, to: c, step: "finish")
        try lab.removeOldTap(vm)
        let got = replies.wait()
        #expect(got >= 290, "a ping every 10 ms lost \(300 - got) replies in the move (more than 0.1 s worth)")
        print("migration: \(300 - got) of 300 pings (10 ms apart) lost while the VM moved from A to C")
        // Where it is now: its traffic crosses to C, TCP too, and A holds no port for it.
        #expect(Traffic.ping(from: lab.ns(redB), to: vm.ip4) == 5)
        #expect(try Traffic.tcpTransfer(from: lab.ns(redB), to: lab.ns(vm), address: vm.ip4).ok)
        let show = try lab.cli(hostA, ["-j", "show", "ports"]).output
        #expect(show.contains("\"blue1\"") && !show.contains("\"red1\""), "host A's ports: \(show)")
        let lines = try toB.tcpdumpLines(options: "-e")
        let vmMAC = "02:00:00:00:01:01"
        #expect(
            lines.contains {
                $0.contains("key=0x\(String(5001, radix: 16))") && $0.contains("\(vmMAC) > ff:ff:ff:ff:ff:ff")
                    && $0.contains("Request who-has \(vm.ip4) tell \(vm.ip4)")
            }, "no gratuitous ARP for \(vm.ip4) from C to B: \(lines.prefix(8))")
        #expect(
            lines.contains {
                $0.contains("\(vmMAC) > 33:33:00:00:00:01") && $0.contains("neighbor advertisement")
                    && $0.contains("tgt is \(vm.ip6)")
            }, "no unsolicited advertisement for \(vm.ip6) from C to B: \(lines.prefix(8))")
    }

    /// A host that has not seen the move (its agent stopped) still sends to the VM's old
    /// host; the old host sends every such frame on to the new one during its grace period.
    @Test func theOldHostSendsOnWhatAStaleHostStillSendsThere() throws {
        try staleSenderCase(try movesLab("storestale"))
    }

    /// The same with the old host on the userspace data path.
    @Test func theOldHostOnTheUserspacePathSendsOnToo() throws {
        try staleSenderCase(try movesLab("storestaleu", userspace: ["A"]))
    }

    func staleSenderCase(_ lab: DemoLab) throws {
        let c = DemoPlan.c
        let vm = redA
        try lab.makeTap(for: vm, on: c, interface: "red1")
        lab.pauseAgent(hostB, true)
        defer { lab.pauseAgent(hostB, false) }
        try migrate(lab, from: hostA, to: c, step: "prepare", except: ["B"])
        try migrate(lab, from: hostA, to: c, step: "switch", except: ["B"]) { try lab.resumeOnNewTap(vm) }
        usleep(200_000)  // A resolves C's provider address (new to it) as it applies the switch

        let listener = try Traffic.udpListener(in: lab.ns(vm), family: .v4, port: 9200)
        let before = try movedOn(lab, hostA)
        _ = try lab.net.exec(
            lab.ns(redB), "bash -c 'for i in $(seq 50); do echo m$i > /dev/udp/\(vm.ip4)/9200; sleep 0.005; done'")
        let arrived = listener.receive(timeout: 1).count
        lab.settle(hostA)
        let sentOn = try movedOn(lab, hostA) - before
        #expect(arrived == 50, "the VM on C received \(arrived) of 50 datagrams B sent to A")
        #expect(
            sentOn >= 50,
            "host A counted \(sentOn) frames sent on (moved-on): \((try? lab.cli(hostA, ["stats"]).output) ?? "")")
        let show = try lab.cli(hostA, ["-j", "show"]).output
        #expect(show.contains("198.19.1.1 -> 198.18.0.4"), "A's show does not list the moved VM: \(show)")

        lab.pauseAgent(hostB, false)
        try migrate(lab, from: hostA, to: c, step: "finish")
        try lab.removeOldTap(vm)
        #expect(Traffic.ping(from: lab.ns(redB), to: vm.ip4) == 5)
    }
}
