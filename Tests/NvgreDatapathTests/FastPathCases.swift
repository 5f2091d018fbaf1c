import CNvgre
import NvgreDatapath
import NvgreWire

/// What a case expects the program to decide.
enum Expected {
    case forward(to: String, output: [UInt8])  // redirected to that interface, with these bytes
    case reply(output: [UInt8])  // back out of the ingress
    case pass  // to the host's stack, frame untouched
    case drop(nv_drop_reason)  // dropped, counted under that reason
    case exception(nv_exception_reason, frame: [UInt8]? = nil, mtu: UInt32 = 0)  // copied to userspace
    case flood(copies: Int)  // from a VM: replicated (tracing counts the copies, sends none)
    case floodUp(output: [UInt8])  // from the fabric: decapsulated, passed up for nv_fabric_flood
}

struct FastPathCase {
    let name: String
    let program: Program
    let ingress: String
    let frame: [UInt8]
    let expected: Expected
    /// Counters that must grow by exactly one packet ("name=N": by N); no other may move.
    let counters: [String]
    var before: ((HostFixture) throws -> Void)? = nil
    var after: ((HostFixture) throws -> Void)? = nil
    /// A GSO frame of segments of this payload size (a VM with TSO on); 0: one frame.
    var gsoSize: UInt32 = 0
}

/// The table: every branch of both programs, IPv4 and IPv6 customer and provider addresses,
/// two tenants with the same CA and MAC, and a case for every reachable drop reason.
enum FastPathTable {
    static func encap(
        _ inner: [UInt8], vsid: UInt32, hash: FlowHash, to pa: IPAddress, via mac: MACAddress,
        tos: UInt8 = 0
    ) -> [UInt8] {
        NVGRE.encapsulate(
            inner: inner, vsid: vsid, hash: hash, tos: tos, outerSrcMAC: Plan.uplinkMAC,
            outerDstMAC: mac, srcPA: pa.family == .v4 ? Plan.paA : Plan.pa6A, dstPA: pa)
    }

    static func fromVM(
        _ name: String, port: String = "port1", _ frame: [UInt8], _ expected: Expected,
        _ counters: [String], before: ((HostFixture) throws -> Void)? = nil,
        after: ((HostFixture) throws -> Void)? = nil
    ) -> FastPathCase {
        FastPathCase(
            name: name, program: .fromVM, ingress: port, frame: frame, expected: expected, counters: counters,
            before: before, after: after)
    }

    static func fromFabric(
        _ name: String, _ frame: [UInt8], _ expected: Expected, _ counters: [String],
        before: ((HostFixture) throws -> Void)? = nil, after: ((HostFixture) throws -> Void)? = nil
    ) -> FastPathCase {
        FastPathCase(
            name: name, program: .fromFabric, ingress: "ul", frame: frame, expected: expected, counters: counters,
            before: before, after: after)
    }

    static var all: [FastPathCase] {
        neighborCases + switchingCases + gsoCases + routingCases + exceptionCases + dropCases + fabricCases
            + fabricARPCases + floodCases
    }

    // MARK: broadcast and multicast from a VM, the router and DHCP guards

    static func routerAdvertisement(from vm: VM, hopByHop: Bool = false) -> [UInt8] {
        let src: IPAddress = "fe80::1"
        let ra = ICMPv6.message(
            type: 134, code: 0, body: [64, 0, 0x07, 0x08] + [UInt8](repeating: 0, count: 8), src: src, dst: "ff02::1")
        // A hop-by-hop header of 8 bytes (next header ICMPv6, PadN) in front, as RFC 7113 warns.
        let ext: [UInt8] = hopByHop ? [58, 0, 1, 4, 0, 0, 0, 0] : []
        let ip = IPv6Header(
            src: src, dst: "ff02::1", nextHeader: hopByHop ? 0 : 58, payloadLength: ext.count + ra.count,
            hopLimit: 255
        ).bytes
        return Ethernet.frame(dst: "33:33:00:00:00:01", src: vm.mac, type: .ipv6, payload: ip + ext + ra)
    }

    static var floodCases: [FastPathCase] {
        let discover = dhcpDiscover(vm1.mac)
        let solicit = Ethernet.frame(
            dst: "33:33:00:00:00:02", src: vm1.mac, type: .ipv6,
            payload: IPv6Header(src: "fe80::1", dst: "ff02::2", nextHeader: 58, payloadLength: 8, hopLimit: 255)
                .bytes + ICMPv6.message(type: 133, code: 0, body: [0, 0, 0, 0], src: "fe80::1", dst: "ff02::2"))
        let offer = Frames.udp(vm1.mac, vm2.mac, vm1.ip4, vm2.ip4, sport: 67, dport: 68)
        let advertise6 = Frames.udp(vm1.mac, vm2.mac, vm1.ip6, vm2.ip6, sport: 547, dport: 546)
        return [
            fromVM(
                "DHCP discover from 0.0.0.0: flooded to the VSID's other port and PAs",
                discover, .flood(copies: 3), ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "Router solicitation from a link-local address: flooded",
                solicit, .flood(copies: 3), ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "Multicast from another VM's address: dropped",
                Frames.udp(vm1.mac, "01:00:5e:00:00:fb", vm2.ip4, "224.0.0.251"), .drop(NV_DROP_SRC_CA_SPOOF),
                ["drop:source-ca-spoofed"]),
            fromVM(
                "Broadcast in a subnet with flood: false: dropped", discover, .drop(NV_DROP_FLOOD_OFF),
                ["drop:flood-off"], before: { try $0.setFlood(false, Plan.red) },
                after: { try $0.setFlood(true, Plan.red) }),
            fromVM(
                "Non-IP multicast (LLDP): dropped, never replicated",
                Ethernet.header(dst: "01:80:c2:00:00:0e", src: vm1.mac, type: 0x88cc)
                    + [UInt8](repeating: 0, count: 46),
                .drop(NV_DROP_NOT_IP), ["drop:not-ip"]),
            fromVM(
                "Router advertisement from a VM: the router guard drops it",
                routerAdvertisement(from: vm1), .drop(NV_DROP_ROUTER_GUARD), ["drop:router-advertisement-guarded"]),
            fromVM(
                "Router advertisement behind a hop-by-hop header: still guarded",
                routerAdvertisement(from: vm1, hopByHop: true), .drop(NV_DROP_ROUTER_GUARD),
                ["drop:router-advertisement-guarded"]),
            fromVM(
                "Router advertisement from a port that allows them: flooded",
                routerAdvertisement(from: vm1), .flood(copies: 3), ["5001:flood", "5001:flood-copy=3"],
                before: { try $0.setPortFlags("port1", vm1, [NV_PORT_ALLOW_RA]) },
                after: { try $0.setPortFlags("port1", vm1, []) }),
            fromVM(
                "DHCP offer (from port 67) from a VM: the DHCP guard drops it", offer, .drop(NV_DROP_DHCP_GUARD),
                ["drop:dhcp-server-guarded"]),
            fromVM(
                "DHCPv6 advertise (from port 547) from a VM: guarded", advertise6, .drop(NV_DROP_DHCP_GUARD),
                ["drop:dhcp-server-guarded"]),
            fromVM(
                "DHCP offer from a port that allows DHCP servers: delivered", offer,
                .forward(to: "port2", output: offer), ["5001:local"],
                before: { try $0.setPortFlags("port1", vm1, [NV_PORT_ALLOW_DHCP_SERVER]) },
                after: { try $0.setPortFlags("port1", vm1, []) })
        ]
    }

