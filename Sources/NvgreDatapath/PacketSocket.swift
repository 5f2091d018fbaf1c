import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// A raw AF_PACKET socket for handing frames to interfaces of the namespace it was opened
/// in: how the exception path answers a VM (a frame sent on a VM's port goes to the VM).
public final class PacketSocket {
    private let fd: Int32

    public init() throws {
        fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0)
        if fd < 0 { throw DatapathError("open a packet socket", errno: errno) }
    }

    deinit { close(fd) }

    public func send(_ frame: [UInt8], ifindex: UInt32) throws {
        var addr = sockaddr_ll()
        addr.sll_family = UInt16(AF_PACKET)
        addr.sll_ifindex = Int32(ifindex)
        addr.sll_halen = 6
        let sent = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, frame, frame.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
            }
        }
        if sent < 0 { throw DatapathError("send a frame on ifindex \(ifindex)", errno: errno) }
    }
}
