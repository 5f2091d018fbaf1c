import CNvgre
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// One interface's frames for a userspace data path: an AF_PACKET socket bound to it with a
/// TPACKET_V3 receive ring (blocks of frames the kernel fills in shared memory, handed over
/// a block at a time: no copy and no system call per frame), promiscuous, blind to what it
/// sends itself; frames go out with PACKET_QDISC_BYPASS, straight to the driver.
public final class PacketRing {
    public let ifindex: UInt32
    public let fd: Int32
    private let map: UnsafeMutableRawPointer
    private let blockSize: Int
    private let blocks: Int
    private var current = 0

    /// A frame as the ring holds it, valid until the block is handed back.
    public struct Frame {
        public let bytes: UnsafeRawBufferPointer
        /// The frame's checksum is the sender's to finish (TP_STATUS_CSUMNOTREADY): a VM
        /// with checksum offload left its transport checksum partial.
        public let checksumNotReady: Bool
        /// Longer than the ring's snap length: cut short (a GSO frame larger than a block).
        public let truncated: Bool
        /// The frame's virtio-net header (rings opened with `vnetHeader`): for a GSO frame its
        /// type and segment size, for a partial checksum where it goes.
        public let vnet: VirtioNetHeader?
    }

    public let vnetHeader: Bool

    /// `blockSize` (a multiple of the page size) times `blocks` of shared memory. With
    /// `vnetHeader` each frame comes with its virtio-net header (PACKET_VNET_HDR): a VM
    /// port's GSO frames and partial checksums say what they need.
    public init(ifindex: UInt32, vnetHeader: Bool = false, blockSize: Int = 1 << 20, blocks: Int = 8) throws {
        self.ifindex = ifindex
        self.vnetHeader = vnetHeader
        self.blockSize = blockSize
        self.blocks = blocks
        let all = UInt16(0x0003).bigEndian  // ETH_P_ALL
        let sock = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(all))
        if sock < 0 { throw DatapathError("open a packet socket", errno: errno) }
        var mapped: UnsafeMutableRawPointer?
        do {
            func option<T>(_ name: Int32, _ value: T, _ what: String) throws {
                let rc = withUnsafeBytes(of: value) {
                    setsockopt(sock, SOL_PACKET, name, $0.baseAddress, socklen_t($0.count))
                }
                if rc != 0 {
                    throw DatapathError("\(what) on the packet socket of ifindex \(ifindex)", errno: errno)
                }
            }
            try option(PACKET_VERSION, Int32(TPACKET_V3.rawValue), "select TPACKET_V3")
            if vnetHeader { try option(PACKET_VNET_HDR, Int32(1), "ask for virtio-net headers") }
            var req = tpacket_req3()
            req.tp_block_size = UInt32(blockSize)
            req.tp_block_nr = UInt32(blocks)
            req.tp_frame_size = 2048
            req.tp_frame_nr = UInt32(blockSize / 2048 * blocks)
            req.tp_retire_blk_tov = 2  // ms: a block with frames in it is handed over after this
            try option(PACKET_RX_RING, req, "set up the receive ring")
            try option(PACKET_IGNORE_OUTGOING, Int32(1), "ignore outgoing frames")
            try option(PACKET_QDISC_BYPASS, Int32(1), "bypass the qdisc")
            guard let m = mmap(nil, blockSize * blocks, PROT_READ | PROT_WRITE, MAP_SHARED, sock, 0), m != MAP_FAILED
            else { throw DatapathError("map the receive ring of ifindex \(ifindex)", errno: errno) }
            mapped = m
            var promisc = packet_mreq()
            promisc.mr_ifindex = Int32(ifindex)
            promisc.mr_type = UInt16(PACKET_MR_PROMISC)
            try option(PACKET_ADD_MEMBERSHIP, promisc, "turn promiscuous mode on")
            var addr = sockaddr_ll()
            addr.sll_family = UInt16(AF_PACKET)
            addr.sll_protocol = all
            addr.sll_ifindex = Int32(ifindex)
            let bound = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(sock, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
            if bound != 0 { throw DatapathError("bind the packet socket to ifindex \(ifindex)", errno: errno) }
        } catch {
            if let m = mapped { munmap(m, blockSize * blocks) }
            close(sock)
            throw error
        }
        fd = sock
        map = mapped!
    }

    deinit {
        munmap(map, blockSize * blocks)
        close(fd)
    }

