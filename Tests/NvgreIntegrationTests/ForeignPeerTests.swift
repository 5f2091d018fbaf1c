import Foundation
import NvgreLab
import NvgreWire
import Testing

/// A host of ours and Open vSwitch's userspace NVGRE endpoint on one underlay, one VM behind
/// each in VSID 0x123456, our policy holding both VMs' lookup records: the VMs reach each
/// other with no static neighbour anywhere (OVS floods its VM's ARP and ND over the tunnel,
/// our fast path answers them from policy), over IPv4 and IPv6, ping and TCP both ways.
@Suite(.serialized)
struct ForeignPeerTests {
    static let vsid: UInt32 = 0x12_3456
    static let ourPA: IPAddress = "198.18.0.1"
    static let ovsPA: IPAddress = "198.18.0.2"
    static let ours = LabVM(mac: "02:00:00:00:05:01", ip4: "198.19.5.1", ip6: "2001:db8:19:5::1")
    static let theirs = LabVM(mac: "02:00:00:00:05:02", ip4: "198.19.5.2", ip6: "2001:db8:19:5::2")

    /// The policy a user writes for the pair: the OVS side's VM is an ordinary lookup record
    /// naming OVS's PA; a fixed-key OVS port also needs `flowID: false` for that PA.
    static func policy(flowID: Bool) -> String {
        """
        routingDomains:
          - {id: 1, name: t}
        subnets:
          - {vsid: 0x123456, routingDomain: t, prefixes: [198.19.5.0/24, "2001:db8:19:5::/64"], gatewayMAC: 02:00:00:00:ff:05}
        lookupRecords:
          - {vsid: 0x123456, customerAddress: \(ours.ip4), providerAddress: \(ourPA), mac: \(ours.mac)}
          - {vsid: 0x123456, customerAddress: "\(ours.ip6)", providerAddress: \(ourPA), mac: \(ours.mac)}
          - {vsid: 0x123456, customerAddress: \(theirs.ip4), providerAddress: \(ovsPA), mac: \(theirs.mac)}
          - {vsid: 0x123456, customerAddress: "\(theirs.ip6)", providerAddress: \(ovsPA), mac: \(theirs.mac)}
        providerAddresses:
          - {address: \(ourPA), interface: ul}
        ports:
          - {interface: vm1, vsid: 0x123456, mac: \(ours.mac), addresses: [\(ours.ip4), "\(ours.ip6)"]}
        foreignEndpoints:
          - {address: \(ovsPA), name: ovs, flowID: \(flowID)}

        """
    }

    struct Pair {
        let net: LabNetwork
        let host: CLIHost
        let ovs: OVSHost
        let ourVM: CLIHost.VM
    }

    static func pair(_ tag: String, keys: OVSHost.KeyMode, userspace: Bool = false) throws -> Pair {
        let net = LabNetwork(tag: tag)
        let fabric = try LabFabric(net, mtu: 1600)
        let host = try CLIHost(net, fabric: fabric, name: "a", pa: ourPA)
        let vm = try host.addVM(port: "vm1", ours)
        let ovs = try OVSHost(
            net, fabric: fabric, pa: ovsPA, vm: theirs, vsid: vsid, remotes: [ourPA], keys: keys)
        try host.start(policy: policy(flowID: keys == .flow), upArguments: userspace ? ["--datapath", "userspace"] : [])
        return Pair(net: net, host: host, ovs: ovs, ourVM: vm)
    }

