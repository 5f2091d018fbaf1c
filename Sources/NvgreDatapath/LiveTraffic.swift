import CNvgre
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

    /// Frames the sink has counted, all CPUs.
    public var sinkCount: UInt64 { sink.lookupPerCPU(0).reduce(0, +) }

    public func resetSink() throws { try sink.zeroPerCPU(0) }

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
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let rc: Int32 = input.withUnsafeMutableBytes { inBuf in
            withUnsafeMutablePointer(to: &ctxIn) { ci in
                opts.data_in = UnsafeRawPointer(inBuf.baseAddress)
                opts.ctx_in = UnsafeRawPointer(ci)
                return bpf_prog_test_run_opts(bpf_program__fd(skel.pointee.progs.nv_bench_gen), &opts)
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1)
        try check("send live frames out of ifindex \(ifindex)", rc)
        return Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9
    }
}
