import CNvgre
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// Asks the kernel to resolve an underlay neighbor, as `ip neigh replace ADDR dev DEV use`
/// does: an RTM_NEWNEIGH with NTF_USE starts ARP/ND for the address without fixing its MAC.
/// An entry the operator made static (permanent or noarp) is left alone: the request would
/// turn it into a dynamic one. The netlink socket belongs to the network namespace it was
/// created in.
public final class NeighborResolver {
    private let sock: Int32
    private static let (rtmNewNeigh, rtmGetNeigh, nlmsgError): (UInt16, UInt16, UInt16) = (28, 30, 2)
    private static let staticStates: UInt16 = 0x80 | 0x40  // NUD_PERMANENT | NUD_NOARP

    /// Create it on a thread that is in the uplink's network namespace.
    public init() throws {
        sock = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        if sock < 0 { throw DatapathError("open a netlink socket", errno: errno) }
    }

    deinit { close(sock) }

    public func resolve(_ address: IPAddress, ifindex: UInt32) throws {
        if let state = try state(of: address, ifindex: ifindex), state & Self.staticStates != 0 { return }
        // ndm_state NUD_NONE: the kernel moves the entry through INCOMPLETE.
        let reply = try exchange(
            request(Self.rtmNewNeigh, flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, address, ifindex, ntfUse: true),
            "resolve neighbor \(address) on ifindex \(ifindex)")
        if let err = Self.error(in: reply), err != 0 {
            throw DatapathError("resolve neighbor \(address) on ifindex \(ifindex)", errno: -err)
        }
    }

    /// The NUD state of the neighbor entry for `address` on `ifindex`, nil when there is none.
    public func state(of address: IPAddress, ifindex: UInt32) throws -> UInt16? {
        try entry(of: address, ifindex: ifindex)?.state
    }

    /// The neighbor entry for `address` on `ifindex`: its NUD state and, when it has one, its
    /// MAC (NDA_LLADDR); nil when there is no entry.
    public func entry(of address: IPAddress, ifindex: UInt32) throws -> (state: UInt16, mac: [UInt8]?)? {
        let reply = try exchange(
            request(Self.rtmGetNeigh, flags: 0, address, ifindex, ntfUse: false), "look up neighbor \(address)")
        if let err = Self.error(in: reply) {
            if err == -ENOENT { return nil }
            throw DatapathError("look up neighbor \(address) on ifindex \(ifindex)", errno: -err)
        }
        guard reply.count >= 28,
            reply.withUnsafeBytes({ $0.load(fromByteOffset: 4, as: UInt16.self) }) == Self.rtmNewNeigh
        else { return nil }
        let state = reply.withUnsafeBytes { $0.load(fromByteOffset: 24, as: UInt16.self) }
        var mac: [UInt8]?
        Netlink.attributes(reply, from: 28) { type, value in if type == 2 && value.count == 6 { mac = value } }
        return (state, mac)
    }

    /// nlmsghdr (16) + ndmsg (12) + rtattr NDA_DST (4 + address).
    private func request(_ type: UInt16, flags: Int32, _ address: IPAddress, _ ifindex: UInt32, ntfUse: Bool) -> [UInt8]
    {
        let attrLen = 4 + address.bytes.count
        let total = 16 + 12 + ((attrLen + 3) & ~3)
        var msg = [UInt8](repeating: 0, count: total)
        func put32(_ v: UInt32, _ at: Int) { withUnsafeBytes(of: v) { for i in 0..<4 { msg[at + i] = $0[i] } } }
        func put16(_ v: UInt16, _ at: Int) { withUnsafeBytes(of: v) { for i in 0..<2 { msg[at + i] = $0[i] } } }
        put32(UInt32(total), 0)
        put16(type, 4)
        put16(UInt16(NLM_F_REQUEST | flags), 6)
        put32(1, 8)  // sequence
        msg[16] = UInt8(address.family == .v4 ? AF_INET : AF_INET6)
        put32(ifindex, 20)
        if ntfUse { msg[26] = 0x01 }  // ndm_flags: NTF_USE
        put16(UInt16(attrLen), 28)
        put16(1, 30)  // NDA_DST
        for (i, b) in address.bytes.enumerated() { msg[32 + i] = b }
        return msg
    }

    private func exchange(_ msg: [UInt8], _ what: String) throws -> [UInt8] {
        try Netlink.exchange(sock, msg, what)
    }

    /// NLMSG_ERROR carries a result (0 is the acknowledgement); nil for any other message.
    private static func error(in reply: [UInt8]) -> Int32? {
        guard reply.count >= 20, reply.withUnsafeBytes({ $0.load(fromByteOffset: 4, as: UInt16.self) }) == nlmsgError
        else { return nil }
        return reply.withUnsafeBytes { $0.load(fromByteOffset: 16, as: Int32.self) }
    }
}
