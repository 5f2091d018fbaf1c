import CNvgre
import Foundation
import Logging
import NvgreDatapath
import NvgreGateway
import NvgrePolicy
import NvgreUserspace
import NvgreUserspaceIO

/// `nvgre agent` on a userspace instance: the forwarding loop on the stored policy, which it
/// reads again within a second of a change (an `apply` writes it in one rename), and the
/// counters written to the state directory twice a second for `nvgre stats`. It exits when
/// the instance goes down (its state directory disappears).
public enum UserspaceAgent {
    /// `timeouts`: the gateway engine's, on a gateway host (`nvgre gateway` sets them).
    /// `lock`: the instance's agent lock, when the caller took it first (agentLock).
    public static func run(
        _ instance: UserspaceInstance, timeouts: NATTimeouts = NATTimeouts(), logFlows: Bool = false,
        lock held: PidFileLock? = nil, logger: Logger
    ) throws {
        let lock = try held ?? agentLock(instance)
        defer { lock.release() }
        // Every start is counted: after a crash the counters start again from zero, and
        // `stats` says since when and how many times the agent started, so a gap shows.
        let startsPath = "\(instance.stateDirectory)/agent.starts"
        let starts =
            (Int(
                (try? String(contentsOfFile: startsPath, encoding: .utf8))?.trimmingCharacters(
                    in: .whitespacesAndNewlines) ?? "") ?? 0) + 1
        try Files.replace(startsPath, with: "\(starts)\n")
        let since = Date()
        var policyStamp = stamp(instance.policyPath)
        var policy = try instance.storedPolicy()
        var compiled = try instance.compile(policy)
        let events = flowEventLogger(logger, logFlows: logFlows)
        let flows = "\(instance.stateDirectory)/nat-flows"
        let start = { (c: CompiledPolicy, p: Policy) in
            try Self.start(c, instance, gateway: gatewaySettings(p, timeouts, flows), events: events, logger: logger)
        }
        var forwarder = try start(compiled, policy)
        var loop = Loop(forwarder)
        let role = gatewaySettings(policy, timeouts, flows).map { g in
            " and the gateway engine (external " + g.externalAddresses.map { "\($0.address)" }.joined(separator: ", ")
                + "; \(forwarder.restoredFlows) NAT flows taken up from the last run)"
        }
        logger.info(
            Logger.Message(
                stringLiteral:
                    "agent of userspace instance \(instance.name): forwarding on \(instance.uplink) and \(ports(compiled).count) "
                    + "ports\(role ?? ""), \(forwarder.laneCount) lane\(forwarder.laneCount == 1 ? "" : "s") (threads)"
                    + (starts > 1
                        ? " (start \(starts): counters from zero; frames during the gap were not forwarded)" : "")),
            metadata: ["instance": "\(instance.name)", "datapath": "userspace"])
        var lastCounters = Date.distantPast
        while FileManager.default.fileExists(atPath: instance.stateDirectory) {
            // A new policy file is taken within 20 ms (two stat calls a round): a VM that
            // moves away is sent on at once, not a fifth of a second later.
            usleep(20_000)
            let now = stamp(instance.policyPath)
            if now != policyStamp {
                policyStamp = now
                do {
                    let nextPolicy = try instance.storedPolicy()
                    let next = try instance.compile(nextPolicy)
                    let gateway = gatewaySettings(nextPolicy, timeouts, flows)
                    if ports(next) == ports(compiled) && external(next) == external(compiled)
                        && (gateway == nil) == (gatewaySettings(policy, timeouts, flows) == nil)
                    {
                        try guardHostStack(next, instance)  // first: a failure leaves all as it was
                        forwarder.setTables(next.decisionTables)
                        if let gateway { forwarder.setGatewaySettings(gateway) }
                    } else {
                        // Ports came or went: new rings (frames meanwhile wait in the kernel's
                        // queues). If the new ones cannot open, the old policy forwards again.
                        loop.stop()
                        do {
                            forwarder = try start(next, nextPolicy)
                        } catch {
                            forwarder = try start(compiled, policy)
                            loop = Loop(forwarder)
                            throw error
                        }
                        loop = Loop(forwarder)
                    }
                    compiled = next
                    policy = nextPolicy
                    logger.info(
                        "policy reloaded: \(next.images[.lookups]?.count ?? 0) lookup records, \(ports(next).count) ports"
                    )
                } catch {
                    logger.error("policy not reloaded: \(error)")
                }
            }
            if Date().timeIntervalSince(lastCounters) >= 0.5 {
                // A restarted forwarder (ports changed) starts its transport counts afresh.
                let losses = forwarder.transportLosses()
                writeCounters(
                    forwarder.counterSnapshot(), gateway: forwarder.gatewaySnapshot, compiled,
                    domains: policy.routingDomains,
                    agent: (starts, since, forwarder.laneCount, losses.ringDrops, losses.sendFailures),
                    to: instance.countersPath)
                lastCounters = Date()
            }
        }
        loop.stop()
        logger.notice("instance \(instance.name) is down: stopping")
    }

