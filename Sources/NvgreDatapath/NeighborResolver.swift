import CNvgre
import NvgreWire
#if canImport(Glibc)
import Glibc
#endif

/// Asks the kernel to resolve an underlay neighbor, as `ip neigh replace ADDR dev DEV use`
/// does: an RTM_NEWNEIGH with NTF_USE starts ARP/ND for the address without fixing its MAC.
/// The netlink socket belongs to the network namespace it was created in.
public final class NeighborResolver {
    private let sock: Int32

    /// Create it on a thread that is in the uplink's network namespace.
    public init() throws {
        sock = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        if sock < 0 { throw DatapathError("open a netlink socket", errno: errno) }
    }

    deinit { close(sock) }

    public func resolve(_ address: IPAddress, ifindex: UInt32) throws {
        // nlmsghdr (16) + ndmsg (12) + rtattr NDA_DST (4 + address).
        let attrLen = 4 + address.bytes.count
        let total = 16 + 12 + ((attrLen + 3) & ~3)
        var msg = [UInt8](repeating: 0, count: total)
        func put32(_ v: UInt32, _ at: Int) { withUnsafeBytes(of: v) { for i in 0..<4 { msg[at + i] = $0[i] } } }
        func put16(_ v: UInt16, _ at: Int) { withUnsafeBytes(of: v) { for i in 0..<2 { msg[at + i] = $0[i] } } }
        put32(UInt32(total), 0)
        put16(28, 4) // RTM_NEWNEIGH
        put16(UInt16(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE), 6)
        put32(1, 8)  // sequence
        msg[16] = UInt8(address.family == .v4 ? AF_INET : AF_INET6)
        put32(ifindex, 20)
        put16(0, 24)  // ndm_state: NUD_NONE, the kernel moves it through INCOMPLETE
        msg[26] = 0x01 // ndm_flags: NTF_USE
        put16(UInt16(attrLen), 28)
        put16(1, 30)   // NDA_DST
        for (i, b) in address.bytes.enumerated() { msg[32 + i] = b }

        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let sent = withUnsafePointer(to: &kernel) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(sock, msg, msg.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        if sent < 0 { throw DatapathError("send a neighbor request for \(address)", errno: errno) }
        var reply = [UInt8](repeating: 0, count: 512)
        let n = recv(sock, &reply, reply.count, 0)
        if n < 0 { throw DatapathError("read the neighbor reply for \(address)", errno: errno) }
        // NLMSG_ERROR (type 2) carries the result: 0 is the acknowledgement.
        if n >= 20, reply.withUnsafeBytes({ $0.load(fromByteOffset: 4, as: UInt16.self) }) == 2 {
            let err = reply.withUnsafeBytes { $0.load(fromByteOffset: 16, as: Int32.self) }
            if err != 0 { throw DatapathError("resolve neighbor \(address) on ifindex \(ifindex)", errno: -err) }
        }
    }
}
