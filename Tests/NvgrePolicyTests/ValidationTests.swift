import NvgrePolicy
import NvgreWire
import Testing

/// A valid two-tenant policy: Red (5001, 5002) and Blue (6001) reuse the same CAs and MACs.
func twoTenants() -> Policy {
    var p = Policy()
    p.routingDomains = [RoutingDomain(id: 1, name: "red"), RoutingDomain(id: 2, name: "blue")]
    p.subnets = [
        VirtualSubnet(
            vsid: 5001, routingDomain: "red",
            prefixes: [IPPrefix(parsing: "198.19.1.0/24")!, IPPrefix(parsing: "2001:db8:19:1::/64")!],
            gateways: ["198.19.1.254", "2001:db8:19:1::fe"], gatewayMAC: "02:00:00:00:ff:01"),
        VirtualSubnet(
            vsid: 5002, routingDomain: "red", prefixes: [IPPrefix(parsing: "198.19.2.0/24")!],
            gateways: ["198.19.2.254"], gatewayMAC: "02:00:00:00:ff:02"),
        VirtualSubnet(
            vsid: 6001, routingDomain: "blue", prefixes: [IPPrefix(parsing: "198.19.1.0/24")!],
            gateways: ["198.19.1.254"], gatewayMAC: "02:00:00:00:ff:03")
    ]
    p.lookupRecords = [
        LookupRecord(
            vsid: 5001, customerAddress: "198.19.1.1", providerAddress: "198.18.0.1", mac: "02:00:00:00:01:01"),
        LookupRecord(
            vsid: 5001, customerAddress: "198.19.1.2", providerAddress: "198.18.0.2", mac: "02:00:00:00:01:02"),
        LookupRecord(vsid: 6001, customerAddress: "198.19.1.1", providerAddress: "198.18.0.3", mac: "02:00:00:00:01:01")
    ]
    p.customerRoutes = [
        CustomerRoute(routingDomain: "red", prefix: IPPrefix(parsing: "0.0.0.0/0")!, nextHop: "198.19.1.250")
    ]
    p.providerAddresses = [ProviderAddress(address: "198.18.0.1", interface: "ul")]
    p.ports = [VMPort(interface: "port1", vsid: 5001, mac: "02:00:00:00:01:01", addresses: ["198.19.1.1"])]
    return p
}

/// One broken rule: how to break the valid policy, and the error expected.
struct BrokenRule: Sendable, CustomTestStringConvertible {
    let name: String
    let mutate: @Sendable (inout Policy) -> Void
    let field: String
    let value: String
    let allowed: String

    init(
        _ name: String, _ field: String, _ value: String, _ allowed: String,
        _ mutate: @escaping @Sendable (inout Policy) -> Void
    ) {
        (self.name, self.field, self.value, self.allowed, self.mutate) = (name, field, value, allowed, mutate)
    }

    var testDescription: String { name }
}

struct ValidationTests {
    @Test func twoTenantsWithTheSameCAAndMACAreValid() {
        #expect(twoTenants().validate() == [])
    }

