import ArgumentParser
import Foundation
import Logging
import NvgreControl
import NvgreDatapath
import NvgreGateway
import NvgrePolicy
import NvgreStore

/// The userspace path of one host: consumes what the fast path hands up and acts on it.
/// It holds no state the data path needs, so stopping or restarting it never stops
/// forwarding; frames needing it meanwhile wait in the ring or are counted as dropped.
struct Agent: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Handle the frames the fast path hands to userspace, until the instance goes down.",
        discussion:
            "Today: keeps the underlay neighbors of every remote provider address resolved (at start and every 30 "
            + "s), starts resolution when the fast path meets one that is not, and counts every exception "
            + "reason. One agent per instance (a lock in the state directory); it exits by itself after `nvgre "
            + "down`, or on SIGINT/SIGTERM. With --store and --host it also keeps the maps on the store's state for "
            + "that host, and resolves new provider addresses as soon as they arrive. With --metrics it serves "
            + "Prometheus metrics; it logs to standard output with levels (the journal's, under systemd)."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var follow: StoreFollowOptions
    @OptionGroup var metrics: MetricsOptions
    @OptionGroup var logging: LogOptions

    func execute() throws {
        try logging.bootstrap()
        try metrics.check()
        // The agent lock first: a second agent leaves the store, the maps and the metrics
        // port alone.
        if let u = try global.userspaceInstance() {
            let lock = try UserspaceAgent.agentLock(u)
            try metrics.start { InstanceMetrics.read(u) }
            try followStore(global, follow, stateDirectory: u.stateDirectory) { policy, _ in _ = try u.apply(policy) }
            return try UserspaceAgent.run(u, lock: lock, logger: Logger(label: "nvgre.agent"))
        }
        let instance = try global.openInstance()
        let name = instance.name
        let lock = try ExceptionService.agentLock(instance)
        try metrics.start { InstanceMetrics.read(instance) }
        let changed = ExceptionService.Flag()
        try followStore(
            global, follow, stateDirectory: instance.stateDirectory, apply: applying(to: name, then: changed))
        try serveExceptions(instance, gateway: nil, policyChanged: changed, lock: lock)
    }
}

/// With --store: a thread that keeps this host's maps on the store's state for `--host`
/// (StoreFollower), its status in the state directory (`store.json`, for show and stats),
/// one log line per change of state. Started in the host's namespace (the maps are there);
/// its sockets are made where the command started (GlobalOptions.enter). `settle`: returns
/// once the first read was applied or failed (at most 5 s), for a gateway that reads its
/// configuration from the maps when it starts.
func followStore(
    _ g: GlobalOptions, _ options: StoreFollowOptions, stateDirectory: String, settle: Bool = false,
    apply: @escaping (Policy, _ listed: Bool) throws -> Void
) throws {
    guard let address = g.storeAddress else { return }
    guard let host = try g.storeHost() else {
        throw fieldError("--host", "(none)", "this host's name in the store (with --store)")
    }
    let grace = Double(try parseNumber(options.movedGrace, "--moved-grace", 0...86400))
    let aliveTTL = Int(try parseNumber(options.aliveTTL, "--alive-ttl", 2...300))
    let store = PolicyStore(try EtcdClient(address: address, timeout: 2))
    let path = stateDirectory + "/\(StoreFollower.statusFile)"
    nonisolated(unsafe) var last: StoreFollower.Status?
    let settled = DispatchSemaphore(value: 0)
    let follower = StoreFollower(
        store: store, address: address, host: host, apply: announcingArrivals(inWriterTurns(of: g.instance, apply)),
        report: { s in
            if let data = try? JSONEncoder().encode(s) {
                let temporary = path + ".new"
                if FileManager.default.createFile(atPath: temporary, contents: data) { rename(temporary, path) }
            }
            if s.applies != last?.applies {
                log(
                    "store: host \(host) follows generation \(s.generation ?? "none") (revision \(s.revision))",
                    [
                        "revision": "\(s.revision)", "applies": "\(s.applies)", "resyncs": "\(s.resyncs)",
                        "lists": "\(s.lists)"
                    ])
            }
            if let e = s.lastError, e != last?.lastError {
                cliLogger.warning("store: \(e); forwarding on the last state", metadata: ["store": "\(address)"])
            }
            if s.lastError == nil, last?.lastError != nil { log("store: reachable again (revision \(s.revision))") }
            for moved in s.movedAway where !(last?.movedAway.contains(moved) ?? false) {
                log("store: VM \(moved) moved away; frames still arriving here go on there for \(Int(grace)) s")
            }
            if last == nil { settled.signal() }
            last = s
        })
    follower.movedGrace = grace
    log("store: following \(address) as host \(host)")
    Thread { follower.run(stop: { false }) }.start()
    let liveness = HostLiveness(etcd: store.etcd, host: host, ttl: aliveTTL)
    Thread { liveness.run(stop: { false }) }.start()
    if settle { _ = settled.wait(timeout: .now() + 5) }
}

