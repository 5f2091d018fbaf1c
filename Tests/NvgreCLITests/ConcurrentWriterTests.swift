import Foundation
import NvgreControl
import NvgrePolicy
import Testing

/// Writers of one instance started at once (issue 21): each pair of `nvgre` processes runs
/// together 20 times, and after every pair the live state must be one whole policy: the
/// last file applied, or every edit of both commands (a read-modify-write that lost the
/// other's change would show as a missing route or record).
@Suite(.serialized)
struct ConcurrentWriterTests {
    /// Runs two commands at once on `h` and returns both results.
    static func atOnce(_ h: CLIHost, _ a: [String], _ b: [String]) -> (CLIResult, CLIResult) {
        let results = UnsafeMutableBufferPointer<CLIResult>.allocate(capacity: 2)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            (results.baseAddress! + i).initialize(to: h.run(i == 0 ? a : b))
        }
        return (results[0], results[1])
    }

    /// The live policy as `save` writes it.
    static func live(_ h: CLIHost) throws -> Policy {
        let saved = h.run(["save", "--format", "json"])
        try #require(saved.status == 0, "\(saved.err)")
        return try PolicyDocument.decode(saved.out, validate: false)
    }

    static func records(_ p: Policy) -> Set<String> {
        Set(p.lookupRecords.map { "\($0.vsid) \($0.customerAddress) \($0.providerAddress)" })
    }

    static func routes(_ p: Policy) -> Set<String> { Set(p.customerRoutes.map { "\($0.prefix)" }) }

    /// The example with 190 more records in VSID 5002, all on provider address `pa`.
    static func exampleWith190Records(onProviderAddress pa: String) -> String {
        var text = CLIHost.example
        let marker = "lookupRecords:\n"
        var lines = ""
        for i in 10..<200 {
            lines +=
                "  - {vsid: 5002, customerAddress: 198.19.2.\(i), providerAddress: \(pa), "
                + "mac: \(String(format: "02:00:00:00:02:%02x", i))}\n"
        }
        text = text.replacingOccurrences(of: marker, with: marker + lines)
        return text
    }

    /// A host with an instance up and two files to apply, a and b: the example with 190 more
    /// records on 198.18.0.2, and on 198.18.0.3; with the records each makes live.
    static func hostWithTwoFiles(_ tag: String) throws -> (CLIHost, files: [String], records: [Set<String>]) {
        let h = try CLIHost(tag: tag)
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        let texts = ["198.18.0.2", "198.18.0.3"].map { Self.exampleWith190Records(onProviderAddress: $0) }
        let files = try [h.file("a.yaml", texts[0]), h.file("b.yaml", texts[1])]
        return (h, files, try texts.map { Self.records(try PolicyDocument.decode($0)) })
    }

    @Test func twoAppliesAtOnceLeaveOneWholeFile() throws {
        let (h, files, expected) = try Self.hostWithTwoFiles("writers")
        try #require(expected[0].count == 193 && expected[0].isDisjoint(with: expected[1].subtracting(expected[0])))
        var lastWon = [0, 0]
        for round in 0..<20 {
            let (a, b) = Self.atOnce(h, ["apply", files[0]], ["apply", files[1]])
            #expect(a.status == 0 && b.status == 0, "round \(round): \(a.err) \(b.err)")
            let now = Self.records(try Self.live(h))
            let which = expected.firstIndex(of: now)
            #expect(
                which != nil,
                "round \(round): the maps hold neither file: \(now.intersection(expected[0]).count) records of a, \(now.intersection(expected[1]).count) of b"
            )
            if let which { lastWon[which] += 1 }
        }
        print("20 pairs of applies at once: a applied last \(lastWon[0]) times, b \(lastWon[1]) times")
    }

    /// An apply and a single record's add at once: the record is added to the state before
    /// or after the apply, never into the middle of it.
    @Test func anAddAndAnApplyAtOnceSerialize() throws {
        let (h, files, expected) = try Self.hostWithTwoFiles("addapply")
        let added = "5002 198.19.2.250 198.18.0.4"
        try #require(h.run(["apply", files[0]]).status == 0)
        for round in 0..<20 {
            let target = (round + 1) % 2
            let (add, apply) = Self.atOnce(
                h, ["lookup", "add", "5002", "198.19.2.250", "--pa", "198.18.0.4", "--mac", "02:00:00:00:02:fa"],
                ["apply", files[target]])
            #expect(add.status == 0 && apply.status == 0, "round \(round): \(add.err) \(apply.err)")
            let now = Self.records(try Self.live(h))
            // Added first, the apply removed it; applied first, the record joined the file's.
            #expect(
                now == expected[target] || now == expected[target].union([added]),
                "round \(round): \(now.subtracting(expected[target]).count) beyond the file, \(expected[target].subtracting(now).count) missing"
            )
            if now.contains(added) {
                try #require(h.run(["lookup", "del", "5002", "198.19.2.250"]).status == 0)
            }
        }
    }

    /// Edits by object commands read the live policy, change it and apply it whole: two at
    /// once must both land (a lost update shows as a missing route or record).
    @Test func editsAtOnceAllLand() throws {
        let h = try CLIHost(tag: "edits")
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        try #require(h.run(["apply", try h.file("example.yaml", CLIHost.example)]).status == 0)
        let base = try Self.live(h)
        func route(_ n: Int) -> [String] { ["\(10 + n / 100).\(n % 100).0.0/16", "--domain", "red"] }
        func record(_ n: Int) -> [String] { ["5002", "198.19.2.\(10 + n)"] }
        var routes = Self.routes(base), records = Self.records(base)

        for round in 0..<20 {
            // A route and a record at once.
            let (r, l) = Self.atOnce(
                h, ["route", "add"] + route(round) + ["--via", "198.19.1.250"],
                ["lookup", "add"] + record(round) + ["--pa", "198.18.0.2", "--mac", "02:00:00:00:02:01"])
            // Two routes at once.
            let (r1, r2) = Self.atOnce(
                h, ["route", "add"] + route(100 + round) + ["--via", "198.19.1.250"],
                ["route", "add"] + route(200 + round) + ["--via", "198.19.1.250"])
            for c in [r, l, r1, r2] { #expect(c.status == 0, "round \(round): \(c.err)") }
            routes.formUnion([route(round)[0], route(100 + round)[0], route(200 + round)[0]])
            records.insert("5002 198.19.2.\(10 + round) 198.18.0.2")
            let now = try Self.live(h)
            #expect(
                Self.routes(now) == routes, "round \(round): routes \(Self.routes(now).symmetricDifference(routes))")
            #expect(
                Self.records(now) == records,
                "round \(round): records \(Self.records(now).symmetricDifference(records))")
        }
        for round in 0..<20 {
            // A record's and a route's delete at once.
            let (d, r) = Self.atOnce(
                h, ["lookup", "del"] + record(round), ["route", "del"] + route(round))
            #expect(d.status == 0 && r.status == 0, "round \(round): \(d.err) \(r.err)")
            routes.remove(route(round)[0])
            records.remove("5002 198.19.2.\(10 + round) 198.18.0.2")
            let now = try Self.live(h)
            #expect(Self.routes(now) == routes && Self.records(now) == records, "round \(round)")
        }
    }

    /// A writer that cannot get the turn in time fails, names who has it and changes
    /// nothing; a writer killed with the turn does not keep it.
    @Test func aWriterThatWaitsTooLongFailsCleanly() throws {
        let h = try CLIHost(tag: "turn")
        try #require(h.run(["up", "--uplink", "ul"]).status == 0)
        let example = try h.file("example.yaml", CLIHost.example)
        let turn = try #require(try WriterTurn.take(instance: h.instance, doing: "the concurrency test"))
        let started = Date()
        let waited = h.run(["apply", example], environment: [WriterTurn.waitVariable: "1"])
        let seconds = Date().timeIntervalSince(started)
        #expect(waited.status == 1, "\(waited.status) \(waited.err)")
        #expect(
            waited.err.contains("being changed by pid \(getpid()) (the concurrency test)")
                && waited.err.contains(WriterTurn.waitVariable), "\(waited.err)")
        #expect(seconds >= 1 && seconds < 5, "waited \(seconds) s")
        #expect(try Self.live(h).lookupRecords.isEmpty, "the apply changed the maps")
        // A dry run and the readers need no turn.
        #expect(h.run(["apply", "--dry-run", example]).status == 0)
        #expect(h.run(["show", "-j"]).status == 0)
        turn.release()
        #expect(h.run(["apply", example]).status == 0)
        let next = try #require(try WriterTurn.take(instance: h.instance, doing: "the test again"))
        #expect(next.previous == turn.number + 1, "the apply's turn was not counted: \(next.previous)")
        next.release()

        // A process killed while it has the turn: the kernel ends its lock with it.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        // One process: the shell takes the lock on fd 9 and becomes sleep, which keeps it.
        holder.arguments = [
            "-c", "exec 9>>\(Instance.stateRoot)/\(h.instance)/writer.lock && flock 9 && exec sleep 30"
        ]
        try holder.run()
        usleep(300_000)
        let blocked = h.run(["lookup", "del", "5001", "198.19.1.2"], environment: [WriterTurn.waitVariable: "0.2"])
        #expect(blocked.status == 1 && blocked.err.contains("being changed"), "\(blocked.err)")
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let after = h.run(["lookup", "del", "5001", "198.19.1.2"], environment: [WriterTurn.waitVariable: "2"])
        #expect(after.status == 0, "\(after.err)")
    }
}
