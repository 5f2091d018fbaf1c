/// A readable, layer-per-line description of a frame (what `nvgre trace` prints), NVGRE
/// opened up to the customer frame inside.
public enum FrameDescription {
    public static func lines(_ f: [UInt8], indent: String = "") -> [String] {
        guard let d = DecodedFrame(f) else { return ["\(indent)(\(f.count) bytes, too short for Ethernet)"] }
        var out = [
            "\(indent)Ethernet \(d.srcMAC) > \(d.dstMAC)" + (d.vlan.map { ", 802.1Q vlan \($0)" } ?? "")
                + ", \(f.count) bytes"
        ]
        let l3 = d.l3Offset
        if d.etherType == EtherType.arp.rawValue, f.count >= l3 + 28 {
            let op = f.be16(at: l3 + 6)
            let sha = MACAddress(Array(f[(l3 + 8)..<(l3 + 14)])), spa = IPAddress(v4: Array(f[(l3 + 14)..<(l3 + 18)]))
            let tpa = IPAddress(v4: Array(f[(l3 + 24)..<(l3 + 28)]))
            out.append(
                indent
                    + (op == 1
                        ? "ARP request who-has \(tpa) tell \(spa)"
                        : op == 2 ? "ARP reply \(spa) is-at \(sha)" : "ARP operation \(op)"))
            return out
        }
        guard let src = d.src, let dst = d.dst, let proto = d.ipProtocol else {
            out.append(indent + "ethertype 0x\(String(d.etherType, radix: 16))")
            return out
        }
        let v4 = src.family == .v4
        let l4 = l3 + (v4 ? Int(f[l3] & 0x0f) * 4 : 40)
        let ttl = v4 ? f[l3 + 8] : f[l3 + 7]
        var ip = "\(v4 ? "IPv4" : "IPv6") \(src) > \(dst), \(v4 ? "ttl" : "hop limit") \(ttl)"
        if v4 {
            ip += (f.be16(at: l3 + 6) & 0x4000 != 0 ? ", DF" : "")
        } else if f.be32(at: l3) & 0xfffff != 0 {
            ip += ", flow label 0x\(String(f.be32(at: l3) & 0xfffff, radix: 16))"
        }
        out.append(indent + ip)
        switch proto {
        case IPProtocol.gre.rawValue:
            if let n = DecodedNVGRE(f) {
                let ok =
                    n.flagsAndVersion == NVGRE.flagsAndVersion
                    && n.protocolType == EtherType.transparentEthernet.rawValue
                out.append(
                    indent + "NVGRE vsid \(n.vsid) flowid 0x\(String(n.flowID, radix: 16))"
                        + (ok
                            ? ""
                            : " (flags 0x\(String(n.flagsAndVersion, radix: 16)), protocol "
                                + "0x\(String(n.protocolType, radix: 16)): not NVGRE)")
                )
                out += lines(n.inner, indent: indent + "  ")
            } else {
                out.append(indent + "GRE (truncated)")
            }
        case IPProtocol.icmp.rawValue where f.count >= l4 + 2, IPProtocol.icmpv6.rawValue where f.count >= l4 + 2:
            out.append(indent + icmp(v4: v4, type: f[l4], code: f[l4 + 1]))
        case IPProtocol.tcp.rawValue where f.count >= l4 + 14:
            let flags = f[l4 + 13]
            let names = [(0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH")].filter {
                flags & UInt8($0.0) != 0
            }.map(\.1)
            out.append(indent + "TCP \(f.be16(at: l4)) > \(f.be16(at: l4 + 2)) [\(names.joined(separator: ","))]")
        case IPProtocol.udp.rawValue where f.count >= l4 + 8:
            out.append(
                indent + "UDP \(f.be16(at: l4)) > \(f.be16(at: l4 + 2)), \(Int(f.be16(at: l4 + 4)) - 8) bytes of data")
        default:
            out.append(indent + "IP protocol \(proto)")
        }
        return out
    }

    static func icmp(v4: Bool, type: UInt8, code: UInt8) -> String {
        let names: [UInt8: String] =
            v4
            ? [0: "echo reply", 3: "destination unreachable", 8: "echo request", 11: "time exceeded"]
            : [
                1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 128: "echo request",
                129: "echo reply",
                135: "neighbor solicitation", 136: "neighbor advertisement"
            ]
        return "\(v4 ? "ICMP" : "ICMPv6") \(names[type] ?? "type \(type)") code \(code)"
    }
}
