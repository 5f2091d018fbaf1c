import CNvgre
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The live-traffic instrument (bpf/bench.bpf.c): a generator that sends a frame into an
/// interface at the kernel's speed through BPF_PROG_TEST_RUN with live frames, and a sink
/// program that counts what reaches the end of the path.
public final class LiveTraffic {
    private let skel: UnsafeMutablePointer<nvbench>
    private let sink: BPFMap<UInt32, UInt64>

    public init() throws {
        guard let s = nvbench__open_and_load() else {
            throw DatapathError("load the benchmark programs (bench.bpf.o)", errno: errno)
        }
        skel = s
        sink = BPFMap(fd: bpf_map__fd(s.pointee.maps.sink_count), name: "sink_count", perCPU: true)
    }

    deinit { nvbench__destroy(skel) }

    public var sinkProgramFD: Int32 { bpf_program__fd(skel.pointee.progs.nv_bench_sink) }
    /// Programs that only redirect (the bare hops of a path): tc and XDP.
    public var redirectTCProgramFD: Int32 { bpf_program__fd(skel.pointee.progs.nv_bench_redirect_tc) }
    public var redirectXDPProgramFD: Int32 { bpf_program__fd(skel.pointee.progs.nv_bench_redirect_xdp) }

    /// Frames arriving on `from` go to `to` (ifindexes of one namespace, below 4096).
    public func setRedirect(from: UInt32, to: UInt32) throws {
        try BPFMap<UInt32, UInt32>(fd: bpf_map__fd(skel.pointee.maps.redirect_to), name: "redirect_to").update(from, to)
    }

    /// Frames the sink has counted, all CPUs.
    public var sinkCount: UInt64 { sink.lookupPerCPU(0).reduce(0, +) }

    public func resetSink() throws { try sink.zeroPerCPU(0) }

    /// Makes the generator rewrite one big-endian 32-bit word of every frame (a destination
    /// address) to a random value in base ..< base + count, keeping the checksum at
    /// `checksumOffset` valid. nil sends frames unchanged.
    public struct Spread: Sendable {
        public var base: UInt32, count: UInt32, wordOffset: UInt32, checksumOffset: UInt32
        public init(base: UInt32, count: UInt32, wordOffset: UInt32, checksumOffset: UInt32) {
            self.base = base
            self.count = count
            self.wordOffset = wordOffset
            self.checksumOffset = checksumOffset
        }
    }

    /// Makes the generator write the first whole 8-byte words of `frame` back into every
    /// frame before sending it (at most 128 bytes): for paths that rewrite the frame in place
    /// (NAT), as the pool's pages keep what the path wrote. nil stops it.
    public func setRestore(_ frame: [UInt8]?) {
        let bss = skel.pointee.bss!
        let words = min((frame?.count ?? 0) / 8, 16)
        withUnsafeMutableBytes(of: &bss.pointee.gen_template) { t in
            for i in 0..<(words * 8) { t[i] = frame![i] }
        }
        bss.pointee.gen_template_words = UInt32(words)
    }

    public func setSpread(_ spread: Spread?) {
        let bss = skel.pointee.bss!
        bss.pointee.gen_base = spread?.base ?? 0
        bss.pointee.gen_word_offset = spread?.wordOffset ?? 0
        bss.pointee.gen_csum_offset = spread?.checksumOffset ?? 0
        bss.pointee.gen_spread = spread?.count ?? 0
    }

