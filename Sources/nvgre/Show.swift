import ArgumentParser
import CNvgre
import Foundation
import NvgreControl
import NvgreDatapath
import NvgrePolicy
import NvgreStore
import NvgreWire

struct Show: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the live state: everything, or one kind.",
        discussion:
            "Kinds: all, interfaces, domains, subnets, lookups, routes, pas (this host's, and the foreign endpoints "
            + "the policy names), ports, flood (each VSID's head-end replication: the other hosts and the ports "
            + "here its broadcasts go to), infrastructure (a gateway's: what no tenant reaches through it, and why)."
    )

    static let kinds = [
        "all", "interfaces", "domains", "subnets", "lookups", "routes", "pas", "ports", "flood", "infrastructure"
    ]

    @OptionGroup var global: GlobalOptions
    @Argument(help: "What to show.") var kind = "all"

    func execute() throws {
        guard Self.kinds.contains(kind) else { throw fieldError("kind", kind, Self.kinds.joined(separator: ", ")) }
        if let u = try global.userspaceInstance() { return try showUserspace(u) }
        let instance = try global.openInstance()
        var policy = try instance.livePolicy()
        let idle = try idleRoutes(instance, policy)
        var sections: [(String, JSON, [String])] = []
        func want(_ k: String) -> Bool { kind == "all" || kind == k }

        if want("interfaces") {
            var rows: [JSON] = [], text: [String] = []
            // The uplink has two: XDP for everything, tc for the broadcasts XDP hands up.
            let uplink = instance.settings.uplink
            let ifaces =
                [(uplink, "uplink", "nv_from_fabric", "xdp"), (uplink, "uplink", "nv_fabric_flood", "tc")]
                + policy.ports.map { ($0.interface, "port", "nv_from_vm", "tc") }
                + (policy.externalAddresses.first.map { [($0.interface, "external", "nv_from_external", "xdp")] } ?? [])
            let attached = Set(
                instance.attachedPorts() + [instance.settings.uplink] + (instance.attachedExternal().map { [$0] } ?? [])
            )
            for (name, role, program, hook) in ifaces {
                let idx = existingInterfaceIndex(name) ?? 0
                let pinned =
                    program == "nv_fabric_flood"
                    ? FileManager.default.fileExists(atPath: "\(instance.pinDirectory)/\(Instance.floodLinkPin(name))")
                    : attached.contains(name)
                // What the kernel says is attached: the XDP mode, or tcx-ingress for a port.
                let attach: String? =
                    idx == 0
                    ? nil
                    : hook == "tc"
                        ? (tcIngressProgramCount(ifindex: idx) > 0 ? Attachment.tcIngress.name : nil)
                        : xdpAttachMode(ifindex: idx)?.rawValue
                rows.append(
                    .object([
                        ("interface", .string(name)), ("role", .string(role)), ("ifindex", .number(UInt64(idx))),
                        ("program", .string(program)), ("hook", .string(hook)),
                        ("pinnedLink", .bool(pinned)), ("attach", .string(attach ?? "none"))
                    ]))
                text.append(
                    "\(pad(name, 16)) \(pad(role, 7)) ifindex \(pad(String(idx), 5)) \(pad(program, 16)) "
                        + "\(hook) \(attach ?? "none (missing or detached)")"
                )
            }
            sections.append(("interfaces", .array(rows), text))
        }
        if want("domains") {
            sections.append(
                (
                    "routingDomains",
                    .array(
                        policy.routingDomains.map {
                            .object([("id", .number(UInt64($0.id))), ("name", .string($0.name))])
                        }),
                    policy.routingDomains.map { "\(pad($0.name, 16)) id \($0.id)" }
                ))
        }
        if want("subnets") {
            sections.append(
                (
                    "subnets",
                    .array(
                        policy.subnets.map { s in
                            .object([
                                ("vsid", .number(UInt64(s.vsid))), ("routingDomain", .string(s.routingDomain)),
                                ("prefixes", .array(s.prefixes.map { .string($0.description) })),
                                ("gateways", .array(s.gateways.map { .string($0.description) })),
                                ("gatewayMAC", .string(s.gatewayMAC.description)), ("flood", .bool(s.flood))
                            ])
                        }),
                    policy.subnets.map { s in
                        "vsid \(pad(String(s.vsid), 9)) domain \(pad(s.routingDomain, 10)) "
                            + "\(s.prefixes.map(\.description).joined(separator: ", ")) via "
                            + "\(s.gateways.map(\.description).joined(separator: ", ")) (\(s.gatewayMAC))"
                            + (s.flood ? "" : " flood off")
                    }
                ))
        }
        if want("lookups") {
            sections.append(
                (
                    "lookupRecords",
                    .array(
                        policy.lookupRecords.map { r in
                            .object([
                                ("vsid", .number(UInt64(r.vsid))),
                                ("customerAddress", .string(r.customerAddress.description)),
                                ("providerAddress", .string(r.providerAddress.description)),
                                ("mac", .string(r.mac.description)),
                                ("type", .string(r.type.rawValue))
                            ])
                        }),
                    policy.lookupRecords.map { r in
                        "vsid \(pad(String(r.vsid), 9)) \(pad(r.customerAddress.description, 24)) pa "
                            + "\(pad(r.providerAddress.description, 24)) \(r.mac) \(r.type.rawValue)"
                    }
                ))
        }
        if want("routes") {
            sections.append(
                (
                    "customerRoutes",
                    .array(
                        policy.customerRoutes.enumerated().map { i, r in
                            var f: [(String, JSON)] = [
                                ("routingDomain", .string(r.routingDomain)), ("prefix", .string(r.prefix.description)),
                                ("nextHop", .string(r.nextHop.description)), ("metric", .number(UInt64(r.metric))),
                                ("active", .bool(idle[i] == nil))
                            ]
                            if let why = idle[i] { f.append(("why", .string(why))) }
                            return .object(f)
                        }),
                    policy.customerRoutes.enumerated().map { i, r in
                        "\(pad(r.routingDomain, 10)) \(pad(r.prefix.description, 20)) via "
                            + "\(pad(r.nextHop.description, 18)) metric \(pad(String(r.metric), 6)) "
                            + "\(idle[i].map { "idle: \($0)" } ?? "active")"
                    }
                ))
        }
        if want("pas") {
            sections.append(
                (
                    "providerAddresses",
                    .array(
                        policy.providerAddresses.map {
                            .object([("address", .string($0.address.description)), ("interface", .string($0.interface))]
                            )
                        }),
                    policy.providerAddresses.map { "\($0.address) dev \($0.interface)" }
                ))
            sections.append(
                (
                    "foreignEndpoints",
                    .array(
                        policy.foreignEndpoints.map {
                            .object([
                                ("address", .string($0.address.description)), ("name", .string($0.name)),
                                ("flowID", .bool($0.flowID))
                            ])
                        }),
                    policy.foreignEndpoints.map {
                        "\(pad($0.address.description, 24)) foreign\($0.name.isEmpty ? "" : " \($0.name)")"
                            + ($0.flowID ? "" : ", FlowID 0")
                    }
                ))
        }
        if want("ports") {
            sections.append(
                (
                    "ports",
                    .array(
                        policy.ports.map { p in
                            .object([
                                ("interface", .string(p.interface)), ("vsid", .number(UInt64(p.vsid))),
                                ("mac", .string(p.mac.description)),
                                ("addresses", .array(p.addresses.map { .string($0.description) })),
                                ("allowRouterAdvertisements", .bool(p.allowRouterAdvertisements)),
                                ("allowDHCPServer", .bool(p.allowDHCPServer))
                            ])
                        }),
                    policy.ports.map { p in
                        "\(pad(p.interface, 16)) vsid \(pad(String(p.vsid), 9)) \(p.mac) "
                            + "\(p.addresses.map(\.description).joined(separator: ", "))"
                    }
                ))
        }
        if kind == "all", let store = storeSection(instance.stateDirectory) { sections.append(store) }
        if want("flood") { sections.append(floodSection(instance.maps, policy)) }
        if want("infrastructure") {
            sections.append(infrastructureSection(try instance.maps.infrastructure.rawEntries(), policy))
        }
        policy.lookupRecords = []

        if global.json {
            var fields: [(String, JSON)] = []
            if kind == "all" {
                fields.append(
                    (
                        "instance",
                        .object([
                            ("name", .string(instance.name)), ("uplink", .string(instance.settings.uplink)),
                            ("xdpMode", .string(instance.settings.xdpMode?.rawValue ?? "auto")),
                            ("fibRules", .bool(instance.settings.fibUseRules)),
                            ("pins", .string(instance.pinDirectory))
                        ])
                    ))
            }
            fields += sections.map { ($0.0, $0.1) }
            print(JSON.object(fields).rendered())
            return
        }
        if kind == "all" {
            print("instance \(instance.name): uplink \(instance.settings.uplink), pins in \(instance.pinDirectory)")
        }
        for (name, _, lines) in sections {
            if kind == "all" { print("\(name):") }
            for l in lines { print(kind == "all" ? "  " + l : l) }
            if kind == "all" && lines.isEmpty { print("  (none)") }
        }
    }

    /// The live flood_lists map: per VSID with a port here, the hosts and ports a broadcast goes to.
    func floodSection(_ maps: DatapathMaps, _ policy: Policy) -> (String, JSON, [String]) {
        let portNames = Dictionary(
            policy.ports.compactMap { p in existingInterfaceIndex(p.interface).map { ($0, p.interface) } },
            uniquingKeysWith: { a, _ in a })
        let lists = maps.floodLists.keys().sorted().compactMap { vsid in maps.floodLists.lookup(vsid).map { (vsid, $0) }
        }
        let json: [JSON] = lists.map { vsid, l in
            .object([
                ("vsid", .number(UInt64(vsid))),
                ("providerAddresses", .array(l.peerAddresses.map { .string($0.description) })),
                ("ports", .array(l.portIfindexes.map { .string(portNames[$0] ?? "ifindex \($0)") }))
            ])
        }
        let text: [String] = lists.map { vsid, l in
            "vsid \(pad(String(vsid), 9)) to \(l.peerAddresses.count) hosts "
                + "(\(l.peerAddresses.map(\.description).joined(separator: ", "))) and ports "
                + l.portIfindexes.map { portNames[$0] ?? "ifindex \($0)" }.joined(separator: ", ")
        }
        return ("flood", .array(json), text)
    }

    /// The infra map (live, or compiled for a userspace instance): each prefix no tenant
    /// reaches through this gateway, and why.
    func infrastructureSection(_ entries: [(key: RawBytes, value: RawBytes)], _ policy: Policy) -> (
        String, JSON, [String]
    ) {
        let names = Dictionary(
            ReasonNames.infrastructureOrigins.map { ($0.0.rawValue, $0.1) }, uniquingKeysWith: { a, _ in a })
        var rows: [(prefix: IPPrefix, why: String)] = []
        for e in entries {
            guard let p = e.key.load(as: nv_infra_key.self).prefix else { continue }
            rows.append((p, names[e.value.load(as: UInt32.self)] ?? "unknown"))
        }
        rows.sort { a, b in
            a.prefix.family != b.prefix.family
                ? a.prefix.family == .v4 : a.prefix.address.bytes.lexicographicallyPrecedes(b.prefix.address.bytes)
        }
        let listed = Dictionary(
            policy.infrastructurePrefixes.map { ($0.prefix.canonical, $0.name) }, uniquingKeysWith: { a, _ in a })
        let json: [JSON] = rows.map { r in
            var f: [(String, JSON)] = [("prefix", .string(r.prefix.description)), ("why", .string(r.why))]
            if let name = listed[r.prefix], !name.isEmpty { f.append(("name", .string(name))) }
            return .object(f)
        }
        let text: [String] = rows.map { r in
            let name = listed[r.prefix].flatMap { $0.isEmpty ? nil : " (\($0))" } ?? ""
            return "\(pad(r.prefix.description, 24)) \(r.why)\(name)"
        }
        return ("infrastructure", .array(json), text)
    }

    /// Which customer routes are not programmed, and why (compiled without the records).
    func idleRoutes(_ instance: Instance, _ p: Policy) throws -> [Int: String] {
        var q = p
        q.lookupRecords = []
        q.ports = []
        let compiled = try PolicyCompiler.compile(q, try instance.compileContext())
        return Dictionary(compiled.idleRoutes.map { ($0.index, $0.why) }, uniquingKeysWith: { a, _ in a })
    }
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

