import Foundation
import NvgreLab
import NvgreWire
import Testing

/// `nvgre agent --metrics` scraped by a real Prometheus server (Debian's) inside host A's
/// namespace, on loopback; every value it stored compared with `nvgre stats -j` read at the
/// same moment. The gateway's endpoint is read directly and compared the same way.
@Suite(.serialized)
struct MetricsTests {
    static let port = 9417

    @Test func prometheusScrapesTheAgentAndAgreesWithStats() throws {
        let lab = DemoLab(net: LabNetwork(tag: "metrics"), underlay: .v4)
        // On every address of host A's namespace, its provider address included, as an operator
        // exposing it to a monitoring network would: still out of every tenant's reach.
        lab.agentArguments = ["--metrics", "0.0.0.0:\(Self.port)", "--metrics-vsids", "1"]
        // ICMP flows kept past the test's length, however slow the machine.
        lab.gatewayArguments = ["--metrics", "127.0.0.1:\(Self.port)", "--icmp", "600"]
        try lab.build()
        try lab.start()

        // Traffic of every kind: between VMs, through the gateway's NAT, and a frame from a
        // VM with a MAC address not its own (dropped, counted).
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 3) == 3)
        #expect(Traffic.ping(from: lab.ns(redA), to: DemoPlan.x4, count: 2) == 2)
        let spoofed = Ethernet.frame(
            dst: redB.mac, src: "02:66:66:66:66:66", type: .ipv4,
            payload: IPPacket.build(src: redA.ip4, dst: redB.ip4, proto: 17, payload: [UInt8](repeating: 0, count: 16)))
        try Traffic.sendFrames([spoofed, spoofed], interface: "eth0", in: lab.ns(redA))

        // A tenant's VM, on the same host and on another, tries the host's metrics endpoint
        // at its provider address: the fast path keeps it from the infrastructure.
        for vm in [redA, redB, blueA] {
            #expect(
                Traffic.connectSeconds(from: lab.ns(vm), to: hostA.pa4, port: UInt16(Self.port), timeout: 1) == nil,
                "VM \(vm.name) on \(vm.host) reached host A's metrics endpoint")
        }
        let reachable = Traffic.connectSeconds(
            from: lab.ns(hostB), to: hostA.pa4, port: UInt16(Self.port), timeout: 2)
        #expect(reachable != nil, "the provider network reaches it (the control test)")

        let prometheus = try PrometheusServer(in: lab.ns(hostA), scraping: "127.0.0.1:\(Self.port)", lab: lab)
        defer { prometheus.stop() }

        // Counters move by themselves now and then (a VM's own IPv6 chatter): compare a scrape
        // taken between two equal readings of `nvgre stats -j`.
        var compared = false
        for _ in 0..<20 where !compared {
            let before = try lab.counters(hostA)
            let asked = Date().timeIntervalSince1970
            try prometheus.waitForScrape(after: asked)
            let drops = try prometheus.query("nvgre_drops_total", by: "reason")
            let exceptions = try prometheus.query("nvgre_exceptions_total", by: "reason")
            let paths = try prometheus.query("nvgre_packets_total", by: "path")
            let perVSID = try prometheus.query("nvgre_vsid_packets_total", by: "vsid", "path")
            let omitted = try prometheus.query("nvgre_vsid_series_omitted", by: "__name__")
            let after = try lab.counters(hostA)
            guard before.drops == after.drops, before.exceptions == after.exceptions, before.vsids == after.vsids
            else { continue }
            compared = true

            #expect((after.drops["source-mac-spoofed"] ?? 0) >= 2, "the spoofed frames were counted")
            for (reason, n) in after.drops { #expect(drops[reason] == Double(n), "drops \(reason)") }
            #expect(drops.count == after.drops.count, "one series per drop reason")
            for (reason, n) in after.exceptions { #expect(exceptions[reason] == Double(n), "exceptions \(reason)") }
            var sums: [String: Int] = [:]
            for (_, counters) in after.vsids { for (path, n) in counters { sums[path, default: 0] += n } }
            #expect((sums["encap"] ?? 0) >= 3 && (sums["decap"] ?? 0) >= 3)
            for (path, n) in sums { #expect(paths[path] == Double(n), "packets on path \(path)") }
            // Per-VSID series: opt-in, capped at one VSID (the lowest), the rest counted as omitted.
            let lowest = try #require(after.vsids.keys.min())
            #expect(Set(perVSID.keys.map { $0.split(separator: " ")[0] }) == ["\(lowest)"])
            for (path, n) in after.vsids[lowest] ?? [:] {
                #expect(perVSID["\(lowest) \(path)"] == Double(n), "vsid \(lowest) \(path)")
            }
            #expect(omitted["nvgre_vsid_series_omitted"] == Double(after.vsids.count - 1))
        }
        #expect(compared, "stats never held still across a scrape")

        let entries = try prometheus.query("nvgre_map_entries", by: "map")
        let capacity = try prometheus.query("nvgre_map_capacity_entries", by: "map")
        #expect((entries["lookups"] ?? 0) > 0 && (entries["lookups"] ?? 0) <= (capacity["lookups"] ?? 0))
        // The rate limiter as `nvgre up` set it (the lab keeps the defaults).
        let limits = try prometheus.query("nvgre_exception_rate_limit_per_second", by: "scope")
        #expect(limits == ["domain": 2000, "port": 500, "flood": 200], "\(limits)")

        // The gateway's endpoint, read directly in G's namespace: its events and NAT flows.
        let gateway = try lab.gatewayCounters()
        let text = try lab.net.exec(lab.ns(hostG), "curl -sf http://127.0.0.1:\(Self.port)/metrics")
        let scraped = PrometheusServer.samples(text)
        for (event, n) in gateway where event != "flows" && event != "flowsOffloaded" {
            #expect(scraped["nvgre_gateway_events_total{event=\"\(event)\"}"] == Double(n), "gateway \(event)")
        }
        let flows =
            (scraped["nvgre_nat_flows{state=\"offloaded\"}"] ?? -1)
            + (scraped["nvgre_nat_flows{state=\"userspace\"}"] ?? -1)
        #expect(flows == Double(gateway["flows"] ?? -1) && flows > 0, "NAT flows")
        #expect(scraped.keys.contains { $0.hasPrefix("nvgre_nat_ports_in_use{") }, "ports held by the flows")
        #expect(text.contains("# HELP nvgre_drops_total") && text.contains("# TYPE nvgre_drops_total counter"))
    }
}

extension MetricsTests {
    /// On the userspace data path the agent forwards and counts in its own memory; its
    /// endpoint serves what it last wrote for `nvgre stats` (twice a second), so the two agree
    /// once traffic stops.
    @Test func theUserspaceAgentServesTheSameCounters() throws {
        let lab = DemoLab(net: LabNetwork(tag: "umetrics"), underlay: .v4)
        lab.userspaceHosts = [hostA.name]
        lab.agentArguments = ["--metrics", "127.0.0.1:\(Self.port)"]
        try lab.build()
        try lab.start()
        #expect(Traffic.ping(from: lab.ns(redA), to: redB.ip4, count: 3) == 3)
        var agreed = false
        for _ in 0..<10 where !agreed {
            lab.settle(hostA)
            let before = try lab.counters(hostA)
            let text = try lab.net.exec(lab.ns(hostA), "curl -sf http://127.0.0.1:\(Self.port)/metrics")
            let after = try lab.counters(hostA)
            guard before.drops == after.drops, before.vsids == after.vsids else { continue }
            agreed = true
            let scraped = PrometheusServer.samples(text)
            #expect(
                scraped.contains { $0.key.hasPrefix("nvgre_build_info{") && $0.key.contains("datapath=\"userspace\"") })
            #expect(!scraped.keys.contains { $0.hasPrefix("nvgre_bytes_total") }, "the userspace path counts no bytes")
            for (reason, n) in after.drops {
                #expect(scraped["nvgre_drops_total{reason=\"\(reason)\"}"] == Double(n), "drops \(reason)")
            }
            var sums: [String: Int] = [:]
            for (_, counters) in after.vsids { for (path, n) in counters { sums[path, default: 0] += n } }
            #expect((sums["encap"] ?? 0) >= 3)
            for (path, n) in sums {
                #expect(scraped["nvgre_packets_total{path=\"\(path)\"}"] == Double(n), "packets on path \(path)")
            }
        }
        #expect(agreed, "the counters never held still")
    }
}