    // MARK: ARP inside NVGRE, as endpoints that are not ours flood it

    /// The reply a foreign endpoint at host B's PA gets for vm3's question about `target`:
    /// NVGRE back to B from A, same VSID and FlowID, answering with `mac`.
    static func fabricARPReply(target: IPAddress, mac: MACAddress, flowID: UInt8 = 0x5a) -> [UInt8] {
        let inner = Ethernet.frame(
            dst: vm3.mac, src: mac, type: .arp,
            payload: ARP.packet(op: 2, senderMAC: mac, senderIP: target, targetMAC: vm3.mac, targetIP: vm3.ip4))
        return backToB(inner, flowID: flowID)
    }

    /// `inner` in NVGRE from A back to host B's PA, VSID 5001, with the question's FlowID.
    static func backToB(_ inner: [UInt8], flowID: UInt8 = 0x5a) -> [UInt8] {
        let gre = NVGRE.greHeader(vsid: 5001, flowID: flowID) + inner
        let ip = IPv4Header(src: Plan.paA, dst: Plan.paB, proto: IPProtocol.gre.rawValue, payloadLength: gre.count)
        return Ethernet.frame(dst: Plan.macB, src: Plan.uplinkMAC, type: .ipv4, payload: ip.bytes + gre)
    }

    /// A frame as nv_from_fabric passes it up for nv_fabric_flood: decapsulated, its
    /// destination MAC parked at 02:4e:56:46:4c:00 until tc restores it.
    static func parked(_ inner: [UInt8]) -> [UInt8] { [0x02, 0x4e, 0x56, 0x46, 0x4c, 0x00] + inner.dropFirst(6) }

    /// A DHCP client's first broadcast, from 0.0.0.0.
    static func dhcpDiscover(_ mac: MACAddress) -> [UInt8] {
        Frames.udp(mac, .broadcast, "0.0.0.0", "255.255.255.255", sport: 68, dport: 67)
    }

