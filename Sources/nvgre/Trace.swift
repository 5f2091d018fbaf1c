import ArgumentParser
import Foundation
import NvgreControl
import NvgrePolicy
import NvgreWire

struct Trace: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a frame through the real XDP program and show what it does with it.",
        discussion: """
            Uses BPF_PROG_TEST_RUN on a private copy of the program with tracing on, reading the \
            instance's live policy maps (live counters are not touched), or, with --policy, maps \
            programmed from a file (no instance needed). Frames come from --pcap or are built from \
            a description: --port P1 --dst 198.19.1.2 [--proto tcp --dport 80], or --uplink --vsid \
            5001 --src 198.19.1.2 --dst 198.19.1.1 for an NVGRE frame from the fabric.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Trace against this policy file instead of a running instance.", valueName: "file"))
    var policy: String?
    @Option(help: ArgumentHelp("The frame comes from this VM port.", valueName: "iface")) var port: String?
    @Flag(help: "The frame comes from the fabric (an NVGRE frame on the uplink).") var uplink = false
    @Option(help: ArgumentHelp("Destination customer address.", valueName: "address")) var dst: String?
    @Option(help: ArgumentHelp("Source customer address (default: the port's address).", valueName: "address")) var src:
        String?
    @Option(help: ArgumentHelp("icmp, tcp, udp, arp or nd.", valueName: "proto")) var proto = "icmp"
    @Option(help: ArgumentHelp("TCP/UDP destination port.", valueName: "port")) var dport: String?
    @Option(help: ArgumentHelp("Payload bytes (icmp, udp).", valueName: "n")) var size = "32"
    @Option(help: ArgumentHelp("With --uplink: the frame's VSID.", valueName: "vsid")) var vsid: String?
    @Option(help: ArgumentHelp("With --uplink: the outer source (default: the source CA's PA).", valueName: "address"))
    var outerSrc: String?
    @Option(help: ArgumentHelp("Destination MAC of the customer frame (default: from policy).", valueName: "mac"))
    var dstMac: String?
    @Option(help: ArgumentHelp("Read the frames from this pcap file.", valueName: "file")) var pcap: String?
    @Option(help: ArgumentHelp("Write the output frames to this pcap file.", valueName: "file")) var write: String?

    func execute() throws {
        let ingress: TraceIngress
        switch (port, uplink) {
        case let (p?, false): ingress = .port(p)
        case (nil, true): ingress = .uplink
        default: throw fieldError("--port/--uplink", port ?? "", "exactly one of --port IFACE or --uplink")
        }
        try global.enter()
        let tracer: Tracer
        if let policy {
            let p = try readPolicy(policy)
            tracer = try asOptions { try Tracer(policy: p, entering: ingress) }
        } else {
            if let u = try global.userspaceInstance() {
                tracer = try asOptions { try Tracer(userspace: u) }
            } else {
                let instance = try global.openInstance()
                tracer = try asOptions { try Tracer(instance: instance) }
            }
        }
        var frames: [[UInt8]]
        if let pcap {
            guard let data = FileManager.default.contents(atPath: pcap) else {
                throw fieldError("--pcap", pcap, "a readable pcap file")
            }
            do { frames = try Pcap.frames(from: [UInt8](data)) } catch {
                throw fieldError("--pcap", pcap, "a pcap file with Ethernet frames: \(error)")
            }
        } else {
            guard let dst else { throw fieldError("--dst", "", "a destination address (or --pcap FILE)") }
            var spec = TraceFrameSpec(ingress: ingress, dst: try parseAddress(dst, "--dst"))
            spec.src = try src.map { try parseAddress($0, "--src") }
            guard let parsed = TraceProtocol(rawValue: proto) else {
                throw fieldError("--proto", proto, TraceProtocol.allCases.map(\.rawValue).joined(separator: ", "))
            }
            spec.proto = parsed
            spec.dport = try dport.map { UInt16(try parseNumber($0, "--dport", 1...65535)) }
            spec.payloadBytes = Int(try parseNumber(size, "--size", 0...9000))
            spec.vsid = try vsid.map { try parseVSID($0, "--vsid") }
            spec.outerSource = try outerSrc.map { try parseAddress($0, "--outer-src") }
            spec.dstMAC = try dstMac.map { try parseMAC($0, "--dst-mac") }
            frames = [try asOptions { try tracer.frame(spec) }]
        }
        let outcomes = try asOptions { try frames.map { try tracer.run($0, entering: ingress) } }
        if let write {
            let kept = outcomes.filter { [.forward, .reply, .pass].contains($0.kind) }.map(\.output)
            guard FileManager.default.createFile(atPath: write, contents: Data(Pcap.file(kept))) else {
                throw fieldError("--write", write, "a path where a file can be written")
            }
        }
        if global.json {
            print(JSON.array(outcomes.map { json($0, userspace: tracer.isUserspace) }).rendered())
        } else {
            if tracer.isUserspace {
                print("(decided by the userspace data path's core, as its agent would; the verdicts are the programs')")
            }
            for (i, o) in outcomes.enumerated() {
                printOutcome(o, index: outcomes.count > 1 ? i : nil, ingress: ingress, tracer: tracer)
            }
        }
    }

    func json(_ o: TraceOutcome, userspace: Bool) -> JSON {
        var f: [(String, JSON)] = [("verdict", .string(o.verdictName))]
        if userspace { f.append(("datapath", .string("userspace"))) }
        f.append(("decision", .string(o.kind.rawValue)))
        if let r = o.reason { f.append(("reason", .string(r))) }
        if let e = o.egressName { f.append(("egress", .string(e))) }
        if let i = o.egressIfindex { f.append(("egressIfindex", .number(UInt64(i)))) }
        if let v = o.vsid { f.append(("vsid", .number(UInt64(v)))) }
        if let c = o.copies { f.append(("copies", .number(UInt64(c)))) }
        f.append(("input", .array(FrameDescription.lines(o.input).map { .string($0) })))
        if o.kind != .drop && o.kind != .exception {
            f.append(("output", .array(FrameDescription.lines(o.output).map { .string($0) })))
        }
        return .object(f)
    }

    func printOutcome(_ o: TraceOutcome, index: Int?, ingress: TraceIngress, tracer: Tracer) {
        let from: String
        switch ingress {
        case let .port(p): from = "port \(p)"
        case .uplink: from = "the uplink"
        }
        print("frame\(index.map { " \($0 + 1)" } ?? "") in from \(from):")
        FrameDescription.lines(o.input).forEach { print("  " + $0) }
        var line = "verdict: \(o.verdictName)"
        switch o.kind {
        case .forward:
            line +=
                ", forwarded to \(o.egressName ?? "ifindex \(o.egressIfindex ?? 0)")"
                + (o.vsid.map { " in VSID \($0)" } ?? "")
        case .reply: line += ", answered on the port it came from"
        case .pass: line += ", handed to the host stack (not NVGRE traffic)"
        case .drop: line += ", dropped: \(o.reason ?? "?")"
        case .exception: line += ", handed to userspace: \(o.reason ?? "?")"
        case .flood:
            line +=
                o.hook == .tc
                ? ", replicated to VSID \(o.vsid ?? 0): \(o.copies ?? 0) copies (to its other ports and hosts; "
                    + "tracing sends none)"
                : ", decapsulated for the VSID's ports here (nv_fabric_flood replicates it)"
        default: break
        }
        print(line)
        if o.kind == .forward || o.kind == .reply {
            print("frame out:")
            FrameDescription.lines(o.output).forEach { print("  " + $0) }
        }
        if o.reason == "underlay-unreachable" && !tracer.standIns.isEmpty {
            print(
                "note: the uplink \(tracer.standIns.joined(separator: ", ")) does not exist here, so the underlay "
                    + "route lookup has nothing to use"
            )
        }
    }
}
