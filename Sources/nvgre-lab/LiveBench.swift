import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// Live 64-byte frames through veth pairs in namespaces. The generator (bpf/bench.bpf.c,
/// BPF_F_TEST_XDP_LIVE_FRAMES) sends a frame into a path from one thread pinned to each CPU
/// used; the sink program at the path's end counts arrivals; Mpps = counted / wall time.
/// A veth hands XDP frames to its peer's NAPI on the sending CPU (queue = CPU, veths have
/// one queue per CPU), so on one core the generator, the path and the sink share that core,
/// and on two cores each core carries its own copy of the whole path.
struct LiveBench {
    let live: LiveTraffic
    let quick: Bool
    /// With a directory, each one-core row runs one more trial of about 2 s under
    /// `perf record -a -g`, written there as ROW.perf.data (where the time goes).
    var perfDirectory: String? = nil

    /// A path under test: where the generator sends from and where the sink counts.
    struct Path {
        var name: String
        let frame: [UInt8]
        let from: (ns: String, interface: String)
        let sink: (ns: String, interface: String)
        var spread: LiveTraffic.Spread? = nil
        /// The path rewrites the frame in place: the generator restores it before each send.
        var restore = false
        /// Processes that forward on this path (a userspace datapath): confined, all their
        /// threads, to the CPUs the row measures, as the kernel's paths are by the generator.
        var processes: [pid_t] = []
    }

    var trials: Int { quick ? 3 : 5 }
    /// Wall time of one trial; the frame count is sized from a warm-up run to take this long.
    var trialSeconds: Double { quick ? 0.25 : 0.5 }

    func attachSink(_ path: Path) throws {
        try NetworkNamespace.run(in: path.sink.ns) {
            try attachXDPToInterface(
                programFD: live.sinkProgramFD, name: "nv_bench_sink", ifindex: try interfaceIndex(path.sink.interface))
        }
    }

    /// The median Mpps of several trials of `path` on `cpus`.
    func measure(_ path: Path, section: String, cpus: [Int]) throws -> BenchRow {
        try attachSink(path)
        for pid in path.processes {
            _ = try sh("taskset -a -cp \(cpus.map(String.init).joined(separator: ",")) \(pid) >/dev/null")
        }
        live.setSpread(path.spread)
        live.setRestore(path.restore ? path.frame : nil)
        defer {
            live.setSpread(nil)
            live.setRestore(nil)
        }
        func trial(perCPU: UInt32) throws -> (mpps: Double, delivered: UInt64, seconds: Double) {
            try live.resetSink()
            let seconds = try live.send(
                path.frame, namespace: path.from.ns, interface: path.from.interface,
                cpus: cpus, countPerCPU: perCPU)
            let delivered = live.sinkCount
            return (Double(delivered) / seconds / 1e6, delivered, seconds)
        }
        let warm = try trial(perCPU: 200_000)
        let perCPU = UInt32(min(max(warm.mpps * 1e6 * trialSeconds / Double(cpus.count), 100_000), 20_000_000))
        let runs = try (0..<trials).map { _ in try trial(perCPU: perCPU) }
        let mpps = runs.map(\.mpps).sorted()[runs.count / 2]
        let sent = Double(perCPU) * Double(cpus.count)
        let delivered = runs.map { Double($0.delivered) }.sorted()[runs.count / 2]
        var details: [String: Double] = [
            "cores": Double(cpus.count), "framesSentPerTrial": sent,
            "framesDeliveredMedian": delivered, "deliveredFraction": delivered / sent,
            "minMpps": runs.map(\.mpps).min()!, "maxMpps": runs.map(\.mpps).max()!
        ]
        for (i, r) in runs.enumerated() { details["trial\(i + 1)Mpps"] = r.mpps }
        let cores = cpus.count == 1 ? "1 core" : "\(cpus.count) cores"
        let name = "\(path.name), \(cores)"
        if let dir = perfDirectory, cpus.count == 1 {
            let file = dir + "/" + name.map { $0.isLetter || $0.isNumber ? $0 : "-" } + ".perf.data"
            let log = NSTemporaryDirectory() + "perf-record.log"
            let perf = try Spawn.start(
                ["/usr/bin/perf", "record", "-a", "-g", "-o", file], output: log, detached: false)
            usleep(500_000)
            _ = try trial(perCPU: UInt32(min(Double(perCPU) * 2 / trialSeconds, 50_000_000)))
            Spawn.stop(perf, within: 30)
            print("perf: \(file) (perf report -i '\(file)' --no-children --sort sym)")
        }
        return .rate(section, name, mpps: mpps, details: details)
    }
}

/// The UDP frames of the benchmarks: 64 bytes on the wire, that is 60 in memory plus the
/// FCS (IPv6 headers alone take 62).
enum BenchFrames {
    static func udp(
        srcMAC: MACAddress, dstMAC: MACAddress, src: IPAddress, dst: IPAddress, sport: UInt16 = 1000,
        dport: UInt16 = 2000
    ) -> [UInt8] {
        let headers = 14 + (src.family == .v4 ? 20 : 40) + 8
        return Ethernet.frame(
            dst: dstMAC, src: srcMAC, type: src.family == .v4 ? .ipv4 : .ipv6,
            payload: IPPacket.build(
                src: src, dst: dst, proto: IPProtocol.udp.rawValue,
                payload: UDP.datagram(
                    src: src, dst: dst, sport: sport, dport: dport,
                    payload: [UInt8](repeating: 0, count: max(0, 60 - headers)))))
    }

    /// The benchmarks' customer flow: vm1 (on the host under test) to vm2 (behind host B),
    /// and its reply.
    static let outbound = udp(
        srcMAC: BenchPlan.vm1.mac, dstMAC: BenchPlan.vm2.mac, src: BenchPlan.vm1.ip4, dst: BenchPlan.vm2.ip4)
    static let inbound = udp(
        srcMAC: BenchPlan.vm2.mac, dstMAC: BenchPlan.vm1.mac, src: BenchPlan.vm2.ip4, dst: BenchPlan.vm1.ip4,
        sport: 2000, dport: 1000)
}
