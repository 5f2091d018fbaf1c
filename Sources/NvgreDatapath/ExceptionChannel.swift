import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// A frame the fast path handed to userspace, with why and where it came in.
public struct ExceptionFrame: Sendable {
    public let reason: nv_exception_reason
    public let ingressIfindex: UInt32
    public let vsid: UInt32
    public let originalLength: Int
    public let mtu: UInt32  // for NV_EXC_OVERSIZE
    public let frame: [UInt8]  // the first NV_EXC_SNAPLEN bytes

    public var reasonName: String { ReasonNames.exception(reason) }

    public init(
        reason: nv_exception_reason, ingressIfindex: UInt32, vsid: UInt32, originalLength: Int, mtu: UInt32 = 0,
        frame: [UInt8]
    ) {
        self.reason = reason
        self.ingressIfindex = ingressIfindex
        self.vsid = vsid
        self.originalLength = originalLength
        self.mtu = mtu
        self.frame = frame
    }
}

/// The Swift end of the exception ring buffer: polls it, hands each frame to `handler` and
/// counts them by reason. This is the minimal consumer; the gateway builds on it.
public final class ExceptionChannel {
    private var ring: OpaquePointer?
    private let handler: (ExceptionFrame) -> Void
    public private(set) var received: [nv_exception_reason: Int] = [:]
    public private(set) var malformed = 0

    public convenience init(datapath: Datapath, handler: @escaping (ExceptionFrame) -> Void = { _ in }) throws {
        try self.init(maps: datapath.maps, handler: handler)
    }

    /// From maps alone: a loaded data path's, or a pinned instance's (`nvgre agent`).
    public init(maps: DatapathMaps, handler: @escaping (ExceptionFrame) -> Void = { _ in }) throws {
        self.handler = handler
        let callback: ring_buffer_sample_fn = { ctx, data, size in
            let channel = Unmanaged<ExceptionChannel>.fromOpaque(ctx!).takeUnretainedValue()
            channel.deliver(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }
        // The ring holds an unretained reference: it is freed in deinit, before self goes.
        ring = ring_buffer__new(
            maps.exceptionRingFD, callback,
            Unmanaged.passUnretained(self).toOpaque(), nil)
        if ring == nil { throw DatapathError("open the exception ring buffer", errno: errno) }
    }

    deinit { ring_buffer__free(ring) }

    /// Waits up to `timeoutMilliseconds` for frames and handles all that are ready; returns
    /// how many were handled.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) throws -> Int {
        let n = ring_buffer__poll(ring, timeoutMilliseconds)
        if n < 0 && n != -EINTR { throw DatapathError.fromReturn("poll the exception ring", n) }
        return Int(max(n, 0))
    }

    private func deliver(_ record: UnsafeRawBufferPointer) {
        let hdrSize = MemoryLayout<nv_exception_hdr>.size
        guard record.count >= hdrSize else {
            malformed += 1
            return
        }
        let h = record.loadUnaligned(as: nv_exception_hdr.self)
        let cap = min(Int(h.cap_len), record.count - hdrSize)
        let frame = ExceptionFrame(
            reason: nv_exception_reason(h.reason), ingressIfindex: h.ingress_ifindex, vsid: h.vsid,
            originalLength: Int(h.orig_len), mtu: h.mtu,
            frame: Array(record[hdrSize..<(hdrSize + cap)]))
        received[nv_exception_reason(h.reason), default: 0] += 1
        handler(frame)
    }
}

/// A handler of exceptions beside a host's own (the gateway's), driven by the exception
/// service (NvgreControl's ExceptionService).
public protocol ExceptionHandling: AnyObject {
    /// What the logs call it ("gateway").
    var role: String { get }
    /// Handles the frame; false when it is not this handler's.
    func handle(_ e: ExceptionFrame) -> Bool
    /// Once before the first poll (reading state back after a restart); a line for the log.
    func start() -> String
    /// After every poll (counters are flushed between polls, not per frame).
    func afterPoll()
    /// About once a second (expiry).
    func everySecond()
    /// A line for the log when the service stops.
    func stopping() -> String
}
