import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// How an XDP program runs on an interface.
public enum XDPMode: String, Sendable {
    case native  // in the driver (veth supports it)
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
        try attachXDP(programFD: programFD(program), name: program.rawValue, ifindex: ifindex, mode: mode)
    }

    /// Attaches by interface name (resolved in the calling thread's network namespace).
    public func attach(_ program: Program, interface name: String, mode: XDPMode? = nil) throws -> XDPLink {
        try attach(program, ifindex: try interfaceIndex(name), mode: mode)
    }
}

/// Attaches the program `programFD` to `ifindex` through a bpf_link. With `mode` nil,
/// native is tried first and generic where it is refused.
public func attachXDP(programFD: Int32, name: String, ifindex: UInt32, mode: XDPMode? = nil) throws -> XDPLink {
    let modes: [XDPMode] = mode.map { [$0] } ?? [.native, .generic]
    var lastError: DatapathError?
    for m in modes {
        var opts = bpf_link_create_opts()
        prepareOpts(&opts, size: nv_sizeof_link_create_opts())
        opts.flags = m.flags
        let fd = bpf_link_create(programFD, Int32(ifindex), BPF_XDP, &opts)
        if fd >= 0 { return XDPLink(fd: fd, ifindex: ifindex, mode: m) }
        lastError = DatapathError.fromReturn(
            "attach \(name) to \(interfaceName(ifindex) ?? "ifindex \(ifindex)") in \(m.rawValue) mode", fd)
    }
    throw lastError!
}

/// Attaches `programFD` natively through netlink rather than a bpf_link: the attachment
/// needs no fd or process and goes away with the interface. Labs use it on the receiving
/// ends of veths (a veth delivers frames redirected into its peer only when it runs XDP),
/// which must outlive a demo that is kept for poking at.
public func attachXDPToInterface(programFD: Int32, name: String, ifindex: UInt32) throws {
    let rc = bpf_xdp_attach(Int32(ifindex), programFD, UInt32(XDP_FLAGS_DRV_MODE), nil)
    _ = try check("attach \(name) to \(interfaceName(ifindex) ?? "ifindex \(ifindex)") (native, netlink)", rc)
}

/// The ifindex of `name` in the calling thread's network namespace, nil when there is none.
public func existingInterfaceIndex(_ name: String) -> UInt32? {
    let idx = if_nametoindex(name)
    return idx == 0 ? nil : idx
}

/// The same, as an error naming the interface when there is none.
public func interfaceIndex(_ name: String) throws -> UInt32 {
    guard let idx = existingInterfaceIndex(name) else { throw DatapathError("find interface \(name)", errno: ENODEV) }
    return idx
}

/// How an XDP program is attached to `ifindex` right now (nil: none), as the kernel says.
public func xdpAttachMode(ifindex: UInt32) -> XDPMode? {
    var opts = bpf_xdp_query_opts()
    prepareOpts(&opts, size: nv_sizeof_xdp_query_opts())
    guard bpf_xdp_query(Int32(ifindex), 0, &opts) == 0 else { return nil }
    switch UInt32(opts.attach_mode) {
    case UInt32(XDP_ATTACHED_DRV): return .native
    case UInt32(XDP_ATTACHED_SKB): return .generic
    default: return nil
    }
}

/// The name of interface `ifindex` in the calling thread's network namespace.
public func interfaceName(_ ifindex: UInt32) -> String? {
    var buf = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
    guard if_indextoname(ifindex, &buf) != nil else { return nil }
    return String(cString: buf)
}

/// Attaches the program pinned at `path` to interface `ifindex` (the program's descriptor is
/// held only while attaching: the link keeps the program).
public func attachPinnedXDP(programAt path: String, name: String, ifindex: UInt32, mode: XDPMode?) throws -> XDPLink {
    let fd = bpf_obj_get(path)
    if fd < 0 { throw DatapathError("open the pinned program \(path)", errno: errno) }
    defer { close(fd) }
    return try attachXDP(programFD: fd, name: name, ifindex: ifindex, mode: mode)
}
