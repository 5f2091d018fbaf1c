import Foundation
import NvgreLab
import NvgrePolicy
import NvgreStore
import NvgreWire
import Testing

/// `nvgre agent --store --host` on a host of ours (XDP) against a real three-member etcd
/// cluster: the maps converge on the store's state for that host (only its routing
/// domains), follow a change within a measured bound, keep the last state while the whole
/// store is down (and `show` says so), and converge again when it is back.
@Suite(.serialized)
struct StoreAgentTests {
    /// The lookup records of the live maps, as (VSID, CA, PA).
    static func liveRecords(_ h: CLIHost) -> Set<String> {
        let saved = h.run(["save", "--format", "json"])
        guard saved.status == 0, let p = try? PolicyDocument.decode(saved.out, validate: false) else { return [] }
        return Set(p.lookupRecords.map { "\($0.vsid) \($0.customerAddress) \($0.providerAddress)" })
    }

    /// Seconds until `liveRecords` equals `expected` (nil: not within `limit`).
    static func converge(_ h: CLIHost, to expected: Set<String>, within limit: Double = 10) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < limit {
            if liveRecords(h) == expected { return Date().timeIntervalSince(start) }
            usleep(20_000)
        }
        return nil
    }

    @Test func theAgentKeepsTheMapsOnTheStore() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-agent")
        defer { cluster.down() }
        let h = try CLIHost(tag: "storeagent")
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        let s = ["--store", cluster.address]
        let example = try h.file("two-tenants.yaml", CLIHost.example)
        let applied = StoreCLITests.nvgre(["apply"] + s + ["--host", "a", example])
        try #require(applied.status == 0, "\(applied.err)")

        let log = h.temporaryPath("agent.log")
        let pid = try Spawn.start(
            [CLIHost.binary, "-n", h.ns, "--instance", h.instance, "agent"] + s + ["--host", "a"], output: log,
            detached: false)
        defer { Spawn.stop(pid) }
        // Only Red has a port here (port1 in 5001): Blue's record stays out of this host's maps.
        var expected: Set<String> = ["5001 198.19.1.1 198.18.0.1", "5001 198.19.1.2 198.18.0.2"]
        let first = Self.converge(h, to: expected)
        #expect(first != nil, "the maps never matched the store: \(Self.liveRecords(h))\n\(h.logText(log))")

        // A second agent for the instance stops at the lock, before it touches the store.
        let second = try Spawn.run(
            [CLIHost.binary, "-n", h.ns, "--instance", h.instance, "agent"] + s + ["--host", "a"])
        #expect(
            second.status == 1 && second.output.contains("already running")
                && !second.output.contains("store: following"), "\(second.output)")

        // A record added to the store reaches the maps.
        let added = StoreCLITests.nvgre(
            ["lookup", "add"] + s + ["5002", "198.19.2.9", "--pa", "198.18.0.2", "--mac", "02:00:00:00:02:09"])
        try #require(added.status == 0, "\(added.err)")
        expected.insert("5002 198.19.2.9 198.18.0.2")
        let change = Self.converge(h, to: expected)
        #expect(change != nil && change! < 2, "a change took \(change.map { "\($0) s" } ?? "too long")")
        print("store agent: first sync \(first ?? -1) s, one record added \(change ?? -1) s")

        // The whole store down: the maps stay, and show says how stale they are.
        cluster.killAll()
        usleep(3_000_000)
        #expect(Self.liveRecords(h) == expected, "the maps changed with the store down")
        let show = h.run(["show", "-j"])
        let store = (show.json as? [String: Any])?["store"] as? [String: Any]
        #expect(store?["lastError"] != nil, "show: \(show.out)")
        #expect((store?["staleSeconds"] as? Int ?? 0) >= 1, "show: \(show.out)")
        #expect(h.logText(log).contains("forwarding on the last state"))

        // Back: a change made now converges.
        try cluster.startAll()
        let again = StoreCLITests.nvgre(["lookup", "del"] + s + ["5002", "198.19.2.9"])
        try #require(again.status == 0, "\(again.err)")
        expected.remove("5002 198.19.2.9 198.18.0.2")
        #expect(Self.converge(h, to: expected, within: 15) != nil, "no convergence after the store came back")
        let after = h.run(["show", "-j"])
        #expect(((after.json as? [String: Any])?["store"] as? [String: Any])?["lastError"] == nil, "\(after.out)")
    }
}

extension StoreAgentTests {
    /// kill -9 of the agent while it applies a change of 240 records: the maps hold the old
    /// state or the new one whole, and the restarted agent converges on the new one.
    @Test func anAgentKilledDuringALargeChangeConvergesWhenRestarted() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-kill")
        defer { cluster.down() }
        let h = try CLIHost(tag: "storekill")
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        let s = ["--store", cluster.address]
        let example = try h.file("two-tenants.yaml", CLIHost.example)
        try #require(StoreCLITests.nvgre(["apply"] + s + ["--host", "a", example]).status == 0)
        let agent = [CLIHost.binary, "-n", h.ns, "--instance", h.instance, "agent"] + s + ["--host", "a"]
        let log = h.temporaryPath("agent.log")
        var pid = try Spawn.start(agent, output: log, detached: false)
        defer { Spawn.stop(pid) }
        let old: Set<String> = ["5001 198.19.1.1 198.18.0.1", "5001 198.19.1.2 198.18.0.2"]
        try #require(Self.converge(h, to: old) != nil, "\(h.logText(log))")