    /// Joins fan-out group `group` (an id for this interface, unique in the namespace): the
    /// kernel spreads the interface's frames over the group's sockets by the CPU that
    /// received them (PACKET_FANOUT_CPU), so each forwarding thread gets its own share and
    /// a flow received on one CPU stays in order.
    public func joinFanout(group: UInt16) throws {
        // A group has its own "ignore outgoing" (the socket's PACKET_IGNORE_OUTGOING does not
        // apply to it): without it the host's own frames out of a port (IPv6 MLD reports)
        // came up as if a VM had sent them.
        // (PACKET_FANOUT_FLAG_IGNORE_OUTGOING, Linux 6.4 and later; older headers lack the name).
        let ignoreOutgoing: Int32 = 0x4000
        var arg = UInt32(group) | UInt32(PACKET_FANOUT_CPU | ignoreOutgoing) << 16
        if setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, socklen_t(MemoryLayout<UInt32>.size)) != 0 {
            throw DatapathError("join fan-out group \(group) on ifindex \(ifindex)", errno: errno)
        }
    }

    /// Frames the kernel dropped because the ring was full, since the last call (reading
    /// PACKET_STATISTICS resets it).
    public func takeDrops() -> UInt64 {
        var stats = tpacket_stats_v3()
        var len = socklen_t(MemoryLayout<tpacket_stats_v3>.size)
        guard getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0 else { return 0 }
        return UInt64(stats.tp_drops)
    }

    /// Lets the kernel hand up only what `program` (classic BPF) accepts; replaces the
    /// previous filter.
    public func attachFilter(_ program: [sock_filter]) throws {
        var instructions = program
        let rc = instructions.withUnsafeMutableBufferPointer { p -> Int32 in
            var prog = sock_fprog(len: UInt16(p.count), filter: p.baseAddress)
            return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, socklen_t(MemoryLayout<sock_fprog>.size))
        }
        if rc != 0 { throw DatapathError("attach a socket filter to the ring of ifindex \(ifindex)", errno: errno) }
    }

    /// Hands every frame of the blocks the kernel has filled to `body`, then gives the
    /// blocks back; returns how many frames there were (0: none ready, nothing waited for).
    @discardableResult
    public func drain(_ body: (Frame) -> Void) -> Int {
        var n = 0
        while true {
            let block = map + current * blockSize
            let desc = block.assumingMemoryBound(to: tpacket_block_desc.self)
            let status = UInt32(desc.pointee.hdr.bh1.block_status)
            if status & UInt32(TP_STATUS_USER) == 0 { return n }
            let count = Int(desc.pointee.hdr.bh1.num_pkts)
            var offset = Int(desc.pointee.hdr.bh1.offset_to_first_pkt)
            for _ in 0..<count {
                let hdr = (block + offset).assumingMemoryBound(to: tpacket3_hdr.self).pointee
                let mac = block + offset + Int(hdr.tp_mac)
                let frame = UnsafeRawBufferPointer(start: mac, count: Int(hdr.tp_snaplen))
                // The virtio-net header sits right before the frame.
                let vnet =
                    vnetHeader
                    ? VirtioNetHeader(
                        Array(
                            UnsafeRawBufferPointer(start: mac - VirtioNetHeader.length, count: VirtioNetHeader.length))[
                                ...])
                    : nil
                body(
                    Frame(
                        bytes: frame, checksumNotReady: hdr.tp_status & UInt32(TP_STATUS_CSUMNOTREADY) != 0,
                        truncated: hdr.tp_len > hdr.tp_snaplen, vnet: vnet))
                n += 1
                offset += Int(hdr.tp_next_offset)
            }
            desc.pointee.hdr.bh1.block_status = UInt32(TP_STATUS_KERNEL)
            current = (current + 1) % blocks
        }
    }

    /// Sends `frame` out of this interface (behind an empty virtio-net header on a ring that
    /// has them: no checksum to complete, no segmentation).
    public func send(_ frame: UnsafeRawBufferPointer) throws {
        var addr = sockaddr_ll()
        addr.sll_family = UInt16(AF_PACKET)
        addr.sll_ifindex = Int32(ifindex)
        addr.sll_halen = 6
        var none = [UInt8](repeating: 0, count: VirtioNetHeader.length)
        let sent = none.withUnsafeMutableBytes { header in
            var parts = [
                iovec(iov_base: header.baseAddress, iov_len: vnetHeader ? header.count : 0),
                iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count)
            ]
            return withUnsafeMutablePointer(to: &addr) { a in
                parts.withUnsafeMutableBufferPointer { iov in
                    var msg = msghdr()
                    msg.msg_name = UnsafeMutableRawPointer(a)
                    msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_ll>.size)
                    msg.msg_iov = iov.baseAddress
                    msg.msg_iovlen = iov.count
                    return sendmsg(fd, &msg, 0)
                }
            }
        }
        if sent < 0 { throw DatapathError("send a frame on ifindex \(ifindex)", errno: errno) }
    }
}

/// Generic receive offload on interface `ifindex` (in this thread's network namespace):
/// turned off, returning whether it was on. A packet ring takes what the stack hands it; with
/// GRO, NVGRE frames of one flow arrive merged into one frame larger than any MTU, which the
/// userspace path cannot send on.
public func turnOffGenericReceiveOffload(ifindex: UInt32) throws -> Bool {
    let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if sock < 0 { throw DatapathError("open a socket for interface settings", errno: errno) }
    defer { close(sock) }
    var was: Int32 = 0
    let rc = nv_interface_gro(sock, ifindex, 0, &was)
    if rc != 0 { throw DatapathError("turn generic receive offload off on ifindex \(ifindex)", errno: -rc) }
    return was != 0
}
