import CNvgre
#if canImport(Glibc)
import Glibc
#endif

/// How an XDP program runs on an interface.
public enum XDPMode: String, Sendable {
    case native   // in the driver (veth supports it)
    case generic  // in the stack, after the skb is built; works everywhere, slower

    var flags: UInt32 { self == .native ? UInt32(XDP_FLAGS_DRV_MODE) : UInt32(XDP_FLAGS_SKB_MODE) }
}

/// An XDP program attached to an interface through a bpf_link. The attachment lives as long
/// as this object (or its pin, once pinned) lives.
public final class XDPLink {
    public let fd: Int32
    public let ifindex: UInt32
    public let mode: XDPMode

    init(fd: Int32, ifindex: UInt32, mode: XDPMode) {
        self.fd = fd
        self.ifindex = ifindex
        self.mode = mode
    }

    deinit { close(fd) }

    /// Pins the link under bpffs so that it outlives this process.
    public func pin(at path: String) throws {
        try check("pin the XDP link at \(path) (bpffs)", bpf_obj_pin(fd, path))
    }
}

extension Datapath {
    /// Attaches `program` to the interface `ifindex` of the calling thread's network
    /// namespace. With `mode` nil, native is tried first and generic where it is refused.
    public func attach(_ program: Program, ifindex: UInt32, mode: XDPMode? = nil) throws -> XDPLink {
        let modes: [XDPMode] = mode.map { [$0] } ?? [.native, .generic]
        var lastError: DatapathError?
        for m in modes {
            var opts = bpf_link_create_opts()
            opts.sz = nv_sizeof_link_create_opts()
            opts.flags = m.flags
            let fd = bpf_link_create(programFD(program), Int32(ifindex), BPF_XDP, &opts)
            if fd >= 0 { return XDPLink(fd: fd, ifindex: ifindex, mode: m) }
            lastError = DatapathError.fromReturn("attach \(program.rawValue) to ifindex \(ifindex) in \(m.rawValue) mode", fd)
        }
        throw lastError!
    }

    /// Attaches by interface name (resolved in the calling thread's network namespace).
    public func attach(_ program: Program, interface name: String, mode: XDPMode? = nil) throws -> XDPLink {
        try attach(program, ifindex: try interfaceIndex(name), mode: mode)
    }
}

/// The ifindex of `name` in the calling thread's network namespace.
public func interfaceIndex(_ name: String) throws -> UInt32 {
    let idx = if_nametoindex(name)
    if idx == 0 { throw DatapathError("find interface \(name)", errno: ENODEV) }
    return idx
}
