import CNvgre
import NvgreDatapath
import NvgreLab
import Testing

/// Attaching through bpf_link: the mode is the one asked for, the attachment shows in
/// iproute2, and it goes away with the link.
struct AttachTests {
    @Test(arguments: [XDPMode.native, XDPMode.generic])
    func attachShowsInIPLinkAndDetachesWithTheLink(_ mode: XDPMode) throws {
        let net = LabNetwork(tag: "attach-\(mode.rawValue)")
        let ns = try net.namespace("h")
        let peer = try net.namespace("p")
        try net.veth("ul", in: ns, "ulpeer", in: peer)
        let dp = try Datapath(
            options: {
                var o = LoadOptions()
                o.maxLookups = 16
                return o
            }())
        var link: ProgramLink? = try NetworkNamespace.run(in: ns) {
            try dp.attach(.fromFabric, interface: "ul", mode: mode)
        }
        #expect(link?.attachment == .xdp(mode))
        let shown = try net.ip(ns, "link show ul")
        #expect(shown.contains(mode == .native ? "xdp " : "xdpgeneric"), "\(shown)")
        #expect(shown.contains("prog/xdp id"))
        link = nil
        #expect(!(try net.ip(ns, "link show ul")).contains("prog/xdp"))
    }

    /// VM ports run the tc program on tcx ingress: the kernel lists it there, and it goes
    /// away with the link; the port's peer keeps TSO (no XDP on the port).
    @Test func thePortProgramAttachesToTcIngressAndTheVMKeepsTSO() throws {
        let net = LabNetwork(tag: "attach-tc")
        let ns = try net.namespace("h")
        let vm = try net.namespace("v")
        try net.veth("port", in: ns, "eth0", in: vm)
        let dp = try Datapath(
            options: {
                var o = LoadOptions()
                o.maxLookups = 16
                return o
            }())
        var link: ProgramLink? = try NetworkNamespace.run(in: ns) { try dp.attach(.fromVM, interface: "port") }
        #expect(link?.attachment == .tcIngress)
        let idx = try NetworkNamespace.run(in: ns) { try interfaceIndex("port") }
        #expect(try NetworkNamespace.run(in: ns) { tcIngressProgramCount(ifindex: idx) } == 1)
        #expect(try net.ip(vm, "link show eth0").contains("prog/xdp") == false)
        let features = try net.exec(vm, "ethtool -k eth0")
        #expect(features.contains("tcp-segmentation-offload: on"), "\(features)")
        link = nil
        #expect(try NetworkNamespace.run(in: ns) { tcIngressProgramCount(ifindex: idx) } == 0)
    }

    @Test func attachingToAMissingInterfaceSaysSo() throws {
        let dp = try Datapath(
            options: {
                var o = LoadOptions()
                o.maxLookups = 16
                return o
            }())
        #expect(throws: DatapathError.self) { try dp.attach(.fromVM, interface: "nvgre-no-such-if") }
        do {
            _ = try dp.attach(.fromVM, interface: "nvgre-no-such-if")
        } catch let e as DatapathError {
            #expect(e.description.contains("nvgre-no-such-if"))
            #expect(e.description.contains("no such interface"))
        }
    }

    @Test func aMapSizeTheKernelRefusesFailsTheLoadWithAnError() {
        var o = LoadOptions()
        o.maxSubnets = 0
        do {
            _ = try Datapath(options: o)
            Issue.record("a zero-sized map loaded")
        } catch {
            #expect("\(error)".contains("load the BPF programs"), "\(error)")
        }
    }
}

/// Map sizes: the defaults hold what a large host needs, and load-time sizes are applied.
struct MapSizeTests {
    @Test func defaultsHoldAMillionRecords65536SubnetsAnd16384Ports() throws {
        let dp = try Datapath()
        #expect(dp.lookups.maxEntries >= 1_000_000)
        #expect(dp.subnets.maxEntries >= 65_536)
        #expect(dp.vsidStats.maxEntries >= 65_536)
        #expect(dp.ports.maxEntries >= 16_384)
    }

    @Test func sizesAreSetAtLoadTime() throws {
        var o = LoadOptions()
        o.maxLookups = 2_000_000
        o.maxPorts = 100
        let dp = try Datapath(options: o)
        #expect(dp.lookups.maxEntries == 2_000_000)
        #expect(dp.ports.maxEntries == 100)
    }
}
