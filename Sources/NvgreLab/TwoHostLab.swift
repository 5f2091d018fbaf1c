import CNvgre
import Foundation
import NvgreDatapath
import NvgreWire

/// A customer VM in a lab.
public struct LabVM: Sendable {
    public let mac: MACAddress
    public let ip4: IPAddress
    public let ip6: IPAddress

    public init(mac: MACAddress, ip4: IPAddress, ip6: IPAddress) {
        self.mac = mac
        self.ip4 = ip4
        self.ip6 = ip6
    }
}

/// One hypervisor host of a lab: its namespace, its VM's namespace, its data path.
public final class LabHost {
    public let name: String
    public let ns: String
    public let vmNS: String
    public let pa: IPAddress
    public let vm: LabVM
    public let dp: Datapath
    public var links: [ProgramLink] = []
    public var handler: HostExceptionHandler!
    var channel: ExceptionChannel!

    init(name: String, ns: String, vmNS: String, pa: IPAddress, vm: LabVM) throws {
        self.name = name
        self.ns = ns
        self.vmNS = vmNS
        self.pa = pa
        self.vm = vm
        var o = LoadOptions()
        o.maxLookups = 4096
        dp = try Datapath(options: o)
    }
}

/// Two hosts joined by an underlay veth (198.18.0.0/24), one VM on each in VSID 5001
/// (198.19.1.0/24 and 2001:db8:19:1::/64), both programs attached and the maps filled from
/// Swift. Used by the namespace test and by the demo.
public final class TwoHostLab {
    public static let vsid: UInt32 = 5001
    public static let gatewayMAC: MACAddress = "02:00:00:00:ff:01"
    public static let vm1 = LabVM(mac: "02:00:00:00:01:01", ip4: "198.19.1.1", ip6: "2001:db8:19:1::1")
    public static let vm2 = LabVM(mac: "02:00:00:00:01:02", ip4: "198.19.1.2", ip6: "2001:db8:19:1::2")

    public let net: LabNetwork
    public let a: LabHost
    public let b: LabHost
    private var consumer: Thread?
    private let stopFlag = StopFlag()

    public init(tag: String) throws {
        net = LabNetwork(tag: tag)
        a = try LabHost(
            name: "A", ns: try net.namespace("ha"), vmNS: try net.namespace("vma"), pa: "198.18.0.1", vm: Self.vm1)
        b = try LabHost(
            name: "B", ns: try net.namespace("hb"), vmNS: try net.namespace("vmb"), pa: "198.18.0.2", vm: Self.vm2)
        try net.veth("ul", in: a.ns, "ul", in: b.ns)
        for h in [a, b] { try wire(h) }
        for h in [a, b] { try program(h, peers: [a, b]) }
    }

    deinit { stopExceptionConsumers() }

    private func wire(_ h: LabHost) throws {
        try net.veth("port", in: h.ns, "eth0", in: h.vmNS, macB: h.vm.mac.description)
        try net.ip(h.ns, "addr add \(h.pa)/24 dev ul")
        try net.likeAWire("ul", in: h.ns)
        try net.setForwarding(true, in: h.ns, uplink: "ul")
        try net.ip(h.vmNS, "addr add \(h.vm.ip4)/24 dev eth0")
        try net.ip(h.vmNS, "addr add \(h.vm.ip6)/64 dev eth0 nodad")
    }

    private func program(_ h: LabHost, peers: [LabHost]) throws {
        let (uplink, port) = try NetworkNamespace.run(in: h.ns) {
            (try interfaceIndex("ul"), try interfaceIndex("port"))
        }
        try h.dp.config.update(0, nv_config(uplinkIfindex: uplink, pa4: h.pa, pa6: nil))
        try h.dp.localPAs.update(nv_pa_key(h.pa), 1)
        let subnet = nv_subnet(
            routingDomain: 1, statsSlot: 1, gatewayMAC: Self.gatewayMAC,
            gateway4: "198.19.1.254", gateway6: "2001:db8:19:1::fe")
        try h.dp.subnets.update(Self.vsid, subnet)
        try h.dp.ports.update(
            port, nv_port(vsid: Self.vsid, mac: h.vm.mac).inlined(subnet: subnet, addresses: [h.vm.ip4, h.vm.ip6]))
        for ca in [h.vm.ip4, h.vm.ip6] { try h.dp.portAddresses.update(nv_port_ca_key(ifindex: port, ca: ca), 1) }
        for peer in peers {
            for ca in [peer.vm.ip4, peer.vm.ip6] {
                try h.dp.lookups.update(
                    nv_lookup_key(vsid: Self.vsid, ca: ca),
                    nv_lookup_val(
                        pa: peer.pa, mac: peer.vm.mac, portIfindex: peer === h ? port : 0, statsSlot: subnet.stats_slot)
                )
            }
        }
        try NetworkNamespace.run(in: h.ns) {
            h.links.append(try h.dp.attach(.fromVM, interface: "port"))
            h.links.append(try h.dp.attach(.fromFabric, interface: "ul"))
            h.handler = try HostExceptionHandler(maps: h.dp.maps)
        }
        // Frames redirected into a veth are only received when its peer runs XDP.
        try NetworkNamespace.run(in: h.vmNS) { h.links.append(try h.dp.attach(.barePass, interface: "eth0")) }
        h.channel = try ExceptionChannel(datapath: h.dp) { [unowned h] in h.handler.handle($0) }
    }

    /// Polls both hosts' exception rings on a background thread until stopped.
    public func startExceptionConsumers() {
        let hosts = [a, b]
        let flag = stopFlag
        let t = Thread {
            while !flag.isSet { for h in hosts { _ = try? h.channel.poll(timeoutMilliseconds: 20) } }
        }
        consumer = t
        t.start()
    }

    public func stopExceptionConsumers() {
        stopFlag.set()
        while let t = consumer, !t.isFinished { usleep(10_000) }
        consumer = nil
    }

    /// Pings `count` times from a host's VM; returns how many replies came back.
    public func ping(from h: LabHost, to dst: IPAddress, count: Int = 5) -> Int {
        Traffic.ping(from: h.vmNS, to: dst, count: count)
    }
}

/// A flag shared with the consumer thread.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
    public func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}
