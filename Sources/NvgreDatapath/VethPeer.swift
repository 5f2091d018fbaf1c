import CNvgre
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Whether frames the fast path redirects into a veth reach its other end. A veth hands a
/// redirected frame to its peer's NAPI, which runs only while the peer has an XDP program
/// or GRO on; otherwise the kernel drops the frame, and nothing of ours counts it.
public enum VethPeer {
    /// The other end of a veth, where it is.
    public struct End: CustomStringConvertible {
        public let interface: String
        /// Its network namespace's name (`ip netns`), a process's (/proc/PID/ns/net), or nil
        /// when it is the caller's.
        public let namespace: String?

        public var description: String { namespace.map { "\(interface) in namespace \($0)" } ?? interface }
    }

    /// The peer of veth `interface` if it has neither an XDP program nor GRO on; nil when
    /// `interface` is no veth, its peer is ready, or the peer's namespace cannot be found
    /// (nothing is claimed that was not seen).
    public static func unready(_ interface: String) -> End? {
        let ifindex = if_nametoindex(interface)
        guard ifindex != 0 else { return nil }
        var peer: Int32 = 0, nsid: Int32 = 0, xdp: Int32 = 0, veth: Int32 = 0
        guard nv_link_peer(ifindex, &peer, &nsid, &xdp, &veth) == 0, veth != 0, peer > 0 else { return nil }
        if nsid < 0 { return check(UInt32(peer), namespace: nil) }
        guard let (fd, name) = namespace(withID: nsid) else { return nil }
        defer { close(fd) }
        return (try? NetworkNamespace.run(inNamespace: fd) { check(UInt32(peer), namespace: name) }) ?? nil
    }

    /// In the peer's namespace: its XDP program and GRO.
    private static func check(_ ifindex: UInt32, namespace: String?) -> End? {
        var peer: Int32 = 0, nsid: Int32 = 0, xdp: Int32 = 0, veth: Int32 = 0
        guard nv_link_peer(ifindex, &peer, &nsid, &xdp, &veth) == 0, xdp == 0 else { return nil }
        let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard sock >= 0 else { return nil }
        defer { close(sock) }
        var gro: Int32 = 0
        guard nv_interface_gro(sock, ifindex, -1, &gro) == 0, gro == 0 else { return nil }
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(ifindex, &name) != nil else { return nil }
        return End(interface: String(cString: name), namespace: namespace)
    }

    /// The namespace this one calls `id`: among the named ones (/run/netns), then those of
    /// processes (a container's, a VM's). An open descriptor and a name for messages.
    private static func namespace(withID id: Int32) -> (Int32, String)? {
        let named = ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).sorted().map {
            ("/run/netns/\($0)", $0)
        }
        let processes = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter {
            $0.allSatisfy(\.isNumber)
        }.map { ("/proc/\($0)/ns/net", "of process \($0)") }
        for (path, name) in named + processes {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { continue }
            if nv_netns_id(fd) == id { return (fd, name) }
            close(fd)
        }
        return nil
    }
}
