import ArgumentParser
import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab

/// Two hosts, one VM each, VSID 5001: pings both ways over NVGRE, narrated pass/fail.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Two hosts, two VMs, real pings over the XDP fast path.")

    func run() throws {
        print("nvgre demo: building hosts A (PA 198.18.0.1) and B (PA 198.18.0.2) in network namespaces")
        let lab = try TwoHostLab(tag: "demo")
        print("  VM1 \(lab.a.vm.ip4) / \(lab.a.vm.ip6) on A, VM2 \(lab.b.vm.ip4) / \(lab.b.vm.ip6) on B, VSID \(TwoHostLab.vsid)")
        print("  XDP: from-VM on each VM port, from-fabric on each uplink (\(lab.a.links[0].mode.rawValue) mode)")
        lab.startExceptionConsumers()
        var failures = 0
        for (from, to, label) in [(lab.a, lab.b.vm.ip4, "VM1 -> VM2 IPv4"), (lab.b, lab.a.vm.ip4, "VM2 -> VM1 IPv4"),
                                  (lab.a, lab.b.vm.ip6, "VM1 -> VM2 IPv6"), (lab.b, lab.a.vm.ip6, "VM2 -> VM1 IPv6")] {
            let got = lab.ping(from: from, to: to)
            let ok = got >= 4
            if !ok { failures += 1 }
            print("[\(ok ? "pass" : "FAIL")] \(label): ping \(got)/5 replies")
        }
        lab.stopExceptionConsumers()
        for h in [lab.a, lab.b] {
            let c = h.dp.maps.vsidCounters(slot: 1)
            let drops = ReasonNames.drops.map { ($0.1, h.dp.maps.dropCount($0.0).packets) }.filter { $0.1 > 0 }
            let exc = ReasonNames.exceptions.map { ($0.1, h.dp.maps.exceptionCount($0.0).packets) }.filter { $0.1 > 0 }
            print("host \(h.name): VSID \(TwoHostLab.vsid) encap \(c[NV_CNT_ENCAP]!.packets) decap \(c[NV_CNT_DECAP]!.packets)"
                  + " local \(c[NV_CNT_LOCAL]!.packets); to userspace \(exc.isEmpty ? "none" : exc.map { "\($0.0)=\($0.1)" }.joined(separator: " "))"
                  + "; drops \(drops.isEmpty ? "none" : drops.map { "\($0.0)=\($0.1)" }.joined(separator: " "))")
        }
        if failures > 0 { throw ExitCode(1) }
    }
}
