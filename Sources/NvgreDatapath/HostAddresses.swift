import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// An address configured on an interface of this network namespace, with its prefix.
public struct InterfaceAddress: Equatable, Sendable {
    public var interface: String
    public var prefix: IPPrefix  // the address itself, with the interface's prefix length

    public init(interface: String, prefix: IPPrefix) {
        self.interface = interface
        self.prefix = prefix
    }

    /// The host's own address.
    public var address: IPAddress { prefix.address }
}

/// The addresses of every interface in the calling thread's network namespace (getifaddrs).
public func interfaceAddresses() throws -> [InterfaceAddress] {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { throw DatapathError("list the interface addresses (getifaddrs)", errno: errno) }
    defer { freeifaddrs(list) }
    var out: [InterfaceAddress] = []
    var p = list
    while let ifa = p?.pointee {
        defer { p = ifa.ifa_next }
        guard let sa = ifa.ifa_addr, let mask = ifa.ifa_netmask else { continue }
        let name = String(cString: ifa.ifa_name)
        let family = Int32(sa.pointee.sa_family)
        let (address, length): (IPAddress?, Int)
        if family == AF_INET {
            address = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                withUnsafeBytes(of: s.pointee.sin_addr) { IPAddress(v4: Array($0)) }
            }
            length = mask.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                withUnsafeBytes(of: s.pointee.sin_addr) { ones($0) }
            }
        } else if family == AF_INET6 {
            address = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                withUnsafeBytes(of: s.pointee.sin6_addr) { IPAddress(v6: Array($0)) }
            }
            length = mask.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                withUnsafeBytes(of: s.pointee.sin6_addr) { ones($0) }
            }
        } else {
            continue
        }
        if let address, let prefix = IPPrefix(address: address, length: length) {
            out.append(InterfaceAddress(interface: name, prefix: prefix))
        }
    }
    return out
}

private func ones(_ bytes: UnsafeRawBufferPointer) -> Int { bytes.reduce(0) { $0 + $1.nonzeroBitCount } }

/// This host's addresses as of at most a second ago (getifaddrs is not for every packet).
public final class HostAddressCache {
    private var addresses = Set<IPAddress>()
    private var readAt = -Double.infinity

    public init() {}

    public func contains(_ address: IPAddress, now: Double = monotonicSeconds()) -> Bool {
        if now - readAt >= 1 {
            addresses = Set(((try? interfaceAddresses()) ?? []).map(\.address))
            readAt = now
        }
        return addresses.contains(address)
    }
}