    /// One agent per instance: two would forward every frame twice.
    public static func agentLock(_ instance: UserspaceInstance) throws -> PidFileLock {
        try acquireAgentLock(
            stateDirectory: instance.stateDirectory, instance: instance.name, why: "forwards for a userspace instance")
    }

    static func stamp(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0
            ? Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec) ^ Int(st.st_ino) : 0
    }

    static func ports(_ c: CompiledPolicy) -> [UInt32] {
        (c.images[.ports]?.entries.keys.map { $0.load(as: UInt32.self) } ?? []).sorted()
    }

    static func start(
        _ c: CompiledPolicy, _ instance: UserspaceInstance, gateway: UserspaceForwarder.GatewaySettings?,
        events: @escaping (Gateway.Event) -> Void, logger: Logger
    ) throws -> UserspaceForwarder {
        guard let up = existingInterfaceIndex(instance.uplink) else {
            throw ControlError("the uplink \(instance.uplink) is gone", hint: nil)
        }
        // The guard first: from here on the host's stack does not see the tenants' frames.
        try guardHostStack(c, instance)
        // Frames one by one on the uplink (and a gateway's external side): GRO would merge a
        // flow's NVGRE frames into one larger than any port's MTU.
        let ext = external(c)
        for (name, ifindex) in [(instance.uplink, up)]
            + (ext != 0 ? [(interfaceName(ext) ?? "the external side", ext)] : [])
        {
            if (try? turnOffGenericReceiveOffload(ifindex: ifindex)) == true {
                logger.notice(
                    "generic receive offload turned off on \(name): the userspace path takes frames one by one")
            }
        }
        return try UserspaceForwarder(
            tables: c.decisionTables, uplinkIfindex: up, portIfindexes: ports(c), gateway: gateway,
            gatewayEvents: events)
    }

    /// The gateway engine's settings, when the policy makes this host a gateway.
    static func gatewaySettings(_ p: Policy, _ timeouts: NATTimeouts, _ flows: String)
        -> UserspaceForwarder.GatewaySettings?
    {
        guard !p.externalAddresses.isEmpty, !p.gatewayDomains.isEmpty else { return nil }
        return UserspaceForwarder.GatewaySettings(
            externalAddresses: p.externalAddresses, natShares: p.natShares, timeouts: timeouts, flowsPath: flows)
    }

    static func external(_ c: CompiledPolicy) -> UInt32 { c.decisionTables.config?.external_ifindex ?? 0 }

    /// Keeps the host's stack from taking the ports' frames and a gateway's NAT and routed
    /// traffic (HostStackGuard).
    static func guardHostStack(_ c: CompiledPolicy, _ instance: UserspaceInstance) throws {
        let t = c.decisionTables
        let ext = external(c)
        let scope = HostStackGuard.Scope(
            ports: ports(c).compactMap(interfaceName), uplink: instance.uplink, providerAddresses: Array(t.localPAs),
            externalInterface: ext != 0 ? interfaceName(ext) : nil,
            externalAddresses: Array(t.gateway.externalAddresses), routedPrefixes: t.gateway.routed.map(\.prefix))
        do {
            try HostStackGuard.install(instance: instance.name, scope)
        } catch {
            throw ControlError("\(error)", hint: "install nftables (apt-get install nftables)")
        }
    }

    static func interfaceName(_ ifindex: UInt32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(ifindex, &buffer) != nil else { return nil }
        return String(cString: buffer)
    }

    /// The forwarding loop on its own thread.
    final class Loop: @unchecked Sendable {
        private let lock = NSLock()
        private var stopping = false
        private let done = DispatchSemaphore(value: 0)

        init(_ forwarder: UserspaceForwarder) {
            Thread {
                forwarder.run { self.isStopping }
                self.done.signal()
            }.start()
        }

        var isStopping: Bool {
            lock.lock()
            defer { lock.unlock() }
            return stopping
        }

        /// Stops the loop and waits for it; a second call returns at once.
        func stop() {
            lock.lock()
            let first = !stopping
            stopping = true
            lock.unlock()
            if first { done.wait() }
        }
    }

    /// The counters as `nvgre -j stats` shapes them: per VSID, drops and exceptions by name.
    static func writeCounters(
        _ counters: [Counter: UInt64],
        gateway: (
            gateway: [nv_gw_counter: (packets: UInt64, bytes: UInt64)],
            domains: [DomainCounter: (packets: UInt64, bytes: UInt64)], flows: Int
        )?, _ c: CompiledPolicy, domains: [RoutingDomain],
        agent: (starts: Int, since: Date, lanes: Int, ringDrops: UInt64, sendFailures: UInt64), to path: String
    ) {
        var vsidOfSlot: [UInt32: UInt32] = [:]
        for (k, v) in c.images[.subnets]?.entries ?? [:] {
            vsidOfSlot[v.load(as: nv_subnet.self).stats_slot] = k.load(as: UInt32.self)
        }
        let counterNames = Dictionary(uniqueKeysWithValues: ReasonNames.vsidCounters.map { ($0.0.rawValue, $0.1) })
        var vsids: [UInt32: [String: Any]] = [:]
        var drops: [String: Any] = [:], exceptions: [String: Any] = [:]
        for (r, name) in ReasonNames.drops { drops[name] = ["packets": counters[.drop(r)] ?? 0] }
        for (r, name) in ReasonNames.exceptions { exceptions[name] = ["packets": counters[.exception(r)] ?? 0] }
        for vsid in vsidOfSlot.values { vsids[vsid] = ["vsid": vsid] }
        for (c, n) in counters {
            guard case let .vsid(slot, counter) = c, let vsid = vsidOfSlot[slot] else { continue }
            vsids[vsid]?[counterNames[counter.rawValue] ?? "counter-\(counter.rawValue)"] = ["packets": n]
        }
        // The gateway's counters: the engine's and the core's (routed packets), as on XDP.
        var gw: [String: Any] = ["flows": gateway?.flows ?? 0, "flowsOffloaded": 0]
        for (r, name) in ReasonNames.gateway {
            gw[name] = ["packets": (gateway?.gateway[r]?.packets ?? 0) + (counters[.gateway(r)] ?? 0)]
        }
        let perDomain: [[String: Any]] = domains.sorted { $0.id < $1.id }.map { d in
            var o: [String: Any] = ["domain": d.name, "id": d.id]
            for (r, name) in ReasonNames.domain {
                o[name] = [
                    "packets": (gateway?.domains[DomainCounter(rdid: d.id, counter: r)]?.packets ?? 0)
                        + (counters[.domain(rdid: d.id, r)] ?? 0)
                ]
            }
            return o
        }
        let json: [String: Any] = [
            "datapath": "userspace", "vsids": vsids.keys.sorted().map { vsids[$0]! }, "drops": drops,
            "exceptions": exceptions, "gateway": gw, "domains": perDomain,
            "agent": [
                "starts": agent.starts, "countingSince": ISO8601DateFormatter().string(from: agent.since),
                "lanes": agent.lanes, "ringDrops": agent.ringDrops, "sendFailures": agent.sendFailures
            ]
        ]
        if let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]),
            let text = String(data: data, encoding: .utf8)
        {
            try? Files.replace(path, with: text + "\n")
        }
    }
}