extension Show {
    /// A userspace instance: which data path and why, and its stored policy.
    func showUserspace(_ u: UserspaceInstance) throws {
        let p = try u.storedPolicy()
        if kind == "infrastructure" {
            // What the agent decides on: the policy compiled as it compiles it.
            let entries = try u.compile(p).images[.infrastructure]?.entries.map { (key: $0.key, value: $0.value) } ?? []
            let (name, json, text) = infrastructureSection(entries, p)
            if global.json { print(JSON.object([(name, json)]).rendered()) } else { text.forEach { print($0) } }
            return
        }
        if global.json {
            var instance: [(String, JSON)] = [
                ("name", .string(u.name)), ("uplink", .string(u.uplink)), ("datapath", .string("userspace"))
            ]
            if let why = u.fallbackReason { instance.append(("fallback", .string(why))) }
            print(
                JSON.object(
                    [
                        ("instance", .object(instance)),
                        ("subnets", .array(p.subnets.map { .number(UInt64($0.vsid)) })),
                        ("lookupRecords", .number(UInt64(p.lookupRecords.count))),
                        ("ports", .array(p.ports.map { .string($0.interface) })),
                        ("providerAddresses", .array(p.providerAddresses.map { .string($0.address.description) }))
                    ] + (storeSection(u.stateDirectory).map { [($0.0, $0.1)] } ?? [])
                ).rendered())
            return
        }
        print(
            "instance \(u.name): userspace data path on \(u.uplink)"
                + (u.fallbackReason.map { " (XDP not available: \($0))" } ?? ""))
        print(
            "  \(p.subnets.count) subnets, \(p.lookupRecords.count) lookup records, ports: "
                + (p.ports.isEmpty ? "none" : p.ports.map(\.interface).joined(separator: ", ")))
        print("  `nvgre save` prints the whole policy")
        if let (_, _, lines) = storeSection(u.stateDirectory) { lines.forEach { print("  store: " + $0) } }
    }
}

