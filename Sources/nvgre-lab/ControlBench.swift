import ArgumentParser
import Foundation
import NvgreLab

/// The control plane at scale, measured on the real `nvgre` binary as a user runs it: apply
/// of a file with a million lookup records (written as `nvgre save` writes them) and its
/// peak memory, the same apply again (nothing to change; and with --verify, which reads
/// every live entry), the same records saved as JSON and applied to an empty instance, one
/// `nvgre lookup add`, and the kernel memory the records take. The single add is compared with a baseline taken in the same run: starting
/// the binary and reading the instance (`nvgre show domains`).
struct ControlBench {
    let records: Int
    let adds: Int
    let section = "control plane"

    func run(_ net: LabNetwork) throws -> [BenchRow] {
        let nvgre = builtBinary("nvgre")
        let ns = try net.namespace("ctl-h")
        try net.veth("ul", in: ns, "ulp", in: try net.namespace("ctl-f"))
        let instance = net.prefix + "-ctl"
        func cli(_ args: [String]) throws -> (seconds: Double, output: String, peakMB: Double) {
            let r = try Spawn.run([nvgre, "-n", ns, "--instance", instance] + args)
            guard r.status == 0 else {
                throw ShellErrorText("nvgre \(args.joined(separator: " ")) failed: \(r.output)")
            }
            return (r.seconds, r.output, Double(r.peakKiB) / 1024)
        }
        let up = ["up", "--uplink", "ul", "--max-lookups", String(max(records + adds, 1024))]
        defer { _ = try? cli(["down"]) }
        _ = try cli(up)

        let file = NSTemporaryDirectory() + "\(instance)-records.yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try writePolicy(records: records, to: file)
        let size = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0

        let baseline = try median((0..<adds).map { _ in try cli(["show", "domains"]).seconds })
        let apply = try cli(["apply", file])
        let reapply = try cli(["apply", file])
        let verify = try cli(["apply", "--verify", file])
        for r in [reapply, verify] where !r.output.contains("nothing to change") {
            throw ShellErrorText("applying the same file again changed the instance: \(r.output)")
        }
        // The same records saved as JSON, applied to an empty instance as the YAML was.
        let jsonFile = NSTemporaryDirectory() + "\(instance)-records.json"
        defer { try? FileManager.default.removeItem(atPath: jsonFile) }
        try cli(["save", "--format", "json"]).output.write(toFile: jsonFile, atomically: false, encoding: .utf8)
        _ = try cli(["down"])
        _ = try cli(up)
        let applyJSON = try cli(["apply", jsonFile])
        let addTimes = try (0..<adds).map { i in
            try cli([
                "lookup", "add", "9999", "198.19.0.\(i + 1)", "--pa", "198.18.9.9", "--mac",
                "02:ff:00:00:00:\(String(format: "%02x", i))"
            ]).seconds
        }
        // `lookups` points at the records' table: its id is the one value of the pinned map.
        let pointer = try sh("bpftool -j map dump pinned /sys/fs/bpf/\(instance)/lookups")
        let slot = (try? JSONSerialization.jsonObject(with: Data(pointer.utf8)) as? [[String: Any]])?.first
        // the value is the table's map id, as four bytes in host order
        let idBytes = (slot?["value"] as? [String] ?? []).compactMap { UInt32($0.dropFirst(2), radix: 16) }
        let tableID = idBytes.reversed().reduce(0) { $0 << 8 | $1 }
        if tableID == 0 { throw ValidationError("no table id in `bpftool map dump` of lookups: \(pointer)") }
        let info = try sh("bpftool -j map show id \(tableID)")
        let memlock =
            (try? JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["bytes_memlock"] as? Int ?? 0
        let perRecord = Double(memlock) / Double(records + adds)
        let n = records.formatted()
        return [
            .figure(
                section, "nvgre apply, \(n) records", apply.seconds, "s",
                details: ["records": Double(records), "fileBytes": Double(size)]),
            .figure(section, "nvgre apply again (no change)", reapply.seconds, "s"),
            .figure(section, "nvgre apply --verify again (reads every live entry)", verify.seconds, "s"),
            .figure(section, "peak memory of the apply", apply.peakMB, "MB"),
            .figure(section, "peak memory of apply --verify", verify.peakMB, "MB"),
            .figure(section, "nvgre apply, the same records as JSON", applyJSON.seconds, "s"),
            .figure(
                section, "nvgre lookup add (median)", median(addTimes), "s",
                details: ["maxSeconds": addTimes.max() ?? 0, "runs": Double(adds)]),
            .figure(section, "baseline: nvgre show domains", baseline, "s", details: ["runs": Double(adds)]),
            .figure(
                section, "kernel memory per lookup record", perRecord, "B", details: ["bytesMemlock": Double(memlock)])
        ]
    }

    /// Tenants of 65,534 records each (one /16 per routing domain, the same addresses in
    /// every tenant), one record per line as `nvgre save` writes them; plus an empty
    /// tenant (VSID 9999) for the single adds.
    func writePolicy(records: Int, to path: String) throws {
        let perTenant = 65_533  // 198.19.0.1 to 198.19.255.253: .254 is the subnet's gateway
        let tenants = (records + perTenant - 1) / perTenant
        var text = "routingDomains:\n"
        for t in 0..<tenants { text += "  - {id: \(t + 1), name: t\(t)}\n" }
        text += "  - {id: 9999, name: adds}\n"
        text += "subnets:\n"
        text += "  - {vsid: 9999, routingDomain: adds, prefixes: [198.19.0.0/16], gatewayMAC: 02:00:00:ff:ff:ff}\n"
        for t in 0..<tenants {
            text +=
                "  - {vsid: \(10000 + t), routingDomain: t\(t), prefixes: [198.19.0.0/16], gateways: "
                + "[198.19.255.254], gatewayMAC: 02:00:00:ff:00:\(String(format: "%02x", t))}\n"
        }
        text += "lookupRecords:\n"
        text.reserveCapacity(records * 110)
        for i in 0..<records {
            let t = i / perTenant, a = i % perTenant + 1
            text +=
                "  - {vsid: \(10000 + t), customerAddress: 198.19.\(a >> 8).\(a & 255), providerAddress: "
                + "198.18.\((i >> 8) & 255).\(i & 255 | 1), mac: "
                + "02:\(hex(t)):00:\(hex(a >> 8)):\(hex(a & 255)):01}\n"
        }
        text += "providerAddresses:\n  - {address: 198.18.0.1, interface: ul}\n"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func hex(_ v: Int) -> String { String(format: "%02x", v) }

    func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
}