    static var fabricARPCases: [FastPathCase] {
        func request(_ target: IPAddress, sender: IPAddress = vm3.ip4, sha: MACAddress = vm3.mac, op: UInt16 = 1)
            -> [UInt8]
        {
            Frames.arpRequest(sha, sender, target: target, op: op)
        }
        return [
            fromFabric(
                "ARP request for a local CA from a foreign endpoint: answered from policy, back to the asking PA",
                Frames.nvgre(request(vm1.ip4), vsid: 5001, from: Plan.paB),
                .reply(output: fabricARPReply(target: vm1.ip4, mac: vm1.mac)), []),
            fromFabric(
                "ARP request from a PA that is not the sender CA's: no answer",
                Frames.nvgre(request(vm1.ip4), vsid: 5001, from: Plan.paC), .drop(NV_DROP_PA_SPOOF),
                ["drop:provider-address-spoofed"]),
            fromFabric(
                "ARP request whose sender CA has no record: no answer",
                Frames.nvgre(request(vm1.ip4, sender: "198.19.1.99"), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_INNER_SRC_UNKNOWN), ["drop:inner-source-unknown"]),
            fromFabric(
                "ARP request with another VM's MAC as sender: no answer",
                Frames.nvgre(request(vm1.ip4, sha: vm1.mac), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_SRC_MAC_SPOOF), ["drop:source-mac-spoofed"]),
            fromFabric(
                "ARP request for a CA on another host: not ours to answer, up to the VSID's ports here",
                Frames.nvgre(request(vm4.ip4), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(request(vm4.ip4))), ["5001:flood"]),
            fromFabric(
                "ARP request for the subnet gateway on a host that serves no gateway domain: not answered, flooded",
                Frames.nvgre(request("198.19.1.254"), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(request("198.19.1.254"))), ["5001:flood"]),
            fromFabric(
                "ARP request for a CA on another host, subnet with flood: false: dropped",
                Frames.nvgre(request(vm4.ip4), vsid: 5001, from: Plan.paB), .drop(NV_DROP_ARP_UNANSWERED),
                ["drop:arp-target-unknown"], before: { try $0.setFlood(false, Plan.red) },
                after: { try $0.setFlood(true, Plan.red) }),
            fromFabric(
                "Gratuitous ARP from a foreign endpoint's VM: up to the VSID's ports here",
                Frames.nvgre(request(vm3.ip4), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(request(vm3.ip4))), ["5001:flood"]),
            fromFabric(
                "Broadcast in a VSID with no port here: not for this host",
                Frames.nvgre(
                    Frames.udp(Plan.vm23.mac, .broadcast, Plan.vm23.ip4, "255.255.255.255"), vsid: 5002, from: Plan.paB),
                .drop(NV_DROP_DST_NOT_LOCAL), ["drop:destination-not-local"],
                before: { try $0.dp.floodLists.delete(5002) },
                after: {
                    try $0.dp.floodLists.update(5002, nv_flood_list(peers: [Plan.paB], ports: [$0.port("port4")]))
                }),
            fromFabric(
                "DHCP discover (from 0.0.0.0) from a PA of the VSID: up to its ports here",
                Frames.nvgre(dhcpDiscover(vm3.mac), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(dhcpDiscover(vm3.mac))), ["5001:flood"]),
            fromFabric(
                "Broadcast from a PA that hosts no VM of the VSID: dropped",
                Frames.nvgre(dhcpDiscover(vm3.mac), vsid: 5001, from: Plan.paC), .drop(NV_DROP_PA_SPOOF),
                ["drop:provider-address-spoofed"]),
            fromFabric(
                "Blue's broadcast sent in Red's VSID from Blue's host: dropped",
                Frames.nvgre(
                    Frames.udp(Plan.blue3.mac, .broadcast, Plan.blue3.ip4, "255.255.255.255"), vsid: 5001,
                    from: Plan.paC),
                .drop(NV_DROP_PA_SPOOF), ["drop:provider-address-spoofed"]),
            fromFabric(
                "Multicast claiming a CA whose record names another PA: dropped",
                Frames.nvgre(
                    Frames.udp(vm4.mac, "01:00:5e:00:00:fb", vm4.ip4, "224.0.0.251"), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_PA_SPOOF), ["drop:provider-address-spoofed"]),
            fromFabric(
                "Multicast from a CA with another VM's MAC: dropped",
                Frames.nvgre(
                    Frames.udp(vm1.mac, "01:00:5e:00:00:fb", vm3.ip4, "224.0.0.251"), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_SRC_MAC_SPOOF), ["drop:source-mac-spoofed"]),
            fromFabric(
                "Multicast from an unknown, not link-scoped source: dropped",
                Frames.nvgre(
                    Frames.udp(vm3.mac, "01:00:5e:00:00:fb", "198.19.1.99", "224.0.0.251"), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_INNER_SRC_UNKNOWN), ["drop:inner-source-unknown"]),
            fromFabric(
                "mDNS from a vouched CA: up to the VSID's ports here",
                Frames.nvgre(
                    Frames.udp(vm3.mac, "01:00:5e:00:00:fb", vm3.ip4, "224.0.0.251"), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(Frames.udp(vm3.mac, "01:00:5e:00:00:fb", vm3.ip4, "224.0.0.251"))),
                ["5001:flood"]),
            fromFabric(
                "Multicast in a subnet with flood: false: dropped",
                Frames.nvgre(
                    Frames.udp(vm3.mac, "01:00:5e:00:00:fb", vm3.ip4, "224.0.0.251"), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_FLOOD_OFF), ["drop:flood-off"], before: { try $0.setFlood(false, Plan.red) },
                after: { try $0.setFlood(true, Plan.red) }),
            fromFabric(
                "IPv6 neighbor solicitation for a local CA from a foreign endpoint: advertisement back to the asking PA",
                Frames.nvgre(Frames.neighborSolicitation(from: vm3, target: vm1.ip6), vsid: 5001, from: Plan.paB),
                .reply(
                    output: backToB(Frames.neighborAdvertisement(to: vm3, target: vm1.ip6, mac: vm1.mac, router: false))
                ), []),
            fromFabric(
                "Neighbor solicitation from a PA that is not the sender CA's: no answer",
                Frames.nvgre(Frames.neighborSolicitation(from: vm3, target: vm1.ip6), vsid: 5001, from: Plan.paC),
                .drop(NV_DROP_PA_SPOOF), ["drop:provider-address-spoofed"]),
            fromFabric(
                "Neighbor solicitation for a CA on another host: not ours to answer, up to the VSID's ports here",
                Frames.nvgre(Frames.neighborSolicitation(from: vm3, target: vm4.ip6), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(Frames.neighborSolicitation(from: vm3, target: vm4.ip6))), ["5001:flood"]),
            fromFabric(
                "Duplicate address detection inside NVGRE (from ::): no answer, up to the VSID's ports here",
                Frames.nvgre(
                    Frames.neighborSolicitation(from: vm3, src: "::", target: vm1.ip6, withOption: false), vsid: 5001,
                    from: Plan.paB),
                .floodUp(
                    output: parked(
                        Frames.neighborSolicitation(from: vm3, src: "::", target: vm1.ip6, withOption: false))
                ), ["5001:flood"]),
            fromFabric(
                "Unicast ARP reply inside NVGRE: not a request",
                Frames.nvgre(Frames.arpReply(to: vm1, from: vm3.mac, ip: vm3.ip4), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_ARP_NOT_REQUEST), ["drop:arp-not-request"]),
            fromFabric(
                "Gratuitous ARP reply (broadcast) inside NVGRE: up to the VSID's ports here",
                Frames.nvgre(request(vm3.ip4, op: 2), vsid: 5001, from: Plan.paB),
                .floodUp(output: parked(request(vm3.ip4, op: 2))), ["5001:flood"]),
            fromFabric(
                "Blue's ARP for its CA at Red's address: answered with Blue's VM, never Red's",
                Frames.nvgre(
                    Frames.arpRequest(Plan.blue3.mac, Plan.blue3.ip4, target: Plan.blue1.ip4), vsid: 6001,
                    from: Plan.paC),
                .reply(
                    output: {
                        let inner = Ethernet.frame(
                            dst: Plan.blue3.mac, src: Plan.blue1.mac, type: .arp,
                            payload: ARP.packet(
                                op: 2, senderMAC: Plan.blue1.mac, senderIP: Plan.blue1.ip4, targetMAC: Plan.blue3.mac,
                                targetIP: Plan.blue3.ip4))
                        let gre = NVGRE.greHeader(vsid: 6001, flowID: 0x5a) + inner
                        let ip = IPv4Header(
                            src: Plan.paA, dst: Plan.paC, proto: IPProtocol.gre.rawValue, payloadLength: gre.count)
                        return Ethernet.frame(dst: Plan.macB, src: Plan.uplinkMAC, type: .ipv4, payload: ip.bytes + gre)
                    }()), [])
        ]
    }

    // MARK: GSO frames from a VM with TSO on

