import NvgreWire

/// A customer VM of the demo topology.
public struct DemoVM: Sendable, CustomStringConvertible {
    public let host: String  // "A" or "B"
    public let name: String  // its port on the host ("red1"), its namespace's suffix
    public let tenant: String  // "Red" or "Blue"
    public let vsid: UInt32
    public let mac: MACAddress
    public let ip4: IPAddress
    public let ip6: IPAddress
    public let gateway4: IPAddress
    public let gateway6: IPAddress

    public func address(_ family: IPFamily) -> IPAddress { family == .v4 ? ip4 : ip6 }
    public var description: String { "\(tenant) \(vsid) VM on \(host)" }
}

/// A host on the underlay: its provider addresses of either family.
public struct DemoHost: Sendable {
    public let name: String  // "A", "B", "G"
    public let pa4: IPAddress
    public let pa6: IPAddress

    public func pa(_ family: IPFamily) -> IPAddress { family == .v4 ? pa4 : pa6 }
}

/// Who is where in the demo, with which addresses (DESIGN.md §6 plan). The policy files in
/// examples/demo say the same to the data path; tests check traffic against this plan, not
/// against the policy, so a wrong file shows up as a failure.
public enum DemoPlan {
    public static let a = DemoHost(name: "A", pa4: "198.18.0.1", pa6: "2001:db8:18::1")
    public static let b = DemoHost(name: "B", pa4: "198.18.0.2", pa6: "2001:db8:18::2")
    /// The gateway host: on the underlay and on the outside network (interface ext).
    public static let g = DemoHost(name: "G", pa4: "198.18.0.3", pa6: "2001:db8:18::3")
    public static let hypervisors = [a, b]
    public static let hosts = [a, b, g]
    /// A spare hypervisor with no VM, for migrations (DemoLab.spare).
    public static let c = DemoHost(name: "C", pa4: "198.18.0.4", pa6: "2001:db8:18::4")
    /// Services published on G's external address (Red's by examples/demo/host-g.yaml,
    /// Blue's added with the CLI): both reach port 80 of the tenant's VM 198.19.1.2 on B.
    public static let redService: UInt16 = 8080
    public static let blueService: UInt16 = 8081

    /// The outside network behind G: G's external side and host X.
    public static let gExternal4: IPAddress = "203.0.113.1"
    public static let gExternal6: IPAddress = "2001:db8:113::1"
    public static let x4: IPAddress = "203.0.113.2"
    public static let x6: IPAddress = "2001:db8:113::2"

    /// Red 5001, Red 5002 and Blue 6001 on both hosts; Blue's VMs reuse the addresses and
    /// MACs of Red's 5001 VMs on purpose.
    public static let vms: [DemoVM] = [a, b].enumerated().flatMap { i, h -> [DemoVM] in
        let n = i + 1
        return [
            vm(h, "red1", "Red", 5001, mac: "02:00:00:00:01:0\(n)", subnet: 1, n),
            vm(h, "red2", "Red", 5002, mac: "02:00:00:00:02:0\(n)", subnet: 2, n),
            vm(h, "blue1", "Blue", 6001, mac: "02:00:00:00:01:0\(n)", subnet: 1, n)
        ]
    }

    public static func vm(_ host: DemoHost, _ name: String) -> DemoVM {
        vms.first { $0.host == host.name && $0.name == name }!
    }

    private static func vm(
        _ h: DemoHost, _ name: String, _ tenant: String, _ vsid: UInt32, mac: String, subnet: Int, _ n: Int
    ) -> DemoVM {
        DemoVM(
            host: h.name, name: name, tenant: tenant, vsid: vsid, mac: MACAddress(parsing: mac)!,
            ip4: IPAddress(parsing: "198.19.\(subnet).\(n)")!, ip6: IPAddress(parsing: "2001:db8:19:\(subnet)::\(n)")!,
            gateway4: IPAddress(parsing: "198.19.\(subnet).254")!,
            gateway6: IPAddress(parsing: "2001:db8:19:\(subnet)::fe")!)
    }
}
