import Foundation
import NvgreLab
import NvgreStore
import Testing

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
