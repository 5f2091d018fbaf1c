import CNvgre
import NvgreDatapath
import NvgreWire
import Testing

/// The real BPF object through BPF_PROG_TEST_RUN, one table of cases (FastPathCases.swift).
@Suite(.serialized)
struct FastPathTests {
    @Test func everyCaseOfTheTable() throws {
        let host = try HostFixture(tag: "table")
        var exceptions: [ExceptionFrame] = []
        let channel = try ExceptionChannel(datapath: host.dp) { exceptions.append($0) }
        let cases = FastPathTable.all
        #expect(cases.count >= 40)

        try NetworkNamespace.run(in: host.ns) {
            for c in cases {
                try c.before?(host)
                defer { _ = try? c.after?(host) }
                exceptions.removeAll()
                let before = host.counters()
                let result = try host.dp.testRun(
                    c.program, frame: c.frame, ingressIfindex: host.port(c.ingress), gsoSize: c.gsoSize)
                try channel.poll(timeoutMilliseconds: 0)
                let after = host.counters()
                check(c, result, host: host, exceptions: exceptions)

                var moved: [String: UInt64] = [:]
                for (k, v) in after where v != before[k] { moved[k] = v - (before[k] ?? 0) }
                let expected = Dictionary(
                    uniqueKeysWithValues: c.counters.map { k -> (String, UInt64) in
                        let parts = k.split(separator: "=")
                        return (String(parts[0]), parts.count > 1 ? UInt64(parts[1])! : 1)
                    })
                #expect(moved == expected, "\(c.name): counters moved \(moved), expected \(expected)")
            }
        }
    }

