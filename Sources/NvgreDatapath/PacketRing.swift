import CNvgre
import NvgreWire
import Synchronization

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
    /// The transmit ring, after the receive ring in the same mapping: `txSlots` slots of
    /// `txSlotSize` bytes, each a tpacket3_hdr and the frame at `txDataOffset`.
    private let tx: UnsafeMutableRawPointer
    private let txSlots: Int
    private static let txSlotSize = 2048
    private static let txDataOffset = (MemoryLayout<tpacket3_hdr>.size + 15) & ~15  // TPACKET_ALIGN
    private var txHead = 0
    private var txPending = 0
    /// Frames of the transmit ring dropped unsent (read by the stats thread).
    private let txFailures = Atomic<UInt64>(0)
    public var transmitFailures: UInt64 { txFailures.load(ordering: .relaxed) }
    private var mappedSize: Int { blockSize * blocks + Self.txSlotSize * txSlots }

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
    public init(
        ifindex: UInt32, vnetHeader: Bool = false, blockSize: Int = 1 << 20, blocks: Int = 8, txSlots: Int = 512
    ) throws {
        self.ifindex = ifindex
        self.vnetHeader = vnetHeader
        self.blockSize = blockSize
        self.blocks = blocks
        self.txSlots = txSlots
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
            // A frame the kernel finds malformed in the transmit ring is skipped, not left to
            // block it (frames over the interface's MTU go by sendmsg instead, and are
            // counted). Set before the rings exist, as the kernel requires.
            try option(PACKET_LOSS, Int32(1), "skip malformed frames of the transmit ring")
            try option(PACKET_RX_RING, req, "set up the receive ring")
            // The transmit ring: frame slots in one block (TPACKET_V3 sends frame by frame).
            var txReq = tpacket_req3()
            txReq.tp_block_size = UInt32(Self.txSlotSize * txSlots)
            txReq.tp_block_nr = 1
            txReq.tp_frame_size = UInt32(Self.txSlotSize)
            txReq.tp_frame_nr = UInt32(txSlots)
            try option(PACKET_TX_RING, txReq, "set up the transmit ring")
            try option(PACKET_IGNORE_OUTGOING, Int32(1), "ignore outgoing frames")
            try option(PACKET_QDISC_BYPASS, Int32(1), "bypass the qdisc")
            let size = blockSize * blocks + Self.txSlotSize * txSlots
            guard let m = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, sock, 0), m != MAP_FAILED
            else { throw DatapathError("map the rings of ifindex \(ifindex)", errno: errno) }
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
            if let m = mapped { munmap(m, blockSize * blocks + Self.txSlotSize * txSlots) }
            close(sock)
            throw error
        }
        fd = sock
        map = mapped!
        tx = map + blockSize * blocks
        mtu = Self.interfaceMTU(ifindex)
    }

    deinit {
        munmap(map, mappedSize)
        close(fd)
    }

    /// The interface's MTU when the ring was opened (0: unknown): a longer frame is sent by
    /// sendmsg, whose refusal is counted, not from the ring, where it would be skipped.
    private let mtu: Int

    private static func interfaceMTU(_ ifindex: UInt32) -> Int {
        let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard sock >= 0 else { return 0 }
        defer { close(sock) }
        var mtu: Int32 = 0
        var mac = [UInt8](repeating: 0, count: 6)
        return nv_interface_mtu_mac(sock, ifindex, &mtu, &mac) == 0 ? Int(mtu) : 0
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
                        UnsafeRawBufferPointer(start: mac - VirtioNetHeader.length, count: VirtioNetHeader.length))
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

    /// Queues `frame` to go out of this interface (behind an empty virtio-net header on a
    /// ring that has them: no checksum to complete, no segmentation): copied into the
    /// transmit ring, sent at the next `flush` (every 64 frames at the latest). A frame the
    /// ring cannot take (too long, or every slot still in flight) is sent at once by sendmsg.
    /// Allocates nothing.
    public func send(_ frame: UnsafeRawBufferPointer) throws {
        let header = vnetHeader ? VirtioNetHeader.length : 0
        // The kernel takes from the ring what fits the MTU and the Ethernet header (and one
        // 802.1Q tag when there is one); a longer frame would be skipped there uncounted.
        let tagged = frame.count >= 14 && frame[12] == 0x81 && frame[13] == 0x00
        let fits =
            Self.txDataOffset + header + frame.count <= Self.txSlotSize
            && (mtu == 0 || frame.count <= mtu + 14 + (tagged ? 4 : 0))
        var slot = tx + txHead * Self.txSlotSize
        if fits && slot.assumingMemoryBound(to: tpacket3_hdr.self).pointee.tp_status != TP_STATUS_AVAILABLE {
            flush()  // the kernel may be holding frames sent long ago: hand it the queue
        }
        slot = tx + txHead * Self.txSlotSize
        let hdr = slot.assumingMemoryBound(to: tpacket3_hdr.self)
        guard fits, hdr.pointee.tp_status == TP_STATUS_AVAILABLE else {
            flush()  // keep the order: what is queued goes first
            return try sendNow(frame)
        }
        let data = slot + Self.txDataOffset
        if header > 0 { data.initializeMemory(as: UInt8.self, repeating: 0, count: header) }
        if let base = frame.baseAddress { (data + header).copyMemory(from: base, byteCount: frame.count) }
        hdr.pointee.tp_len = UInt32(header + frame.count)
        hdr.pointee.tp_status = UInt32(TP_STATUS_SEND_REQUEST)
        txHead = (txHead + 1) % txSlots
        txPending += 1
        if txPending >= 64 { flush() }
    }

    /// Frames wait in the transmit ring (a flush left some: call `flush` again soon).
    public var hasQueued: Bool { txPending > 0 }
    /// Flushes in a row that left frames queued; at `stuckLimit` they are dropped.
    private var stuckFlushes = 0
    private static let stuckLimit = 64

    /// Hands the queued frames to the kernel (one system call for all of them). The kernel
    /// stops early when the socket's send buffer is full or the device is busy, and keeps
    /// retrying a frame the device dropped: what is left stays queued (`hasQueued`) for the
    /// next flush; after `stuckLimit` flushes in a row that leave frames behind (a port whose
    /// other end is down), they are dropped and counted as send failures.
    public func flush() {
        guard txPending > 0 else { return }
        _ = Glibc.send(fd, nil, 0, Int32(MSG_DONTWAIT))
        let last = slotHeader((txHead + txSlots - 1) % txSlots)
        guard last.pointee.tp_status == TP_STATUS_SEND_REQUEST else {
            txPending = 0
            stuckFlushes = 0
            return
        }
        txPending = 1
        stuckFlushes += 1
        if stuckFlushes >= Self.stuckLimit { dropQueued() }
    }

    /// Marks every queued frame longer than the kernel takes, so that it skips them all
    /// (PACKET_LOSS), and counts them.
    private func dropQueued() {
        var dropped: UInt64 = 0
        for i in 0..<txSlots {
            let h = slotHeader(i)
            if h.pointee.tp_status == TP_STATUS_SEND_REQUEST {
                h.pointee.tp_len = UInt32(Self.txSlotSize)
                dropped += 1
            }
        }
        _ = Glibc.send(fd, nil, 0, Int32(MSG_DONTWAIT))
        txFailures.add(dropped, ordering: .relaxed)
        txPending = 0
        stuckFlushes = 0
    }

    private func slotHeader(_ i: Int) -> UnsafeMutablePointer<tpacket3_hdr> {
        (tx + i * Self.txSlotSize).assumingMemoryBound(to: tpacket3_hdr.self)
    }

    /// Sends `frame` by sendmsg, now.
    private func sendNow(_ frame: UnsafeRawBufferPointer) throws {
        var addr = sockaddr_ll()
        addr.sll_family = UInt16(AF_PACKET)
        addr.sll_ifindex = Int32(ifindex)
        addr.sll_halen = 6
        var none: (UInt64, UInt64) = (0, 0)  // the empty virtio-net header (10 bytes of zeros)
        let sent = withUnsafeMutableBytes(of: &none) { header in
            var parts = (
                iovec(iov_base: header.baseAddress, iov_len: vnetHeader ? VirtioNetHeader.length : 0),
                iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count)
            )
            return withUnsafeMutablePointer(to: &addr) { a in
                withUnsafeMutableBytes(of: &parts) { iov in
                    var msg = msghdr()
                    msg.msg_name = UnsafeMutableRawPointer(a)
                    msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_ll>.size)
                    msg.msg_iov = iov.baseAddress!.assumingMemoryBound(to: iovec.self)
                    msg.msg_iovlen = 2
                    return sendmsg(fd, &msg, Int32(MSG_DONTWAIT))  // never block the lane
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