        // The shared tables again, with 240 more records in 5002 (more than a transaction
        // holds: written as a new generation; the host's sections stay).
        var shared = try PolicyDocument.decode(CLIHost.example, validate: false).sharedSections
        var new = old
        for i in 10..<250 {
            let ca = IPAddress(v4: [198, 19, 2, UInt8(i)]), pa = IPAddress(v4: [198, 18, 1, UInt8(i)])
            shared.lookupRecords.append(
                LookupRecord(
                    vsid: 5002, customerAddress: ca, providerAddress: pa, mac: "02:00:00:00:02:01", type: .staticRecord)
            )
            new.insert("5002 \(ca) \(pa)")
        }
        let file = try h.file("large.yaml", PolicyWriter.write(shared, as: .yaml))
        let applied = StoreCLITests.nvgre(["apply"] + s + [file])
        try #require(applied.status == 0, "\(applied.err)")
        usleep(30_000)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let after = Self.liveRecords(h)
        #expect(after == old || after == new, "after kill -9 the maps held \(after.count) records: a mix")

        pid = try Spawn.start(agent, output: log, detached: false)
        #expect(
            Self.converge(h, to: new, within: 20) != nil,
            "no convergence after the restart: \(Self.liveRecords(h).count)")
    }
}

extension StoreAgentTests {
    /// A writer on the host between two of the agent's applies (`lookup add` without the
    /// store): the agent's next apply is diffed against the live maps, not against what it
    /// last wrote itself, so the maps end on the store's state whole, the local record gone.
    @Test func aLocalWriteBetweenTwoStoreChangesIsNotMixedIn() throws {
        let a = try AgentOnStore("mixed", policy: CLIHost.example)
        defer { withExtendedLifetime(a) {} }
        let (h, s, log) = (a.host, a.store, a.log)
        var expected: Set<String> = ["5001 198.19.1.1 198.18.0.1", "5001 198.19.1.2 198.18.0.2"]
        try #require(Self.converge(h, to: expected) != nil, "\(h.logText(log))")

        let local = h.run(["lookup", "add", "5001", "198.19.1.77", "--pa", "198.18.0.9", "--mac", "02:00:00:00:01:77"])
        try #require(local.status == 0, "\(local.err)")
        try #require(Self.liveRecords(h).contains("5001 198.19.1.77 198.18.0.9"))
        let added = StoreCLITests.nvgre(
            ["lookup", "add"] + s + ["5001", "198.19.1.3", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:03"])
        try #require(added.status == 0, "\(added.err)")
        expected.insert("5001 198.19.1.3 198.18.0.2")
        #expect(
            Self.converge(h, to: expected) != nil,
            "the maps are not the store's state: \(Self.liveRecords(h).symmetricDifference(expected))")
    }
}

extension StoreAgentTests {
    /// The agent's store sync and a local apply at once, 20 times: after both, once the
    /// agent has applied the store's revision, the maps hold the store's policy for the host
    /// or the local file, whole.
    @Test func theAgentsSyncAndALocalApplyAtOnceLeaveOneWholePolicy() throws {
        func withRecords(pa: String) -> String {
            var lines = ""
            for i in 10..<40 {
                lines +=
                    "  - {vsid: 5002, customerAddress: 198.19.2.\(i), providerAddress: \(pa), mac: 02:00:00:00:02:01}\n"
            }
            return CLIHost.example.replacingOccurrences(of: "lookupRecords:\n", with: "lookupRecords:\n" + lines)
        }
        let a = try AgentOnStore("pairs", policy: withRecords(pa: "198.18.0.2"))
        defer { withExtendedLifetime(a) {} }
        let (h, log, cluster) = (a.host, a.log, a.cluster)
        let storeFiles = try [
            h.file("s0.yaml", withRecords(pa: "198.18.0.2")), h.file("s1.yaml", withRecords(pa: "198.18.0.3"))
        ]
        let localFile = try h.file("local.yaml", withRecords(pa: "198.18.0.9"))
        // What each source makes live: the store's (Red only: host a has no Blue port), the file's.
        func redOnly(pa: String) -> Set<String> {
            var set: Set<String> = ["5001 198.19.1.1 198.18.0.1", "5001 198.19.1.2 198.18.0.2"]
            for i in 10..<40 { set.insert("5002 198.19.2.\(i) \(pa)") }
            return set
        }
        let fromStore = [redOnly(pa: "198.18.0.2"), redOnly(pa: "198.18.0.3")]
        let fromFile = redOnly(pa: "198.18.0.9").union(["6001 198.19.1.1 198.18.0.3"])
        try #require(Self.converge(h, to: fromStore[0]) != nil, "\(h.logText(log))")

        var outcomes = [0, 0]
        for round in 0..<20 {
            let k = (round + 1) % 2
            let (store, local) = ConcurrentWriterTests.atOnce(
                h, ["--store", cluster.address, "--host", "a", "apply", storeFiles[k]], ["apply", localFile])
            #expect(store.status == 0 && local.status == 0, "round \(round): \(store.err) \(local.err)")
            // Until the agent has applied the store's revision.
            guard let r = store.out.range(of: #"revision [0-9]+"#, options: .regularExpression),
                let revision = Int(store.out[r].dropFirst("revision ".count))
            else {
                Issue.record("round \(round): no revision in \(store.out)")
                break
            }
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                let show = (h.run(["show", "-j"]).json as? [String: Any])?["store"] as? [String: Any]
                if let seen = show?["revision"] as? Int, seen >= revision { break }
                usleep(20_000)
            }
            let now = Self.liveRecords(h)
            #expect(
                now == fromStore[k] || now == fromFile,
                "round \(round): neither the store's policy nor the file: \(now.subtracting(fromStore[k]).count) beyond the store's, \(now.subtracting(fromFile).count) beyond the file's"
            )
            if now == fromStore[k] { outcomes[0] += 1 } else if now == fromFile { outcomes[1] += 1 }
        }
        print(
            "20 pairs of a store sync and a local apply: the store's policy last \(outcomes[0]) times, the file \(outcomes[1])"
        )
    }
}