    /// A TCP frame sent as one GSO frame: what counts against the underlay MTU is one segment
    /// (headers + gso_size), not the whole frame. (A GSO frame that fits is encapsulated and
    /// segmented by the kernel, which test-run cannot do: the demo's TCP checks and
    /// OffloadTests capture those segments on the underlay.)
    static var gsoCases: [FastPathCase] {
        let payload = [UInt8](repeating: 0x5a, count: 1600)
        let l4 = TCP.segment(src: vm1.ip4, dst: vm3.ip4, sport: 33334, dport: 5201, flags: 0x18, payload: payload)
        let ip = IPPacket.build(src: vm1.ip4, dst: vm3.ip4, proto: IPProtocol.tcp.rawValue, payload: l4)
        let frame = Ethernet.frame(dst: vm3.mac, src: vm1.mac, type: .ipv4, payload: ip)
        var tooBig = fromVM(
            "GSO frame whose segments do not fit: oversize with the MTU, as one frame would", frame,
            .exception(NV_EXC_OVERSIZE, mtu: 1500), ["exception:oversize", "5001:exception"])
        tooBig.gsoSize = 1460  // 14 + 20 + 20 + 1460 + 28 > 1500
        // Segments of 1400 fit (1482 bytes outside) though the whole frame (2882) would not:
        // the MTU check passes it, and the kernel, which test-run does not tell the GSO
        // type, refuses to encapsulate it. Counted as such, not as too big.
        let longPayload = [UInt8](repeating: 0x5a, count: 2800)
        let longTCP = TCP.segment(
            src: vm1.ip4, dst: vm3.ip4, sport: 33334, dport: 5201, flags: 0x18, payload: longPayload)
        let longFrame = Ethernet.frame(
            dst: vm3.mac, src: vm1.mac, type: .ipv4,
            payload: IPPacket.build(src: vm1.ip4, dst: vm3.ip4, proto: IPProtocol.tcp.rawValue, payload: longTCP))
        var fits = fromVM(
            "GSO frame whose segments fit, of a GSO type the kernel does not encapsulate", longFrame,
            .drop(NV_DROP_GSO_UNSUPPORTED), ["drop:gso-type-unsupported"])
        fits.gsoSize = 1400
        return [tooBig, fits]
    }

    static let vm1 = Plan.vm1, vm2 = Plan.vm2, vm3 = Plan.vm3, vm4 = Plan.vm4

    // MARK: ARP and neighbor discovery answered in place

