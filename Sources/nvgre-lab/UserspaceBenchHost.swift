import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire

/// Host A as the bench's NvgreBenchHost, on the userspace data path: `nvgre up --datapath
/// userspace` with the same policy, and `nvgre agent` forwarding. port1 and ul run a bare
/// XDP_PASS only because the generator's frames are XDP frames, which a veth takes only
/// then; the frames reach the agent's packet rings as skbs, as a NIC's would.
final class UserspaceBenchHost {
    let ns: (h: String, v: String, f: String)
    let ulMAC: MACAddress
    let instance: String
    let nvgre = builtBinary("nvgre")
    private let policyFile: String
    private let agentLog: String
    private var agent: pid_t?

    init(_ net: LabNetwork, queues: Int) throws {
        ns = try BenchPlan.wireHost(net, "us", queues: queues)
        ulMAC = try net.mac("ul", in: ns.h)
        instance = "\(net.prefix)-us"
        policyFile = NSTemporaryDirectory() + "\(instance)-policy.yaml"
        agentLog = NSTemporaryDirectory() + "\(instance)-agent.log"
        try NvgreBenchHost.policyText(scaleRecords: 0).write(toFile: policyFile, atomically: false, encoding: .utf8)
        let up = try Spawn.run(
            [
                nvgre, "-n", ns.h, "--instance", instance, "up", "--uplink", "ul", "--datapath", "userspace",
                "--policy", policyFile
            ])
        guard up.status == 0 else { throw ShellErrorText("nvgre up --datapath userspace: \(up.output)") }
        let bare = try Datapath()
        try NetworkNamespace.run(in: ns.h) {
            for i in ["port1", "ul"] {
                try attachXDPToInterface(
                    programFD: bare.programFD(.barePass), name: "nv_bare_pass", ifindex: try interfaceIndex(i))
            }
        }
        agent = try Spawn.start([nvgre, "-n", ns.h, "--instance", instance, "agent"], output: agentLog, detached: false)
        try Spawn.waitForOutput(agentLog, containing: "forwarding on", what: "the userspace agent of the bench")
    }

    func down() {
        if let agent { Spawn.stop(agent) }
        _ = try? Spawn.run([nvgre, "--instance", instance, "down"])
        unlink(policyFile)
        unlink(agentLog)
    }

    var encap: LiveBench.Path {
        .init(
            name: "userspace encap path", frame: BenchFrames.outbound, from: (ns.v, "eth0"), sink: (ns.f, "fab"),
            processes: agent.map { [$0] } ?? [])
    }

    var decap: LiveBench.Path {
        .init(
            name: "userspace decap path", frame: BenchPlan.fromB(to: ulMAC), from: (ns.f, "fab"), sink: (ns.v, "eth0"),
            processes: agent.map { [$0] } ?? [])
    }
}
