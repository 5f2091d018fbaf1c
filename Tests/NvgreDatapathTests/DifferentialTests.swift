import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import NvgrePolicy
import NvgreUserspace
import NvgreWire
import Testing

/// One semantics, two implementations: frames generated from a seed go through the BPF
/// programs (test-run, on the fast-path fixture's maps) and through the userspace decision
/// core (on a snapshot of the same maps); verdict, egress, output bytes and the counters
/// moved must be the same for every frame. NVGRE_DIFF_FRAMES sets how many (default
/// 100,000), NVGRE_DIFF_SEED replays a run.
@Suite(.serialized)
struct DifferentialTests {
    /// The fixture's underlay as its namespace has it: 198.18.0.0/24 and 2001:db8:18::/64 on
    /// `ul` (MTU 1500), static neighbors for B, C and B's IPv6 PA, none for 198.18.0.9, no
    /// route to 198.18.99.1.
    struct FixtureUnderlay: Underlay {
        let uplink: UInt32
        func hop(to pa: IPAddress) -> UnderlayHop {
            let neighbors: [IPAddress: MACAddress] = [Plan.paB: Plan.macB, Plan.paC: Plan.macC, Plan.pa6B: Plan.mac6B]
            let onLink =
                pa.family == .v4
                ? Array(pa.bytes.prefix(3)) == [198, 18, 0]
                : Array(pa.bytes.prefix(8)) == Array(Plan.pa6A.bytes.prefix(8))
            guard onLink else { return .unreachable }
            return .route(ifindex: uplink, mtu: 1500, sourceMAC: Plan.uplinkMAC, nextHopMAC: neighbors[pa])
        }
    }

    /// The fixture's maps, read back: what the programs decide on.
    static func snapshot(_ dp: Datapath) throws -> DecisionTables {
        var entries: [String: [(key: RawBytes, value: RawBytes)]] = [:]
        for name in [
            "ports", "subnets", "lookups", "port_cas", "routes", "local_pas", "config", "gw_domains", "ext_addrs",
            "services", "infra", "gw_prefixes", "gw_routed"
        ] {
            entries[name] = try dp.maps.raw(name).rawEntries()
        }
        var lists: [UInt32: nv_flood_list] = [:]
        for vsid in dp.floodLists.keys() { lists[vsid] = dp.floodLists.lookup(vsid) }
        return DecisionTables(entries: entries, floodLists: lists)
    }

