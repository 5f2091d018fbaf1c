import Foundation
import NvgreLab
import NvgrePolicy
import NvgreWire
import Testing

@testable import NvgreStore

/// The etcd client against a real three-member etcd cluster on loopback (Debian's
/// etcd-server), not a mock: reads, writes, transactions, prefixes, and a member killed.
@Suite(.serialized)
struct StoreClientTests {
    @Test func readsWritesAndTransactionsGoToTheRealCluster() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-client")
        defer { cluster.down() }
        let etcd = try EtcdClient(address: cluster.address)
        let r1 = try etcd.put("/t/a", Data("one".utf8))
        try etcd.put("/t/b", Data("two".utf8))
        try etcd.put("/u/c", Data("other".utf8))
        #expect(try etcd.get("/t/a")?.value == Data("one".utf8))
        #expect(try etcd.get("/t/missing") == nil)
        let listed = try etcd.range(prefix: "/t/")
        #expect(listed.kvs.map(\.key) == ["/t/a", "/t/b"])
        #expect(listed.revision > r1)
        // Read at an older revision: what was there then.
        #expect(try etcd.range(prefix: "/t/", revision: r1).kvs.map(\.key) == ["/t/a"])

        // A transaction on a stale revision changes nothing; on the current one, all of it.
        let a = try #require(try etcd.get("/t/a"))
        let stale = try etcd.transaction(
            if: [.modRevision("/t/a", equals: a.modRevision - 1)], then: [.put("/t/a", Data("x".utf8)), .delete("/t/b")]
        )
        #expect(!stale.succeeded)
        #expect(try etcd.range(prefix: "/t/").kvs.count == 2)
        let fresh = try etcd.transaction(
            if: [.modRevision("/t/a", equals: a.modRevision), .modRevision("/t/new", equals: 0)],
            then: [.put("/t/a", Data("x".utf8)), .deletePrefix("/t/b"), .put("/t/new", Data("n".utf8))])
        #expect(fresh.succeeded)
        #expect(try etcd.range(prefix: "/t/").kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["x", "n"])
        try etcd.deletePrefix("/t/")
        #expect(try etcd.range(prefix: "/t/").kvs.isEmpty)

        // Read in pages, all at the revision of the first: a write between pages is not seen.
        for i in 0..<12 { try etcd.put("/p/\(String(format: "%02d", i))", Data("\(i)".utf8)) }
        let paged = try etcd.range(prefix: "/p/", pageSize: 5)
        #expect(paged.kvs.map(\.key) == (0..<12).map { "/p/\(String(format: "%02d", $0))" })
        try etcd.put("/p/99", Data("late".utf8))
        #expect(try etcd.range(prefix: "/p/", revision: paged.revision, pageSize: 5).kvs.count == 12)
        #expect(try etcd.range(prefix: "/p/", pageSize: 5).kvs.count == 13)
        #expect(try etcd.range(prefix: "/u/").kvs.count == 1)
    }

    /// The leader killed: the client, given every member, goes on with the others once they
    /// have elected a new leader; the member restarted with its data rejoins.
    @Test func theClientSurvivesTheLeadersDeath() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-leader")
        defer { cluster.down() }
        let etcd = try EtcdClient(address: cluster.address, timeout: 2)
        try etcd.put("/k", Data("before".utf8))
        let statuses = try cluster.members.indices.map {
            try etcd.status(of: EtcdClient.Endpoint(host: "127.0.0.1", port: cluster.members[$0].clientPort))
        }
        let leader = try #require(statuses.firstIndex { $0.memberID == $0.leaderID }, "no leader among \(statuses)")
        cluster.kill(leader)
        let deadline = Date().addingTimeInterval(10)
        var written = false
        while !written && Date() < deadline {
            written = (try? etcd.put("/k", Data("after".utf8))) != nil
            if !written { usleep(100_000) }
        }
        #expect(written, "no write within 10 s of the leader's death")
        #expect(try etcd.get("/k")?.value == Data("after".utf8))
        try cluster.start(leader)
        try cluster.waitUntilWritable()
        let rejoined = try EtcdClient(address: cluster.address(of: leader))
        let deadline2 = Date().addingTimeInterval(10)
        var seen: Data?
        while seen != Data("after".utf8) && Date() < deadline2 {
            seen = try? rejoined.get("/k")?.value
            if seen != Data("after".utf8) { usleep(100_000) }
        }
        #expect(seen == Data("after".utf8), "the restarted member did not catch up")
    }

    @Test func addressesAndUnreachableMembersAreNamed() throws {
        for bad in [
            "http://127.0.0.1:2379", "etcd://", "etcd://host", "etcd://host:0", "etcd://host:99999", "etcd://:2379"
        ] {
            #expect(throws: StoreError.badAddress(bad)) { try EtcdClient.parse(bad) }
        }
        #expect(
            try EtcdClient.parse("etcd://127.0.0.1:2379,[::1]:2380")
                == [.init(host: "127.0.0.1", port: 2379), .init(host: "::1", port: 2380)])
        let nobody = try EtcdClient(address: "etcd://127.0.0.1:1", timeout: 1)
        do {
            _ = try nobody.get("/x")
            Issue.record("a get with nothing listening succeeded")
        } catch let e as StoreError {
            #expect("\(e)".contains("127.0.0.1:1") && "\(e)".contains("unreachable"), "\(e)")
        }
    }
}