/// How a store follower's policies reach the maps of XDP instance `name`. What the last
/// apply left there is kept: a change from the watch is diffed against it instead of
/// reading every live entry; a list (a resync) reads them, so anything else that wrote to
/// the maps meanwhile is put right.
func applying(to name: String, then changed: ExceptionService.Flag) -> (Policy, _ listed: Bool) throws -> Void {
    nonisolated(unsafe) var known: [PolicyMap: MapImage]?
    return { policy, listed in
        let base = listed ? nil : known
        known = nil  // unknown until this apply succeeds
        let summary = try Instance.open(name).apply(policy, known: base)
        known = summary.images
        changed.raise()
        if !summary.changesNothing {
            log(
                "apply: \(summary.plan.total) map entries changed, \(summary.attach.count) ports attached, "
                    + "\(summary.detach.count) detached in \(Int(summary.seconds * 1000)) ms",
                ["entries": "\(summary.plan.total)", "listed": "\(listed)"])
        }
    }
}

/// Wraps a follower's `apply` in the instance's writer turns (WriterTurn). When someone
/// else took a turn since this process's last one (an apply or add from the CLI), the
/// maps may hold what this process does not know: the apply is then made as after a
/// list, reading every live entry.
func inWriterTurns(
    of instance: String, _ apply: @escaping (Policy, _ listed: Bool) throws -> Void
) -> (Policy, Bool) throws -> Void {
    nonisolated(unsafe) var lastTurn: UInt64?
    return { policy, listed in
        let turn = try WriterTurn.take(instance: instance, doing: commandLineForOthers())
        defer { turn?.release() }
        let othersWrote = turn.map { $0.previous != lastTurn } ?? true
        lastTurn = nil
        try apply(policy, listed || othersWrote)
        lastTurn = turn?.number
    }
}

/// Wraps a follower's `apply`: once a policy is in place, the VMs that arrived here from
/// another host (a migration's switch) are announced into their VSIDs (ArrivalAnnouncer).
func announcingArrivals(_ apply: @escaping (Policy, _ listed: Bool) throws -> Void) -> (Policy, Bool) throws -> Void {
    nonisolated(unsafe) var previous: Policy?
    let announcer = ArrivalAnnouncer()
    return { policy, listed in
        try apply(policy, listed)
        defer { previous = policy }
        guard let previous else { return }
        let arrived = policy.vmsArrived(since: previous)
        if arrived.isEmpty { return }
        let sent = announcer.announce(arrived, in: policy)
        let vms = arrived.map { "\($0.vsid) \($0.customerAddress)" }.joined(separator: ", ")
        log("store: VM \(vms) arrived here; announced in \(sent.frames) frames to \(sent.peers.count) peers")
        for failure in sent.failures { cliLogger.warning("store: announcing an arrival failed \(failure)") }
    }
}

/// How an agent (or a gateway) follows the store, beside --store and --host.
struct StoreFollowOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "With --store: seconds during which frames still arriving here for a VM that moved to another host go "
                + "on to it (senders that have not seen the move lose nothing).", valueName: "seconds"))
    var movedGrace = "30"
    @Option(
        help: ArgumentHelp(
            "With --store: seconds this host's liveness key (alive/NAME) outlives the agent's last renewal.",
            valueName: "seconds"))
    var aliveTTL = "10"
}

/// The exception service of `nvgre agent` and `nvgre gateway`, logging through swift-log
/// (LogOutput.swift).
func serveExceptions(
    _ instance: Instance, gateway: Gateway?, icmpLimit: ICMPRateLimit = ICMPRateLimit(),
    policyChanged: ExceptionService.Flag? = nil, lock: PidFileLock? = nil
) throws {
    try ExceptionService.run(
        instance, extra: gateway, icmpLimit: icmpLimit, policyChanged: policyChanged, lock: lock,
        logger: Logger(label: gateway == nil ? "nvgre.agent" : "nvgre.gateway"))
}
