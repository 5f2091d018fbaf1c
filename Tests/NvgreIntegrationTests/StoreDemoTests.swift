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