/// What the agent following the store last wrote (`store.json`): where, which state, how
/// stale, and the last error. nil: the instance does not follow a store.
func storeSection(_ stateDirectory: String) -> (String, JSON, [String])? {
    guard let data = FileManager.default.contents(atPath: stateDirectory + "/" + StoreFollower.statusFile),
        let s = try? JSONDecoder().decode(StoreFollower.Status.self, from: data)
    else { return nil }
    let stale = s.staleness()
    var fields: [(String, JSON)] = [
        ("address", .string(s.store)), ("host", .string(s.host)), ("revision", .number(UInt64(max(0, s.revision)))),
        ("generation", .string(s.generation ?? "")), ("resyncs", .number(UInt64(s.resyncs))),
        ("applies", .number(UInt64(s.applies))), ("lists", .number(UInt64(s.lists))),
        ("staleSeconds", .number(UInt64((stale ?? 0).rounded())))
    ]
    if let e = s.lastError { fields.append(("lastError", .string(e))) }
    fields.append(("movedAway", .array(s.movedAway.map { .string($0) })))
    var line = "\(s.store) as host \(s.host): revision \(s.revision) (generation \(s.generation ?? "none")), "
    line += stale.map { String(format: "read %.1f s ago", $0) } ?? "never read"
    if let e = s.lastError { line += "; last error: \(e) (forwarding on the last state)" }
    if !s.movedAway.isEmpty { line += "; moved away, frames sent on: " + s.movedAway.joined(separator: ", ") }
    return ("store", .object(fields), [line])
}