    private func check(_ c: FastPathCase, _ r: TestRunResult, host: HostFixture, exceptions: [ExceptionFrame]) {
        let name = c.name
        guard let t = r.trace else {
            Issue.record("\(name): no trace record (verdict \(r.verdict))")
            return
        }
        switch c.expected {
        case let .forward(to, output):
            #expect(r.action == .redirect, "\(name): \(r.action), verdict \(r.verdict)")
            #expect(t.kind == UInt16(NV_TRACE_FORWARD.rawValue), "\(name): trace kind \(t.kind) code \(t.code)")
            #expect(t.egress_ifindex == host.port(to), "\(name): egress \(t.egress_ifindex), expected \(to)")
            expectBytes(r.output, output, name)
        case let .reply(output):
            #expect(r.action == .reply, "\(name): \(r.action), trace \(t.kind)/\(t.code)")
            expectBytes(r.output, output, name)
        case .pass:
            #expect(r.action == .pass, "\(name): \(r.action), trace \(t.kind)/\(t.code)")
            expectBytes(r.output, c.frame, name)
        case let .drop(reason):
            #expect(r.action == .drop, "\(name): \(r.action), verdict \(r.verdict)")
            #expect(
                t.kind == UInt16(NV_TRACE_DROP.rawValue) && t.code == UInt16(reason.rawValue),
                Comment(
                    rawValue: "\(name): trace \(t.kind)/\(ReasonNames.drop(UInt32(t.code))), expected drop "
                        + "\(ReasonNames.drop(reason.rawValue))")
            )
        case let .flood(copies):
            #expect(r.action == .drop, "\(name): \(r.action), trace \(t.kind)/\(t.code)")
            #expect(
                t.kind == UInt16(NV_TRACE_FLOOD.rawValue) && t.code == UInt16(copies),
                "\(name): trace \(t.kind)/\(t.code), expected a flood of \(copies) copies")
        case let .floodUp(output):
            #expect(r.action == .pass, "\(name): \(r.action), trace \(t.kind)/\(t.code)")
            #expect(t.kind == UInt16(NV_TRACE_FLOOD.rawValue), "\(name): trace \(t.kind)/\(t.code)")
            expectBytes(r.output, output, name)
        case let .exception(reason, frame, mtu):
            #expect(r.action == .drop, "\(name): \(r.action), verdict \(r.verdict)")
            #expect(
                t.kind == UInt16(NV_TRACE_EXCEPTION.rawValue) && t.code == UInt16(reason.rawValue),
                "\(name): trace \(t.kind)/\(t.code), expected exception \(ReasonNames.exception(reason.rawValue))")
            #expect(exceptions.count == 1, "\(name): \(exceptions.count) exception records")
            if let e = exceptions.first {
                #expect(e.reason == reason, "\(name): ring reason \(e.reasonName)")
                #expect(e.ingressIfindex == host.port(c.ingress), "\(name): ring ingress \(e.ingressIfindex)")
                #expect(e.frame == (frame ?? c.frame), "\(name): ring frame differs")
                #expect(e.originalLength == (frame ?? c.frame).count, "\(name): ring length \(e.originalLength)")
                #expect(e.mtu == mtu, "\(name): ring mtu \(e.mtu)")
            }
        }
    }

    private func expectBytes(_ got: [UInt8], _ want: [UInt8], _ name: String) {
        if got == want { return }
        let firstDiff =
            zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.count)
        Issue.record(
            Comment(
                rawValue: "\(name): output differs at byte \(firstDiff) (got \(got.count) bytes, want \(want.count))\n"
                    + " got: \(hex(got))\nwant: \(hex(want))")
        )
    }

    @Test func exceptionRingFullIsACountedDrop() throws {
        var opts = LoadOptions()
        opts.exceptionRingBytes = 4096  // one page: a single 2 KiB record fits, the second does not
        let host = try HostFixture(tag: "ring", options: opts)
        let frame = Frames.udp(Plan.vm1.mac, "02:00:00:00:01:99", Plan.vm1.ip4, "198.19.1.99")
        let verdicts = try NetworkNamespace.run(in: host.ns) {
            try (0..<3).map { _ in try host.dp.testRun(.fromVM, frame: frame, ingressIfindex: host.port("port1")) }
        }
        #expect(verdicts.allSatisfy { $0.action == .drop })
        #expect(verdicts[0].trace?.kind == UInt16(NV_TRACE_EXCEPTION.rawValue))
        #expect(verdicts[2].trace?.kind == UInt16(NV_TRACE_DROP.rawValue))
        #expect(verdicts[2].trace?.code == UInt16(NV_DROP_EXCEPTION_RING_FULL.rawValue))
        #expect(host.dp.maps.dropCount(NV_DROP_EXCEPTION_RING_FULL).packets >= 1)
        #expect(
            host.dp.maps.exceptionCount(NV_EXC_NO_LOOKUP).packets
                + host.dp.maps.dropCount(NV_DROP_EXCEPTION_RING_FULL).packets == 3)

        // The consumer drains the ring; after that exceptions flow again.
        var seen = 0
        let channel = try ExceptionChannel(datapath: host.dp) { _ in seen += 1 }
        try channel.poll(timeoutMilliseconds: 0)
        #expect(seen >= 1)
        #expect(channel.received[NV_EXC_NO_LOOKUP] == seen)
        let again = try NetworkNamespace.run(in: host.ns) {
            try host.dp.testRun(.fromVM, frame: frame, ingressIfindex: host.port("port1"))
        }
        #expect(again.trace?.kind == UInt16(NV_TRACE_EXCEPTION.rawValue))
    }

    /// A VM flooding broadcasts gets its port's share of replication, the rest is dropped
    /// and counted: one a second here, so the second and third frames are over it.
    @Test func aPortsFloodsAreThrottledToItsShare() throws {
        let host = try HostFixture(tag: "flood")
        try host.dp.floodLists.update(
            5001,
            nv_flood_list(
                peers: [Plan.paB], ports: [host.port("port1"), host.port("port2")],
                share: ExceptionShare(perSecond: 1, burst: 1)))
        let discover = FastPathTable.dhcpDiscover(Plan.vm1.mac)
        let traces = try NetworkNamespace.run(in: host.ns) {
            try (0..<3).map { _ in
                try host.dp.testRun(.fromVM, frame: discover, ingressIfindex: host.port("port1")).trace
            }
        }
        #expect(traces[0]?.kind == UInt16(NV_TRACE_FLOOD.rawValue))
        #expect(traces.dropFirst().allSatisfy { $0?.code == UInt16(NV_DROP_FLOOD_THROTTLED.rawValue) })
        #expect(host.dp.maps.dropCount(NV_DROP_FLOOD_THROTTLED).packets == 2)
    }

    @Test func everyReasonHasOneName() {
        #expect(ReasonNames.drops.count == Int(NV_DROP_MAX.rawValue))
        #expect(Set(ReasonNames.drops.map { $0.0.rawValue }) == Set(0..<NV_DROP_MAX.rawValue))
        #expect(Set(ReasonNames.drops.map { $0.1 }).count == ReasonNames.drops.count)
        #expect(ReasonNames.exceptions.count == Int(NV_EXC_MAX.rawValue))
        #expect(Set(ReasonNames.exceptions.map { $0.0.rawValue }) == Set(0..<NV_EXC_MAX.rawValue))
    }

    /// Every counter of the ABI header has exactly one stable name, the gateway's and each
    /// routing domain's too.
    @Test func everyCounterHasOneName() {
        func check<C: Hashable>(_ table: [(C, String)], _ all: [C], _ what: String) {
            #expect(
                table.count == all.count && Set(table.map(\.0)) == Set(all),
                "\(what): \(table.count) names for \(all.count) counters")
            #expect(Set(table.map(\.1)).count == table.count, "\(what): a name used twice")
        }
        check(ReasonNames.drops, nv_drop_reason.allCases, "drops")
        check(ReasonNames.exceptions, nv_exception_reason.allCases, "exceptions")
        check(ReasonNames.gateway, nv_gw_counter.allCases, "gateway")
        check(ReasonNames.domain, nv_domain_counter.allCases, "routing domains")
        #expect(
            Set(ReasonNames.infrastructureOrigins.map(\.0.rawValue))
                == Set(NV_INFRA_LISTED.rawValue...NV_INFRA_SPECIAL.rawValue))
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }.joined()
}
