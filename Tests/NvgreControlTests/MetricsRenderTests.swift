import NvgreControl
import Testing

/// The text format of a snapshot, without maps: per-path totals never go down when a subnet
/// is deleted or made anew (Prometheus would read a fall as a counter reset), and the
/// per-VSID series stop at the cap.
struct MetricsRenderTests {
    func snapshot(_ vsids: [(UInt32, UInt64)]) -> InstanceMetrics.Snapshot {
        var s = InstanceMetrics.Snapshot()
        s.vsids = vsids.map { ($0.0, [("encap", (packets: $0.1, bytes: $0.1 * 100))]) }
        return s
    }

    func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap {
            Double($0.split(separator: " ").last ?? "")
        }
    }

    @Test func pathTotalsOnlyGrow() {
        let m = InstanceMetrics(vsidSeriesCap: 1, version: "test")
        let first = m.render(snapshot([(5001, 10), (5002, 5)]))
        #expect(value(first, "nvgre_packets_total{path=\"encap\"}") == 15)
        #expect(value(first, "nvgre_vsid_packets_total{vsid=\"5001\",path=\"encap\"}") == 10)
        #expect(!first.contains("vsid=\"5002\""), "past the cap")
        #expect(value(first, "nvgre_vsid_series_omitted") == 1)
        // 5002 deleted: its 5 stay in the total.
        let second = m.render(snapshot([(5001, 12)]))
        #expect(value(second, "nvgre_packets_total{path=\"encap\"}") == 17)
        // 5001 made anew, counting from 0 again: its 12 are kept.
        let third = m.render(snapshot([(5001, 3)]))
        #expect(value(third, "nvgre_packets_total{path=\"encap\"}") == 20)
        #expect(value(third, "nvgre_bytes_total{path=\"encap\"}") == 2000)
    }
}
