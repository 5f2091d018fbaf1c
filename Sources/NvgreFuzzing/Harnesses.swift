import NvgrePolicy
import NvgreWire

/// What the fuzzers feed arbitrary bytes to: every reader of input that comes from outside
/// (policy files, pcap files, frames from VMs and the fabric, packets from the outside
/// world through the gateway's NAT). Each must answer anything with a value or an error,
/// never a crash. `fuzz/Entry.swift` hands libFuzzer's inputs here (`make fuzz`);
/// `NvgreFuzzingTests` replays the committed corpora, the inputs that once crashed among
/// them.
public enum FuzzHarness: String, CaseIterable, Sendable {
    /// The policy reader: YAML, JSON and the one-line lookup records, then validation and
    /// writing back what was read.
    case policy
    /// The pcap reader (`nvgre trace --pcap`), and the description of each frame.
    case pcap
    /// The frame decoders, the ICMP errors answered to a frame, GSO segmentation and IPv4
    /// fragmentation.
    case frames
    /// The gateway's NAT rewriting and the translation of ICMP errors from outside.
    case nat

    public func run(_ bytes: [UInt8]) {
        switch self {
        case .policy: Self.policy(bytes)
        case .pcap: Self.pcap(bytes)
        case .frames: Self.frames(bytes)
        case .nat: Self.nat(bytes)
        }
    }

    static func policy(_ bytes: [UInt8]) {
        guard let p = try? PolicyDocument.decode(bytes: bytes, validate: false) else { return }
        _ = try? p.validated()
        // What was read is written back and read again in both formats.
        for format in [PolicyFormat.yaml, .json] {
            let text = PolicyWriter.write(p, as: format)
            _ = try? PolicyDocument.decode(text, validate: false)
        }
    }

    static func pcap(_ bytes: [UInt8]) {
        guard let frames = try? Pcap.frames(from: bytes) else { return }
        for f in frames.prefix(32) { _ = FrameDescription.lines(f) }
        _ = Pcap.file(frames)
    }

    static func frames(_ bytes: [UInt8]) {
        _ = DecodedFrame(bytes)
        if let n = DecodedNVGRE(bytes) { _ = DecodedFrame(n.inner) }
        _ = FrameDescription.lines(bytes)
        let router = MACAddress([2, 0, 0, 0, 0xff, 1])
        for error in [ICMPError.tooBig(mtu: 1400), .tooBig(mtu: 0), .noRoute] {
            _ = error.answer(to: bytes, gatewayMAC: router, gateway: IPAddress(v4: [198, 19, 1, 254]))
            _ = error.answer(to: bytes, gatewayMAC: router, gateway: nil, vm: router)
        }
        // The first two bytes choose the segment size, as a virtio header would give it.
        if bytes.count > 2 {
            let gso = Int(bytes[0]) << 8 | Int(bytes[1])
            let frame = Array(bytes.dropFirst(2))
            _ = TCPSegmenter.segments(ofFrame: frame, gsoSize: gso)
            _ = UDPSegmenter.segments(ofFrame: frame, gsoSize: gso)
            if let f = DecodedFrame(frame), f.l3Offset <= frame.count {
                _ = IPv4Fragmenter.fragments(of: Array(frame[f.l3Offset...]), mtu: gso)
            }
        }
    }

    static func nat(_ bytes: [UInt8]) {
        if var p = NATPacket(ip: bytes) {
            _ = (p.source, p.destination)
            p.setSource(IPAddress(v4: [203, 0, 113, 1]), port: 40000)
            p.setDestination(IPAddress(v4: [198, 19, 1, 1]), port: 80)
            _ = p.decrementTTL()
        }
        if var e = NATICMPError(ip: bytes) {
            _ = (e.source, e.quotedSource, e.quotedDestination, e.quotedSourcePort, e.quotedDestinationPort)
            _ = e.translate(toCA: IPAddress(v4: [198, 19, 1, 1]), port: 4242)
        }
    }
}
