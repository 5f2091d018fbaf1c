import CNvgre
import NvgreWire

/// The classic BPF socket filter of the uplink's packet ring: the kernel hands up only
/// NVGRE for this host's provider addresses (GRE over IPv4, GRE or a fragment header over
/// IPv6, to one of `localPAs`); the host's own traffic is never copied into the ring. What
/// the filter keeps out is what the decision core would pass anyway. Classic BPF needs no
/// BPF privilege (SO_ATTACH_FILTER), so it works where the userspace path is the fallback.
public enum UplinkFilter {
    /// One instruction, before its jumps are resolved: jumps name labels.
    enum Step {
        case loadHalf(UInt32)
        case loadByte(UInt32)
        case loadWord(UInt32)
        case ifEqual(UInt32, then: String, else: String)
        case accept, reject
        case label(String)
    }

    /// The program for `localPAs` (no PA: nothing is accepted; more than classic BPF's
    /// 8-bit forward jumps can test: everything is, and the core passes what is not ours).
    public static func program(localPAs: [IPAddress]) -> [sock_filter] {
        let v4 = localPAs.filter { $0.family == .v4 }, v6 = localPAs.filter { $0.family == .v6 }
        if v4.count + 10 * v6.count > 200 { return assemble([.accept]) }
        var steps: [Step] = [
            .loadHalf(12), .ifEqual(0x0800, then: "v4", else: "not-v4"), .label("not-v4"),
            .ifEqual(0x86dd, then: "v6", else: "reject"),
            // IPv4: protocol GRE, destination at 30 whatever the options.
            .label("v4"), .loadByte(23), .ifEqual(47, then: "v4-dst", else: "reject"), .label("v4-dst"),
            .loadWord(30)
        ]
        for pa in v4 {
            steps += [.ifEqual(word(pa.bytes, 0), then: "accept", else: "next-\(pa)"), .label("next-\(pa)")]
        }
        steps += [
            .reject,
            // IPv6: next header GRE, or a fragment header (the core counts an outer fragment).
            .label("v6"), .loadByte(20), .ifEqual(47, then: "v6-dst", else: "v6-frag"), .label("v6-frag"),
            .ifEqual(44, then: "v6-dst", else: "reject"), .label("v6-dst")
        ]
        for (i, pa) in v6.enumerated() {
            for w in 0..<4 {
                let next = w == 3 ? "accept" : "pa6-\(i)-\(w + 1)"
                steps += [
                    .loadWord(38 + UInt32(w) * 4), .ifEqual(word(pa.bytes, w * 4), then: next, else: "pa6-\(i + 1)")
                ]
                if w < 3 { steps.append(.label(next)) }
            }
            steps.append(.label("pa6-\(i + 1)"))
        }
        steps += [.label("reject"), .reject, .label("accept"), .accept]
        return assemble(steps)
    }

    static func word(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    /// Resolves labels into the forward jump offsets classic BPF takes.
    static func assemble(_ steps: [Step]) -> [sock_filter] {
        var at: [String: Int] = [:]
        var n = 0
        for s in steps {
            if case let .label(name) = s { at[name] = n } else { n += 1 }
        }
        var out: [sock_filter] = []
        for s in steps {
            let pc = out.count
            func offset(_ label: String) -> UInt8 { UInt8(at[label]! - pc - 1) }
            switch s {
            case let .loadHalf(k): out.append(sock_filter(code: UInt16(BPF_LD | BPF_H | BPF_ABS), jt: 0, jf: 0, k: k))
            case let .loadByte(k): out.append(sock_filter(code: UInt16(BPF_LD | BPF_B | BPF_ABS), jt: 0, jf: 0, k: k))
            case let .loadWord(k): out.append(sock_filter(code: UInt16(BPF_LD | BPF_W | BPF_ABS), jt: 0, jf: 0, k: k))
            case let .ifEqual(k, then, otherwise):
                out.append(
                    sock_filter(code: UInt16(BPF_JMP | BPF_JEQ | BPF_K), jt: offset(then), jf: offset(otherwise), k: k))
            case .accept: out.append(sock_filter(code: UInt16(BPF_RET | BPF_K), jt: 0, jf: 0, k: 0x40000))
            case .reject: out.append(sock_filter(code: UInt16(BPF_RET | BPF_K), jt: 0, jf: 0, k: 0))
            case .label: break
            }
        }
        return out
    }
}
