import Foundation
import NvgreLab
import Testing

/// `nvgre-lab bench --quick` (what `make bench QUICK=1` runs) proves the instrument works:
/// every row has its figure, the targets are computed, and the JSON and the chart are
/// written. How fast the rows are is not asserted. scripts/run-tests.sh runs this suite after
/// the others, so that its load does not slow their traffic and theirs does not skew it.
@Suite(.serialized)
struct QuickBenchTests {
    @Test func quickBenchReportsEveryFigure() throws {
        let dir = NSTemporaryDirectory() + "quick-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = dir + "/bench.json", chart = dir + "/bench.png"
        let r = try Spawn.run([builtBinary("nvgre-lab"), "bench", "--quick", "--json", json, "--chart", chart])
        try #require(r.status == 0, "nvgre-lab bench --quick failed: \(r.output)")

        let doc = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let rows = try #require(doc["rows"] as? [[String: Any]])
        func figure(_ name: String, _ key: String) -> Double? {
            rows.first { $0["name"] as? String == name }?[key] as? Double
        }
        let costs = [
            "bare XDP_PASS", "bare XDP_TX (MAC swap)", "bare tc (TC_ACT_OK)", "encap (from VM, IPv4 PA)",
            "encap, FIB asked per frame (no agent's next hop)", "decap (from fabric)",
            "local switch (from VM)",
            "routed 5001->5002, encap", "ARP reply (from VM)", "ARP reply (from the fabric, encapsulated back)",
            "exception to userspace (no record)"
        ]
        for name in costs { #expect((figure(name, "nsPerPacket") ?? 0) > 0, "\(name)") }
        let paths = [
            "bare XDP_TX reflector", "bare redirect, VM port to uplink (tc)", "bare redirect, uplink to VM port (XDP)",
            "nvgre encap path", "nvgre decap path", "kernel vxlan encap", "kernel vxlan decap"
        ]
        let coreCounts = ProcessInfo.processInfo.activeProcessorCount >= 2 ? ["1 core", "2 cores"] : ["1 core"]
        for path in paths {
            for cores in coreCounts {
                let name = "\(path), \(cores)"
                #expect((figure(name, "mpps") ?? 0) > 0, "\(name)")
                let delivered = rows.first { $0["name"] as? String == name }?["details"] as? [String: Any]
                #expect((delivered?["framesDeliveredMedian"] as? Double ?? 0) > 0, "\(name) delivered frames")
            }
        }
        // The userspace data path beside the kernel's vxlan and Open vSwitch's userspace datapath.
        for path in [
            "userspace encap path", "userspace decap path", "Open vSwitch userspace encap path",
            "Open vSwitch userspace decap path"
        ] {
            let name = "\(path) (userspace section), 1 core"
            #expect((figure(name, "mpps") ?? 0) > 0, "\(name)")
        }
        // The gateway: flow set-up through userspace against its exception baseline, and an
        // offloaded NAT flow both ways against the encap path (its frame restored as theirs).
        for name in [
            "new TCP flows set up through userspace (SYNs/s)",
            "baseline: exceptions handled by the gateway process, no flow set up (frames/s)"
        ] {
            #expect((figure(name, "value") ?? 0) > 0, "\(name)")
        }
        #expect((figure("new TCP flows set up through userspace (SYNs/s)", "ratio") ?? 0) > 0)
        for path in ["nvgre NAT out, offloaded (decap + NAT)", "nvgre NAT in, offloaded (NAT + encap)"] {
            for cores in coreCounts {
                let name = "\(path), \(cores)"
                #expect((figure(name, "mpps") ?? 0) > 0 && (figure(name, "ratio") ?? 0) > 0, "\(name)")
                #expect(
                    rows.first { $0["name"] as? String == name }?["baseline"] as? String
                        == "nvgre encap path, frame restored per send, \(cores)")
            }
        }
        for records in ["1,000", "100,000"] {
            #expect(
                (figure("nvgre encap, \(records) records at random, 1 core", "mpps") ?? 0) > 0, "\(records) records")
        }
        for name in [
            "nvgre apply, 100,000 records", "nvgre apply again (no change)", "nvgre lookup add (median)",
            "baseline: nvgre show domains", "kernel memory per lookup record",
            "nvgre apply --verify again (reads every live entry)", "peak memory of the apply",
            "peak memory of apply --verify", "nvgre apply, the same records as JSON"
        ] {
            #expect((figure(name, "value") ?? 0) > 0, "\(name)")
        }
        // TCP between VMs at their defaults (offloads on): the kernel's vxlan and ours both
        // carry data, and the failure flag is 0 for both.
        for streams in ["1 stream", "4 streams"] {
            for name in ["kernel vxlan, VMs at defaults, \(streams)", "nvgre, VMs at defaults, \(streams)"] {
                #expect((figure(name, "value") ?? 0) > 0, "\(name)")
                let details = rows.first { $0["name"] as? String == name }?["details"] as? [String: Any]
                #expect(details?["failed"] as? Double == 0, "\(name): \(String(describing: details))")
            }
        }
        // Every ratio (or figure) that an issue sets a target for: live paths per core count
        // (encap vs reflector and vxlan, decap vs reflector), scale, TCP, userspace,
        // test-run (2) and the control plane (4).
        let targets = try #require(doc["targets"] as? [[String: Any]])
        #expect(targets.count == 3 * coreCounts.count + 1 + 2 + 4 + 2 + 4)
        let tcp = targets.filter { ($0["what"] as? String ?? "").hasPrefix("nvgre TCP") }
        #expect(tcp.count == 2 && tcp.allSatisfy { $0["ratio"] is Double && $0["met"] is Bool })
        #expect(
            targets.filter { !($0["what"] as? String ?? "").hasPrefix("nvgre TCP") }.allSatisfy {
                ($0["ratio"] as? Double ?? 0) > 0 && $0["met"] is Bool
            })
        let machine = try #require(doc["machine"] as? [String: String])
        #expect(machine["kernel"] != nil && machine["onlineCPUs"] != nil)

        let png = try Data(contentsOf: URL(fileURLWithPath: chart))
        #expect(png.starts(with: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]) && png.count > 2000)
        #expect(r.output.contains("targets (ratios of this run, or figures where no baseline is named)"))
    }
}
