import CNvgre
import NvgreDatapath

/// What the data path does with one frame: the userspace core's answer, and what a test run
/// of the BPF program says, in the same terms.
public enum Verdict: Equatable, Sendable {
    /// Dropped and counted under the reason.
    case drop(nv_drop_reason)
    /// Sent out of interface `egress` (a port, the uplink), as these bytes.
    case forward(egress: UInt32, frame: [UInt8])
    /// Answered: these bytes go back out of the interface the frame came in on.
    case reply(frame: [UInt8])
    /// The host's own traffic (not NVGRE for a local PA): left to the host's stack.
    case pass
    /// Handed to the exception path (the agent) as these bytes, for VSID `vsid`.
    case exception(nv_exception_reason, vsid: UInt32, frame: [UInt8], mtu: UInt32)
    /// From a VM: replicated to `copies` ports and PAs (head-end replication).
    case flood(copies: Int)
    /// From the fabric: decapsulated for the VSID's ports here (these bytes, destination MAC
    /// as the VM sent it).
    case floodUp(vsid: UInt32, frame: [UInt8])
}

/// A counter of the data path, as `nvgre stats` names it.
public enum Counter: Hashable, Sendable {
    case drop(nv_drop_reason)
    case exception(nv_exception_reason)
    /// A per-VSID counter, by its stats slot.
    case vsid(slot: UInt32, nv_vsid_counter)
    /// A gateway's counter (gw_stats).
    case gateway(nv_gw_counter)
    /// A routing domain's counter (domain_stats).
    case domain(rdid: UInt32, nv_domain_counter)
}

/// The verdict and the counters it moved (packets).
public struct Outcome: Equatable, Sendable {
    public var verdict: Verdict
    public var counters: [Counter: UInt64]

    public init(_ verdict: Verdict, counters: [Counter: UInt64] = [:]) {
        self.verdict = verdict
        self.counters = counters
    }
}