    static var neighborCases: [FastPathCase] {
        [
            fromVM(
                "ARP for the subnet gateway is answered with the gateway MAC",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: Plan.red.gw4),
                .reply(output: Frames.arpReply(to: vm1, from: Plan.red.gwMAC, ip: Plan.red.gw4)), []),
            fromVM(
                "ARP for a local VM is answered from its lookup record",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: vm2.ip4),
                .reply(output: Frames.arpReply(to: vm1, from: vm2.mac, ip: vm2.ip4)), []),
            fromVM(
                "ARP for a remote VM is answered from its lookup record",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: vm3.ip4),
                .reply(output: Frames.arpReply(to: vm1, from: vm3.mac, ip: vm3.ip4)), []),
            fromVM(
                "ARP from Blue for an address only Red has: not answered, flooded in Blue's VSID only", port: "port3",
                Frames.arpRequest(Plan.blue1.mac, Plan.blue1.ip4, target: vm2.ip4), .flood(copies: 1),
                ["6001:flood", "6001:flood-copy"]),
            fromVM(
                "ARP for an unknown address: not answered, flooded (port2, two PAs; no neighbor, no route: none)",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: "198.19.1.99"), .flood(copies: 3),
                ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "ARP for an unknown address, subnet with flood: false: dropped as HNV does",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: "198.19.1.99"), .drop(NV_DROP_ARP_UNANSWERED),
                ["drop:arp-target-unknown"], before: { try $0.setFlood(false, Plan.red) },
                after: { try $0.setFlood(true, Plan.red) }),
            fromVM(
                "ARP probe for the VM's own address (from 0.0.0.0): not answered, flooded",
                Frames.arpRequest(vm1.mac, "0.0.0.0", target: vm1.ip4), .flood(copies: 3),
                ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "Gratuitous ARP for the VM's own address: flooded",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: vm1.ip4), .flood(copies: 3),
                ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "Gratuitous ARP claiming another VM's address: dropped, no cache is poisoned",
                Frames.arpRequest(vm1.mac, vm2.ip4, target: vm2.ip4), .drop(NV_DROP_SRC_CA_SPOOF),
                ["drop:source-ca-spoofed"]),
            fromVM(
                "ARP request from another VM's address for an unknown one: dropped",
                Frames.arpRequest(vm1.mac, vm2.ip4, target: "198.19.1.99"), .drop(NV_DROP_SRC_CA_SPOOF),
                ["drop:source-ca-spoofed"]),
            fromVM(
                "Gratuitous ARP reply (broadcast) for the VM's own address: flooded",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: vm1.ip4, op: 2), .flood(copies: 3),
                ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "ARP reply from a VM is dropped",
                Frames.arpReply(to: vm2, from: vm1.mac, ip: vm1.ip4),
                .drop(NV_DROP_ARP_NOT_REQUEST), ["drop:arp-not-request"]),
            fromVM(
                "ARP with a sender MAC that is not the port's is dropped",
                Frames.arpRequest(vm1.mac, vm1.ip4, target: vm2.ip4, sha: "02:00:00:00:09:09"),
                .drop(NV_DROP_SRC_MAC_SPOOF), ["drop:source-mac-spoofed"]),
            fromVM(
                "ARP with a bad hardware length is malformed",
                {
                    var f = Frames.arpRequest(vm1.mac, vm1.ip4, target: vm2.ip4)
                    f[18] = 8
                    return f
                }(),
                .drop(NV_DROP_MALFORMED), ["drop:malformed"]),
            fromVM(
                "NS for the IPv6 gateway gets an NA with the router flag",
                Frames.neighborSolicitation(from: vm1, target: Plan.red.gw6),
                .reply(
                    output: Frames.neighborAdvertisement(
                        to: vm1, target: Plan.red.gw6, mac: Plan.red.gwMAC, router: true)), []),
            fromVM(
                "NS for a remote VM gets an NA from its lookup record",
                Frames.neighborSolicitation(from: vm1, target: vm4.ip6),
                .reply(output: Frames.neighborAdvertisement(to: vm1, target: vm4.ip6, mac: vm4.mac, router: false)),
                []),
            fromVM(
                "NS without a source link-layer option is answered (frame grows)",
                Frames.neighborSolicitation(from: vm1, target: vm2.ip6, withOption: false),
                .reply(output: Frames.neighborAdvertisement(to: vm1, target: vm2.ip6, mac: vm2.mac, router: false)),
                []),
            fromVM(
                "NS for an unknown address: not answered, flooded",
                Frames.neighborSolicitation(from: vm1, target: "2001:db8:19:1::99"), .flood(copies: 3),
                ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "NS from the unspecified address (DAD): not answered, flooded",
                Frames.neighborSolicitation(from: vm1, src: "::", target: vm2.ip6, withOption: false),
                .flood(copies: 3), ["5001:flood", "5001:flood-copy=3"]),
            fromVM(
                "NS from another VM's address for an unknown one: dropped",
                Frames.neighborSolicitation(from: vm1, src: vm2.ip6, target: "2001:db8:19:1::99"),
                .drop(NV_DROP_SRC_CA_SPOOF), ["drop:source-ca-spoofed"]),
            fromVM(
                "NS for an unknown address, subnet with flood: false: dropped",
                Frames.neighborSolicitation(from: vm1, target: "2001:db8:19:1::99"), .drop(NV_DROP_ND_UNANSWERED),
                ["drop:nd-target-unknown"], before: { try $0.setFlood(false, Plan.red) },
                after: { try $0.setFlood(true, Plan.red) })
        ]
    }

    // MARK: same-VSID switching and encapsulation

    static var switchingCases: [FastPathCase] {
        let v4local = Frames.udp(vm1.mac, vm2.mac, vm1.ip4, vm2.ip4)
        let v6local = Frames.udp(vm1.mac, vm2.mac, vm1.ip6, vm2.ip6)
        let v4to3 = Frames.udp(vm1.mac, vm3.mac, vm1.ip4, vm3.ip4, tos: 0xb8)
        let v4to4 = Frames.udp(vm1.mac, vm4.mac, vm1.ip4, vm4.ip4)
        let v6to3 = Frames.udp(vm1.mac, vm3.mac, vm1.ip6, vm3.ip6)
        let v6to4 = Frames.udp(vm1.mac, vm4.mac, vm1.ip6, vm4.ip6, tos: 0x20)
        let tcpTo3 = Frames.tcp(vm1.mac, vm3.mac, vm1.ip4, vm3.ip4, sport: 33333, dport: 443)
        let blueTo3 = Frames.udp(Plan.blue1.mac, Plan.blue3.mac, Plan.blue1.ip4, Plan.blue3.ip4)
        let plainTo3 = Frames.udp(vm1.mac, vm3.mac, vm1.ip4, vm3.ip4)
        return [
            fromVM(
                "IPv4 to a VM on this host is switched to its port unchanged", v4local,
                .forward(to: "port2", output: v4local), ["5001:local"]),
            fromVM(
                "IPv6 to a VM on this host is switched to its port unchanged", v6local,
                .forward(to: "port2", output: v6local), ["5001:local"]),
            fromVM(
                "IPv4 CA over an IPv4 PA: NVGRE encap, TOS copied, redirect to the uplink", v4to3,
                .forward(
                    to: "ul",
                    output: encap(
                        v4to3, vsid: 5001, hash: Frames.udpHash(vm1.ip4, vm3.ip4), to: Plan.paB, via: Plan.macB,
                        tos: 0xb8)),
                ["5001:encap"]),
            fromVM(
                "IPv4 CA over an IPv6 PA: NVGRE encap with an IPv6 outer header", v4to4,
                .forward(
                    to: "ul",
                    output: encap(
                        v4to4, vsid: 5001, hash: Frames.udpHash(vm1.ip4, vm4.ip4), to: Plan.pa6B, via: Plan.mac6B)),
                ["5001:encap"]),
            fromVM(
                "IPv6 CA over an IPv4 PA", v6to3,
                .forward(
                    to: "ul",
                    output: encap(
                        v6to3, vsid: 5001, hash: Frames.udpHash(vm1.ip6, vm3.ip6), to: Plan.paB, via: Plan.macB)),
                ["5001:encap"]),
            fromVM(
                "IPv6 CA over an IPv6 PA, traffic class copied", v6to4,
                .forward(
                    to: "ul",
                    output: encap(
                        v6to4, vsid: 5001, hash: Frames.udpHash(vm1.ip6, vm4.ip6), to: Plan.pa6B, via: Plan.mac6B,
                        tos: 0x20)),
                ["5001:encap"]),
            fromVM(
                "TCP ports feed the FlowID", tcpTo3,
                .forward(
                    to: "ul",
                    output: encap(
                        tcpTo3, vsid: 5001,
                        hash: FlowHash(src: vm1.ip4, dst: vm3.ip4, protocol: 6, sport: 33333, dport: 443), to: Plan.paB,
                        via: Plan.macB)),
                ["5001:encap"]),
            FastPathCase(
                name: "To a foreign endpoint with flowID: false (OVS with a fixed key): FlowID 0", program: .fromVM,
                ingress: "port1", frame: tcpTo3,
                expected: .forward(
                    to: "ul",
                    output: NVGRE.encapsulate(
                        inner: tcpTo3, vsid: 5001,
                        hash: FlowHash(src: vm1.ip4, dst: vm3.ip4, protocol: 6, sport: 33333, dport: 443),
                        outerSrcMAC: Plan.uplinkMAC, outerDstMAC: Plan.macB, srcPA: Plan.paA, dstPA: Plan.paB,
                        sendFlowID: false)),
                counters: ["5001:encap"],
                before: {
                    try $0.dp.lookups.update(
                        nv_lookup_key(vsid: 5001, ca: vm3.ip4),
                        nv_lookup_val(pa: Plan.paB, mac: vm3.mac, flags: NV_REC_NO_FLOWID, statsSlot: Plan.red.slot))
                },
                after: {
                    try $0.dp.lookups.update(
                        nv_lookup_key(vsid: 5001, ca: vm3.ip4),
                        nv_lookup_val(pa: Plan.paB, mac: vm3.mac, statsSlot: Plan.red.slot))
                }),
            FastPathCase(
                name: "With ip-rule policy routing honoured, the same encap", program: .fromVM, ingress: "port1",
                frame: plainTo3,
                expected: .forward(
                    to: "ul",
                    output: encap(
                        plainTo3, vsid: 5001, hash: Frames.udpHash(vm1.ip4, vm3.ip4), to: Plan.paB, via: Plan.macB)),
                counters: ["5001:encap"],
                before: {
                    try $0.dp.config.update(
                        0, nv_config(uplinkIfindex: $0.port("ul"), pa4: Plan.paA, pa6: Plan.pa6A, useRoutingRules: true)
                    )
                },
                after: {
                    try $0.dp.config.update(0, nv_config(uplinkIfindex: $0.port("ul"), pa4: Plan.paA, pa6: Plan.pa6A))
                }),
            fromVM(
                "An 802.1Q tag from the VM is stripped before encap", Ethernet.tagged(plainTo3, vlan: 42),
                .forward(
                    to: "ul",
                    output: encap(
                        plainTo3, vsid: 5001, hash: Frames.udpHash(vm1.ip4, vm3.ip4), to: Plan.paB, via: Plan.macB)),
                ["5001:encap"]),
            fromVM(
                "Blue VM with Red's CA and MAC reaches Blue's VM at a different PA in VSID 6001", port: "port3",
                blueTo3,
                .forward(
                    to: "ul",
                    output: encap(
                        blueTo3, vsid: 6001, hash: Frames.udpHash(Plan.blue1.ip4, Plan.blue3.ip4), to: Plan.paC,
                        via: Plan.macC)),
                ["6001:encap"])
        ]
    }

    // MARK: the distributed router

    static var routingCases: [FastPathCase] {
        let toRemote = Frames.udp(vm1.mac, Plan.red.gwMAC, vm1.ip4, Plan.vm23.ip4, ttl: 64)
        let routedRemote = Frames.udp(Plan.red2.gwMAC, Plan.vm23.mac, vm1.ip4, Plan.vm23.ip4, ttl: 63)
        let toLocal = Frames.udp(vm1.mac, Plan.red.gwMAC, vm1.ip4, Plan.vm21.ip4, ttl: 9)
        let routedLocal = Frames.udp(Plan.red2.gwMAC, Plan.vm21.mac, vm1.ip4, Plan.vm21.ip4, ttl: 8)
        let v6ToRemote = Frames.udp(vm1.mac, Plan.red.gwMAC, vm1.ip6, Plan.vm23.ip6, ttl: 64)
        let v6Routed = Frames.udp(Plan.red2.gwMAC, Plan.vm23.mac, vm1.ip6, Plan.vm23.ip6, ttl: 63)
        return [
            fromVM(
                "Routed 5001 -> 5002 to another host: MACs rewritten, TTL-1, encap with VSID 5002", toRemote,
                .forward(
                    to: "ul",
                    output: encap(
                        routedRemote, vsid: 5002, hash: Frames.udpHash(vm1.ip4, Plan.vm23.ip4), to: Plan.paB,
                        via: Plan.macB)),
                ["5001:route", "5002:encap"]),
            fromVM(
                "Routed 5001 -> 5002 to a port on this host", toLocal,
                .forward(to: "port4", output: routedLocal), ["5001:route", "5002:local"]),
            fromVM(
                "Routed IPv6: hop limit decremented, encap with VSID 5002", v6ToRemote,
                .forward(
                    to: "ul",
                    output: encap(
                        v6Routed, vsid: 5002, hash: Frames.udpHash(vm1.ip6, Plan.vm23.ip6), to: Plan.paB, via: Plan.macB
                    )),
                ["5001:route", "5002:encap"])
        ]
    }

    // MARK: frames handed to userspace

    static var exceptionCases: [FastPathCase] {
        let big = Frames.udp(vm1.mac, vm3.mac, vm1.ip4, vm3.ip4, payloadLength: 1440)  // 1482 bytes + 42 > 1500
        let tagged = Ethernet.tagged(Frames.udp(vm1.mac, vm3.mac, vm1.ip4, Plan.noNeighborCA), vlan: 7)
        return [
            fromVM(
                "Routed with TTL 1 goes to userspace (time exceeded)",
                Frames.udp(vm1.mac, Plan.red.gwMAC, vm1.ip4, Plan.vm23.ip4, ttl: 1),
                .exception(NV_EXC_TTL_EXPIRED), ["exception:ttl-expired", "5001:exception"]),
            fromVM(
                "Routed to an l2-only record goes to userspace",
                Frames.udp(vm1.mac, Plan.red.gwMAC, vm1.ip4, Plan.l2OnlyCA),
                .exception(NV_EXC_NO_LOOKUP), ["exception:no-lookup-record", "5001:exception"]),
            fromVM(
                "Routed outside the domain's subnets hits the customer default route",
                Frames.udp(vm1.mac, Plan.red.gwMAC, vm1.ip4, Plan.outsideHost),
                .exception(NV_EXC_CUSTOMER_ROUTE), ["exception:customer-route", "5001:exception"]),
            fromVM(
                "Routed with no route in Blue's domain", port: "port3",
                Frames.udp(Plan.blue1.mac, Plan.blue.gwMAC, Plan.blue1.ip4, "198.19.9.9"),
                .exception(NV_EXC_NO_ROUTE), ["exception:no-route", "6001:exception"]),
            fromVM(
                "No lookup record for the destination CA",
                Frames.udp(vm1.mac, "02:00:00:00:01:99", vm1.ip4, "198.19.1.99"),
                .exception(NV_EXC_NO_LOOKUP), ["exception:no-lookup-record", "5001:exception"]),
            fromVM(
                "Destination is a gateway-type record",
                Frames.udp(vm1.mac, "02:00:00:00:01:07", vm1.ip4, Plan.gatewayCA),
                .exception(NV_EXC_GATEWAY), ["exception:gateway-record", "5001:exception"]),
            fromVM(
                "Underlay neighbor not resolved: the untagged frame goes to userspace, not dropped", tagged,
                .exception(NV_EXC_NO_NEIGH, frame: Frames.udp(vm1.mac, vm3.mac, vm1.ip4, Plan.noNeighborCA)),
                ["exception:underlay-neighbor-unresolved", "5001:exception"]),
            fromVM(
                "Encapsulated size above the uplink MTU goes to userspace with the MTU", big,
                .exception(NV_EXC_OVERSIZE, mtu: 1500), ["exception:oversize", "5001:exception"])
        ]
    }

    // MARK: drops from a VM port

    static var dropCases: [FastPathCase] {
        let to3 = Frames.udp(vm1.mac, vm3.mac, vm1.ip4, vm3.ip4)
        return [
            fromVM(
                "Source MAC not the port's", Frames.udp("02:00:00:00:09:09", vm2.mac, vm1.ip4, vm2.ip4),
                .drop(NV_DROP_SRC_MAC_SPOOF), ["drop:source-mac-spoofed"]),
            fromVM(
                "Source CA not allowed on the port (VM1 claims VM2's address)",
                Frames.udp(vm1.mac, vm3.mac, vm2.ip4, vm3.ip4),
                .drop(NV_DROP_SRC_CA_SPOOF), ["drop:source-ca-spoofed"]),
            fromVM(
                "Red VM claims an IPv6 address that is not its own",
                Frames.udp(vm1.mac, vm3.mac, "2001:db8:19:1::66", vm3.ip6),
                .drop(NV_DROP_SRC_CA_SPOOF), ["drop:source-ca-spoofed"]),
            fromVM(
                "Stacked VLAN tags", Ethernet.tagged(Ethernet.tagged(to3, vlan: 5), vlan: 6, tpid: 0x88a8),
                .drop(NV_DROP_DOUBLE_VLAN), ["drop:stacked-vlan-tags"]),
            fromVM(
                "Unicast non-IP ethertype", Ethernet.header(dst: vm2.mac, src: vm1.mac, type: 0x88b5) + Frames.payload,
                .drop(NV_DROP_NOT_IP), ["drop:not-ip"]),
            // The kernel's skb test-run refuses an IPv4 frame shorter than an IPv4 header, so the
            // header claims 60 bytes (IHL 15) in a frame that ends after 34.
            fromVM(
                "IPv4 header longer than the frame",
                {
                    var f = Array(to3.prefix(34))
                    f[14] = 0x4f
                    return f
                }(), .drop(NV_DROP_MALFORMED),
                ["drop:malformed"]),
            fromVM(
                "Truncated ARP", Array(Frames.arpRequest(vm1.mac, vm1.ip4, target: vm2.ip4).prefix(24)),
                .drop(NV_DROP_MALFORMED), ["drop:malformed"]),
            fromVM(
                "From-VM program on an interface that is not a port", port: "ul", to3,
                .drop(NV_DROP_PORT_UNKNOWN), ["drop:port-unknown"]),
            fromVM(
                "Port whose VSID has no virtual subnet", port: "port5",
                Frames.udp("02:00:00:00:07:77", vm3.mac, "198.19.7.7", vm3.ip4),
                .drop(NV_DROP_SUBNET_UNKNOWN), ["drop:subnet-unknown"]),
            fromVM(
                "Remote PA with no underlay route", Frames.udp(vm1.mac, vm3.mac, vm1.ip4, Plan.unreachableCA),
                .drop(NV_DROP_FIB_UNREACHABLE), ["drop:underlay-unreachable"]),
            FastPathCase(
                name: "Forwarding disabled on the uplink", program: .fromVM, ingress: "port1", frame: to3,
                expected: .drop(NV_DROP_FIB_FWD_DISABLED), counters: ["drop:uplink-forwarding-disabled"],
                before: { try $0.setForwarding(false) }, after: { try $0.setForwarding(true) }),
            FastPathCase(
                name: "No local PA of the record's family", program: .fromVM, ingress: "port1",
                frame: Frames.udp(vm1.mac, vm4.mac, vm1.ip4, vm4.ip4),
                expected: .drop(NV_DROP_NO_LOCAL_PA), counters: ["drop:no-local-pa"],
                before: {
                    try $0.dp.config.update(0, nv_config(uplinkIfindex: $0.port("ul"), pa4: Plan.paA, pa6: nil))
                },
                after: {
                    try $0.dp.config.update(0, nv_config(uplinkIfindex: $0.port("ul"), pa4: Plan.paA, pa6: Plan.pa6A))
                })
        ]
    }

    // MARK: from the fabric

    static var fabricCases: [FastPathCase] {
        let in3to1 = Frames.udp(vm3.mac, vm1.mac, vm3.ip4, vm1.ip4)
        let in4to1 = Frames.udp(vm4.mac, vm1.mac, vm4.ip4, vm1.ip4)
        let in6 = Frames.udp(vm3.mac, vm1.mac, vm3.ip6, vm1.ip6)
        let blueIn = Frames.udp(Plan.blue3.mac, Plan.blue1.mac, Plan.blue3.ip4, Plan.blue1.ip4)
        let gre = NVGRE.greHeader(vsid: 5001, flowID: 1) + in3to1
        // vm1 moved from this host to host C (its record flagged by the agent's grace period).
        func vm1Moved(to pa: IPAddress) -> (HostFixture) throws -> Void {
            {
                try $0.dp.lookups.update(
                    nv_lookup_key(vsid: 5001, ca: vm1.ip4),
                    nv_lookup_val(pa: pa, mac: vm1.mac, flags: NV_REC_MOVED_AWAY, statsSlot: Plan.red.slot))
            }
        }
        let vm1Back: (HostFixture) throws -> Void = {
            try $0.dp.lookups.update(
                nv_lookup_key(vsid: 5001, ca: vm1.ip4),
                nv_lookup_val(pa: Plan.paA, mac: vm1.mac, portIfindex: $0.port("port1"), statsSlot: Plan.red.slot))
        }
        let greOn = NVGRE.greHeader(vsid: 5001, flowID: 0x5a) + in3to1
        let movedOn = Ethernet.frame(
            dst: Plan.macC, src: Plan.uplinkMAC, type: .ipv4,
            payload: IPv4Header(
                src: Plan.paB, dst: Plan.paC, proto: 47, payloadLength: greOn.count, ttl: 63, flagsAndFragment: 0x4000
            ).bytes + greOn)
        return [
            fromFabric(
                "For a VM that moved from here moments ago: on to its new host, only the outer destination, TTL and "
                    + "MACs changed (the sender's PA stays the source)",
                Frames.nvgre(in3to1, vsid: 5001, from: Plan.paB), .forward(to: "ul", output: movedOn), ["5001:moved"],
                before: vm1Moved(to: Plan.paC), after: vm1Back),
            fromFabric(
                "For a VM that moved to a PA of the other family: it cannot go on, counted",
                Frames.nvgre(in3to1, vsid: 5001, from: Plan.paB), .drop(NV_DROP_MOVED_UNSENT), ["drop:moved-vm-unsent"],
                before: vm1Moved(to: Plan.pa6B), after: vm1Back),
            fromFabric(
                "For a VM that moved to an unreachable PA: counted, not sent",
                Frames.nvgre(in3to1, vsid: 5001, from: Plan.paB), .drop(NV_DROP_MOVED_UNSENT), ["drop:moved-vm-unsent"],
                before: vm1Moved(to: Plan.paUnreachable), after: vm1Back),
            fromFabric(
                "NVGRE over IPv4 is decapsulated (42 bytes) and redirected to the VM's port",
                Frames.nvgre(in3to1, vsid: 5001, from: Plan.paB), .forward(to: "port1", output: in3to1),
                ["5001:decap"]),
            fromFabric(
                "NVGRE over IPv6 is decapsulated (62 bytes)",
                Frames.nvgre(in4to1, vsid: 5001, from: Plan.pa6B, to: Plan.pa6A), .forward(to: "port1", output: in4to1),
                ["5001:decap"]),
            fromFabric(
                "IPv6 customer frame inside IPv4 NVGRE",
                Frames.nvgre(in6, vsid: 5001, from: Plan.paB), .forward(to: "port1", output: in6), ["5001:decap"]),
            fromFabric(
                "Blue's frame with Red's CAs and MACs goes to Blue's port, not Red's",
                Frames.nvgre(blueIn, vsid: 6001, from: Plan.paC), .forward(to: "port3", output: blueIn),
                ["6001:decap"]),
            fromFabric(
                "Red's inner source from Blue's host PA is spoofed",
                Frames.nvgre(in3to1, vsid: 5001, from: Plan.paC), .drop(NV_DROP_PA_SPOOF),
                ["drop:provider-address-spoofed"]),
            fromFabric(
                "Routed by the sender's distributed router: a 5001 source in a 5002 frame is checked against its "
                    + "5001 record",
                Frames.nvgre(
                    Frames.udp(Plan.red2.gwMAC, Plan.vm21.mac, vm3.ip4, Plan.vm21.ip4), vsid: 5002, from: Plan.paB),
                .forward(to: "port4", output: Frames.udp(Plan.red2.gwMAC, Plan.vm21.mac, vm3.ip4, Plan.vm21.ip4)),
                ["5002:decap"]),
            fromFabric(
                "Routed, but the source's record in the other subnet names another PA",
                Frames.nvgre(
                    Frames.udp(Plan.red2.gwMAC, Plan.vm21.mac, vm3.ip4, Plan.vm21.ip4), vsid: 5002, from: Plan.paC),
                .drop(NV_DROP_PA_SPOOF), ["drop:provider-address-spoofed"]),
            fromFabric(
                "Routed, but no subnet record of the tenant holds the source",
                Frames.nvgre(
                    Frames.udp(Plan.red2.gwMAC, Plan.vm21.mac, "198.19.1.99", Plan.vm21.ip4), vsid: 5002, from: Plan.paB
                ),
                .drop(NV_DROP_INNER_SRC_UNKNOWN), ["drop:inner-source-unknown"]),
            fromFabric(
                "Not GRE: the host's own traffic passes",
                Frames.outer(
                    UDP.datagram(src: Plan.paB, dst: Plan.paA, sport: 1, dport: 2, payload: Frames.payload),
                    from: Plan.paB, proto: 17), .pass, []),
            fromFabric(
                "GRE to an address that is not a local PA passes",
                Frames.nvgre(in3to1, vsid: 5001, from: Plan.paB, to: "198.18.0.77"), .pass, []),
            fromFabric("ARP on the uplink passes", Frames.arpRequest(Plan.macB, Plan.paB, target: Plan.paA), .pass, []),
            fromFabric(
                "Outer IPv4 fragment", Frames.outer(gre, from: Plan.paB, flagsAndFragment: 0x2000),
                .drop(NV_DROP_OUTER_FRAGMENT), ["drop:outer-fragment"]),
            fromFabric(
                "Outer IPv6 fragment header",
                Frames.outer([47, 0, 0, 1, 0, 0, 0, 9] + gre, from: Plan.pa6B, to: Plan.pa6A, proto: 44),
                .drop(NV_DROP_OUTER_FRAGMENT), ["drop:outer-fragment"]),
            fromFabric(
                "GRE checksum bit set",
                Frames.outer(NVGRE.greHeader(vsid: 5001, flowID: 0, flags: 0xa000) + in3to1, from: Plan.paB),
                .drop(NV_DROP_GRE_FLAGS), ["drop:gre-flags"]),
            fromFabric(
                "GRE version 1",
                Frames.outer(NVGRE.greHeader(vsid: 5001, flowID: 0, flags: 0x2001) + in3to1, from: Plan.paB),
                .drop(NV_DROP_GRE_FLAGS), ["drop:gre-flags"]),
            fromFabric(
                "GRE protocol not 0x6558",
                Frames.outer(NVGRE.greHeader(vsid: 5001, flowID: 0, protocolType: 0x0800) + in3to1, from: Plan.paB),
                .drop(NV_DROP_GRE_PROTOCOL), ["drop:gre-protocol"]),
            fromFabric(
                "Reserved VSID 100", Frames.nvgre(in3to1, vsid: 100, from: Plan.paB),
                .drop(NV_DROP_VSID_RESERVED), ["drop:vsid-reserved"]),
            fromFabric(
                "Vendor VSID 0xFFFFFF", Frames.nvgre(in3to1, vsid: 0xffffff, from: Plan.paB),
                .drop(NV_DROP_VSID_RESERVED), ["drop:vsid-reserved"]),
            fromFabric(
                "Unknown VSID", Frames.nvgre(in3to1, vsid: 9999, from: Plan.paB),
                .drop(NV_DROP_VSID_UNKNOWN), ["drop:vsid-unknown"]),
            fromFabric(
                "Inner frame with an 802.1Q tag",
                Frames.nvgre(Ethernet.tagged(in3to1, vlan: 3), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_INNER_VLAN), ["drop:inner-vlan-tag"]),
            fromFabric(
                "Inner frame neither IPv4, IPv6 nor ARP",
                Frames.nvgre(
                    Ethernet.header(dst: vm1.mac, src: vm3.mac, type: 0x88b5) + Frames.payload, vsid: 5001,
                    from: Plan.paB),
                .drop(NV_DROP_INNER_NOT_IP), ["drop:inner-not-ip"]),
            fromFabric(
                "Inner source CA without a lookup record",
                Frames.nvgre(Frames.udp(vm3.mac, vm1.mac, "198.19.1.99", vm1.ip4), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_INNER_SRC_UNKNOWN), ["drop:inner-source-unknown"]),
            fromFabric(
                "Inner destination not on this host",
                Frames.nvgre(Frames.udp(vm3.mac, vm4.mac, vm3.ip4, vm4.ip4), vsid: 5001, from: Plan.paB),
                .drop(NV_DROP_DST_NOT_LOCAL), ["drop:destination-not-local"]),
            fromFabric(
                "GRE header cut short", Array(Frames.nvgre(in3to1, vsid: 5001, from: Plan.paB).prefix(38)),
                .drop(NV_DROP_MALFORMED), ["drop:malformed"])
        ]
    }
}
