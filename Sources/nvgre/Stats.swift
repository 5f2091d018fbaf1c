import ArgumentParser
import CNvgre
import Foundation
import NvgreControl
import NvgreDatapath
import NvgrePolicy

struct Stats: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-VSID counters, and every drop and exception reason.",
        discussion: "Counters are per-CPU in the kernel and summed here. Bytes count the customer frame.")

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Refresh every N seconds until interrupted.", valueName: "seconds")) var watch: String?
    @Option(help: ArgumentHelp("With --watch: stop after this many refreshes.", valueName: "n")) var count: String?

    func execute() throws {
        if let u = try global.userspaceInstance() { return try userspaceReport(u) }
        let instance = try global.openInstance()
        let interval = try watch.map { try parseNumber($0, "--watch", 1...3600) }
        let rounds = try count.map { try parseNumber($0, "--count", 1...UInt32.max) }
        var n: UInt32 = 0
        repeat {
            if interval != nil && !global.json && isatty(1) != 0 { print("\u{1b}[H\u{1b}[2J", terminator: "") }
            report(instance.maps, domains: (try? instance.storedPolicy())?.routingDomains ?? [])
            if !global.json, let (_, _, lines) = storeSection(instance.stateDirectory) {
                lines.forEach { print("store: " + $0) }
            }
            fflush(stdout)
            n += 1
            if let i = interval, rounds.map({ n < $0 }) ?? true { sleep(i) } else { break }
        } while true
    }

    static let counterNames = ReasonNames.vsidCounters

    func report(_ maps: DatapathMaps, domains: [RoutingDomain]) {
        let slots = maps.subnets.keys().compactMap { vsid in maps.subnets.lookup(vsid).map { (vsid, $0.stats_slot) } }
            .sorted { $0.0 < $1.0 }
        let vsids = slots.map { vsid, slot in (vsid, maps.vsidCounters(slot: slot)) }
        let drops = ReasonNames.drops.map { ($0.1, maps.dropCount($0.0)) }
        let exceptions = ReasonNames.exceptions.map { ($0.1, maps.exceptionCount($0.0)) }
        // A gateway's NAT counters (all zero elsewhere) and its flows in the maps.
        let gateway = ReasonNames.gateway.map { ($0.1, maps.gatewayCount($0.0)) }
        let flows = maps.natOut.keys().compactMap { maps.natOut.lookup($0) }
        let offloaded = flows.filter { $0.natFlags.contains(.offloaded) }.count
        // Each routing domain's drops at its shares (exception path, NAT ports) and its
        // packets kept from the infrastructure.
        let perDomain = domains.sorted { $0.id < $1.id }.map { d in
            (d, ReasonNames.domain.map { ($0.1, maps.domainCount(d.id, $0.0)) })
        }
        func pb(_ c: (packets: UInt64, bytes: UInt64)) -> JSON {
            .object([("packets", .number(c.packets)), ("bytes", .number(c.bytes))])
        }
        if global.json {
            print(
                JSON.object([
                    (
                        "vsids",
                        .array(
                            vsids.map { vsid, c in
                                .object(
                                    [("vsid", .number(UInt64(vsid)))]
                                        + Self.counterNames.map { ($0.1, pb(c[$0.0] ?? (0, 0))) })
                            })
                    ),
                    ("drops", .object(drops.map { ($0.0, pb($0.1)) })),
                    ("exceptions", .object(exceptions.map { ($0.0, pb($0.1)) })),
                    (
                        "gateway",
                        .object(
                            gateway.map { ($0.0, pb($0.1)) } + [
                                ("flows", .number(UInt64(flows.count))), ("flowsOffloaded", .number(UInt64(offloaded)))
                            ])
                    ),
                    (
                        "domains",
                        .array(
                            perDomain.map { d, c in
                                .object(
                                    [("domain", .string(d.name)), ("id", .number(UInt64(d.id)))]
                                        + c.map { ($0.0, pb($0.1)) })
                            })
                    )
                ]).rendered())
            return
        }
        print(pad("VSID", 10) + Self.counterNames.map { pad($0.1 + " pkts/bytes", 24) }.joined())
        for (vsid, c) in vsids {
            print(
                pad(String(vsid), 10)
                    + Self.counterNames.map {
                        let v = c[$0.0] ?? (0, 0)
                        return pad("\(v.packets)/\(v.bytes)", 24)
                    }.joined())
        }
        print("drops (packets/bytes):")
        for (name, c) in drops { print("  \(pad(name, 28)) \(c.packets)/\(c.bytes)") }
        print("to userspace (packets/bytes):")
        for (name, c) in exceptions { print("  \(pad(name, 28)) \(c.packets)/\(c.bytes)") }
        if !flows.isEmpty || gateway.contains(where: { $0.1.packets > 0 }) {
            print("gateway: \(flows.count) flows, \(offloaded) offloaded (packets/bytes):")
            for (name, c) in gateway { print("  \(pad(name, 28)) \(c.packets)/\(c.bytes)") }
        }
        for (d, c) in perDomain where c.contains(where: { $0.1.packets > 0 }) {
            print("routing domain \(d.name) (\(d.id)) (packets/bytes):")
            for (name, c) in c { print("  \(pad(name, 28)) \(c.packets)/\(c.bytes)") }
        }
    }
}

extension Stats {
    /// A userspace instance's counters, as its agent last wrote them (twice a second).
    func userspaceReport(_ u: UserspaceInstance) throws {
        defer {
            if !global.json, let (_, _, lines) = storeSection(u.stateDirectory) {
                lines.forEach { print("store: " + $0) }
            }
        }
        let c = u.counters()
        if global.json {
            let object: [String: Any] = c.isEmpty ? ["datapath": "userspace"] : c
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if c.isEmpty { print("no counters yet: is `nvgre agent` running for instance \(u.name)?") }
        if let agent = c["agent"] as? [String: Any] {
            let starts = agent["starts"] as? Int ?? 1
            print(
                "userspace data path; counting since \(agent["countingSince"] ?? "?")"
                    + (starts > 1
                        ? " (the agent started \(starts) times: frames between a stop and a start were lost)" : ""))
            let ringDrops = agent["ringDrops"] as? Int ?? 0, sendFailures = agent["sendFailures"] as? Int ?? 0
            print(
                "transport: \(agent["lanes"] ?? 1) lane(s); \(ringDrops) frames dropped by the kernel on full rings, "
                    + "\(sendFailures) sends failed")
        }
        for v in (c["vsids"] as? [[String: Any]]) ?? [] {
            var fields: [String] = []
            for (key, value) in v.sorted(by: { $0.key < $1.key }) where key != "vsid" {
                let packets = ((value as? [String: Any])?["packets"] as? Int) ?? 0
                fields.append("\(key) \(packets)")
            }
            print("vsid \(v["vsid"] ?? "?"): " + fields.joined(separator: ", "))
        }
        for section in ["drops", "exceptions", "gateway"] {
            let moved = ((c[section] as? [String: Any]) ?? [:]).compactMap { k, v -> (String, Int)? in
                let n = ((v as? [String: Any])?["packets"] as? Int) ?? (v as? Int) ?? 0  // flows: a count
                return n > 0 ? (k, n) : nil
            }.sorted { $0.0 < $1.0 }
            print("\(section): " + (moved.isEmpty ? "none" : moved.map { "\($0.0) \($0.1)" }.joined(separator: ", ")))
        }
    }
}
