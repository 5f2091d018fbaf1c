import ArgumentParser
import Foundation
import NvgreControl
import NvgreDatapath
import NvgreGateway
#if canImport(Glibc)
import Glibc
#endif

/// The userspace path of one host: consumes what the fast path hands up and acts on it.
/// It holds no state the data path needs, so stopping or restarting it never stops
/// forwarding; frames needing it meanwhile wait in the ring or are counted as dropped.
struct Agent: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Handle the frames the fast path hands to userspace, until the instance goes down.",
        discussion: "Today: keeps the underlay neighbors of every remote provider address resolved (at start and every 30 s), starts resolution when the fast path meets one that is not, and counts every exception reason. One agent per instance (a lock in the state directory); it exits by itself after `nvgre down`, or on SIGINT/SIGTERM.")

    @OptionGroup var global: GlobalOptions

    func execute() throws {
        try serveExceptions(try global.openInstance(), gateway: nil)
    }
}

/// The loop of `nvgre agent` and `nvgre gateway`: consume the exception ring until a signal
/// or `nvgre down`; the gateway (when given) takes the NAT reasons and expires flows.
func serveExceptions(_ instance: Instance, gateway: Gateway?, icmpLimit: ICMPRateLimit = ICMPRateLimit()) throws {
    let lock = try AgentLock(directory: instance.stateDirectory, instance: instance.name)
    defer { lock.release() }
    setvbuf(stdout, nil, _IOLBF, 0)

    // SIGINT/SIGTERM are blocked and collected between polls: no handler, no globals.
    var stopSignals = sigset_t()
    sigemptyset(&stopSignals)
    sigaddset(&stopSignals, SIGINT)
    sigaddset(&stopSignals, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

    let handler = try HostExceptionHandler(maps: instance.maps, icmpLimit: icmpLimit)
    handler.onEvent = { log("\($0)") }
    let channel = try ExceptionChannel(maps: instance.maps) { e in
        if gateway?.handle(e) != true { handler.handle(e) }
    }
    // Underlay neighbors are kept resolved ahead of traffic, and refreshed as they age.
    let refreshEvery = 30.0
    var lastRefresh = monotonicSeconds()
    let peers = try handler.refreshUnderlayNeighbors()
    if let gateway {
        let flows = gateway.recover()
        log("gateway for instance \(instance.name): external \(gateway.externalAddresses.map { "\($0.address) ports \($0.natPorts)" }.joined(separator: ", ")); \(flows) flows found in the maps")
    }
    log("\(gateway == nil ? "agent" : "gateway") for instance \(instance.name) on uplink \(instance.settings.uplink): \(peers) remote provider addresses resolved ahead; handling exceptions (pid \(getpid()))")

    // A down and a new up within a poll would leave us on the old maps: the pin's inode tells.
    let configPin = "\(instance.pinDirectory)/config"
    let pinned = inode(configPin)
    var why = ""
    var lastCheck = monotonicSeconds()
    while why.isEmpty {
        try channel.poll(timeoutMilliseconds: 100)
        gateway?.flushCounters()
        var zero = timespec()
        let sig = sigtimedwait(&stopSignals, nil, &zero)
        if sig > 0 { why = sig == SIGINT ? "SIGINT" : "SIGTERM" }
        if monotonicSeconds() - lastRefresh >= refreshEvery {
            lastRefresh = monotonicSeconds()
            _ = try? handler.refreshUnderlayNeighbors()
        }
        if monotonicSeconds() - lastCheck >= 1 {
            lastCheck = monotonicSeconds()
            if inode(configPin) != pinned { why = "the instance went down" }
            gateway?.expire()
            gateway?.flushCounters()
        }
    }
    let counts = handler.counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    log("\(gateway == nil ? "agent" : "gateway") stopping (\(why)); handled \(counts.isEmpty ? "nothing" : counts.joined(separator: " "))\(gateway.map { "; \($0.table.count) flows left in the maps" } ?? "")")
}

/// One log line with the local time; the formatter is made once (making one costs more
/// than the line).
func log(_ line: String) {
    print("\(logTimeFormatter.string(from: Date())) \(line)")
}

private let logTimeFormatter: DateFormatter = {
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss.SSS"
    return f
}()

private func inode(_ path: String) -> UInt? {
    var st = stat()
    return stat(path, &st) == 0 ? UInt(st.st_ino) : nil
}

/// One consumer per exception ring: two would each see part of it. An exclusive flock on
/// `<state>/agent.pid` (released by the kernel if the agent dies) holds the agent's pid.
struct AgentLock {
    let fd: Int32
    let path: String

    init(directory: String, instance: String) throws {
        path = "\(directory)/agent.pid"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw DatapathError("open \(path)", errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buf, buf.count)
            close(fd)
            let pid = String(decoding: buf.prefix(max(n, 0)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ControlError("an agent for instance \(instance) is already running (pid \(pid.isEmpty ? "?" : pid))",
                               hint: "stop it first (kill \(pid.isEmpty ? "PID" : pid)); one agent consumes an instance's exceptions")
        }
        ftruncate(fd, 0)
        let text = "\(getpid())\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }

    func release() {
        unlink(path)
        close(fd)
    }
}