/// Compaction, against the real cluster: a watch that starts in history compacted away is
/// ended by the server as compacted, and a follower in that place lists again and misses
/// no change.
@Suite(.serialized)
struct StoreCompactionTests {
    @Test func aWatchIntoCompactedHistoryIsEndedAsCompacted() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-compact")
        defer { cluster.down() }
        let etcd = try EtcdClient(address: cluster.address, timeout: 2)
        let first = try etcd.put("/w/a", Data("1".utf8))
        var last = first
        for i in 0..<5 { last = try etcd.put("/w/a", Data("\(i)".utf8)) }
        try etcd.compact(to: last)
        let watch = try EtcdWatch(endpoints: etcd.endpoints, prefix: "/w/", from: first, timeout: 2)
        var events: [EtcdWatch.Event] = []
        let deadline = Date().addingTimeInterval(5)
        while events.isEmpty && Date() < deadline { events += try watch.next(wait: 0.2) }
        #expect(events == [.compacted(last)], "\(events)")
    }

    @Test func aFollowerInCompactedHistoryListsAgainAndMissesNothing() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-follow")
        defer { cluster.down() }
        let store = PolicyStore(try EtcdClient(address: cluster.address, timeout: 2))
        var shared = try demoFile("tenants.yaml")
        _ = try store.write(shared: shared, hosts: ["A": try demoFile("host-a.yaml")], basedOn: try store.read())
        let early = try store.read().revision
        // History the follower will be sent into, then compacted away.
        for i in 1...5 {
            shared.lookupRecords.append(
                LookupRecord(
                    vsid: 5001, customerAddress: IPAddress(parsing: "198.19.1.\(100 + i)")!,
                    providerAddress: "198.18.0.2", mac: MACAddress(parsing: "02:00:00:00:01:\(10 + i)")!))
            _ = try store.write(shared: shared, hosts: [:], basedOn: try store.read())
        }
        try store.etcd.compact(to: try store.read().revision)

        let seen = Seen()
        let stop = seen.follow(store, address: cluster.address, watchFrom: early)
        defer { stop() }
        #expect(seen.wait { $0.reports.contains { $0.lastError?.contains("compacted") == true } }, "\(seen.reports)")
        #expect(seen.wait { $0.reports.last?.resyncs ?? 0 >= 2 }, "no list after the compaction: \(seen.reports)")

        // A change made now reaches the follower: nothing after the compaction is missed.
        shared.lookupRecords.append(
            LookupRecord(
                vsid: 5001, customerAddress: "198.19.1.200", providerAddress: "198.18.0.2",
                mac: MACAddress(parsing: "02:00:00:00:01:99")!))
        _ = try store.write(shared: shared, hosts: [:], basedOn: try store.read())
        #expect(
            seen.wait { $0.policies.last?.lookupRecords.count == shared.lookupRecords.count },
            "the follower has \(seen.policies.last?.lookupRecords.count ?? 0) records of \(shared.lookupRecords.count)")
    }
}