    /// Each mutation breaks one rule; the error names the field, the value and what is allowed.
    static let brokenRules: [BrokenRule] = [
        BrokenRule("reserved VSID", "subnets[0].vsid", "100", "4096 to 16777214") { p in p.subnets[0].vsid = 100 },
        BrokenRule("vendor VSID", "subnets[0].vsid", "16777215", "4096 to 16777214") { p in p.subnets[0].vsid = 0xffffff
        },
        BrokenRule("VSID in two domains", "subnets[2].vsid", "5001", "no other subnet") { p in p.subnets[2].vsid = 5001
        },
        BrokenRule("unknown domain", "subnets[1].routingDomain", "green", "routing domain") { p in
            p.subnets[1].routingDomain = "green"
        },
        BrokenRule("host bits in prefix", "subnets[1].prefixes[0]", "198.19.2.9/24", "198.19.2.0/24") { p in
            p.subnets[1].prefixes = [IPPrefix(parsing: "198.19.2.9/24")!]
        },
        BrokenRule("two IPv4 prefixes", "subnets[1].prefixes[1]", "198.19.3.0/24", "one prefix per family") { p in
            p.subnets[1].prefixes.append(IPPrefix(parsing: "198.19.3.0/24")!)
        },
        BrokenRule("gateway outside", "subnets[1].gateways[0]", "198.19.9.1", "inside") { p in
            p.subnets[1].gateways = ["198.19.9.1"]
        },
        BrokenRule("multicast gateway MAC", "subnets[1].gatewayMAC", "01:00:5e:00:00:01", "unicast") { p in
            p.subnets[1].gatewayMAC = "01:00:5e:00:00:01"
        },
        BrokenRule("overlapping subnets", "subnets[1].prefixes", "198.19.0.0/16", "do not overlap") { p in
            p.subnets[1].prefixes = [IPPrefix(parsing: "198.19.0.0/16")!]
            p.subnets[1].gateways = []
        },
        BrokenRule("record in missing subnet", "lookupRecords[1].vsid", "7000", "subnet") { p in
            p.lookupRecords[1].vsid = 7000
        },
        BrokenRule(
            "duplicate CA in a VSID", "lookupRecords[1].customerAddress", "198.19.1.1", "one lookup record per VSID"
        ) { p in p.lookupRecords[1].customerAddress = "198.19.1.1" },
        BrokenRule("CA outside subnet", "lookupRecords[1].customerAddress", "198.19.7.1", "inside subnet 5001") { p in
            p.lookupRecords[1].customerAddress = "198.19.7.1"
        },
        BrokenRule("mixed families", "lookupRecords[2].customerAddress", "2001:db8:19:1::1", "inside subnet 6001") {
            p in p.lookupRecords[2].customerAddress = "2001:db8:19:1::1"
        },
        BrokenRule("zero MAC", "lookupRecords[0].mac", "00:00:00:00:00:00", "unicast") { p in
            p.lookupRecords[0].mac = "00:00:00:00:00:00"
        },
        BrokenRule("route next hop family", "customerRoutes[0].nextHop", "2001:db8::1", "IPv4") { p in
            p.customerRoutes[0].nextHop = "2001:db8::1"
        },
        BrokenRule("duplicate PA", "providerAddresses[1].address", "198.18.0.1", "once") { p in
            p.providerAddresses.append(p.providerAddresses[0])
        },
        BrokenRule("port address outside", "ports[0].addresses[0]", "198.19.2.1", "inside subnet 5001") { p in
            p.ports[0].addresses = ["198.19.2.1"]
        },
        BrokenRule("duplicate domain name", "routingDomains[1].name", "red", "no other routing domain") { p in
            p.routingDomains[1].name = "red"
        },
        BrokenRule("foreign endpoint listed twice", "foreignEndpoints[1].address", "198.18.0.9", "once") { p in
            p.foreignEndpoints = [ForeignEndpoint(address: "198.18.0.9"), ForeignEndpoint(address: "198.18.0.9")]
        },
        BrokenRule("foreign endpoint that is this host", "foreignEndpoints[0].address", "198.18.0.1", "another host") {
            p in p.foreignEndpoints = [ForeignEndpoint(address: "198.18.0.1", flowID: false)]
        }
    ]

    @Test(arguments: brokenRules)
    func eachBrokenRuleIsNamed(_ rule: BrokenRule) {
        let (name, field, value, allowed) = (rule.name, rule.field, rule.value, rule.allowed)
        var p = twoTenants()
        rule.mutate(&p)
        let errors = p.validate()
        #expect(
            errors.contains { $0.field == field && $0.value == value && $0.allowed.contains(allowed) },
            "\(name): got \(errors)")
        #expect(throws: PolicyErrors.self) { try p.validated() }
    }

    @Test func allErrorsAreReportedTogether() {
        var p = twoTenants()
        p.subnets[0].vsid = 1
        p.lookupRecords[0].mac = "ff:ff:ff:ff:ff:ff"
        p.ports[0].interface = ""
        #expect(p.validate().count >= 3)
    }
}
