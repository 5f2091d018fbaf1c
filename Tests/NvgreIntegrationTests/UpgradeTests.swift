import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire
import Testing

/// `nvgre upgrade` on running hosts (issue 21): while UDP streams run both ways between
/// Red's VMs on A and B (through A's and B's encap and decap), both hosts switch to a second
/// build of the programs and back, ten times: every datagram sent arrives.
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
        let linksBefore = try programsOfLinks()

        let streams = try [
            UDPStream(from: lab.ns(redA), to: lab.ns(redB), address: redB.ip4, port: 7101),
            UDPStream(from: lab.ns(redB), to: lab.ns(redA), address: redA.ip4, port: 7102)
        ]
        for s in streams { s.start() }
        usleep(200_000)
        var switched = 0
        for round in 0..<10 {
            for (object, build) in [(build2, 2), (nil, 1)] {
                for h in [hostA, hostB] {
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
        print("40 upgrades switched \(switched) links")
        // Every link of A and B now runs another program than before (a new load each
        // time); G's were left alone.
        let linksAfter = try programsOfLinks()
        let changed = linksAfter.filter { linksBefore[$0.key] != nil && linksBefore[$0.key] != $0.value }
        #expect(
            linksAfter.count == linksBefore.count && changed.count * 40 == switched * 2, "\(linksBefore) \(linksAfter)")

        // Another ABI is refused and changes nothing.
        let refused = try lab.cli(hostA, ["upgrade", "--object", Self.object("nvgre-abi99.bpf.o")])
        #expect(refused.status == 1 && refused.output.contains("uses ABI 99"), "\(refused.output)")
        #expect(try programsOfLinks() == linksAfter)
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 2, interval: 0.2) == 2)
    }

    /// Link id -> program id of every XDP and tcx link, as bpftool lists them.
    func programsOfLinks() throws -> [Int: Int] {
        let out = try sh("bpftool -j link show")
        let links = (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]) ?? []
        var map: [Int: Int] = [:]
        for l in links where ["xdp", "tcx"].contains(l["type"] as? String ?? "") || l["type"] as? Int == 11 {
            if let id = l["id"] as? Int, let prog = l["prog_id"] as? Int { map[id] = prog }
        }
        return map
    }
}

/// Numbered UDP datagrams from one namespace to another at a steady pace (5,000 a second),
/// counted where they arrive.
final class UDPStream: @unchecked Sendable {
    private let tx: Int32, rx: Int32
    private let destination: sockaddr_in
    private let lock = NSLock()
    private var sending = true, receiving = true
    private var sentCount = 0, receivedCount = 0
    private let done = DispatchGroup()

    var sent: Int { lock.withLock { sentCount } }
    var received: Int { lock.withLock { receivedCount } }

    init(from source: String, to sink: String, address: IPAddress, port: UInt16) throws {
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
            while lock.withLock({ receiving }) {
                if recv(rx, &buf, buf.count, 0) > 0 { lock.withLock { receivedCount += 1 } }
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