    /// A small, fast, seeded generator (SplitMix64).
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
        mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    }

    /// Values whose bytes make mutations land on meaningful fields: the plan's addresses and
    /// MACs, VSID keys (valid, reserved, unknown), GRE words, ethertypes, TTLs, ports.
    static let dictionary: [[UInt8]] = {
        var d: [[UInt8]] = []
        for a: IPAddress in [
            Plan.paA, Plan.paB, Plan.paC, Plan.pa6A, Plan.pa6B, Plan.paNoNeighbor, Plan.paUnreachable,
            Plan.vm1.ip4, Plan.vm2.ip4, Plan.vm3.ip4, Plan.vm4.ip4, Plan.vm21.ip4, Plan.vm23.ip4, Plan.vm1.ip6,
            Plan.vm2.ip6, Plan.vm3.ip6, Plan.vm4.ip6, Plan.red.gw4, Plan.red.gw6, Plan.red2.gw4, Plan.noNeighborCA,
            Plan.gatewayCA, Plan.l2OnlyCA, "0.0.0.0", "255.255.255.255", "224.0.0.251", "fe80::1", "::", "ff02::1",
            "198.19.1.99"
        ] {
            d.append(a.bytes)
        }
        for m: MACAddress in [
            Plan.vm1.mac, Plan.vm2.mac, Plan.vm3.mac, Plan.vm4.mac, Plan.vm21.mac, Plan.red.gwMAC, Plan.red2.gwMAC,
            Plan.blue.gwMAC, Plan.uplinkMAC, Plan.macB, "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01", "01:00:5e:00:00:fb"
        ] {
            d.append(m.bytes)
        }
        for vsid: UInt32 in [5001, 5002, 6001, 7777, 4095, 0xff_ffff, 0, 9999] {
            d.append([UInt8(vsid >> 16), UInt8(vsid >> 8 & 0xff), UInt8(vsid & 0xff), 0x5a])
        }
        d += [
            [0x20, 0x00], [0x30, 0x00], [0xa0, 0x00], [0x20, 0x01], [0x65, 0x58], [0x08, 0x00], [0x86, 0xdd],
            [0x08, 0x06], [0x81, 0x00], [0x88, 0xa8], [0x00, 0x01], [0x00, 0x02], [1], [0], [255], [47], [58], [17],
            [6], [135], [134], [0x00, 0x43], [0x02, 0x23], [0x40, 0x00], [0x20, 0x00, 0x00, 0x00], [0x45], [0x46],
            [0x60]
        ]
        return d
    }()

    /// The frame a mutation makes of `base`.
    static func mutate(_ base: [UInt8], _ r: inout Random) -> [UInt8] {
        var f = base
        for _ in 0..<r.below(4) {
            switch r.below(10) {
            case 0...4:  // a dictionary value over a field
                let v = r.pick(dictionary)
                guard f.count >= v.count else { continue }
                let at = r.below(f.count - v.count + 1)
                f.replaceSubrange(at..<at + v.count, with: v)
            case 5, 6:  // cut short, often at a header boundary
                // Never an Ethernet header alone or less: test-run refuses those (no wire carries them).
                let cuts = [15, 16, 18, 20, 33, 34, 38, 41, 42, 50, 53, 54, 56, 62, 70, 76, 77, 82, 96, 102]
                let at = max(15, r.chance(70) ? r.pick(cuts) : r.below(f.count + 1))
                if at < f.count { f.removeSubrange(at...) }
            case 7:  // one byte at random
                guard !f.isEmpty else { continue }
                f[r.below(f.count)] = UInt8(truncatingIfNeeded: r.next())
            case 8:  // an 802.1Q tag inserted (or a second one)
                if f.count >= 12 { f.insert(contentsOf: [0x81, 0x00, 0x00, UInt8(r.below(200))], at: 12) }
            default:  // padding, as a short frame gets on a wire
                f += [UInt8](repeating: 0, count: r.below(20))
            }
        }
        return f
    }

    /// Fits a frame to the policy in force, so that random policies meet frames that get past
    /// the first checks: from a VM, the port's MAC and one of its addresses as the source, a
    /// record of its VSID as the destination; from the fabric, a VSID of the policy, a record's
    /// CA, MAC and PA as the sender, a local VM as the destination. Each step is taken or not
    /// at random, so mismatches stay in the mix.
    static func adapt(_ input: [UInt8], fromVM: Bool, ingress: UInt32, _ t: DecisionTables, _ r: inout Random)
        -> [UInt8]
    {
        var f = input
        func be16(_ at: Int) -> UInt16 { UInt16(f[at]) << 8 | UInt16(f[at + 1]) }
        func put(_ bytes: [UInt8], at: Int) {
            if at >= 0, at + bytes.count <= f.count { f.replaceSubrange(at..<at + bytes.count, with: bytes) }
        }
        func records(_ vsid: UInt32, _ family: IPFamily) -> [(IPAddress, nv_lookup_val)] {
            t.records.filter { $0.key.vsid == vsid && $0.key.address.family == family }.map {
                ($0.key.address, $0.value)
            }
            .sorted { $0.0.description < $1.0.description }
        }
        guard f.count >= 14 else { return f }
        if fromVM {
            guard let port = t.ports[ingress] else { return f }
            if r.chance(80) { put(port.portMAC.bytes, at: 6) }
            let l3 = be16(12) == 0x8100 ? 18 : 14
            guard f.count >= l3 + 1 else { return f }
            let type = be16(l3 - 2)
            guard [0x0800, 0x86dd, 0x0806].contains(type) else { return f }
            let family: IPFamily = type == 0x86dd ? .v6 : .v4
            let own = t.portAddresses.filter { $0.ifindex == ingress && $0.address.family == family }.map(\.address)
                .sorted { $0.description < $1.description }
            let peers = records(port.vsid, family)
            if type == 0x0806 {
                if r.chance(80) { put(port.portMAC.bytes, at: l3 + 8) }
                if r.chance(70), let a = own.first { put(a.bytes, at: l3 + 14) }
                if r.chance(60), !peers.isEmpty { put(r.pick(peers).0.bytes, at: l3 + 24) }
                return f
            }
            let src = family == .v4 ? l3 + 12 : l3 + 8
            let dst = family == .v4 ? l3 + 16 : l3 + 24
            if r.chance(80), let a = own.first { put(a.bytes, at: src) }
            if r.chance(60), !peers.isEmpty, f[0] & 1 == 0 {
                let (ca, rec) = r.pick(peers)
                put(ca.bytes, at: dst)
                put(rec.customerMAC.bytes, at: 0)
            }
            return f
        }
        // From the fabric: outer IPv4 or IPv6 without options, GRE, inner Ethernet.
        let outerV4 = be16(12) == 0x0800
        let gre = outerV4 ? 34 : 54, inner = gre + 8
        guard f.count >= inner + 14 else { return f }
        let vsids = t.subnets.keys.sorted()
        if r.chance(50), !vsids.isEmpty {
            let v = r.pick(vsids)
            put([UInt8(v >> 16), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)], at: gre + 4)
        }
        let vsid = UInt32(f[gre + 4]) << 16 | UInt32(f[gre + 5]) << 8 | UInt32(f[gre + 6])
        let type = be16(inner + 12)
        let family: IPFamily = type == 0x86dd ? .v6 : .v4
        let l3 = inner + 14
        var src = l3 + 8, dst = l3 + 24  // IPv6
        if type == 0x0806 {
            (src, dst) = (l3 + 14, l3 + 24)
        } else if family == .v4 {
            (src, dst) = (l3 + 12, l3 + 16)
        }
        let senders = records(vsid, family)
        if r.chance(70), !senders.isEmpty {
            let (ca, rec) = r.pick(senders)
            put(ca.bytes, at: src)
            put(rec.customerMAC.bytes, at: inner + 6)
            if type == 0x0806 { put(rec.customerMAC.bytes, at: l3 + 8) }
            if rec.providerAddress.family == (outerV4 ? .v4 : .v6), r.chance(85) {
                put(rec.providerAddress.bytes, at: outerV4 ? 26 : 22)
            }
        }
        let locals = senders.filter { $0.1.port_ifindex != 0 }
        if r.chance(60), !locals.isEmpty {
            let (ca, rec) = r.pick(locals)
            put(ca.bytes, at: dst)
            if type != 0x0806 && f[inner] & 1 == 0 { put(rec.customerMAC.bytes, at: inner) }
        }
        return f
    }

    /// One generated frame: a corpus frame from its port (now and then another one) or the
    /// uplink, fitted to the policy in force most of the time when `fitted`, then mutated
    /// `mutated` percent of the time.
    static func generate(
        _ r: inout Random, _ corpus: [FastPathCase], host: HostFixture, ports: [UInt32], tables: DecisionTables,
        fitted: Bool, mutated: Int
    ) -> (base: FastPathCase, fromVM: Bool, ingress: UInt32, frame: [UInt8]) {
        let base = r.pick(corpus)
        let fromVM = base.program == .fromVM
        let ingress = fromVM ? (r.chance(90) ? host.port(base.ingress) : r.pick(ports)) : host.port("ul")
        var frame = base.frame
        if fitted && r.chance(80) { frame = adapt(frame, fromVM: fromVM, ingress: ingress, tables, &r) }
        if r.chance(mutated) { frame = mutate(frame, &r) }
        return (base, fromVM, ingress, frame)
    }

    /// The core's outcome as a test run of XDP shows it: a flood from the fabric has its
    /// destination MAC parked until tc restores it (NV_FLOOD_PARKED_MAC).
    static func asTestRunShowsIt(_ o: Outcome) -> Outcome {
        var out = o
        if case let .floodUp(vsid, inner) = o.verdict, inner.count >= 6 {
            out.verdict = .floodUp(vsid: vsid, frame: [0x02, 0x4e, 0x56, 0x46, 0x4c, 0x00] + inner.dropFirst(6))
        }
        return out
    }

    /// The programs' side of the comparison: a frame by test-run on the fixture, what the
    /// program did in the core's terms and the counters it moved; nil when test-run refuses
    /// the frame (an skb whose ethertype says IPv4 or IPv6 but holds less than that header).
    final class ProgramRunner {
        let host: HostFixture
        private let received = Received()
        private let channel: ExceptionChannel

        final class Received { var frames: [ExceptionFrame] = [] }

        init(_ host: HostFixture) throws {
            self.host = host
            let received = self.received
            channel = try ExceptionChannel(datapath: host.dp) { received.frames.append($0) }
        }

        func run(_ program: Program, _ frame: [UInt8], ingress: UInt32) throws -> (
            verdict: Verdict?, moved: [String: UInt64]
        )? {
            received.frames.removeAll()
            let before = host.counters()
            guard let result = try? host.dp.testRun(program, frame: frame, ingressIfindex: ingress) else { return nil }
            try channel.poll(timeoutMilliseconds: 0)
            let after = host.counters()
            var moved: [String: UInt64] = [:]
            for (k, v) in after where v != before[k] { moved[k] = v - (before[k] ?? 0) }
            return (DifferentialTests.programVerdict(result, received.frames, hook: program), moved)
        }
    }

    /// What the BPF program did, in the core's terms.
    static func programVerdict(
        _ r: TestRunResult, _ exceptions: [ExceptionFrame], hook: Program
    ) -> Verdict? {
        guard let t = r.trace else { return nil }
        switch t.traceKind {
        case NV_TRACE_FORWARD: return .forward(egress: t.egress_ifindex, frame: r.output)
        case NV_TRACE_REPLY: return .reply(frame: r.output)
        case NV_TRACE_PASS: return .pass
        case NV_TRACE_DROP: return .drop(t.dropReason)
        case NV_TRACE_EXCEPTION:
            guard let e = exceptions.first else { return nil }
            return .exception(t.exceptionReason, vsid: e.vsid, frame: e.frame, mtu: e.mtu)
        case NV_TRACE_FLOOD:
            return hook == .fromVM ? .flood(copies: Int(t.code)) : .floodUp(vsid: t.vsid, frame: r.output)
        default: return nil
        }
    }

    /// The core's counters named as the fixture names them.
    static func names(_ counters: CounterMoves) -> [String: UInt64] {
        let vsidOfSlot: [UInt32: UInt32] = [Plan.red.slot: 5001, Plan.red2.slot: 5002, Plan.blue.slot: 6001]
        let counterNames = HostFixture.counterNames
        var out: [String: UInt64] = [:]
        for (c, n) in counters {
            switch c {
            case let .drop(r): out["drop:\(ReasonNames.drop(r))"] = n
            case let .exception(r): out["exception:\(ReasonNames.exception(r))"] = n
            case let .vsid(slot, counter): out["\(vsidOfSlot[slot] ?? slot):\(counterNames[Int(counter.rawValue)])"] = n
            case let .gateway(c): out["gateway:\(c.rawValue)"] = n
            case let .domain(rdid, c): out["domain:\(rdid):\(c.rawValue)"] = n
            }
        }
        return out
    }

    @Test func theUserspaceCoreDecidesEveryFrameAsTheProgramsDo() throws {
        let env = ProcessInfo.processInfo.environment
        let count = env["NVGRE_DIFF_FRAMES"].flatMap { Int($0) } ?? 100_000
        let seed = env["NVGRE_DIFF_SEED"].flatMap { UInt64($0) } ?? UInt64(Date().timeIntervalSince1970 * 1000)
        let policies = max(1, env["NVGRE_DIFF_POLICIES"].flatMap { Int($0) } ?? 20)
        let host = try HostFixture(tag: "diff")
        let programs = try ProgramRunner(host)
        // The table's frames (those that need no change to the maps) are the corpus.
        let corpus = FastPathTable.all.filter { $0.before == nil && $0.gsoSize == 0 }
        let portNames = ["port1", "port2", "port3", "port4", "port5"]
        let ports = portNames.map { host.port($0) }
        var r = Random(state: seed)
        var differences: [String] = []
        var kinds: [String: Int] = [:]
        var refused = 0
        var dropReasons = Set<String>()
        var vsidCounters = Set<String>()

        try NetworkNamespace.run(in: host.ns) {
            // The fixture's own policy first, then random ones over the same addresses.
            for round in 0..<policies {
                var policyText = "the fast-path fixture's maps (HostFixture)"
                if round > 0 {
                    let policy = RandomPolicies.make(&r, ports: portNames)
                    try RandomPolicies.apply(policy, to: host)
                    policyText = PolicyWriter.write(policy, as: .yaml)
                }
                let core = DecisionCore(
                    tables: try Self.snapshot(host.dp), underlay: FixtureUnderlay(uplink: host.port("ul")))
                for i in 0..<(count / policies) {
                    let (base, fromVM, ingress, frame) = Self.generate(
                        &r, corpus, host: host, ports: ports, tables: core.tables, fitted: round > 0, mutated: 85)
                    guard let (program, moved) = try programs.run(base.program, frame, ingress: ingress) else {
                        refused += 1
                        continue
                    }
                    let expected = Self.asTestRunShowsIt(
                        fromVM ? core.fromVM(frame, ingress: ingress) : core.fromFabric(frame))
                    kinds["\(expected.verdict)".prefix { $0 != "(" }.description, default: 0] += 1
                    if case let .drop(reason) = expected.verdict { dropReasons.insert(ReasonNames.drop(reason)) }
                    let counters = Self.names(expected.counters)
                    for name in counters.keys where name.first?.isNumber == true {
                        vsidCounters.insert(String(name.drop { $0 != ":" }.dropFirst()))
                    }
                    if program != expected.verdict || moved != counters {
                        differences.append(
                            "policy \(round), frame \(i) (from \(fromVM ? "port ifindex \(ingress)" : "the uplink"), "
                                + "base \"\(base.name)\"): \(hex(frame))\n  program: "
                                + "\(program.map { "\($0)" } ?? "no trace") \(moved)\n  core:    \(expected.verdict) "
                                + "\(counters)\n  policy:\n\(policyText)")
                        if differences.count >= 3 { break }
                    }
                }
                if !differences.isEmpty { break }
            }
        }
        #expect(
            differences.isEmpty,
            "\(differences.count) differences; replay with NVGRE_DIFF_SEED=\(seed):\n\(differences.joined(separator: "\n"))"
        )
        // The frames reached every kind of decision, not only drops.
        print(
            "differential: \(count) frames over \(policies) policies, seed \(seed), \(refused) refused by test-run: "
                + "\(kinds.sorted { $0.key < $1.key })")
        #expect(refused < count / 10, "test-run refused \(refused) of \(count) frames")
        print("differential: drop reasons reached: \(dropReasons.sorted().joined(separator: ", "))")
        print("differential: VSID counters moved: \(vsidCounters.sorted().joined(separator: ", "))")
        // Frames for VMs that moved away (random policies flag some records) were sent on.
        #expect(policies < 5 || vsidCounters.contains("moved"), "no frame went on to a moved VM's new host")
        for kind in ["drop", "forward", "reply", "exception", "flood", "floodUp", "pass"] {
            #expect((kinds[kind] ?? 0) > 0, "no frame ended in \(kind): \(kinds)")
        }
    }
}
