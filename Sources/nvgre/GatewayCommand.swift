import ArgumentParser
import Foundation
import Logging
import NvgreControl
import NvgreDatapath
import NvgreGateway
import NvgrePolicy

/// `nvgre gateway`: the agent of a gateway host, plus NAT. Its configuration is the policy
/// (externalAddresses, gatewayDomains, publishedServices); the flows live in the maps.
struct GatewayCommand: NvgreCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract:
            "Run a gateway host's userspace path: NAT for the served routing domains, published services, and what "
            + "`nvgre agent` does.",
        discussion: """
            A flow's first packets are translated here; once established (TCP: the initiator's ACK of the SYN+ACK; \
            UDP and ICMP echo: an answer) it is offloaded to XDP both ways. Idle flows expire: established TCP \
            after --tcp-established seconds, other TCP (opening, or after FIN/RST) after --tcp-transitory, UDP \
            after --udp, ICMP echo after --icmp. Stopping this process does not stop offloaded flows; a new one \
            finds them in the maps. Counters: `nvgre stats`. On a userspace instance (`up --datapath userspace`) \
            this is its agent with the gateway engine inside: it forwards, and translates every packet of every \
            flow (no offload step); it keeps the flows in the state directory once a second, and a restarted agent \
            takes them up again. With --store and --host it follows the store as `nvgre agent` does, and reads \
            its configuration once the store's state for the host is applied.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var follow: StoreFollowOptions
    @OptionGroup var metrics: MetricsOptions
    @OptionGroup var logging: LogOptions
    @Option(help: "Idle seconds before an established TCP flow expires.") var tcpEstablished = "7440"
    @Option(help: "Idle seconds before an opening or closing TCP flow expires.") var tcpTransitory = "240"
    @Option(help: "Idle seconds before a UDP flow expires.") var udp = "300"
    @Option(help: "Idle seconds before an ICMP echo flow expires.") var icmp = "60"
    @Flag(
        help: ArgumentHelp(
            "Log each flow as it is created, offloaded and expired (off: at many flows a second the log would cost "
                + "more than the flows; the counters count them either way).")
    )
    var logFlows = false

    func execute() throws {
        try logging.bootstrap()
        try metrics.check()
        var t = NATTimeouts()
        t.tcpEstablished = Double(try parseNumber(tcpEstablished, "--tcp-established", 1...UInt32.max))
        t.tcpTransitory = Double(try parseNumber(tcpTransitory, "--tcp-transitory", 1...UInt32.max))
        t.udp = Double(try parseNumber(udp, "--udp", 1...UInt32.max))
        t.icmp = Double(try parseNumber(icmp, "--icmp", 1...UInt32.max))
        if let u = try global.userspaceInstance() {
            // The userspace path's agent forwards and runs the gateway engine in one process.
            let lock = try UserspaceAgent.agentLock(u)
            try metrics.start { InstanceMetrics.read(u) }
            try followStore(global, follow, stateDirectory: u.stateDirectory, settle: true) { policy, _ in
                _ = try u.apply(policy)
            }
            try requireGateway(u.name, try u.storedPolicy())
            return try UserspaceAgent.run(
                u, timeouts: t, logFlows: logFlows, lock: lock, logger: Logger(label: "nvgre.gateway"))
        }
        let instance = try global.openInstance()
        let name = instance.name
        let lock = try ExceptionService.agentLock(instance)  // before the store or the gateway's state
        try metrics.start { InstanceMetrics.read(instance) }
        let changed = ExceptionService.Flag()
        try followStore(
            global, follow, stateDirectory: instance.stateDirectory, settle: true,
            apply: applying(to: name, then: changed))
        let policy = try instance.livePolicy()
        try requireGateway(instance.name, policy)
        let icmpLimit = ICMPRateLimit()  // one for the whole process
        let gateway = try Gateway(
            maps: instance.maps, externalAddresses: policy.externalAddresses, timeouts: t, icmpLimit: icmpLimit,
            natShares: policy.natShares)
        gateway.onEvent = flowEventLogger(Logger(label: "nvgre.gateway"), logFlows: logFlows)
        try serveExceptions(instance, gateway: gateway, icmpLimit: icmpLimit, policyChanged: changed, lock: lock)
    }

    private func requireGateway(_ name: String, _ policy: Policy) throws {
        guard !policy.externalAddresses.isEmpty, !policy.gatewayDomains.isEmpty else {
            throw ControlError(
                "instance \(name) is not a gateway: its policy has no externalAddresses or gatewayDomains",
                hint: "apply a policy with them (see examples/demo/host-g.yaml), then start the gateway")
        }
    }
}