/// A three-member etcd cluster, a host with an instance up, `policy` in the store for host
/// a, and the host's agent following it; all stopped and removed with this object.
final class AgentOnStore {
    let cluster: EtcdCluster
    let host: CLIHost
    let log: String
    private let pid: pid_t
    /// The store options of every command on it.
    var store: [String] { ["--store", cluster.address] }

    init(_ tag: String, policy: String) throws {
        cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-\(tag)")
        do {
            host = try CLIHost(tag: "store\(tag)")
            try #require(host.run(["up", "--uplink", "ul"]).status == 0)
            let file = try host.file("store-policy.yaml", policy)
            let applied = StoreCLITests.nvgre(["apply", "--store", cluster.address, "--host", "a", file])
            try #require(applied.status == 0, "\(applied.err)")
            log = host.temporaryPath("agent.log")
            pid = try Spawn.start(
                [
                    CLIHost.binary, "-n", host.ns, "--instance", host.instance, "agent", "--store", cluster.address,
                    "--host", "a"
                ], output: log, detached: false)
        } catch {
            cluster.down()
            throw error
        }
    }

    deinit {
        Spawn.stop(pid)
        cluster.down()
    }
}

extension CLIHost {
    func logText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
}

extension StoreAgentTests {
    /// The agent keeps its host's liveness key on a lease; killed, the key goes within the
    /// lease's TTL and the host's sections and records stay.
    @Test func aHostIsAliveWhileItsAgentRunsAndLosingItErasesNoTenant() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-alive")
        defer { cluster.down() }
        let h = try CLIHost(tag: "storealive")
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        let s = ["--store", cluster.address]
        let example = try h.file("two-tenants.yaml", CLIHost.example)
        try #require(StoreCLITests.nvgre(["apply"] + s + ["--host", "a", example]).status == 0)
        func listed() -> [String: [String: Any]] {
            let r = StoreCLITests.nvgre(["hosts", "-j"] + s)
            let list = (try? JSONSerialization.jsonObject(with: Data(r.out.utf8))) as? [[String: Any]] ?? []
            return Dictionary(list.map { (($0["host"] as? String) ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        }
        #expect(listed()["a"]?["alive"] as? Bool == false, "alive before any agent: \(listed())")

        let log = h.temporaryPath("agent.log")
        let pid = try Spawn.start(
            [CLIHost.binary, "-n", h.ns, "--instance", h.instance, "agent"] + s + ["--host", "a", "--alive-ttl", "2"],
            output: log, detached: false)
        var deadline = Date().addingTimeInterval(5)
        while listed()["a"]?["alive"] as? Bool != true && Date() < deadline { usleep(100_000) }
        #expect(listed()["a"]?["alive"] as? Bool == true, "not alive with its agent running: \(listed())")
        let text = StoreCLITests.nvgre(["hosts"] + s)
        #expect(text.out.contains("a: alive (agent since"), "\(text.out)")
        // Alive past several TTLs: the lease is renewed.
        usleep(4_500_000)
        #expect(listed()["a"]?["alive"] as? Bool == true, "the key went while the agent ran: \(h.logText(log))")

        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        deadline = Date().addingTimeInterval(6)
        while listed()["a"]?["alive"] as? Bool != false && Date() < deadline { usleep(200_000) }
        #expect(listed()["a"]?["alive"] as? Bool == false, "still alive after its agent was killed: \(listed())")
        let saved = StoreCLITests.nvgre(["save", "--format", "json"] + s + ["--host", "a"])
        let p = try PolicyDocument.decode(saved.out, validate: false)
        #expect(p.lookupRecords.count == 3 && p.ports.count == 1, "the host's tables went with it: \(saved.out)")
    }
}
