import Foundation
import NvgreLab
import NvgrePolicy
import NvgreStore
import Testing

/// `nvgre --store` against a real three-member etcd cluster on loopback: the demo's policy
/// applied to the store, read back, edited with the object commands, refused whole when
/// wrong, and never seen half-written by a reader.
@Suite(.serialized)
struct StoreCLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func example(_ name: String) -> String { root.appendingPathComponent("examples/demo/\(name)").path }

    /// Runs the built binary with `args` (no namespace, no instance: the store only).
    static func nvgre(_ args: [String], stdin: String? = nil) -> CLIResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIHost.binary)
        p.arguments = args
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        do { try p.run() } catch { return CLIResult(status: -1, out: "", err: "\(error)") }
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        input.fileHandleForWriting.closeFile()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return CLIResult(
            status: p.terminationStatus, out: String(decoding: o, as: UTF8.self),
            err: String(decoding: e, as: UTF8.self))
    }

    @Test func theDemoPolicyGoesToTheStoreAndBackWhole() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-cli")
        defer { cluster.down() }
        let s = ["--store", cluster.address]
        // Host A's file has ports: without --host, refused, nothing written.
        let noHost = Self.nvgre(["apply"] + s + [Self.example("tenants.yaml"), Self.example("host-a.yaml")])
        #expect(noHost.status == 2 && noHost.err.contains("--host"), "\(noHost.err)")
        let etcd = try EtcdClient(address: cluster.address)
        #expect(try etcd.range(prefix: StoreLayout.root).kvs.isEmpty)

        let a = Self.nvgre(
            ["apply", "-j"] + s + ["--host", "host-a", Self.example("tenants.yaml"), Self.example("host-a.yaml")])
        try #require(a.status == 0, "\(a.err)")
        let aj = try #require(a.json as? [String: Any])
        // 2 domains, 3 subnets, 14 records, 2 routes; A's PA and 3 ports.
        #expect(aj["added"] as? Int == 25 && aj["removed"] as? Int == 0, "\(a.out)")
        // B's file alone: B's sections added, the shared tables untouched.
        let b = Self.nvgre(["apply", "-j"] + s + ["--host", "host-b", Self.example("host-b.yaml")])
        try #require(b.status == 0, "\(b.err)")
        #expect((b.json as? [String: Any])?["added"] as? Int == 4, "\(b.out)")  // its PA and 3 ports

        // Read back as host A: applying what `save` wrote changes nothing.
        let saved = Self.nvgre(["save"] + s + ["--host", "host-a"])
        try #require(saved.status == 0, "\(saved.err)")
        #expect(saved.out.contains("red1") && !saved.out.contains("red2b") && saved.out.contains("198.19.1.250"))
        let again = Self.nvgre(["apply"] + s + ["--host", "host-a", "-"], stdin: saved.out)
        #expect(again.status == 0 && again.out.contains("nothing changed"), "\(again.out)\(again.err)")
        let savedB = Self.nvgre(["save", "--format", "json"] + s + ["--host", "host-b"])
        #expect(savedB.status == 0 && savedB.out.contains("198.18.0.2"), "\(savedB.err)")

        // The object commands on the store.
        let add = Self.nvgre(
            ["lookup", "add"] + s + ["5001", "198.19.1.77", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:77"])
        #expect(add.status == 0, "\(add.err)")
        #expect(
            try etcd.range(prefix: StoreLayout.generations).kvs.contains { $0.key.hasSuffix("record/5001/198.19.1.77") }
        )
        let twice = Self.nvgre(
            ["lookup", "add"] + s + ["5001", "198.19.1.77", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:77"])
        #expect(twice.status == 1 && twice.err.contains("exists already"), "\(twice.err)")
        let outside = Self.nvgre(
            ["lookup", "add"] + s + ["5001", "10.9.9.9", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:78"])
        #expect(outside.status == 2, "\(outside.err)")
        let del = Self.nvgre(["lookup", "del"] + s + ["5001", "198.19.1.77"])
        #expect(del.status == 0, "\(del.err)")
        #expect(!Self.nvgre(["save"] + s).out.contains("198.19.1.77"))
        let gone = Self.nvgre(["lookup", "del"] + s + ["5001", "198.19.1.77"])
        #expect(gone.status == 1 && gone.err.contains("no lookup record"), "\(gone.err)")
        // A VM's own record, whichever host runs it (no --host given): refused, naming both.
        let vm = Self.nvgre(["lookup", "del"] + s + ["5001", "198.19.1.1"])
        #expect(vm.status == 1 && vm.err.contains("port red1 of host host-a"), "\(vm.err)")
        #expect(Self.nvgre(["save"] + s).out.contains("198.19.1.1,"))

        // A subnet that a host's port uses cannot go: every host's whole policy is checked.
        let before = Self.nvgre(["save"] + s + ["--host", "host-b"]).out
        let subnetDel = Self.nvgre(["subnet", "del"] + s + ["5002"])
        #expect(subnetDel.status != 0, "\(subnetDel.out)")
        #expect(Self.nvgre(["save"] + s + ["--host", "host-b"]).out == before, "a refused change left a trace")

        // Unreachable: the address is named, exit 1.
        let down = Self.nvgre(["save", "--store", "etcd://127.0.0.1:1"])
        #expect(down.status == 1 && down.err.contains("127.0.0.1:1"), "\(down.err)")
        for host in ["a/b", "", String(repeating: "h", count: 64)] {
            let r = Self.nvgre(["save"] + s + ["--host", host])
            #expect(r.status == 2 && r.err.contains("--host"), "--host '\(host)': \(r.err)")
        }
        let bad = Self.nvgre(["save", "--store", "http://127.0.0.1:1"])
        #expect(bad.status != 0 && bad.err.contains("etcd://HOST:PORT"), "\(bad.err)")
    }

    /// Store contents written by something else, wrong: every reader names the key and what
    /// is wrong with it, and a write on top of them is refused, changing nothing.
    @Test func wrongStoreContentsAreNamedNotUsed() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-bad")
        defer { cluster.down() }
        let s = ["--store", cluster.address]
        try #require(
            Self.nvgre(["apply"] + s + ["--host", "host-a", Self.example("tenants.yaml"), Self.example("host-a.yaml")])
                .status == 0)
        let etcd = try EtcdClient(address: cluster.address)
        let generation = try #require(try etcd.get(StoreLayout.current)).value
        // At the key of the record added below: `lookup add` reads that record and the
        // tables other than records, never the other records.
        let key = StoreLayout.generations + String(decoding: generation, as: UTF8.self) + "/record/5001/198.19.1.77"
        try etcd.put(key, Data("{not json".utf8))
        let saved = Self.nvgre(["save"] + s)
        #expect(saved.status == 1 && saved.err.contains(key), "\(saved.err)")
        let before = try etcd.range(prefix: StoreLayout.root).kvs.map(\.key)
        let add = Self.nvgre(
            ["lookup", "add"] + s + ["5001", "198.19.1.77", "--pa", "198.18.0.2", "--mac", "02:00:00:00:01:77"])
        #expect(add.status == 1 && add.err.contains(key), "\(add.err)")
        #expect(try etcd.range(prefix: StoreLayout.root).kvs.map(\.key) == before)
        try etcd.put(StoreLayout.current, Data("a/b".utf8))
        let current = Self.nvgre(["save"] + s)
        #expect(current.status == 1 && current.err.contains(StoreLayout.current), "\(current.err)")
    }

    /// A policy of 3,000 records (more than 128 operations: written as a new generation) and
    /// one of 2,000 applied alternately while a reader reads in a loop: the reader sees the
    /// one or the other whole, never a mix; the last writer's policy is what stays.
    @Test func aLargeApplyIsSeenWholeOrNotAtAll() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-gen")
        defer { cluster.down() }
        func policy(_ n: Int, pa: String) -> String {
            var text = """
                routingDomains:
                  - {id: 1, name: red}
                subnets:
                  - {vsid: 5001, routingDomain: red, prefixes: [10.0.0.0/8], gateways: [10.255.255.254], gatewayMAC: 02:00:00:00:ff:01}
                lookupRecords:

                """
            for i in 0..<n {
                text +=
                    "  - {vsid: 5001, customerAddress: 10.0.\(i / 250).\(i % 250 + 1), providerAddress: \(pa), mac: 02:00:00:00:00:01}\n"
            }
            return text
        }
        let big = policy(3000, pa: "198.18.0.1"), small = policy(2000, pa: "198.18.0.2")
        let first = Self.nvgre(["apply", "-j", "--store", cluster.address, "-"], stdin: big)
        try #require(first.status == 0, "\(first.err)")
        #expect((first.json as? [String: Any])?["newGeneration"] as? Bool == true)

        let store = PolicyStore(try EtcdClient(address: cluster.address))
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var seen: Set<String> = []
        nonisolated(unsafe) var readerError: String?
        nonisolated(unsafe) var stop = false
        Thread {
            while !stop {
                do {
                    let p = try store.read().shared
                    let pas = Set(p.lookupRecords.map { "\($0.providerAddress)" })
                    seen.insert("\(p.lookupRecords.count)@\(pas.sorted().joined(separator: ","))")
                } catch {
                    readerError = "\(error)"
                }
            }
            done.signal()
        }.start()
        for round in 0..<4 {
            let r = Self.nvgre(["apply", "--store", cluster.address, "-"], stdin: round % 2 == 0 ? small : big)
            #expect(r.status == 0, "\(r.err)")
        }
        stop = true
        done.wait()
        #expect(readerError == nil, "\(readerError ?? "")")
        #expect(seen.isSubset(of: ["3000@198.18.0.1", "2000@198.18.0.2"]), "a reader saw \(seen)")
        #expect(seen.count == 2, "the reader saw only \(seen)")
        #expect(try store.read().shared.lookupRecords.count == 3000)
        // Old generations are gone: one generation's keys, plus current and edited.
        let keys = try EtcdClient(address: cluster.address).range(prefix: StoreLayout.root).kvs
        #expect(keys.count == 3000 + 2 + 2, "\(keys.count) keys in the store")
    }
}

