import Foundation
import NvgreControl
import NvgreWire

/// A host that is not ours: Open vSwitch's userspace datapath (Debian's openvswitch-switch,
/// no kernel module) as an NVGRE endpoint, one VM behind it. `ovsdb-server` and
/// `ovs-vswitchd` run inside the host's namespace with their own run directory; the PA lives
/// on the `br-phy` internal port and OVS resolves the remote PAs by ARP there, as OVS's
/// userspace tunnelling documentation sets it up. The VM's port and a GRE port per remote PA
/// sit on `br-int`.
public final class OVSHost {
    /// How the GRE ports use the key (RFC 7637's VSID << 8 | FlowID).
    public enum KeyMode: Sendable {
        /// `options:key=VSID<<8`: OVS sends and accepts exactly that key (FlowID 0 only).
        case fixed
        /// `options:key=flow`: OpenFlow rules set the key on output and match the VSID's 24
        /// bits on input, whatever the FlowID.
        case flow
    }

    public let net: LabNetwork
    public let ns: String
    public let vmNS: String
    public let pa: IPAddress
    public let vm: LabVM
    public let runDirectory: String
    private var daemons: [pid_t] = []

    /// Builds the host on `fabric`'s switch and starts OVS. `remotes` are the PAs of the other
    /// NVGRE endpoints of `vsid`.
    public convenience init(
        _ net: LabNetwork, fabric: LabFabric, name: String = "ovs", pa: IPAddress, prefixLength: Int = 24,
        vm: LabVM, vsid: UInt32, remotes: [IPAddress], keys: KeyMode
    ) throws {
        let ns = try net.namespace(name)
        let vmNS = try net.namespace("\(name)-vm")
        try fabric.connect(ns, port: "to-\(name)")
        try net.veth("vm0", in: ns, "eth0", in: vmNS, macB: vm.mac.description)
        try net.ip(vmNS, "addr add \(vm.ip4)/24 dev eth0")
        try net.ip(vmNS, "addr add \(vm.ip6)/64 dev eth0 nodad")
        // OVS 3.1's userspace datapath reads a veth port with AF_PACKET and forwards a
        // partial checksum as it finds it (measured: SYN-ACKs left with the pseudo-header
        // sum only, userspace TSO on or off): its VMs send finished checksums, as OVS's
        // documentation for veth ports says. Our VMs keep their defaults.
        try net.exec(vmNS, "ethtool -K eth0 tx off")
        try self.init(
            net, in: ns, vmNamespace: vmNS, vmPort: "vm0", uplink: "ul", pa: pa, prefixLength: prefixLength,
            mtu: fabric.mtu, vm: vm, vsid: vsid, remotes: remotes, keys: keys)
    }