    /// Sends `frame` `count` times out of interface `ifindex` (of the calling thread's
    /// namespace), on the calling thread's CPU, `batch` frames per kernel loop. Returns the
    /// wall-clock seconds it took.
    @discardableResult
    public func send(_ frame: [UInt8], ifindex: UInt32, count: UInt32, batch: UInt32 = 64) throws -> Double {
        var input = frame
        var ctxIn = xdp_md()
        ctxIn.data_end = UInt32(frame.count)
        ctxIn.ingress_ifindex = ifindex
        var opts = bpf_test_run_opts()
        prepareOpts(&opts, size: nv_sizeof_test_run_opts())
        opts.data_size_in = UInt32(input.count)
        opts.ctx_size_in = UInt32(MemoryLayout<xdp_md>.size)
        opts.repeat = Int32(bitPattern: count)
        opts.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
        opts.batch_size = batch
        let t0 = monotonicSeconds()
        let rc: Int32 = input.withUnsafeMutableBytes { inBuf in
            withUnsafeMutablePointer(to: &ctxIn) { ci in
                opts.data_in = UnsafeRawPointer(inBuf.baseAddress)
                opts.ctx_in = UnsafeRawPointer(ci)
                return bpf_prog_test_run_opts(bpf_program__fd(skel.pointee.progs.nv_bench_gen), &opts)
            }
        }
        let seconds = monotonicSeconds() - t0
        try check("send live frames out of ifindex \(ifindex)", rc)
        return seconds
    }

    /// Sends `countPerCPU` copies of `frame` out of `interface` in namespace `namespace` from
    /// one thread pinned to each CPU in `cpus`, all started together. Returns the wall-clock
    /// seconds from the start until the last thread finished.
    public func send(
        _ frame: [UInt8], namespace: String, interface: String, cpus: [Int],
        countPerCPU: UInt32
    ) throws -> Double {
        let start = StartGate(parties: cpus.count)
        let results = ThreadResults(count: cpus.count)
        let threads = cpus.enumerated().map { i, cpu in
            Thread { [self] in
                var arrived = false
                let result = Result {
                    try NetworkNamespace.run(in: namespace) {
                        let rc = nv_pin_thread_to_cpu(Int32(cpu))
                        if rc < 0 { throw DatapathError.fromReturn("pin the generator to CPU \(cpu)", rc) }
                        let ifindex = try interfaceIndex(interface)
                        arrived = true
                        start.arriveAndWait()
                        try send(frame, ifindex: ifindex, count: countPerCPU)
                        return monotonicSeconds()
                    }
                }
                if !arrived { start.arriveFailed() }
                results.set(i, result)
            }
        }
        threads.forEach { $0.start() }
        let t0 = start.waitForAll()
        let ends = try results.waitAll().map { try $0.get() }
        return (ends.max() ?? t0) - t0
    }
}

/// Lets the generator threads start sending at the same moment.
private final class StartGate: @unchecked Sendable {
    private let cond = NSCondition()
    private let parties: Int
    private var arrived = 0
    private var released = false

    init(parties: Int) { self.parties = parties }

    func arriveAndWait() {
        cond.lock()
        defer { cond.unlock() }
        arrived += 1
        cond.broadcast()
        while !released { cond.wait() }
    }

    /// Waits until every thread arrived (or failed before arriving), releases them and
    /// returns the release time.
    func waitForAll() -> Double {
        cond.lock()
        defer { cond.unlock() }
        while arrived < parties { cond.wait() }
        let t = monotonicSeconds()
        released = true
        cond.broadcast()
        return t
    }

    func arriveFailed() {
        cond.lock()
        arrived += 1
        cond.broadcast()
        cond.unlock()
    }
}

private final class ThreadResults: @unchecked Sendable {
    private let cond = NSCondition()
    private var results: [Result<Double, Error>?]

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ r: Result<Double, Error>) {
        cond.lock()
        results[i] = r
        cond.broadcast()
        cond.unlock()
    }

    func waitAll() -> [Result<Double, Error>] {
        cond.lock()
        defer { cond.unlock() }
        while results.contains(where: { $0 == nil }) { cond.wait() }
        return results.map { $0! }
    }
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) / 1e9 }

/// CLOCK_MONOTONIC in nanoseconds, the clock of bpf_ktime_get_ns (NAT flows' last-seen).
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
