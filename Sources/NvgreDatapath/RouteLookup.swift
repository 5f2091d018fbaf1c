import CNvgre
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// The kernel's route to an address (as `ip route get` answers it), for a userspace data
/// path that has no bpf_fib_lookup: the interface, the gateway when there is one, and the
/// MTU (the route's, else the interface's). The netlink socket belongs to the network
/// namespace it was created in.
public final class RouteLookup {
    private let sock: Int32
    private let ioctlSock: Int32

    public struct Route: Equatable, Sendable {
        public let ifindex: UInt32
        public let gateway: IPAddress?
        public let mtu: Int
        public let sourceMAC: [UInt8]
    }

    public init() throws {
        sock = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        if sock < 0 { throw DatapathError("open a netlink socket", errno: errno) }
        // Interface facts are asked through a socket of this namespace, whatever thread asks.
        ioctlSock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if ioctlSock < 0 {
            close(sock)
            throw DatapathError("open a socket for interface queries", errno: errno)
        }
    }

    deinit {
        close(sock)
        close(ioctlSock)
    }

    /// nil when the kernel has no usable route (unreachable, blackhole, prohibit).
    public func route(to address: IPAddress) throws -> Route? {
        // nlmsghdr (16) + rtmsg (12) + RTA_DST.
        let attrLen = 4 + address.bytes.count
        var msg = [UInt8](repeating: 0, count: 16 + 12 + ((attrLen + 3) & ~3))
        Netlink.put32(&msg, UInt32(msg.count), at: 0)
        Netlink.put16(&msg, 26, at: 4)  // RTM_GETROUTE
        Netlink.put16(&msg, UInt16(NLM_F_REQUEST), at: 6)
        Netlink.put32(&msg, 1, at: 8)
        msg[16] = UInt8(address.family == .v4 ? AF_INET : AF_INET6)
        msg[17] = UInt8(address.bytes.count * 8)  // rtm_dst_len
        Netlink.put16(&msg, UInt16(attrLen), at: 28)
        Netlink.put16(&msg, 1, at: 30)  // RTA_DST
        for (i, b) in address.bytes.enumerated() { msg[32 + i] = b }
        let reply = try Netlink.exchange(sock, msg, "look up the route to \(address)")
        guard reply.count >= 28 else { return nil }
        let type = reply.withUnsafeBytes { $0.load(fromByteOffset: 4, as: UInt16.self) }
        if type == 2 { return nil }  // NLMSG_ERROR: no route
        guard type == 24, reply[16 + 7] == 1 else { return nil }  // RTM_NEWROUTE, RTN_UNICAST
        var oif: UInt32?, gateway: IPAddress?, mtu: Int?
        Netlink.attributes(reply, from: 28) { t, v in
            switch t {
            case 4 where v.count == 4: oif = v.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            case 5 where v.count == 4: gateway = IPAddress(v4: v)
            case 5 where v.count == 16: gateway = IPAddress(v6: v)
            case 8:  // RTA_METRICS: RTAX_MTU (2) inside
                Netlink.attributes(v, from: 0) { mt, mv in
                    if mt == 2 && mv.count == 4 { mtu = Int(mv.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }) }
                }
            default: break
            }
        }
        guard let oif else { return nil }
        var ifMTU: Int32 = 0
        var mac = [UInt8](repeating: 0, count: 6)
        let rc = nv_interface_mtu_mac(ioctlSock, oif, &ifMTU, &mac)
        if rc != 0 { throw DatapathError("read the MTU and MAC of ifindex \(oif)", errno: -rc) }
        return Route(ifindex: oif, gateway: gateway, mtu: mtu ?? Int(ifMTU), sourceMAC: mac)
    }
}

/// Small netlink helpers shared by the lookups.
enum Netlink {
    static func put32(_ msg: inout [UInt8], _ v: UInt32, at: Int) {
        withUnsafeBytes(of: v) { for i in 0..<4 { msg[at + i] = $0[i] } }
    }

    static func put16(_ msg: inout [UInt8], _ v: UInt16, at: Int) {
        withUnsafeBytes(of: v) { for i in 0..<2 { msg[at + i] = $0[i] } }
    }

    /// Calls `body` with each rtattr (type, value) from `start` to the end of `msg`.
    static func attributes(_ msg: [UInt8], from start: Int, _ body: (UInt16, [UInt8]) -> Void) {
        var at = start
        while at + 4 <= msg.count {
            let len = Int(msg.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt16.self) })
            let type = msg.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self) } & 0x3fff
            guard len >= 4, at + len <= msg.count else { return }
            body(type, Array(msg[at + 4..<at + len]))
            at += (len + 3) & ~3
        }
    }

    static func exchange(_ sock: Int32, _ msg: [UInt8], _ what: String) throws -> [UInt8] {
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let sent = withUnsafePointer(to: &kernel) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(sock, msg, msg.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        if sent < 0 { throw DatapathError("send a netlink request to \(what)", errno: errno) }
        var reply = [UInt8](repeating: 0, count: 4096)
        let n = recv(sock, &reply, reply.count, 0)
        if n < 0 { throw DatapathError("read the netlink reply to \(what)", errno: errno) }
        return Array(reply.prefix(n))
    }
}
