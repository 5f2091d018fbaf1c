import CNvgre
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// A send-only raw IP socket (IPPROTO_RAW: the caller writes the whole IP header) in the
/// namespace it was opened in. The kernel routes the packet and resolves the next hop, so
/// the gateway process sends to the outside and to other hosts' provider addresses without
/// keeping a neighbor table of its own.
public final class RawIPSocket {
    private let fd: Int32
    public let family: IPFamily

    public init(_ family: IPFamily) throws {
        self.family = family
        fd = socket(family == .v4 ? AF_INET : AF_INET6, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW))
        if fd < 0 { throw DatapathError("open a raw \(family) socket", errno: errno) }
    }

    deinit { close(fd) }

    /// Sends only through `interface` (SO_BINDTODEVICE): the routing table cannot take a
    /// packet anywhere else.
    public func bind(toDevice interface: String) throws {
        let rc = interface.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(strlen($0) + 1)) }
        if rc != 0 { throw DatapathError("bind a raw socket to \(interface)", errno: errno) }
    }

    /// `packet` starts with its IP header; it goes to that header's destination.
    public func send(_ packet: [UInt8], to destination: IPAddress) throws {
        let sent = withSocketAddress(destination, port: 0) { sendto(fd, packet, packet.count, 0, $0, $1) }
        if sent < 0 { throw DatapathError("send an IP packet to \(destination)", errno: errno) }
    }
}

/// Calls `body` with a sockaddr_in or sockaddr_in6 for `address` and `port` (host order).
public func withSocketAddress<T>(_ address: IPAddress, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T)
    -> T
{
    if address.family == .v4 {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
    var sa = sockaddr_in6()
    sa.sin6_family = sa_family_t(AF_INET6)
    sa.sin6_port = port.bigEndian
    withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: address.bytes) }
    return withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
    }
}

/// The MTU of the route toward `destination` in the calling thread's network namespace (a
/// connected UDP socket's IP_MTU / IPV6_MTU), nil when there is no route.
public func pathMTU(to destination: IPAddress) -> Int? {
    let v4 = destination.family == .v4
    let fd = socket(v4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { return nil }
    defer { close(fd) }
    guard withSocketAddress(destination, port: 9, { connect(fd, $0, $1) }) == 0 else { return nil }
    var mtu: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    let rc =
        v4
        ? getsockopt(fd, Int32(IPPROTO_IP), 14 /* IP_MTU */, &mtu, &len)
        : getsockopt(fd, Int32(IPPROTO_IPV6), 24 /* IPV6_MTU */, &mtu, &len)
    return rc == 0 && mtu > 0 ? Int(mtu) : nil
}
