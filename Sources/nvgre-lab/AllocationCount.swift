import Foundation
import NvgreLab

/// Heap allocations a running process makes, counted by uprobes on libc's allocator entry
/// points (`perf probe`, then `perf stat -p`): the real forwarding process under a live
/// load, not a model of it. The probes exist only while `count` runs.
enum AllocationCount {
    static let functions = ["malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc"]

    /// The libc the processes here load.
    static func libc() throws -> String {
        for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        where FileManager.default.fileExists(atPath: path) {
            return path
        }
        throw ShellErrorText("no libc.so.6 found to probe")
    }

    /// The threads of `pid` whose name starts with `prefix`.
    static func threads(of pid: pid_t, named prefix: String) -> [String] {
        let dir = "/proc/\(pid)/task"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { tid in
            ((try? String(contentsOfFile: "\(dir)/\(tid)/comm", encoding: .utf8)) ?? "").hasPrefix(prefix)
        }
    }

    /// Allocations the threads `tids` made while `during` ran (with half a second before it,
    /// in which they idle).
    static func count(threads tids: [String], during: () throws -> Void) throws -> Double {
        let lib = try libc()
        let group = "nvbench\(getpid())"
        for f in functions {
            let r = try Spawn.run(["/usr/bin/perf", "probe", "-q", "-x", lib, "-a", "\(group):\(f)=\(f)"])
            guard r.status == 0 else { throw ShellErrorText("perf probe \(f) in \(lib): \(r.output)") }
        }
        defer { _ = try? Spawn.run(["/usr/bin/perf", "probe", "-q", "-d", "\(group):*"]) }
        let out = NSTemporaryDirectory() + "\(group).perf-stat"
        let log = NSTemporaryDirectory() + "\(group).log"
        defer {
            unlink(out)
            unlink(log)
        }
        let events = functions.map { "\(group):\($0)" }.joined(separator: ",")
        let perf = try Spawn.start(
            ["/usr/bin/perf", "stat", "-x", ",", "-e", events, "-t", tids.joined(separator: ","), "-o", out],
            output: log, detached: false, resetSignals: true)
        usleep(500_000)
        try during()
        kill(perf, SIGINT)  // perf stat writes its counts when interrupted
        var status: Int32 = 0
        for _ in 0..<500 where waitpid(perf, &status, WNOHANG) != perf { usleep(20_000) }
        Spawn.stop(perf)  // gone by now, or stuck
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        // CSV lines: count,unit,event,... ("<not counted>": the function never ran).
        let counts = text.split(separator: "\n").filter { $0.contains(group) }.map { line -> Double in
            let first = line.split(separator: ",", omittingEmptySubsequences: false).first ?? ""
            return first == "<not counted>" ? 0 : Double(first) ?? .nan
        }
        guard counts.count == functions.count, !counts.contains(where: \.isNaN) else {
            throw ShellErrorText(
                "perf stat counted no allocations: \(text) \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")"
            )
        }
        return counts.reduce(0, +)
    }
}

extension LiveBench {
    /// Heap allocations per frame delivered by `path`'s forwarding threads (a userspace
    /// agent's lanes, housekeeping included; not its other threads, which write counters
    /// and answer the CLI), on `cpus`, over one trial of `frames` frames.
    func allocationsPerFrame(_ path: Path, cpus: [Int], frames: UInt32) throws -> BenchRow {
        guard let pid = path.processes.first else { throw ShellErrorText("\(path.name) has no process to count") }
        let lanes = AllocationCount.threads(of: pid, named: "nvgre-lane")
        guard !lanes.isEmpty else { throw ShellErrorText("\(path.name): no thread named nvgre-lane* in \(pid)") }
        try attachSink(path)
        try live.resetSink()
        let allocations = try AllocationCount.count(threads: lanes) {
            _ = try live.send(
                path.frame, namespace: path.from.ns, interface: path.from.interface, cpus: cpus,
                countPerCPU: frames / UInt32(cpus.count))
        }
        let delivered = Double(live.sinkCount)
        guard delivered > 0 else { throw ShellErrorText("\(path.name): no frame delivered while counting allocations") }
        return .figure(
            "userspace data path: heap allocations per forwarded frame in the forwarding threads (uprobes on libc's allocator, one trial)",
            path.name, allocations / delivered, "allocs/frame",
            details: ["allocations": allocations, "framesDelivered": delivered, "threads": Double(lanes.count)])
    }
}
