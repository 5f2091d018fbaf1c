import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire
import Testing

/// `nvgre upgrade` on running hosts (issue 21): while UDP streams run both ways between
/// Red's VMs on A and B (through A's and B's encap and decap), both hosts switch to a second
/// build of the programs and back (A ten times, B once): every datagram sent arrives.
@Suite(.serialized)
struct UpgradeTests {
    /// The other builds `make bpf` writes beside the embedded object.
    static func object(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/CNvgre/generated/\(name)").path
    }

    @Test func upgradesUnderLoadLoseNoFrame() throws {
        let lab = try startedLab("upgrade")
        let build2 = Self.object("nvgre-build2.bpf.o")
        try #require(FileManager.default.fileExists(atPath: build2), "make bpf writes \(build2)")
        // Neighbors resolved first (the VMs' ARP, the hosts' underlay): the streams then
        // meet nothing but the programs.
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 2, interval: 0.2) == 2)
        #expect(Traffic.ping(from: lab.ns(redB), to: redA.ip4, count: 2, interval: 0.2) == 2)
        let linksBefore = try programsOfLinks(lab)

        let streams = try [
            UDPStream(from: lab.ns(redA), to: lab.ns(redB), address: redB.ip4, port: 7101),
            UDPStream(from: lab.ns(redB), to: lab.ns(redA), address: redA.ip4, port: 7102)
        ]
        for s in streams { s.start() }
        usleep(200_000)
        var switched = 0
        // A ten times there and back (its encap and decap carry both streams), B once.
        for round in 0..<10 {
            for (object, build) in [(build2, 2), (nil, 1)] {
                for h in round == 0 ? [hostA, hostB] : [hostA] {
                    let r = try lab.cli(h, ["-j", "upgrade"] + (object.map { ["--object", $0] } ?? []))
                    #expect(r.status == 0, "round \(round) on \(h.name): \(r.output)")
                    let json = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
                    #expect(json?["toBuild"] as? Int == build, "\(r.output)")
                    switched += (json?["links"] as? [Any])?.count ?? 0
                }
            }
        }
        usleep(200_000)
        for s in streams { s.stop() }
        for (s, name) in zip(streams, ["A to B", "B to A"]) {
            print("upgrade under load, \(name): \(s.sent) datagrams sent, \(s.received) received")
            #expect(s.sent > 1000, "\(name): the load was too small (\(s.sent))")
            #expect(s.received == s.sent, "\(name): \(s.sent - s.received) of \(s.sent) datagrams lost")
        }
        print("22 upgrades switched \(switched) links")
        // Every link of A and B now runs another program than before (a new load each time).
        let linksAfter = try programsOfLinks(lab)
        let changed = linksAfter.filter { linksBefore[$0.key] != nil && linksBefore[$0.key] != $0.value }
        #expect(
            !linksAfter.isEmpty && changed.count == linksAfter.count && switched >= 20 * linksAfter.count / 2,
            "\(linksBefore) \(linksAfter)")

        // Another ABI, whose config map is wider, is refused naming the map, and changes nothing.
        let refused = try lab.cli(hostA, ["upgrade", "--object", Self.object("nvgre-abi99.bpf.o")])
        #expect(
            refused.status == 1 && refused.output.contains("uses ABI 99")
                && refused.output.contains("laid out differently: config (value 48 -> 56 bytes)"), "\(refused.output)")
        #expect(try programsOfLinks(lab) == linksAfter)
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 2, interval: 0.2) == 2)
    }

    /// Link id -> program id of every link pinned by A's and B's instances, as bpftool
    /// reads them.
    func programsOfLinks(_ lab: DemoLab) throws -> [Int: Int] {
        var map: [Int: Int] = [:]
        for h in [hostA, hostB] {
            let dir = "/sys/fs/bpf/\(lab.instance(h))"
            for pin in try FileManager.default.contentsOfDirectory(atPath: dir) where pin.contains("link_") {
                let out = try sh("bpftool -j link show pinned \(dir)/\(pin)")
                let link = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
                if let id = link?["id"] as? Int, let prog = link?["prog_id"] as? Int { map[id] = prog }
            }
        }
        return map
    }
}

