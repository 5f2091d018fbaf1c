import Foundation
import NvgreLab

/// Many hosts on one store, measured with the real binary, agents and a three-member etcd
/// cluster on loopback: a change of many records until all three agents have applied it,
/// a full sync of a large policy to one fresh agent, and one `lookup add` until a remote
/// host's agent has it. Each against writing the same maps locally in the same run (`nvgre
/// apply` or `nvgre lookup add` on an instance of this host).
///
/// An agent has applied a state once its status file (`store.json`) names the store's
/// revision of that write or a later one: the follower writes it after the maps.
struct StoreBench {
    let changes: Int
    let syncRecords: Int
    let adds: Int
    let section = "many hosts (etcd)"

    /// The hosts: h1..h3 follow the store; `local` is written directly, for the baselines.
    struct Host {
        let name: String
        let ns: String
        let instance: String
        let pa: String
    }

    func run(_ net: LabNetwork) throws -> [BenchRow] {
        let nvgre = builtBinary("nvgre")
        let cluster = try EtcdCluster(prefix: net.prefix + "-sb")
        defer { cluster.down() }
        let fabric = try net.namespace("sb-f")
        let hosts = try (1...4).map { n -> Host in
            let name = n == 4 ? "local" : "h\(n)"
            let ns = try net.namespace("sb-\(name)")
            try net.veth("ul", in: ns, "u\(n)", in: fabric)
            try net.ip(ns, "link add vm0 type veth peer name vm0p")
            try net.ip(ns, "link set vm0 up")
            try net.ip(ns, "link set vm0p up")
            return Host(name: name, ns: ns, instance: "\(net.prefix)-sb-\(name)", pa: "192.0.2.\(n)")
        }
        let (followers, local) = (Array(hosts.prefix(3)), hosts[3])
        func cli(_ args: [String]) throws -> Spawn.Result {
            let r = try Spawn.run([nvgre] + args)
            guard r.status == 0 else {
                throw ShellErrorText("nvgre \(args.joined(separator: " ")) failed: \(r.output)")
            }
            return r
        }
        func on(_ h: Host, _ args: [String]) throws -> Spawn.Result {
            try cli(["-n", h.ns, "--instance", h.instance] + args)
        }
        let store = ["--store", cluster.address]
        var agents: [String: pid_t] = [:]
        func startAgent(_ h: Host) throws {
            agents[h.name] = try Spawn.start(
                [nvgre, "-n", h.ns, "--instance", h.instance, "agent"] + store + ["--host", h.name],
                output: "/run/nvgre/\(h.instance)-agent.log", detached: false)
        }
        defer {
            for (_, pid) in agents { Spawn.stop(pid) }
            for h in hosts {
                _ = try? on(h, ["down"])
                unlink("/run/nvgre/\(h.instance)-agent.log")
            }
        }
        let capacity = String(max(changes, syncRecords) + adds + 1024)
        for h in hosts { _ = try on(h, ["up", "--uplink", "ul", "--max-lookups", capacity]) }

        let dir = NSTemporaryDirectory() + "\(net.prefix)-sb"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func file(_ name: String, _ text: String) throws -> String {
            let path = "\(dir)/\(name).yaml"
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            return path
        }
        let hostFiles = try Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, try file($0.name, hostPart($0))) })
        let before = try file("before", tables(records: changes, hosts: hosts, paOffset: 0))
        let after = try file("after", tables(records: changes, hosts: hosts, paOffset: 1))
        let large = try file("large", tables(records: syncRecords, hosts: hosts, paOffset: 0))

        // The same change of `changes` records, locally and through the store.
        _ = try on(local, ["apply", before, hostFiles["local"]!])
        let localChange = try on(local, ["apply", after, hostFiles["local"]!]).seconds
        for h in followers { _ = try cli(store + ["--host", h.name, "apply", before, hostFiles[h.name]!]) }
        let begun = Date()
        for h in followers { try startAgent(h) }
        let firstSync = try waitForAgents(followers, at: try cluster.policyRevision(), since: begun)
        let start = Date()
        _ = try cli(store + ["apply", after])
        let storeChange = try waitForAgents(followers, at: try cluster.policyRevision(), since: start)

        // One record: locally, and through the store to a remote host's agent (h2).
        func add(_ i: Int) -> [String] {
            ["lookup", "add", "9000", "10.200.1.\(i + 1)", "--pa", "192.0.2.99", "--mac", "02:00:00:c8:01:\(hex(i))"]
        }
        let localAdds = try (0..<adds).map { try on(local, add($0)).seconds }
        var commandSeconds: [Double] = []
        let remoteAdds = try (0..<adds).map { i -> Double in
            let t0 = Date()
            commandSeconds.append(try cli(store + add(i)).seconds)
            return try waitForAgents([followers[1]], at: try cluster.policyRevision(), since: t0)
        }

        // A large policy to one fresh agent: h1 down and up again, empty, its agent restarted.
        let localLarge = try freshApply(local, [large, hostFiles["local"]!], on)
        Spawn.stop(agents.removeValue(forKey: "h1")!)
        _ = try cli(store + ["apply", large])
        let h1 = followers[0]
        _ = try on(h1, ["down"])
        _ = try on(h1, ["up", "--uplink", "ul", "--max-lookups", capacity])
        let syncStart = Date()
        try startAgent(h1)
        let sync = try waitForAgents([h1], at: try cluster.policyRevision(), since: syncStart, within: 1800)

        let c = changes.formatted(), s = syncRecords.formatted()
        return [
            .figure(section, "store: \(c) records changed, in all 3 agents' maps", storeChange, "s"),
            .figure(section, "baseline: local apply changing \(c) records", localChange, "s"),
            .figure(section, "store: first sync of 3 agents (\(c) records)", firstSync, "s"),
            .figure(section, "store: full sync of \(s) records to a fresh agent", sync, "s"),
            .figure(section, "baseline: local apply of \(s) records to a fresh instance", localLarge, "s"),
            .figure(
                section, "store: lookup add, in a remote agent's maps (median)", median(remoteAdds), "s",
                details: [
                    "runs": Double(adds), "maxSeconds": remoteAdds.max() ?? 0,
                    "commandSeconds": median(commandSeconds)
                ]),
            .figure(
                section, "baseline: local lookup add (median)", median(localAdds), "s", details: ["runs": Double(adds)])
        ]
    }

    /// `nvgre apply` of `files` on `h` brought down and up again first (empty maps).
    func freshApply(_ h: Host, _ files: [String], _ on: (Host, [String]) throws -> Spawn.Result) throws -> Double {
        let capacity = String(max(changes, syncRecords) + adds + 1024)
        _ = try on(h, ["down"])
        _ = try on(h, ["up", "--uplink", "ul", "--max-lookups", capacity])
        return try on(h, ["apply"] + files).seconds
    }

    /// Seconds from `since` until every host's agent has applied revision `revision` (its
    /// `store.json`), polled every millisecond.
    func waitForAgents(_ hosts: [Host], at revision: Int, since: Date = Date(), within: Double = 600) throws
        -> Double
    {
        for h in hosts {
            let path = "/run/nvgre/\(h.instance)/store.json"
            while true {
                if let data = FileManager.default.contents(atPath: path),
                    let s = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                    let r = s["revision"] as? Int, r >= revision, s["lastError"] == nil
                {
                    break
                }
                if Date().timeIntervalSince(since) > within {
                    throw ShellErrorText("host \(h.name)'s agent did not apply revision \(revision) in \(within) s")
                }
                usleep(1000)
            }
        }
        return Date().timeIntervalSince(since)
    }

    /// One routing domain: `records` lookup records in subnets of 60,000 (VSID 10000 + t,
    /// 10.t.0.0/16), each naming the PA of one of 1,000 other hosts (shifted by `paOffset`:
    /// a change of every record),
    /// and subnet 9000 (10.200.0.0/16) with each host's VM and the single adds.
    func tables(records: Int, hosts: [Host], paOffset: Int) -> String {
        let perSubnet = 60_000
        let subnets = (records + perSubnet - 1) / perSubnet
        var text = "routingDomains:\n  - {id: 1, name: bench}\nsubnets:\n"
        text += "  - {vsid: 9000, routingDomain: bench, prefixes: [10.200.0.0/16], gatewayMAC: 02:00:00:c8:ff:ff}\n"
        for t in 0..<subnets {
            text += "  - {vsid: \(10000 + t), routingDomain: bench, prefixes: [10.\(t).0.0/16], gatewayMAC: "
            text += "02:00:00:ff:00:\(hex(t))}\n"
        }
        text += "lookupRecords:\n"
        text.reserveCapacity(records * 110)
        for h in hosts {
            text += "  - {vsid: 9000, customerAddress: 10.200.0.\(h.pa.split(separator: ".").last!), "
            text += "providerAddress: \(h.pa), mac: \(vmMAC(h))}\n"
        }
        for i in 0..<records {
            // On one of 1,000 other hosts (60,000 would overflow the neighbor table).
            let t = i / perSubnet, a = i % perSubnet + 1, p = (i + paOffset) % 1000 + 1
            text += "  - {vsid: \(10000 + t), customerAddress: 10.\(t).\(a >> 8).\(a & 255), providerAddress: "
            text += "198.18.\(p >> 8).\(p & 255), mac: 02:\(hex(t)):00:\(hex(a >> 8)):\(hex(a & 255)):01}\n"
        }
        return text
    }

    /// A host's own part: its provider address and one VM port in subnet 9000.
    func hostPart(_ h: Host) -> String {
        "providerAddresses:\n  - {address: \(h.pa), interface: ul}\nports:\n"
            + "  - {interface: vm0, vsid: 9000, mac: \(vmMAC(h)), addresses: "
            + "[10.200.0.\(h.pa.split(separator: ".").last!)]}\n"
    }

    func vmMAC(_ h: Host) -> String { "02:00:00:c8:00:0\(h.pa.split(separator: ".").last!)" }

    func hex(_ v: Int) -> String { String(format: "%02x", v & 255) }
    func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
}