    /// OVS in namespace `ns`, whose interfaces `vmPort` (toward the VM in `vmNamespace`) and
    /// `uplink` (toward the underlay) exist already: the PA goes on `br-phy`, beside `uplink`.
    public init(
        _ net: LabNetwork, in ns: String, vmNamespace: String, vmPort: String, uplink: String, pa: IPAddress,
        prefixLength: Int, mtu: Int, vm: LabVM, vsid: UInt32, remotes: [IPAddress], keys: KeyMode
    ) throws {
        self.net = net
        self.pa = pa
        self.vm = vm
        self.ns = ns
        vmNS = vmNamespace
        runDirectory = "\(Instance.stateRoot)/\(ns)-ovs"
        try? FileManager.default.removeItem(atPath: runDirectory)
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        do {
            try startDaemons()
            try configure(
                vmPort: vmPort, uplink: uplink, prefixLength: prefixLength, mtu: mtu, vsid: vsid, remotes: remotes,
                keys: keys)
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// Stops both daemons and removes the run directory (the namespaces go with `net`).
    public func stop() {
        for pid in daemons.reversed() { Spawn.stop(pid) }
        daemons = []
        try? FileManager.default.removeItem(atPath: runDirectory)
    }

    /// Runs an OVS tool against this host's database and daemons.
    @discardableResult
    public func ovs(_ tool: String, _ args: String) throws -> String {
        try sh("env OVS_RUNDIR=\(runDirectory) OVS_DBDIR=\(runDirectory) \(tool) \(args)")
    }

    @discardableResult
    public func vsctl(_ args: String) throws -> String {
        try ovs("ovs-vsctl", "--db=unix:\(runDirectory)/db.sock --timeout=10 \(args)")
    }

    /// `ovs-appctl` to ovs-vswitchd.
    @discardableResult
    public func appctl(_ args: String) throws -> String {
        try ovs("ovs-appctl", "-t \(runDirectory)/vswitchd.ctl \(args)")
    }

    public var vswitchdLog: String { "\(runDirectory)/vswitchd.log" }

    /// ovs-vswitchd's process (the datapath's threads are its own), while it runs.
    public var vswitchd: pid_t? { daemons.count == 2 ? daemons[1] : nil }

    private func startDaemons() throws {
        let d = runDirectory
        try ovs("ovsdb-tool", "create \(d)/conf.db /usr/share/openvswitch/vswitch.ovsschema")
        // In the foreground, as children of this process: stopped with it, never left behind.
        daemons.append(
            try Spawn.start(
                [
                    "/usr/bin/env", "OVS_RUNDIR=\(d)", "OVS_DBDIR=\(d)", "/usr/sbin/ip", "netns", "exec", ns,
                    "ovsdb-server", "\(d)/conf.db", "--remote=punix:\(d)/db.sock", "--pidfile=\(d)/ovsdb.pid",
                    "--unixctl=\(d)/ovsdb.ctl", "--log-file=\(d)/ovsdb.log"
                ], output: "\(d)/ovsdb.out", detached: false))
        try waitFor("\(d)/db.sock", what: "ovsdb-server")
        try vsctl("--no-wait init")
        daemons.append(
            try Spawn.start(
                [
                    "/usr/bin/env", "OVS_RUNDIR=\(d)", "OVS_DBDIR=\(d)", "/usr/sbin/ip", "netns", "exec", ns,
                    "ovs-vswitchd", "unix:\(d)/db.sock", "--pidfile=\(d)/vswitchd.pid",
                    "--unixctl=\(d)/vswitchd.ctl", "--log-file=\(d)/vswitchd.log"
                ], output: "\(d)/vswitchd.out", detached: false))
        try waitFor("\(d)/vswitchd.ctl", what: "ovs-vswitchd")
    }

    private func configure(
        vmPort: String, uplink: String, prefixLength: Int, mtu: Int, vsid: UInt32, remotes: [IPAddress], keys: KeyMode
    ) throws {
        let key = "0x" + String(vsid << 8, radix: 16)
        try vsctl("add-br br-phy -- set bridge br-phy datapath_type=netdev -- add-port br-phy \(uplink)")
        try net.ip(ns, "addr add \(pa)/\(prefixLength) dev br-phy")
        try net.ip(ns, "link set br-phy mtu \(mtu) up")
        try vsctl("add-br br-int -- set bridge br-int datapath_type=netdev -- add-port br-int \(vmPort)")
        for (i, remote) in remotes.enumerated() {
            let keyOption = keys == .fixed ? key : "flow"
            try vsctl(
                "add-port br-int gre\(i) -- set interface gre\(i) type=gre options:remote_ip=\(remote) "
                    + "options:key=\(keyOption)")
        }
        guard keys == .flow else { return }
        // The VSID on the way out; on the way in its 24 bits, any FlowID. Frames from the VM
        // go to every remote (an L2 flood, as OVS's NORMAL action would do).
        let greOutputs = remotes.indices.map { "output:gre\($0)" }.joined(separator: ",")
        let flows =
            [
                "in_port=\(vmPort),actions=set_field:\(key)->tun_id,\(greOutputs)"
            ] + remotes.indices.map { "in_port=gre\($0),tun_id=\(key)/0xffffff00,actions=output:\(vmPort)" }
        try ovs("ovs-ofctl", "del-flows br-int")
        for f in flows { try ovs("ovs-ofctl", "add-flow br-int '\(f)'") }
    }

    private func waitFor(_ path: String, what: String) throws {
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: path) {
            if Date() > deadline { throw ShellErrorText("\(what) did not start in \(ns) (see \(runDirectory))") }
            usleep(20_000)
        }
    }
}
