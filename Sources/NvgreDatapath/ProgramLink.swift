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

/// How a program is attached to an interface.
public enum Attachment: Equatable, Sendable {
    case xdp(XDPMode)
    case tcIngress  // tcx: the kernel's bpf_link-based tc ingress hook (Linux 6.6 and later)

    public var name: String {
        switch self {
        case .xdp(let m): return m.rawValue
        case .tcIngress: return "tcx-ingress"
        }
    }
}

/// A program attached to an interface through a bpf_link. The attachment lives as long as
/// this object (or its pin, once pinned) lives.
public final class ProgramLink {
    public let fd: Int32
    public let ifindex: UInt32
    public let attachment: Attachment

    init(fd: Int32, ifindex: UInt32, attachment: Attachment) {
        self.fd = fd
        self.ifindex = ifindex
        self.attachment = attachment
    }

    deinit { close(fd) }

    /// Pins the link under bpffs so that it outlives this process.
    public func pin(at path: String) throws {
        try check("pin the link at \(path) (bpffs)", bpf_obj_pin(fd, path))
    }
}

extension Datapath {
    /// Attaches `program` to the interface `ifindex` of the calling thread's network
    /// namespace, by its hook. For XDP with `mode` nil, native is tried first and generic
    /// where it is refused.
    public func attach(_ program: Program, ifindex: UInt32, mode: XDPMode? = nil) throws -> ProgramLink {
        try attachProgram(programFD: programFD(program), program: program, ifindex: ifindex, mode: mode)
    }

    /// Attaches by interface name (resolved in the calling thread's network namespace).
    public func attach(_ program: Program, interface name: String, mode: XDPMode? = nil) throws -> ProgramLink {
        try attach(program, ifindex: try interfaceIndex(name), mode: mode)
    }
}

/// Attaches the program `programFD` (one of `program`'s kind) to `ifindex` by its hook.
func attachProgram(programFD: Int32, program: Program, ifindex: UInt32, mode: XDPMode?) throws -> ProgramLink {
    switch program.hook {
    case .xdp: return try attachXDP(programFD: programFD, name: program.rawValue, ifindex: ifindex, mode: mode)
    case .tc: return try attachTCIngress(programFD: programFD, name: program.rawValue, ifindex: ifindex)
    }
}

/// BPF_TCX_INGRESS of the kernel's enum bpf_attach_type (Linux 6.6); Debian 12's headers
/// predate it, and libbpf passes the number through.
let tcxIngressAttachType = bpf_attach_type(rawValue: 46)

/// Attaches a tc program to the ingress of `ifindex` through a tcx bpf_link, after any
/// program already there.
public func attachTCIngress(programFD: Int32, name: String, ifindex: UInt32) throws -> ProgramLink {
    var opts = bpf_link_create_opts()
    prepareOpts(&opts, size: nv_sizeof_link_create_opts())
    let fd = bpf_link_create(programFD, Int32(ifindex), tcxIngressAttachType, &opts)
    if fd < 0 {
        throw DatapathError.fromReturn(
            "attach \(name) to the tc ingress (tcx) of \(interfaceName(ifindex) ?? "ifindex \(ifindex)")", fd,
            detail: fd == -EINVAL ? "tcx needs Linux 6.6 or later" : "")
    }
    return ProgramLink(fd: fd, ifindex: ifindex, attachment: .tcIngress)
}

/// How many programs are attached to the tc ingress (tcx) of `ifindex`, as the kernel says.
public func tcIngressProgramCount(ifindex: UInt32) -> Int {
    var count: UInt32 = 0
    guard bpf_prog_query(Int32(ifindex), tcxIngressAttachType, 0, nil, nil, &count) == 0 else { return 0 }
    return Int(count)
}

/// Attaches the program `programFD` to `ifindex` through a bpf_link. With `mode` nil,
/// native is tried first and generic where it is refused.
public func attachXDP(programFD: Int32, name: String, ifindex: UInt32, mode: XDPMode? = nil) throws -> ProgramLink {
    let modes: [XDPMode] = mode.map { [$0] } ?? [.native, .generic]
    var lastError: DatapathError?
    for m in modes {
        var opts = bpf_link_create_opts()
        prepareOpts(&opts, size: nv_sizeof_link_create_opts())
        opts.flags = m.flags
        let fd = bpf_link_create(programFD, Int32(ifindex), BPF_XDP, &opts)
        if fd >= 0 { return ProgramLink(fd: fd, ifindex: ifindex, attachment: .xdp(m)) }
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

/// Attaches the program pinned at `path` (one of `program`'s kind) to interface `ifindex`
/// (the program's descriptor is held only while attaching: the link keeps the program).
public func attachPinned(_ program: Program, at path: String, ifindex: UInt32, mode: XDPMode?) throws -> ProgramLink {
    let fd = bpf_obj_get(path)
    if fd < 0 { throw DatapathError("open the pinned program \(path)", errno: errno) }
    defer { close(fd) }
    return try attachProgram(programFD: fd, program: program, ifindex: ifindex, mode: mode)
}