/// A Prometheus server in a namespace, scraping one target every second, its data in a
/// temporary folder; queried with its HTTP API through curl in the same namespace.
final class PrometheusServer {
    let ns: String
    let folder: String
    let pid: pid_t
    let net: LabNetwork
    static let listen = "127.0.0.1:9090"

    init(in ns: String, scraping target: String, lab: DemoLab) throws {
        self.ns = ns
        net = lab.net
        folder = NSTemporaryDirectory() + "\(lab.net.prefix)-prometheus"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: true)
        let config = """
            global:
              scrape_interval: 1s
              scrape_timeout: 900ms
            scrape_configs:
              - job_name: nvgre
                static_configs:
                  - targets: ['\(target)']
            """
        try config.write(toFile: folder + "/prometheus.yml", atomically: true, encoding: .utf8)
        pid = try Spawn.start(
            [
                "/usr/sbin/ip", "netns", "exec", ns, "/usr/bin/prometheus", "--config.file=\(folder)/prometheus.yml",
                "--storage.tsdb.path=\(folder)/data", "--web.listen-address=\(Self.listen)"
            ], output: folder + "/log", detached: false)
        try Spawn.waitForOutput(folder + "/log", containing: "Server is ready", within: 30, what: "Prometheus")
    }

    func stop() {
        Spawn.stop(pid)
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// The result vector of an instant query.
    func vector(_ query: String) throws -> [(labels: [String: String], value: Double)] {
        let r = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", ns, "/usr/bin/curl", "-sf", "-G", "--data-urlencode", "query=\(query)",
            "http://\(Self.listen)/api/v1/query"
        ])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
            let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]]
        else { throw ShellErrorText("Prometheus query \(query): \(r.output)") }
        return result.map { item in
            let value = (item["value"] as? [Any])?.last as? String
            return (item["metric"] as? [String: String] ?? [:], Double(value ?? "") ?? .nan)
        }
    }

    /// The query's series keyed by the given labels' values (joined by a space).
    func query(_ query: String, by labels: String...) throws -> [String: Double] {
        var out: [String: Double] = [:]
        for s in try vector(query) { out[labels.map { s.labels[$0] ?? "" }.joined(separator: " ")] = s.value }
        return out
    }

    /// Waits until the target was scraped after `time` (seconds since 1970), successfully.
    func waitForScrape(after time: Double) throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            let up = try vector("up{job=\"nvgre\"}").first?.value ?? 0
            let last = try vector("timestamp(up{job=\"nvgre\"})").first?.value ?? 0
            if up == 1 && last > time { return }
            usleep(200_000)
        }
        throw ShellErrorText("Prometheus did not scrape the target after \(time)")
    }

    /// A text-format page's samples by series ("name{labels}") .
    static func samples(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else {
                continue
            }
            out[String(line[..<space])] = v
        }
        return out
    }
}
