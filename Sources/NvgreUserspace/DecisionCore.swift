import CNvgre
import NvgreDatapath
import NvgreWire

/// The way to a provider address on the underlay, as the kernel's FIB answers it
/// (bpf_fib_lookup does the same for the BPF programs).
public enum UnderlayHop: Equatable, Sendable {
    /// Out of `ifindex` with `mtu`; the next hop's MAC, when the neighbor is resolved.
    case route(ifindex: UInt32, mtu: Int, sourceMAC: MACAddress, nextHopMAC: MACAddress?)
    case unreachable
    case forwardingDisabled
}

/// Where the underlay next hop of a PA comes from: the host's routes and neighbors, or a
/// table in a test.
public protocol Underlay: Sendable {
    func hop(to pa: IPAddress) -> UnderlayHop
}

/// The data path's decisions in Swift, with no system call: the same verdict, output bytes
/// and counters as the BPF programs for every frame, on the same tables. `fromVM` is
/// nv_from_vm (a VM port's tc program), `fromFabric` nv_from_fabric (the uplink's XDP),
/// `fromExternal` nv_from_external (a gateway's external interface).
/// A transport feeds it frames and carries its verdicts out.
public struct DecisionCore: Sendable {
    public var tables: DecisionTables
    public var underlay: any Underlay
    /// A gateway host's NAT flows (the gateway engine's); nil: none.
    public var flows: (any NATFlowView)?

    public init(tables: DecisionTables, underlay: any Underlay, flows: (any NATFlowView)? = nil) {
        self.tables = tables
        self.underlay = underlay
        self.flows = flows
    }

    /// The counters one frame moved, and its end.
    struct Run {
        var counters = CounterMoves()

        mutating func count(_ c: Counter, _ n: UInt64 = 1) {
            if case .vsid(NV_NO_STATS_SLOT, _) = c { return }  // counts nothing, as in count_vsid
            if n > 0 { counters.add(c, n) }
        }

        mutating func drop(_ reason: nv_drop_reason) -> Outcome {
            count(.drop(reason))
            return Outcome(.drop(reason), counters: counters)
        }

        mutating func exception(
            _ reason: nv_exception_reason, _ frame: [UInt8], vsid: UInt32, slot: UInt32, mtu: UInt32 = 0
        ) -> Outcome {
            count(.exception(reason))
            count(.vsid(slot: slot, NV_CNT_EXCEPTION))
            return Outcome(.exception(reason, vsid: vsid, frame: frame, mtu: mtu), counters: counters)
        }

        func end(_ v: Verdict) -> Outcome { Outcome(v, counters: counters) }
    }

    // MARK: underlay

    enum EncapRoute {
        case go(egress: UInt32, source: MACAddress, nextHop: MACAddress, sourcePA: IPAddress)
        case drop(nv_drop_reason)
        case exception(nv_exception_reason, mtu: UInt32)
    }

    /// underlay_route: this host's PA of the record's family, then the FIB (forwarding,
    /// MTU for an IP header, GRE and `innerLength`, neighbor).
    func underlayRoute(to pa: IPAddress, innerLength: Int) -> EncapRoute {
        let v6 = pa.family == .v6
        guard let cfg = tables.config, let source = v6 ? cfg.providerAddress6 : cfg.providerAddress4 else {
            return .drop(NV_DROP_NO_LOCAL_PA)
        }
        switch underlay.hop(to: pa) {
        case .unreachable: return .drop(NV_DROP_FIB_UNREACHABLE)
        case .forwardingDisabled: return .drop(NV_DROP_FIB_FWD_DISABLED)
        case let .route(ifindex, mtu, sourceMAC, nextHopMAC):
            if (v6 ? 40 : 20) + NVGRE.greLength + innerLength > mtu {
                return .exception(NV_EXC_OVERSIZE, mtu: UInt32(mtu))
            }
            guard let nextHopMAC else { return .exception(NV_EXC_NO_NEIGH, mtu: 0) }
            return .go(egress: ifindex, source: sourceMAC, nextHop: nextHopMAC, sourcePA: source)
        }
    }
}

extension NVGRE {
    static let greLength = 8
}
