import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// What a program did with a frame, the same words for both hooks.
public enum FrameAction: String, Sendable {
    case drop  // XDP_DROP, TC_ACT_SHOT
    case pass  // to the host's stack: XDP_PASS, TC_ACT_OK
    case reply  // back out of the interface it came in on: XDP_TX, or a tc redirect to itself
    case redirect  // out of another interface: XDP_REDIRECT, TC_ACT_REDIRECT
    case other
}

/// What BPF_PROG_TEST_RUN returned for one frame.
public struct TestRunResult {
    public let verdict: UInt32  // the program's own return value (XDP_* or TC_ACT_*)
    public let action: FrameAction
    public let output: [UInt8]  // the frame after the program (metadata removed)
    public let trace: nv_trace?  // present when the instance was loaded with trace on
    public let durationNanoseconds: UInt32  // mean time per run, as the kernel measured it
}

extension Datapath {
    /// Runs `program` once (or `repeat` times) on `frame` through BPF_PROG_TEST_RUN. With an
    /// ingress ifindex, the interface must exist in the calling thread's network namespace;
    /// helpers such as bpf_fib_lookup then work in that namespace. `gsoSize` (tc only) makes
    /// the frame a GSO frame of segments of that payload size, as a VM with TSO sends.
    public func testRun(
        _ program: Program, frame: [UInt8], ingressIfindex: UInt32 = 0, gsoSize: UInt32 = 0,
        repeat count: UInt32 = 1
    ) throws -> TestRunResult {
        switch program.hook {
        case .xdp: return try testRunXDP(program, frame: frame, ingressIfindex: ingressIfindex, repeat: count)
        case .tc:
            return try testRunTC(
                program, frame: frame, ingressIfindex: ingressIfindex, gsoSize: gsoSize, repeat: count)
        }
    }

    private func testRunXDP(_ program: Program, frame: [UInt8], ingressIfindex: UInt32, repeat count: UInt32) throws
        -> TestRunResult
    {
        var ctxIn = xdp_md()
        ctxIn.data_end = UInt32(frame.count)
        ctxIn.ingress_ifindex = ingressIfindex
        var ctxOut = xdp_md()
        let (retval, duration, output) = try run(program, frame: frame, ctxIn: &ctxIn, ctxOut: &ctxOut, repeat: count)
        // The output starts with the metadata area; ctx_out.data is its length.
        let metaLength = Int(ctxOut.data)
        var trace: nv_trace?
        // The trace record is the last metadata written, so the first of the area; other
        // metadata (a flood's nv_flood_meta) follows it.
        if metaLength >= MemoryLayout<nv_trace>.size {
            let t = output.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: nv_trace.self) }
            if t.magic == NV_TRACE_MAGIC { trace = t }
        }
        let action: FrameAction =
            switch retval {
            case XDP_DROP.rawValue: .drop
            case XDP_PASS.rawValue: .pass
            case XDP_TX.rawValue: .reply
            case XDP_REDIRECT.rawValue: .redirect
            default: .other
            }
        return TestRunResult(
            verdict: retval, action: action, output: Array(output[metaLength...]), trace: trace,
            durationNanoseconds: duration)
    }

    private func testRunTC(
        _ program: Program, frame: [UInt8], ingressIfindex: UInt32, gsoSize: UInt32, repeat count: UInt32
    ) throws -> TestRunResult {
        var ctxIn = __sk_buff()
        ctxIn.ifindex = ingressIfindex
        ctxIn.gso_size = gsoSize
        if gsoSize > 0 {
            ctxIn.gso_segs = UInt32((frame.count + Int(gsoSize) - 1) / Int(gsoSize))
        }
        var ctxOut = __sk_buff()
        let (retval, duration, output) = try run(program, frame: frame, ctxIn: &ctxIn, ctxOut: &ctxOut, repeat: count)
        // The trace record is in skb->cb, laid out as struct nv_trace.
        let trace: nv_trace? = withUnsafeBytes(of: ctxOut.cb) {
            let t = $0.loadUnaligned(as: nv_trace.self)
            return t.magic == NV_TRACE_MAGIC ? t : nil
        }
        let action: FrameAction =
            switch Int32(bitPattern: retval) {
            case TC_ACT_SHOT: .drop
            case TC_ACT_OK: .pass
            case TC_ACT_REDIRECT:
                trace.map { $0.kind == UInt16(NV_TRACE_REPLY.rawValue) } == true ? .reply : .redirect
            default: .other
            }
        return TestRunResult(
            verdict: retval, action: action, output: output, trace: trace, durationNanoseconds: duration)
    }

    /// BPF_PROG_TEST_RUN with a context of type `Context`; returns the program's return
    /// value, the kernel's mean time per run and the output data.
    private func run<Context>(
        _ program: Program, frame: [UInt8], ctxIn: inout Context, ctxOut: inout Context, repeat count: UInt32
    ) throws -> (UInt32, UInt32, [UInt8]) {
        var input = frame
        var output = [UInt8](repeating: 0, count: frame.count + 512)
        var opts = bpf_test_run_opts()
        prepareOpts(&opts, size: nv_sizeof_test_run_opts())
        opts.data_size_in = UInt32(input.count)
        opts.data_size_out = UInt32(output.count)
        opts.ctx_size_in = UInt32(MemoryLayout<Context>.size)
        opts.ctx_size_out = UInt32(MemoryLayout<Context>.size)
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
        return (opts.retval, opts.duration, Array(output[..<Int(opts.data_size_out)]))
    }
}