    /// The FlowIDs OVS received from us, as its datapath flows show them (tun_id=0x123456XX).
    static func flowIDsSeenByOVS(_ ovs: OVSHost) throws -> Set<String> {
        let flows = try ovs.appctl("dpctl/dump-flows")
        var ids = Set<String>()
        for line in flows.split(separator: "\n") {
            guard let r = line.range(of: #"tun_id=0x123456[0-9a-f]{2}"#, options: .regularExpression) else { continue }
            ids.insert(String(line[r].suffix(2)))
        }
        return ids
    }

    func reachBothWays(_ p: Pair, _ what: String) throws {
        for family in [IPFamily.v4, .v6] {
            let theirAddress = family == .v4 ? Self.theirs.ip4 : Self.theirs.ip6
            let ourAddress = family == .v4 ? Self.ours.ip4 : Self.ours.ip6
            #expect(
                Traffic.ping(from: p.ovs.vmNS, to: ourAddress, count: 3) == 3,
                "\(what): OVS's VM pings ours over \(family)")
            #expect(
                Traffic.ping(from: p.ourVM.ns, to: theirAddress, count: 3) == 3,
                "\(what): our VM pings OVS's over \(family)")
            let there = try Traffic.tcpTransfer(
                from: p.ourVM.ns, to: p.ovs.vmNS, address: theirAddress, bytes: 1 << 20, timeout: 20)
            #expect(there.ok, "\(what): TCP from our VM to OVS's over \(family): \(there)")
            let back = try Traffic.tcpTransfer(
                from: p.ovs.vmNS, to: p.ourVM.ns, address: ourAddress, port: 5202, bytes: 1 << 20, timeout: 20)
            #expect(back.ok, "\(what): TCP from OVS's VM to ours over \(family): \(back)")
        }
        // Broadcasts cross both ways: OVS floods its VM's into the VSID, we replicate ours to
        // OVS's PA (FlowID 0, which a fixed key takes too).
        for (from, to, what) in [
            (p.ovs.vmNS, p.ourVM.ns, "OVS's VM to ours"), (p.ourVM.ns, p.ovs.vmNS, "ours to OVS's")
        ] {
            let wait = try FloodTests.listen(in: to, port: 9997, seconds: 2)
            #expect(try FloodTests.sendBroadcasts(from: from, port: 9997, count: 3) == 3)
            #expect(try wait() == 3, "\(what): a broadcast did not arrive (\(what))")
        }
        // ARP over the tunnel, as OVS's VM sends it: every request answered with our VM's MAC
        // (the reply time is in the output, for the record).
        let arping = try sh("ip netns exec \(p.ovs.vmNS) arping -c 5 -w 5 -I eth0 \(Self.ours.ip4) 2>&1 || true")
        print("\(what): arping from OVS's VM to ours:\n\(arping)")
        #expect(arping.contains("Received 5 response"), "\(arping)")
        #expect(arping.uppercased().contains(Self.ours.mac.description.uppercased()), "\(arping)")

        // Nothing static: each VM learnt the other's MAC from an answer that crossed the tunnel.
        let neighbours = try sh("ip -n \(p.ovs.vmNS) neigh show")
        #expect(!neighbours.contains("PERMANENT"), "\(neighbours)")
        #expect(neighbours.contains("\(Self.ours.mac)"), "OVS's VM never learnt our VM's MAC: \(neighbours)")
        #expect(try p.host.count("drops", "inner-not-ip") == 0)
    }

    /// OVS with `key=flow`: it matches the VSID's 24 bits, so we send each flow its FlowID.
    @Test func openVSwitchWithKeyFlowTalksToUsBothWays() throws {
        let p = try Self.pair("ovs-flow", keys: .flow)
        defer {
            p.host.stop()
            p.ovs.stop()
        }
        try reachBothWays(p, "key=flow")
        let ids = try Self.flowIDsSeenByOVS(p.ovs)
        #expect(ids.count > 1, "the FlowID we send does not vary by flow: \(ids)")
    }

    /// The same with our host on the userspace path: its frames on the wire, answers and
    /// replication are the decision core's, and OVS takes them as it takes XDP's.
    @Test func openVSwitchTalksToAHostOnTheUserspacePath() throws {
        let p = try Self.pair("ovs-us", keys: .flow, userspace: true)
        defer {
            p.host.stop()
            p.ovs.stop()
        }
        try reachBothWays(p, "key=flow, userspace host")
        let ids = try Self.flowIDsSeenByOVS(p.ovs)
        #expect(ids.count > 1, "the FlowID we send does not vary by flow: \(ids)")
    }

    /// OVS with a fixed key matches all 32 bits: with `flowID: false` for its PA we send
    /// FlowID 0 to it, and nothing of ours lands in its "receive tunnel port not found".
    @Test func openVSwitchWithAFixedKeyTalksToUsBothWays() throws {
        let p = try Self.pair("ovs-fixed", keys: .fixed)
        defer {
            p.host.stop()
            p.ovs.stop()
        }
        try reachBothWays(p, "fixed key")
        #expect(try Self.flowIDsSeenByOVS(p.ovs).subtracting(["00"]).isEmpty)
        let log = (try? String(contentsOfFile: p.ovs.vswitchdLog, encoding: .utf8)) ?? ""
        #expect(!log.contains("receive tunnel port not found"), "OVS dropped frames of ours for their key")
    }
}
