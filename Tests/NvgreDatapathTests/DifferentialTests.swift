import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
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
        for name in ["ports", "subnets", "lookups", "port_cas", "routes", "local_pas", "config", "gw_domains"] {
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
            return .exception(t.exceptionReason, frame: e.frame, mtu: e.mtu)
        case NV_TRACE_FLOOD:
            return hook == .fromVM ? .flood(copies: Int(t.code)) : .floodUp(vsid: t.vsid, frame: r.output)
        default: return nil
        }
    }

    /// The core's counters named as the fixture names them.
    static func names(_ counters: [Counter: UInt64]) -> [String: UInt64] {
        let vsidOfSlot: [UInt32: UInt32] = [Plan.red.slot: 5001, Plan.red2.slot: 5002, Plan.blue.slot: 6001]
        let counterNames = ["encap", "decap", "local", "route", "exception", "flood", "flood-copy"]
        var out: [String: UInt64] = [:]
        for (c, n) in counters {
            switch c {
            case let .drop(r): out["drop:\(ReasonNames.drop(r))"] = n
            case let .exception(r): out["exception:\(ReasonNames.exception(r))"] = n
            case let .vsid(slot, counter): out["\(vsidOfSlot[slot] ?? slot):\(counterNames[Int(counter.rawValue)])"] = n
            }
        }
        return out
    }

    @Test func theUserspaceCoreDecidesEveryFrameAsTheProgramsDo() throws {
        let env = ProcessInfo.processInfo.environment
        let count = env["NVGRE_DIFF_FRAMES"].flatMap { Int($0) } ?? 100_000
        let seed = env["NVGRE_DIFF_SEED"].flatMap { UInt64($0) } ?? UInt64(Date().timeIntervalSince1970 * 1000)
        let host = try HostFixture(tag: "diff")
        var exceptions: [ExceptionFrame] = []
        let channel = try ExceptionChannel(datapath: host.dp) { exceptions.append($0) }
        let core = DecisionCore(tables: try Self.snapshot(host.dp), underlay: FixtureUnderlay(uplink: host.port("ul")))
        // The table's frames (those that need no change to the maps) are the corpus.
        let corpus = FastPathTable.all.filter { $0.before == nil && $0.gsoSize == 0 }
        let ports = ["port1", "port2", "port3", "port4", "port5"].map { host.port($0) }
        var r = Random(state: seed)
        var differences: [String] = []
        var kinds: [String: Int] = [:]
        var refused = 0
        var dropReasons = Set<String>()

        try NetworkNamespace.run(in: host.ns) {
            for i in 0..<count {
                let base = r.pick(corpus)
                let keep = r.chance(15)
                let frame = keep ? base.frame : Self.mutate(base.frame, &r)
                let fromVM = base.program == .fromVM
                let ingress = fromVM ? (r.chance(90) ? host.port(base.ingress) : r.pick(ports)) : host.port("ul")
                exceptions.removeAll()
                let before = host.counters()
                // test-run refuses an skb whose ethertype says IPv4 or IPv6 but holds less than
                // that header: such frames cannot be compared, and are counted apart.
                guard let result = try? host.dp.testRun(base.program, frame: frame, ingressIfindex: ingress) else {
                    refused += 1
                    continue
                }
                try channel.poll(timeoutMilliseconds: 0)
                let after = host.counters()
                var moved: [String: UInt64] = [:]
                for (k, v) in after where v != before[k] { moved[k] = v - (before[k] ?? 0) }

                let program = Self.programVerdict(result, exceptions, hook: base.program)
                var expected = fromVM ? core.fromVM(frame, ingress: ingress) : core.fromFabric(frame)
                if case let .floodUp(vsid, inner) = expected.verdict, inner.count >= 6 {
                    // XDP parks the destination MAC until tc restores it (NV_FLOOD_PARKED_MAC).
                    expected.verdict = .floodUp(
                        vsid: vsid, frame: [0x02, 0x4e, 0x56, 0x46, 0x4c, 0x00] + inner.dropFirst(6))
                }
                kinds["\(expected.verdict)".prefix { $0 != "(" }.description, default: 0] += 1
                if case let .drop(reason) = expected.verdict { dropReasons.insert(ReasonNames.drop(reason)) }
                let counters = Self.names(expected.counters)
                if program != expected.verdict || moved != counters {
                    differences.append(
                        "frame \(i) (seed \(seed), from \(fromVM ? "port ifindex \(ingress)" : "the uplink"), base "
                            + "\"\(base.name)\"): \(hex(frame))\n  program: \(program.map { "\($0)" } ?? "no trace") "
                            + "\(moved)\n  core:    \(expected.verdict) \(counters)")
                    if differences.count >= 5 { break }
                }
            }
        }
        #expect(
            differences.isEmpty,
            "\(differences.count) differences; replay with NVGRE_DIFF_SEED=\(seed):\n\(differences.joined(separator: "\n"))"
        )
        // The frames reached every kind of decision, not only drops.
        print(
            "differential: \(count) frames, seed \(seed), \(refused) refused by test-run: "
                + "\(kinds.sorted { $0.key < $1.key })")
        #expect(refused < count / 10, "test-run refused \(refused) of \(count) frames")
        print("differential: drop reasons reached: \(dropReasons.sorted().joined(separator: ", "))")
        for kind in ["drop", "forward", "reply", "exception", "flood", "floodUp", "pass"] {
            #expect((kinds[kind] ?? 0) > 0, "no frame ended in \(kind): \(kinds)")
        }
    }
}
