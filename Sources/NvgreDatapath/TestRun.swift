import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// What BPF_PROG_TEST_RUN returned for one frame.
public struct TestRunResult {
    public let verdict: UInt32  // XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT, ...
    public let output: [UInt8]  // the frame after the program (metadata removed)
    public let trace: nv_trace?  // present when the instance was loaded with trace on
    public let durationNanoseconds: UInt32  // mean time per run, as the kernel measured it
}

extension Datapath {
    /// Runs `program` once (or `repeat` times) on `frame` through BPF_PROG_TEST_RUN. With an
    /// ingress ifindex, the interface must exist in the calling thread's network namespace;
    /// helpers such as bpf_fib_lookup then work in that namespace.
    public func testRun(
        _ program: Program, frame: [UInt8], ingressIfindex: UInt32 = 0,
        repeat count: UInt32 = 1
    ) throws -> TestRunResult {
        var input = frame
        var output = [UInt8](repeating: 0, count: frame.count + 512)
        var ctxIn = xdp_md()
        ctxIn.data_end = UInt32(frame.count)
        ctxIn.ingress_ifindex = ingressIfindex
        var ctxOut = xdp_md()
        var opts = bpf_test_run_opts()
        prepareOpts(&opts, size: nv_sizeof_test_run_opts())
        opts.data_size_in = UInt32(input.count)
        opts.data_size_out = UInt32(output.count)
        opts.ctx_size_in = UInt32(MemoryLayout<xdp_md>.size)
        opts.ctx_size_out = UInt32(MemoryLayout<xdp_md>.size)
        opts.repeat = Int32(count)
        let rc: Int32 = input.withUnsafeMutableBytes { inBuf in
            output.withUnsafeMutableBytes { outBuf in
                withUnsafeMutablePointer(to: &ctxIn) { ci in
                    withUnsafeMutablePointer(to: &ctxOut) { co in
                        opts.data_in = UnsafeRawPointer(inBuf.baseAddress)
                        opts.data_out = outBuf.baseAddress
                        opts.ctx_in = UnsafeRawPointer(ci)
                        opts.ctx_out = UnsafeMutableRawPointer(co)
                        return bpf_prog_test_run_opts(programFD(program), &opts)
                    }
                }
            }
        }
        try check("test-run \(program.rawValue)", rc)
        // The output starts with the metadata area; ctx_out.data is its length.
        let metaLength = Int(ctxOut.data)
        let total = Int(opts.data_size_out)
        var trace: nv_trace?
        if metaLength >= MemoryLayout<nv_trace>.size {
            let t = output.withUnsafeBytes {
                $0.loadUnaligned(fromByteOffset: metaLength - MemoryLayout<nv_trace>.size, as: nv_trace.self)
            }
            if t.magic == NV_TRACE_MAGIC { trace = t }
        }
        return TestRunResult(
            verdict: opts.retval, output: Array(output[metaLength..<total]),
            trace: trace, durationNanoseconds: opts.duration)
    }
}
