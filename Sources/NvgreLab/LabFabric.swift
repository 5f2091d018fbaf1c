import NvgreDatapath

/// The underlay of the labs: a bridge in its own namespace, as the physical network's switch,
/// and one port per host. Each host's `ul` and its port behave like the ends of a cable: a
/// NIC puts finished, MTU-sized frames on it (LabNetwork.likeAWire), whatever the VMs hand
/// over with their offloads on. The demo and the TCP benchmark's kernel-vxlan baseline use
/// the same fabric, so their figures compare the overlays, not two underlays.
public struct LabFabric {
    public let net: LabNetwork
    public let ns: String
    public let mtu: Int
    public let queues: Int

    /// Creates the namespace `name` with the bridge.
    public init(_ net: LabNetwork, name: String = "fabric", mtu: Int, queues: Int = 1) throws {
        self.net = net
        self.mtu = mtu
        self.queues = queues
        ns = try net.namespace(name)
        try net.ip(ns, "link add br0 type bridge")
        try net.ip(ns, "link set br0 up")
        try Self.bridgesSkipIptables(net, in: ns)  // a switch
    }

    /// Bridged frames in namespace `ns` skip iptables (br_netfilter, when it is loaded, would
    /// otherwise add its hooks to every bridged frame).
    public static func bridgesSkipIptables(_ net: LabNetwork, in ns: String) throws {
        try net.exec(
            ns,
            "sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e \"$f\" ] && echo 0 > \"$f\"; done; true'")
    }

    /// Connects host namespace `host` by its `ul` to the bridge port `port`. XDP on the
    /// host's uplink sends frames out of it (answers to ARP from the fabric by XDP_TX, a
    /// gateway's translated packets by redirect), which the port takes only in NAPI mode,
    /// and an XDP_TX'd frame is delivered at once only to a peer running XDP: the port runs
    /// a bare XDP_PASS, as a NIC's XDP path needs nothing of its link partner.
    public func connect(_ host: String, port: String) throws {
        try net.veth("ul", in: host, port, in: ns, queues: queues)
        try net.ip(host, "link set ul mtu \(mtu)")
        try net.ip(ns, "link set \(port) mtu \(mtu) master br0")
        let bare = try Datapath()
        try NetworkNamespace.run(in: ns) {
            try attachXDPToInterface(
                programFD: bare.programFD(.barePass), name: "nv_bare_pass", ifindex: try interfaceIndex(port))
        }
        try net.likeAWire("ul", in: host)
        try net.likeAWire(port, in: ns)
    }

    /// A veth takes frames that XDP redirects into its peer only in NAPI mode: with an XDP
    /// program of its own, or with GRO on. GRO it is: an XDP program on a VM's end would turn
    /// the port's segmentation offload off, and NAPI keeps a flow's frames in order where the
    /// per-CPU backlog of a veth without it would not. (VMs on taps need neither.)
    public static func receivesRedirects(_ net: LabNetwork, _ interface: String, in namespace: String) throws {
        try net.exec(namespace, "ethtool -K \(interface) gro on")
    }
}
