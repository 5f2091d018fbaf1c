import ArgumentParser
import Foundation
import NvgreControl
import NvgreDatapath
import NvgreGateway

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
            + "down`, or on SIGINT/SIGTERM."
    )

    @OptionGroup var global: GlobalOptions

    func execute() throws {
        if let u = try global.userspaceInstance() {
            setvbuf(stdout, nil, _IOLBF, 0)
            return try UserspaceAgent.run(u, log: log)
        }
        try serveExceptions(try global.openInstance(), gateway: nil)
    }
}

/// The exception service of `nvgre agent` and `nvgre gateway`, logging to standard output.
func serveExceptions(_ instance: Instance, gateway: Gateway?, icmpLimit: ICMPRateLimit = ICMPRateLimit()) throws {
    setvbuf(stdout, nil, _IOLBF, 0)
    try ExceptionService.run(instance, extra: gateway, icmpLimit: icmpLimit, log: log)
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