/// A follower takes changes from the watch's events, not from lists: records added and
/// removed one by one, a whole new generation, each handed on equal to what a fresh read
/// of the store gives; wrong contents are named and change nothing it handed on.
@Suite(.serialized)
struct StoreFollowerTests {
    @Test func changesComeFromTheWatchAndEqualAFreshRead() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-watch")
        defer { cluster.down() }
        let store = PolicyStore(try EtcdClient(address: cluster.address, timeout: 2))
        var shared = try demoFile("tenants.yaml")
        _ = try store.write(shared: shared, hosts: ["A": try demoFile("host-a.yaml")], basedOn: try store.read())
        let seen = Seen()
        let stop = seen.follow(store, address: cluster.address)
        defer { stop() }
        func freshRead() throws -> Policy { try store.read().policy(forHost: "A").scopedToItsDomains }
        func handedOnEqualsAFreshRead(_ what: String) throws {
            let expected = try freshRead()
            #expect(seen.wait { $0.policies.last == expected }, "\(what): the follower's policy differs from a read")
        }
        try #require(seen.wait { !$0.policies.isEmpty })

        // One record added, then removed, each in place.
        let record = LookupRecord(
            vsid: 5001, customerAddress: "198.19.1.150", providerAddress: "198.18.0.2",
            mac: MACAddress(parsing: "02:00:00:00:01:50")!)
        let context = try #require(try store.readForRecord(vsid: 5001, customerAddress: "198.19.1.150"))
        _ = try store.addRecord(record, in: context)
        try handedOnEqualsAFreshRead("a record added")
        #expect(seen.policies.last?.lookupRecords.contains(record) == true)
        let again = try #require(try store.readForRecord(vsid: 5001, customerAddress: "198.19.1.150"))
        _ = try store.removeRecord(vsid: 5001, customerAddress: "198.19.1.150", in: again)
        try handedOnEqualsAFreshRead("a record removed")
        #expect(seen.policies.last?.lookupRecords.contains(record) == false)

        // 200 records more: more than a transaction holds, so a new generation, whose items
        // come through the watch before the switch.
        for i in 20..<220 {
            shared.lookupRecords.append(
                LookupRecord(
                    vsid: 5001, customerAddress: IPAddress(parsing: "198.19.1.\(i)")!, providerAddress: "198.18.0.2",
                    mac: MACAddress(parsing: String(format: "02:00:00:00:03:%02x", i))!))
        }
        let written = try store.write(shared: shared, hosts: [:], basedOn: try store.read())
        #expect(written.newGeneration)
        try handedOnEqualsAFreshRead("a new generation")
        #expect(seen.reports.last?.lists == 1, "the follower listed again: \(seen.reports.last.map { "\($0)" } ?? "")")

        // Wrong contents written by something else: named, and nothing more handed on.
        let handedOn = seen.policies.count
        let bad = StoreLayout.generations + written.generation + "/record/5001/198.19.1.251"
        _ = try store.etcd.transaction(
            if: [], then: [.put(bad, Data("{not json".utf8)), .put(StoreLayout.edited, Data("x".utf8))])
        #expect(
            seen.wait { $0.reports.last?.lastError?.contains(bad) == true },
            "\(seen.reports.last.map { "\($0)" } ?? "")")
        #expect(seen.policies.count == handedOn)
    }
}

/// A file of the demo's examples, read without validation.
func demoFile(_ name: String) throws -> Policy {
    try PolicyDocument.decode(
        bytes: [UInt8](try #require(FileManager.default.contents(atPath: DemoLab.examples + "/" + name))),
        validate: false)
}

extension Seen {
    /// Runs a follower of host A's part of `store` on its own thread, handing on and
    /// reporting here (its watch from `watchFrom`, when given); the closure returned stops
    /// it and waits for the thread.
    func follow(_ store: PolicyStore, address: String, watchFrom: Int64? = nil) -> () -> Void {
        let follower = StoreFollower(
            store: store, address: address, host: "A", apply: { policy, _ in self.applied(policy) },
            report: { self.reported($0) })
        follower.nextWatchFrom = watchFrom
        let stop = Seen()
        let done = DispatchSemaphore(value: 0)
        Thread {
            follower.run(stop: { stop.stopped })
            done.signal()
        }.start()
        return {
            stop.stop()
            done.wait()
        }
    }
}

/// What a follower handed on and reported, from its thread.
final class Seen: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var policies: [Policy] = []
    private(set) var reports: [StoreFollower.Status] = []
    private(set) var stopped = false
    func applied(_ p: Policy) { lock.withLock { policies.append(p) } }
    func reported(_ s: StoreFollower.Status) { lock.withLock { reports.append(s) } }
    func stop() { lock.withLock { stopped = true } }
    /// Polls `condition` for up to 10 s.
    func wait(_ condition: (Seen) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if lock.withLock({ condition(self) }) { return true }
            usleep(20_000)
        }
        return false
    }
}