/// `nvgre migrate` on the store: each step in order changes exactly its part, and every
/// wrong request is refused by name with the store unchanged.
@Suite(.serialized)
struct MigrateCLITests {
    @Test func theStepsChangeTheStoreInOrderAndWrongRequestsChangeNothing() throws {
        let cluster = try EtcdCluster(prefix: LabNetwork.runPrefix + "-migrate")
        defer { cluster.down() }
        let s = ["--store", cluster.address]
        for (host, file) in [("A", "host-a.yaml"), ("C", "host-c.yaml")] {
            let r = StoreCLITests.nvgre(
                ["apply"] + s + ["--host", host, StoreCLITests.example("tenants.yaml"), StoreCLITests.example(file)])
            try #require(r.status == 0, "\(r.err)")
        }
        let store = PolicyStore(try EtcdClient(address: cluster.address))
        func migrate(_ extra: [String]) -> CLIResult { StoreCLITests.nvgre(["migrate"] + s + extra) }
        let revision = try store.read().revision
        for (args, field) in [
            (["red9", "--from", "A", "--to", "C"], "port"),
            (["red1", "--from", "A", "--to", "Z"], "--to"),
            (["red1", "--from", "Q", "--to", "C"], "--from"),
            (["red1", "--from", "A", "--to", "A"], "--to"),
            (["red1", "--from", "A", "--to", "C", "--step", "later"], "--step"),
            (["red1", "--from", "A", "--to", "C", "--step", "switch"], "--step"),
            (["red1", "--from", "A", "--to", "C", "--step", "finish"], "--step"),
            (["red1", "--from", "A b", "--to", "C"], "--from")
        ] {
            let r = migrate(args)
            #expect(r.status == 2 && r.err.contains(field), "migrate \(args): \(r.status) \(r.err)")
        }
        let none = StoreCLITests.nvgre(["migrate", "red1", "--from", "A", "--to", "C"])
        #expect(none.status == 2 && none.err.contains("--store"), "\(none.err)")
        #expect(try store.read().revision == revision, "a refused migration wrote to the store")

        func port(_ host: String) throws -> VMPort? {
            try store.read().hosts[host]?.ports.first { $0.interface == "red1" }
        }
        func pa() throws -> Set<String> {
            Set(
                try store.read().shared.lookupRecords.filter {
                    $0.vsid == 5001 && ["198.19.1.1", "2001:db8:19:1::1"].contains($0.customerAddress.description)
                }.map(\.providerAddress.description))
        }
        #expect(migrate(["red1", "--from", "A", "--to", "C", "--step", "prepare"]).status == 0)
        #expect(try port("C")?.moving == true && port("A")?.moving == false && pa() == ["198.18.0.1"])
        #expect(migrate(["red1", "--from", "A", "--to", "C", "--step", "switch"]).status == 0)
        #expect(try port("C")?.moving == true && port("A")?.moving == true && pa() == ["198.18.0.4"])
        let finished = migrate(["-j", "red1", "--from", "A", "--to", "C", "--step", "finish"])
        #expect(finished.status == 0 && finished.out.contains("\"finish\""), "\(finished.out)")
        #expect(try port("C")?.moving == false && port("A") == nil && pa() == ["198.18.0.4"])
        // And back in one command: all three steps.
        let back = migrate(["red1", "--from", "C", "--to", "A"])
        #expect(back.status == 0 && back.out.split(separator: "\n").count == 3, "\(back.out)")
        #expect(try port("A")?.moving == false && port("C") == nil && pa() == ["198.18.0.1"])
    }
}
