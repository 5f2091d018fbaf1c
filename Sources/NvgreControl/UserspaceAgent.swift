import CNvgre
import Foundation
import NvgreDatapath
import NvgrePolicy
import NvgreUserspace
import NvgreUserspaceIO

/// `nvgre agent` on a userspace instance: the forwarding loop on the stored policy, which it
/// reads again within a second of a change (an `apply` writes it in one rename), and the
/// counters written to the state directory twice a second for `nvgre stats`. It exits when
/// the instance goes down (its state directory disappears).
public enum UserspaceAgent {
    public static func run(_ instance: UserspaceInstance, log: (String) -> Void) throws {
        // Every start is counted: after a crash the counters start again from zero, and
        // `stats` says since when and how many times the agent started, so a gap shows.
        let startsPath = "\(instance.stateDirectory)/agent.starts"
        let starts =
            (Int(
                (try? String(contentsOfFile: startsPath, encoding: .utf8))?.trimmingCharacters(
                    in: .whitespacesAndNewlines) ?? "") ?? 0) + 1
        try Files.replace(startsPath, with: "\(starts)\n")
        let since = Date()
        var policyStamp = stamp(instance.policyPath)
        var compiled = try instance.compile(try instance.storedPolicy())
        var forwarder = try start(compiled, instance)
        var loop = Loop(forwarder)
        log(
            "agent of userspace instance \(instance.name): forwarding on \(instance.uplink) and \(ports(compiled).count) "
                + "ports"
                + (starts > 1 ? " (start \(starts): counters from zero; frames during the gap were not forwarded)" : "")
        )
        var lastCounters = Date.distantPast
        while FileManager.default.fileExists(atPath: instance.stateDirectory) {
            usleep(200_000)
            let now = stamp(instance.policyPath)
            if now != policyStamp {
                policyStamp = now
                do {
                    let next = try instance.compile(try instance.storedPolicy())
                    if ports(next) == ports(compiled) {
                        forwarder.setTables(next.decisionTables)
                    } else {
                        // Ports came or went: new rings (frames meanwhile wait in the kernel's queues).
                        loop.stop()
                        forwarder = try start(next, instance)
                        loop = Loop(forwarder)
                    }
                    compiled = next
                    log(
                        "policy reloaded: \(next.images[.lookups]?.count ?? 0) lookup records, \(ports(next).count) ports"
                    )
                } catch {
                    log("policy not reloaded: \(error)")
                }
            }
            if Date().timeIntervalSince(lastCounters) >= 0.5 {
                writeCounters(
                    forwarder.counterSnapshot(), compiled, agent: (starts, since), to: instance.countersPath)
                lastCounters = Date()
            }
        }
        loop.stop()
        log("instance \(instance.name) is down: stopping")
    }

    static func stamp(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0
            ? Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec) ^ Int(st.st_ino) : 0
    }

    static func ports(_ c: CompiledPolicy) -> [UInt32] {
        (c.images[.ports]?.entries.keys.map { $0.load(as: UInt32.self) } ?? []).sorted()
    }

    static func start(_ c: CompiledPolicy, _ instance: UserspaceInstance) throws -> UserspaceForwarder {
        guard let up = existingInterfaceIndex(instance.uplink) else {
            throw ControlError("the uplink \(instance.uplink) is gone", hint: nil)
        }
        return try UserspaceForwarder(tables: c.decisionTables, uplinkIfindex: up, portIfindexes: ports(c))
    }

    /// The forwarding loop on its own thread.
    final class Loop: @unchecked Sendable {
        private let lock = NSLock()
        private var stopping = false
        private let done = DispatchSemaphore(value: 0)

        init(_ forwarder: UserspaceForwarder) {
            Thread {
                forwarder.run { self.isStopping }
                self.done.signal()
            }.start()
        }

        var isStopping: Bool {
            lock.lock()
            defer { lock.unlock() }
            return stopping
        }

        func stop() {
            lock.lock()
            stopping = true
            lock.unlock()
            done.wait()
        }
    }

    /// The counters as `nvgre -j stats` shapes them: per VSID, drops and exceptions by name.
    static func writeCounters(
        _ counters: [Counter: UInt64], _ c: CompiledPolicy, agent: (starts: Int, since: Date), to path: String
    ) {
        var vsidOfSlot: [UInt32: UInt32] = [:]
        for (k, v) in c.images[.subnets]?.entries ?? [:] {
            vsidOfSlot[v.load(as: nv_subnet.self).stats_slot] = k.load(as: UInt32.self)
        }
        let counterNames = ["encap", "decap", "local", "routed", "exception", "flood", "flood-copies"]
        var vsids: [UInt32: [String: Any]] = [:]
        var drops: [String: Any] = [:], exceptions: [String: Any] = [:]
        for (r, name) in ReasonNames.drops { drops[name] = ["packets": counters[.drop(r)] ?? 0] }
        for (r, name) in ReasonNames.exceptions { exceptions[name] = ["packets": counters[.exception(r)] ?? 0] }
        for vsid in vsidOfSlot.values { vsids[vsid] = ["vsid": vsid] }
        for (c, n) in counters {
            guard case let .vsid(slot, counter) = c, let vsid = vsidOfSlot[slot] else { continue }
            vsids[vsid]?[counterNames[Int(counter.rawValue)]] = ["packets": n]
        }
        let json: [String: Any] = [
            "datapath": "userspace", "vsids": vsids.keys.sorted().map { vsids[$0]! }, "drops": drops,
            "exceptions": exceptions,
            "agent": ["starts": agent.starts, "countingSince": ISO8601DateFormatter().string(from: agent.since)]
        ]
        if let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]),
            let text = String(data: data, encoding: .utf8)
        {
            try? Files.replace(path, with: text + "\n")
        }
    }
}
