import Logging
import NvgreDatapath
import NvgreGateway

/// The level of each event the agents log: what a person needs at info, trouble at warning
/// or error, each NAT flow's life at debug (many a second on a busy gateway; `--log-flows`
/// raises them to info).
public func flowEventLogger(_ logger: Logger, logFlows: Bool) -> (Gateway.Event) -> Void {
    { event in
        switch event {
        case .created, .offloaded, .expired: logger.log(level: logFlows ? .info : .debug, "\(event)")
        case .exhausted: logger.warning("\(event)")
        case .failed: logger.error("\(event)")
        }
    }
}

extension HostExceptionHandler.Event {
    /// Resolution and ICMP answers to VMs are news (each is rate-limited); a failure is an error.
    var level: Logger.Level {
        switch self {
        case .resolving, .tooBig, .fragmented, .noRoute: return .info
        case .failed: return .error
        }
    }
}
