import Foundation
import Logging
import NvgreDatapath

/// The loop of `nvgre agent` and `nvgre gateway`: consumes an instance's exception ring until
/// a signal or `nvgre down`. The host handler answers and resolves; `extra` (the gateway)
/// takes its reasons first. It holds no state the data path needs, so stopping or restarting
/// it never stops forwarding; frames needing it meanwhile wait in the ring or are counted.
public enum ExceptionService {
    /// Underlay neighbors are kept resolved ahead of traffic, and refreshed as they age.
    static let refreshEvery = 30.0

    /// `policyChanged` is set by whoever changes the maps from this process (the store's
    /// follower): the new provider addresses are resolved at once instead of at the next refresh.
    /// `lock`: the instance's agent lock, when the caller took it first (agentLock).
    public static func run(
        _ instance: Instance, extra: ExceptionHandling?, icmpLimit: ICMPRateLimit = ICMPRateLimit(),
        policyChanged: Flag? = nil, lock held: PidFileLock? = nil, logger: Logger
    ) throws {
        let lock = try held ?? agentLock(instance)
        defer { lock.release() }
        var signals = StopSignals()

        let handler = try HostExceptionHandler(maps: instance.maps, icmpLimit: icmpLimit)
        handler.onEvent = { logger.log(level: $0.level, "\($0)") }
        let channel = try ExceptionChannel(maps: instance.maps) { e in
            if extra?.handle(e) != true { handler.handle(e) }
        }
        var lastRefresh = monotonicSeconds()
        var peers = try handler.refreshUnderlayNeighbors()
        // The next hops the programs use instead of a FIB lookup per frame (nexthops).
        let nextHops = try NextHopKeeper(maps: instance.maps)
        defer { nextHops.endLease() }
        nextHops.sync(peers)
        try nextHops.renewLease()
        if let extra { logger.info("\(extra.start())") }
        let role = extra?.role ?? "agent"
        logger.info(
            Logger.Message(
                stringLiteral:
                    "\(role) for instance \(instance.name) on uplink \(instance.settings.uplink): \(peers.count) remote provider "
                    + "addresses resolved ahead; handling exceptions (pid \(processID))"),
            metadata: ["instance": "\(instance.name)", "datapath": "xdp"])

        // A down and a new up within a poll would leave us on the old maps: the pin's inode tells.
        let configPin = "\(instance.pinDirectory)/config"
        let pinned = Files.inode(configPin)
        var why = ""
        var lastCheck = monotonicSeconds()
        while why.isEmpty {
            try channel.poll(timeoutMilliseconds: 100)
            extra?.afterPoll()
            if let sig = signals.pending() { why = sig }
            if monotonicSeconds() - lastRefresh >= refreshEvery || policyChanged?.take() == true {
                lastRefresh = monotonicSeconds()
                if let now = try? handler.refreshUnderlayNeighbors() { peers = now }
                nextHops.sync(peers)
            }
            nextHops.follow()
            if monotonicSeconds() - lastCheck >= 1 {
                lastCheck = monotonicSeconds()
                try? nextHops.renewLease()
                if Files.inode(configPin) != pinned { why = "the instance went down" }
                // An apply killed half-way is undone here too, not only by the next nvgre.
                if let done = instance.recoverInterruptedApply() { logger.warning("\(role): \(done)") }
                extra?.everySecond()
            }
        }
        let counts = handler.counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let handled = counts.isEmpty ? "nothing" : counts.joined(separator: " ")
        logger.notice("\(role) stopping (\(why)); handled \(handled)\(extra.map { "; " + $0.stopping() } ?? "")")
    }

    /// Set by one thread, taken (read and cleared) by another.
    public final class Flag: @unchecked Sendable {
        private var set = false
        private let lock = NSLock()
        public init() {}
        public func raise() { lock.withLock { set = true } }
        public func take() -> Bool {
            lock.withLock {
                defer { set = false }
                return set
            }
        }
    }

    /// One consumer per exception ring (two would each see part of it): an exclusive lock on
    /// `<state>/agent.pid`, which holds the agent's pid.
    public static func agentLock(_ instance: Instance) throws -> PidFileLock {
        try acquireAgentLock(
            stateDirectory: instance.stateDirectory, instance: instance.name, why: "consumes an instance's exceptions")
    }
}

/// The lock of an instance's one agent (`<state>/agent.pid`); `why` says in the error what
/// the one agent does that two would spoil.
func acquireAgentLock(stateDirectory: String, instance: String, why: String) throws -> PidFileLock {
    switch try PidFileLock.acquire("\(stateDirectory)/agent.pid") {
    case let .locked(lock): return lock
    case let .heldBy(pid):
        throw ControlError(
            "an agent for instance \(instance) is already running (pid \(pid.isEmpty ? "?" : pid))",
            hint: "stop it first (kill \(pid.isEmpty ? "PID" : pid)); one agent \(why)")
    }
}