/// kill -9 of the agents and of the gateway under load (issue 21): the fast path and the
/// gateway's offloaded flows need no process, so nothing is lost while they are dead; the
/// restarted gateway takes its flows up from the maps without a second NAT port.
@Suite(.serialized)
struct KillUnderLoadTests {
    @Test func killingTheAgentsAndTheGatewayLosesNothing() throws {
        let lab = try startedLab("killload")
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 2, interval: 0.2) == 2)
        #expect(Traffic.ping(from: lab.ns(redB), to: redA.ip4, count: 2, interval: 0.2) == 2)
        // A Red VM's UDP to X through G's NAT: its first datagram makes the flow (userspace),
        // the gateway offloads it, the rest go by the maps.
        let toX = try UDPStream(from: lab.ns(redA), to: lab.outside, address: DemoPlan.x4, port: 7103, answerOnce: true)
        let streams = try [
            UDPStream(from: lab.ns(redA), to: lab.ns(redB), address: redB.ip4, port: 7101),
            UDPStream(from: lab.ns(redB), to: lab.ns(redA), address: redA.ip4, port: 7102), toX
        ]
        for s in streams { s.start() }
        // X answers the first datagram: the flow was seen both ways, and G offloads it.
        var before = try lab.gatewayCounters()
        for _ in 0..<40 where (before["flows-offloaded"] ?? 0) == 0 {
            usleep(50_000)
            before = try lab.gatewayCounters()
        }
        #expect(before["flows"] == 1 && (before["flows-offloaded"] ?? 0) >= 1, "\(before)")

        lab.killAgent(hostA)
        lab.killAgent(hostB)
        lab.killGateway()
        usleep(1_000_000)  // 10,000 datagrams with no process but the kernel's
        try lab.restartAgent(hostA)
        try lab.restartAgent(hostB)
        try lab.startGateway()
        usleep(500_000)
        for s in streams { s.stop() }

        for (s, name) in zip(streams, ["A to B", "B to A", "A to X through G"]) {
            print("kill -9 under load, \(name): \(s.sent) datagrams sent, \(s.received) received")
            #expect(s.sent > 2000, "\(name): the load was too small (\(s.sent))")
            #expect(s.received == s.sent, "\(name): \(s.sent - s.received) of \(s.sent) datagrams lost")
        }
        let log = (try? String(contentsOfFile: lab.gatewayLog, encoding: .utf8)) ?? ""
        #expect(log.contains("1 flows found in the maps"), "\(log)")
        let after = try lab.gatewayCounters()
        #expect(after["flows"] == 1, "the restarted gateway holds \(after["flows"] ?? 0) flows: \(after)")
    }
}

/// Numbered UDP datagrams from one namespace to another at a steady pace (5,000 a second),
/// counted where they arrive; with `answerOnce`, the first one is sent back (a flow seen
/// both ways, which a NAT gateway offloads).
final class UDPStream: @unchecked Sendable {
    private let tx: Int32, rx: Int32
    private let destination: sockaddr_in
    private let lock = NSLock()
    private var sending = true, receiving = true
    private var sentCount = 0, receivedCount = 0
    private let done = DispatchGroup()

    var sent: Int { lock.withLock { sentCount } }
    var received: Int { lock.withLock { receivedCount } }

    private let answerOnce: Bool

    init(from source: String, to sink: String, address: IPAddress, port: UInt16, answerOnce: Bool = false) throws {
        self.answerOnce = answerOnce
        let tx = try NetworkNamespace.run(in: source) { socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0) }
        let rx = try NetworkNamespace.run(in: sink) { socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0) }
        (self.tx, self.rx) = (tx, rx)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = port.bigEndian
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(rx, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard tx >= 0, rx >= 0, bound == 0 else { throw DatapathError("open the UDP stream's sockets", errno: errno) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var dst = sockaddr_in()
        dst.sin_family = sa_family_t(AF_INET)
        dst.sin_port = port.bigEndian
        dst.sin_addr.s_addr = address.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        destination = dst
    }

    deinit {
        close(tx)
        close(rx)
    }

    func start() {
        done.enter()
        Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 64)
            var answered = !answerOnce
            var from = sockaddr_storage()
            var fromLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            while lock.withLock({ receiving }) {
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(rx, &buf, buf.count, 0, $0, &fromLength)
                    }
                }
                guard n > 0 else { continue }
                lock.withLock { receivedCount += 1 }
                if !answered {
                    answered = true
                    _ = withUnsafePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(rx, buf, n, 0, $0, fromLength) }
                    }
                }
            }
            done.leave()
        }.start()
        done.enter()
        Thread { [self] in
            var dst = destination
            var seq: UInt32 = 0
            while lock.withLock({ sending }) {
                seq += 1
                let n = withUnsafeBytes(of: seq.bigEndian) { payload in
                    withUnsafePointer(to: &dst) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(
                                tx, payload.baseAddress, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)
                            )
                        }
                    }
                }
                if n > 0 { lock.withLock { sentCount += 1 } }
                usleep(200)
            }
            done.leave()
        }.start()
    }

    /// Stops sending, waits for what is on its way, stops counting.
    func stop() {
        lock.withLock { sending = false }
        usleep(500_000)
        lock.withLock { receiving = false }
        done.wait()
    }
}
