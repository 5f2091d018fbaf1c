import NvgreDatapath

/// The gateway as the exception service drives it.
extension Gateway: ExceptionHandling {
    public var role: String { "gateway" }

    public func start() -> String {
        let flows = recover()
        let external = externalAddresses.map { "\($0.address) ports \($0.natPorts)" }.joined(separator: ", ")
        return "gateway: external \(external); \(flows) flows found in the maps"
    }

    public func afterPoll() { flushCounters() }

    public func everySecond() {
        expire()
        flushCounters()
    }

    public func stopping() -> String { "\(table.count) flows left in the maps" }
}
