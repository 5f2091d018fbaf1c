import CNvgre
import NvgreDatapath
import NvgreLab
import NvgreWire
import Testing

/// Two hosts, one VM each, real pings both ways through both programs, maps filled from
/// Swift (the topology is NvgreLab's TwoHostLab, which the demo shows too).
@Suite(.serialized)
struct NamespacePingTests {
    @Test func pingBothWaysThroughTheFastPath() throws {
        let lab = try TwoHostLab(tag: "ping")
        let (a, b) = (lab.a, lab.b)
        for h in [a, b] { #expect(h.links.allSatisfy { [.xdp(.native), .tcIngress].contains($0.attachment) }) }

        // The exception consumers run while the pings do: the first frame finds the underlay
        // neighbor unresolved, and the consumer starts resolution.
        lab.startExceptionConsumers()
        let results = [
            ("A->B IPv4", lab.ping(from: a, to: b.vm.ip4)), ("B->A IPv4", lab.ping(from: b, to: a.vm.ip4)),
            ("A->B IPv6", lab.ping(from: a, to: b.vm.ip6)), ("B->A IPv6", lab.ping(from: b, to: a.vm.ip6))
        ]
        lab.stopExceptionConsumers()

        for (label, received) in results { #expect(received >= 4, "\(label): \(received) of 5 echo replies") }
        for h in [a, b] {
            let c = h.dp.maps.vsidCounters(slot: 1)
            #expect(c[NV_CNT_ENCAP]!.packets >= 16, "encap on \(h.name): \(c[NV_CNT_ENCAP]!.packets)")
            #expect(c[NV_CNT_DECAP]!.packets >= 16, "decap on \(h.name): \(c[NV_CNT_DECAP]!.packets)")
            #expect(h.handler.errors.isEmpty, "\(h.handler.errors)")
            #expect(h.dp.maps.dropCount(NV_DROP_PA_SPOOF).packets == 0)
        }
        // Nothing had resolved the underlay neighbor before the first ping: that frame went to
        // userspace, which started resolution, and the fast path carried the rest.
        #expect(a.dp.maps.exceptionCount(NV_EXC_NO_NEIGH).packets >= 1)
        #expect(a.handler.resolutions.contains("198.18.0.2"))
    }
}
