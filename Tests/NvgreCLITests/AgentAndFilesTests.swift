import Foundation
import NvgreLab
import Testing

/// `nvgre agent` (one per instance, gone with the instance) and `apply` of several files.
@Suite(.serialized)
struct AgentAndFilesTests {
    @Test func oneAgentPerInstanceAndItLeavesWithTheInstance() throws {
        let h = try CLIHost(tag: "agent")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        let log = h.temporaryPath("agent.log")
        let pid = try Spawn.start(
            [CLIHost.binary, "-n", h.ns, "--instance", h.instance, "agent"], output: log, detached: false)
        defer { Spawn.stop(pid) }
        let deadline = Date().addingTimeInterval(10)
        while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("handling exceptions"),
            Date() < deadline
        { usleep(20_000) }

        let second = h.run(["agent"])
        #expect(second.status == 1)
        #expect(
            second.err.contains("an agent for instance \(h.instance) is already running (pid \(pid))"), "\(second.err)")

        #expect(h.run(["down"]).status == 0)
        var status: Int32 = 0
        var exited = false
        for _ in 0..<150 where !exited {
            exited = waitpid(pid, &status, WNOHANG) == pid
            if !exited { usleep(20_000) }
        }
        #expect(exited, "the agent outlived its instance")
        #expect(
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains(
                "agent stopping (the instance went down)"))
    }

    /// Started as systemd starts it (standard output connected to the journal, whose device
    /// and inode JOURNAL_STREAM names), the agent begins each line with its syslog priority,
    /// which journald stores as the entry's level, and ends it with key=value metadata;
    /// --log-level leaves out what is below it. Elsewhere (an inherited JOURNAL_STREAM that
    /// names another file included) a line starts with the time and the level's name.
    @Test func theAgentLogsWithLevelsTheJournalReads() throws {
        let h = try CLIHost(tag: "journal")
        var runs = 0
        /// Runs an agent until `text` shows (or a second), checks it is the instance's agent,
        /// takes the instance down; its output. `journal`: JOURNAL_STREAM names the output file.
        func runAgent(journal: Bool?, _ arguments: [String], until text: String?) throws -> String {
            let up = h.run(["up", "--uplink", "ul"])
            #expect(up.status == 0, "\(up.err)")
            runs += 1
            let log = h.temporaryPath("agent\(runs).log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            var st = stat()
            stat(log, &st)
            let stream =
                journal.map { $0 ? "JOURNAL_STREAM=\(st.st_dev):\(st.st_ino)" : "JOURNAL_STREAM=\(st.st_dev):1" }
            let pid = try Spawn.start(
                ["/usr/bin/env"] + (stream.map { [$0] } ?? []) + [
                    CLIHost.binary, "-n", h.ns, "--instance", h.instance, "agent"
                ] + arguments, output: log, detached: false)
            defer { Spawn.stop(pid) }
            let deadline = Date().addingTimeInterval(10)
            while let text, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains(text),
                Date() < deadline
            { usleep(20_000) }
            if text == nil { usleep(1_000_000) }
            let second = h.run(["agent"])
            #expect(second.err.contains("already running (pid \(pid))"), "the agent runs: \(second.err)")
            #expect(h.run(["down"]).status == 0)
            var status: Int32 = 0
            for _ in 0..<150 where waitpid(pid, &status, WNOHANG) != pid { usleep(20_000) }
            return (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }

        let journal = try runAgent(journal: true, [], until: "handling exceptions")
        let lines = journal.split(separator: "\n")
        let started = lines.first { $0.contains("handling exceptions") } ?? ""
        #expect(started.hasPrefix("<6>agent for instance \(h.instance) on uplink ul"), "\(journal)")
        #expect(started.hasSuffix("datapath=xdp instance=\(h.instance)"), "\(journal)")
        #expect(lines.contains { $0.hasPrefix("<5>agent stopping (the instance went down)") }, "\(journal)")

        let quiet = try runAgent(journal: true, ["--log-level", "warning"], until: nil)
        #expect(!quiet.contains("<6>") && !quiet.contains("<5>"), "below warning: \(quiet)")

        for inherited in [nil, false] {
            let file = try runAgent(journal: inherited, [], until: "handling exceptions")
            let first = file.split(separator: "\n").first { $0.contains("handling exceptions") } ?? ""
            #expect(
                first.range(of: #"^\d\d:\d\d:\d\d\.\d{3} info agent for instance "#, options: .regularExpression)
                    != nil,
                "\(file)")
        }
    }

    /// The example split in two files (tenant tables, this host's PA and ports) applies to
    /// the same state as the whole file; a problem in one file names that file.
    @Test func severalFilesAreOnePolicy() throws {
        let h = try CLIHost(tag: "files")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        let lines = CLIHost.example.split(separator: "\n", omittingEmptySubsequences: false)
        let split = lines.firstIndex { $0.hasPrefix("providerAddresses:") }!
        let tenants = try h.file("tenants.yaml", lines[..<split].joined(separator: "\n") + "\n")
        let host = try h.file("host.yaml", lines[split...].joined(separator: "\n"))
        let applied = h.run(["apply", tenants, host, "-j"])
        #expect(applied.status == 0, "\(applied.err)")
        let whole = h.run(["apply", try h.file("whole.yaml", CLIHost.example), "-j"])
        #expect((whole.json as? [String: Any])?["changed"] as? Bool == false, "\(whole.out)")

        let bad = try h.file("bad.yaml", "providerAddresses:\n  - {address: 198.18.0.300, interface: ul}\n")
        let refused = h.run(["apply", tenants, bad])
        #expect(refused.status == 2)
        #expect(refused.err.contains("\(bad): providerAddresses[0].address: 198.18.0.300"), "\(refused.err)")
    }
}
