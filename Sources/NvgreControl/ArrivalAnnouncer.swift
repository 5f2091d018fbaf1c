import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// Announces VMs that arrived on this host (Policy.vmsArrived) into their VSIDs: for each
/// of a VM's addresses, a gratuitous ARP or unsolicited neighbor advertisement from its MAC,
/// NVGRE-encapsulated to every other host and endpoint with a record in the VSID. Our hosts
/// learn the move from the store; this is for peers that learn locations from traffic (an
/// Open vSwitch bridge's MAC learning, a hardware switch), and for their VMs' caches.
/// Sent through the host's own stack (a raw IP socket), as the fragmenter sends.
public final class ArrivalAnnouncer {
    private var sockets: [IPFamily: RawIPSocket] = [:]

    public init() {}

    /// What was sent: frames, and the peers they went to; failures named, one per peer.
    public struct Outcome: Sendable {
        public var frames = 0
        public var peers: Set<IPAddress> = []
        public var failures: [String] = []
    }

    /// At most this many peers per VSID, as head-end replication: a VSID spread wider is
    /// left to learn from the store and from the VM's own traffic.
    public static let maxPeers = 256

    public func announce(_ arrived: [LookupRecord], in policy: Policy) -> Outcome {
        var outcome = Outcome()
        let noFlowID = policy.endpointsWithoutFlowID
        for vsid in Set(arrived.map(\.vsid)).sorted() {
            let peers = policy.peers(ofVSID: vsid)
            guard peers.count <= Self.maxPeers else {
                outcome.failures.append(
                    "VSID \(vsid) has \(peers.count) peers, more than \(Self.maxPeers): not announced")
                continue
            }
            for record in arrived where record.vsid == vsid {
                let inner = Arrival.announcement(of: record.customerAddress, mac: record.mac)
                let hash = FlowHash(src: record.customerAddress, dst: record.customerAddress, protocol: 0)
                for peer in peers {
                    guard let source = policy.providerAddresses.first(where: { $0.address.family == peer.family })
                    else { continue }
                    let frame = NVGRE.encapsulate(
                        inner: inner, vsid: vsid, hash: hash, outerSrcMAC: MACAddress([2, 0, 0, 0, 0, 0]),
                        outerDstMAC: MACAddress([2, 0, 0, 0, 0, 0]), srcPA: source.address, dstPA: peer,
                        sendFlowID: !noFlowID.contains(peer))
                    do {
                        try socket(peer.family).send(Array(frame.dropFirst(Ethernet.headerLength)), to: peer)
                        outcome.frames += 1
                        outcome.peers.insert(peer)
                    } catch {
                        outcome.failures.append("to \(peer): \(error)")
                    }
                }
            }
        }
        return outcome
    }

    private func socket(_ family: IPFamily) throws -> RawIPSocket {
        if let s = sockets[family] { return s }
        let s = try RawIPSocket(family)
        sockets[family] = s
        return s
    }
}
